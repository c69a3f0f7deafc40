//! Running the real XDP program on test frames with BPF_PROG_TEST_RUN, Katran-style: load the
//! object, program its maps through the real backend code (`Dataplane::apply`), feed a frame,
//! read back the verdict, the output frame and the counters.
//!
//! Each harness lives in a network namespace of its own, made for the calling thread and gone
//! with it, so tests run in parallel and leave nothing behind.

use std::{collections::HashMap, net::IpAddr, process::Command};

use aya::{TestRun as _, TestRunOptions, programs::Xdp};
use lb_common::stats::GlobalStats;
use xdirectord::{
    backend::xdp::{Capacity, Dataplane, Paths, ProgramClock, RealPath, load_unattached},
    objects,
    table::DesiredTable,
};

/// XDP verdicts.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// Where reals are, fixed by the test.
#[derive(Default, Clone)]
pub struct StaticPaths(pub HashMap<IpAddr, RealPath>);

impl StaticPaths {
    pub fn set(&mut self, addr: &str, path: RealPath) {
        self.0.insert(addr.parse().expect("address"), path);
    }

    /// Each of `addrs` a neighbour on the test run's interface (`lo`, ifindex 1), untagged, with
    /// its own MAC ([`crate::table::mac_of`]), so that a frame's destination MAC names its real.
    pub fn neighbours(&mut self, addrs: &[&str]) {
        for addr in addrs {
            self.set(
                addr,
                RealPath::Neighbour {
                    ifindex: 1,
                    mac: crate::table::mac_of(addr.parse().expect("address")),
                    src_mac: crate::packet::DIRECTOR_MAC,
                    vlan: 0,
                    mtu: 1500,
                    source: None,
                },
            );
        }
    }
}

impl Paths for StaticPaths {
    fn path(&mut self, addr: IpAddr) -> RealPath {
        self.0.get(&addr).copied().unwrap_or(RealPath::Unresolved)
    }
}

/// The result of one run.
#[derive(Debug)]
pub struct Outcome {
    pub action: u32,
    pub frame: Vec<u8>,
}

/// Moves the calling thread into a new, empty network namespace with `lo` up. The namespace has
/// no name and disappears with the thread.
pub fn private_netns() {
    // SAFETY: affects only the calling thread.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET): {}",
        std::io::Error::last_os_error()
    );
    run(&["ip", "link", "set", "lo", "up"]);
}

/// Pins the calling thread to the CPU it is running on.
pub fn stay_on_this_cpu() {
    // SAFETY: no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    assert!(
        cpu >= 0,
        "sched_getcpu: {}",
        std::io::Error::last_os_error()
    );
    pin_to_cpu(cpu as usize).expect("sched_setaffinity");
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    // SAFETY: plain libc calls on a zeroed cpu_set_t; they affect only the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Runs a command (in the calling thread's namespaces), panicking with its output on failure.
pub fn run(argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Flows per family of a harness's flow tables: room for any test's flows, 1 MiB per family
/// (the agent's default, `maxflows`, is 4M: 64 MiB), so that many harnesses load fast.
pub const TEST_FLOWS: u32 = 1 << 16;

/// The balancer, loaded but not attached, in a private namespace.
pub struct Harness {
    ebpf: aya::Ebpf,
    pub dataplane: Dataplane,
    pub paths: StaticPaths,
}

impl Harness {
    /// A harness in a new private namespace for the calling thread, its program on the test
    /// clock ([`Harness::set_clock`]). The thread stays on the CPU it is on: the program keeps
    /// per-CPU state (round-robin cursors, the flow cache) that a test follows run after run.
    pub fn new() -> Harness {
        private_netns();
        stay_on_this_cpu();
        Harness::new_in_current_netns(ProgramClock::Test)
    }

    /// [`Harness::new`] with flow tables of `flows` flows.
    pub fn new_with_flows(flows: u32) -> Harness {
        private_netns();
        stay_on_this_cpu();
        Harness::with_flows(ProgramClock::Test, flows)
    }

    /// A harness in the calling thread's namespace as it is, with flow tables of
    /// [`TEST_FLOWS`] flows.
    pub fn new_in_current_netns(clock: ProgramClock) -> Harness {
        Harness::with_flows(clock, TEST_FLOWS)
    }

    /// A harness in the calling thread's namespace, with flow tables of `flows` flows.
    pub fn with_flows(clock: ProgramClock, flows: u32) -> Harness {
        Harness::with_capacity(
            clock,
            Capacity {
                flows,
                ..Capacity::default()
            },
        )
    }

    /// A harness in the calling thread's namespace, with maps of `capacity`.
    pub fn with_capacity(clock: ProgramClock, capacity: Capacity) -> Harness {
        let (ebpf, dataplane) = load_unattached(clock, capacity).expect("loading the balancer");
        Harness {
            ebpf,
            dataplane,
            paths: StaticPaths::default(),
        }
    }

    /// Programs the maps with `table` through the backend's own code: the ops of the diff
    /// between what the maps hold and `table`, executed.
    pub fn apply(&mut self, table: &DesiredTable) {
        let held = self.dataplane.held().expect("held");
        let ops = xdirectord::table::diff::diff(&held, table);
        self.dataplane
            .execute(&ops, &mut self.paths)
            .expect("apply");
    }

    pub fn program(&self) -> &Xdp {
        self.ebpf
            .program(objects::BALANCER_PROGRAM)
            .expect("program")
            .try_into()
            .expect("an XDP program")
    }

    /// Runs the program once on `frame` (ingress: `lo`, ifindex 1).
    pub fn run(&self, frame: &[u8]) -> Outcome {
        let mut out = vec![0u8; frame.len() + 256];
        let result = self
            .program()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        out.truncate(result.data_size_out as usize);
        Outcome {
            action: result.return_value,
            frame: out,
        }
    }

    /// Sets the program's clock (nanoseconds); 0 gives it back the kernel's. Only the test-clock
    /// build of the balancer ([`ProgramClock::Test`], [`Harness::new`]) has a clock to set.
    pub fn set_clock(&mut self, ns: u64) {
        self.dataplane
            .maps
            .clock
            .as_mut()
            .expect("a CLOCK map: the harness runs the test-clock build (ProgramClock::Test)")
            .set(0, ns, 0)
            .expect("CLOCK");
    }

    pub fn global(&self) -> GlobalStats {
        self.dataplane.global_stats().expect("GLOBAL_STATS")
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}
