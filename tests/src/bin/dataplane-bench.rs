//! `cargo xtask bench` (data plane): nanoseconds per packet of the balancer against a bare
//! program that parses Ethernet and IP, swaps the MACs and returns XDP_TX, both measured with
//! BPF_PROG_TEST_RUN (JIT on) side by side in the same run, for the scenarios pass-non-vip,
//! new-flow, established and persistent-hit, IPv4 and IPv6, 3 and 1000 reals.
//!
//! Every row runs one frame many times in the kernel (`repeat`), the baseline on the same frame.
//! A repeated SYN would find its own flow the second time, so new-flow and persistent-hit send a
//! SYN+FIN: the program takes it as a new connection on a closed tuple every time and runs the
//! whole path (persistence, scheduler, flow-table write), plus one more connection-count update
//! than a first SYN.
//!
//! Writes `target/bench/dataplane.json` (or the path given as the first argument).

use std::net::IpAddr;

use aya::{TestRun as _, TestRunOptions, programs::Xdp};
use serde::Serialize;
use xdirectord::{
    backend::xdp::{ProgramClock, RealPath},
    objects,
    table::{DesiredTable, Forward, Persistence, Protocol, Real, Service, ServiceKey},
};
use xdirectord_tests::{
    harness::{Harness, XDP_PASS, XDP_TX},
    packet::{ACK, DIRECTOR_MAC, FIN, Frame, SYN},
};

/// Runs of a frame per measurement, in the kernel.
const REPEAT: u32 = 500_000;
/// Measurements per figure, ours and the baseline's alternating; the fastest of each is kept
/// (the machine's other work only ever adds time).
const ROUNDS: usize = 9;

#[derive(Serialize)]
struct Row {
    scenario: &'static str,
    family: &'static str,
    reals: usize,
    ns_per_packet: f64,
    baseline_ns_per_packet: f64,
    ratio: f64,
}

fn real_addr(v6: bool, i: usize) -> String {
    if v6 {
        format!("fd00::1:{:x}", i + 1)
    } else {
        format!("10.1.{}.{}", i / 250, i % 250 + 1)
    }
}

fn vip(v6: bool) -> &'static str {
    if v6 { "fd00::100" } else { "10.0.0.100" }
}

fn client(v6: bool, i: u32) -> String {
    if v6 {
        format!("2001:db8::{:x}:{:x}", i >> 16, i & 0xffff)
    } else {
        format!("192.0.{}.{}", (i >> 8) & 0xff, i & 0xff)
    }
}

fn site(v6: bool, reals: usize, persistent: bool) -> DesiredTable {
    let mut t = DesiredTable::default();
    t.services.insert(
        ServiceKey::Inet {
            protocol: Protocol::Tcp,
            addr: vip(v6).parse().unwrap(),
            port: 80,
        },
        Service {
            scheduler: "wrr".into(),
            persistence: persistent.then_some(Persistence {
                timeout_secs: 3600,
                prefix_len: if v6 { 128 } else { 32 },
            }),
            sched_flags: None,
            one_packet: false,
            reals: (0..reals)
                .map(|i| Real {
                    addr: real_addr(v6, i).parse().unwrap(),
                    port: 80,
                    forward: Forward::Gate,
                    weight: 1 + (i % 3) as u32,
                    upper_threshold: 0,
                    lower_threshold: 0,
                })
                .collect(),
            fallback: None,
        },
    );
    t
}

fn harness(v6: bool, reals: usize, persistent: bool) -> Harness {
    // The agent's program: on the kernel's clock.
    let mut h = Harness::new_in_current_netns(ProgramClock::Kernel);
    for i in 0..reals {
        let addr = real_addr(v6, i);
        let ip: IpAddr = addr.parse().unwrap();
        let last = match ip {
            IpAddr::V4(a) => a.octets()[3],
            IpAddr::V6(a) => a.octets()[15],
        };
        h.paths.set(
            &addr,
            RealPath::Neighbour {
                ifindex: 1,
                mac: [2, 0, 0, 0, (i >> 8) as u8, last],
                src_mac: DIRECTOR_MAC,
            },
        );
    }
    h.apply(&site(v6, reals, persistent));
    h
}

/// The fastest of `ROUNDS` measurements of ours and of the baseline on the same frame,
/// alternating.
fn side_by_side(ours: &Xdp, expect: u32, baseline: &Xdp, frame: &[u8]) -> (f64, f64) {
    let (mut best_ours, mut best_base) = (f64::MAX, f64::MAX);
    for _ in 0..ROUNDS {
        best_ours = best_ours.min(repeated(ours, frame, expect));
        best_base = best_base.min(repeated(baseline, frame, XDP_TX));
    }
    (best_ours, best_base)
}

/// Average ns of one frame run `REPEAT` times, as the kernel measures it (whole nanoseconds).
fn repeated(program: &Xdp, frame: &[u8], expect: u32) -> f64 {
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            repeat: REPEAT,
            ..TestRunOptions::default()
        })
        .expect("test run");
    assert_eq!(result.return_value, expect, "unexpected verdict");
    result.duration.as_nanos() as f64
}

fn balancer(h: &Harness) -> &Xdp {
    h.program()
}

fn main() {
    let out_path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/bench/dataplane.json".into());
    // `DATAPLANE_BENCH_ONLY=established` (for profiling one path): other rows are skipped.
    let only = std::env::var("DATAPLANE_BENCH_ONLY").ok();
    let wanted = |scenario: &str| only.as_deref().is_none_or(|o| o == scenario);
    xdirectord_tests::harness::private_netns();
    pin_to_last_cpu();
    let mut baseline_obj = aya::Ebpf::load(objects::BASELINE).expect("baseline object");
    let baseline: &mut Xdp = baseline_obj
        .program_mut(objects::BASELINE_PROGRAM)
        .unwrap()
        .try_into()
        .unwrap();
    baseline.load().expect("baseline load");
    let baseline: &Xdp = baseline;

    let mut rows = Vec::new();
    for v6 in [false, true] {
        let family = if v6 { "ipv6" } else { "ipv4" };
        for reals in [3usize, 1000] {
            // pass-non-vip
            let h = harness(v6, reals, false);
            let other = if v6 { "fd00::99" } else { "10.0.0.99" };
            let frame = Frame::tcp(&client(v6, 1), 1000, other, 80, ACK).bytes();
            if wanted("pass-non-vip") {
                let (ours, base) = side_by_side(balancer(&h), XDP_PASS, baseline, &frame);
                rows.push(row("pass-non-vip", family, reals, ours, base));
            }

            // established
            let syn = Frame::tcp(&client(v6, 1), 1000, vip(v6), 80, SYN).bytes();
            assert_eq!(h.run(&syn).action, XDP_TX);
            let ack = Frame::tcp(&client(v6, 1), 1000, vip(v6), 80, ACK).bytes();
            if wanted("established") {
                let (ours, base) = side_by_side(balancer(&h), XDP_TX, baseline, &ack);
                rows.push(row("established", family, reals, ours, base));
            }

            // new-flow: a SYN+FIN, which the program takes as a new connection on a closed
            // tuple every time: the whole scheduling path and the flow-table write, repeatable.
            let new_flow = Frame::tcp(&client(v6, 2), 2000, vip(v6), 80, SYN | FIN).bytes();
            if wanted("new-flow") {
                let (ours, base) = side_by_side(balancer(&h), XDP_TX, baseline, &new_flow);
                rows.push(row("new-flow", family, reals, ours, base));
            }
            drop(h);

            // persistent-hit: the same, from a client whose persistence template exists.
            if wanted("persistent-hit") {
                let h = harness(v6, reals, true);
                let first = Frame::tcp(&client(v6, 3), 1, vip(v6), 80, SYN).bytes();
                assert_eq!(h.run(&first).action, XDP_TX);
                let again = Frame::tcp(&client(v6, 3), 2, vip(v6), 80, SYN | FIN).bytes();
                let (ours, base) = side_by_side(balancer(&h), XDP_TX, baseline, &again);
                rows.push(row("persistent-hit", family, reals, ours, base));
            }
        }
    }

    println!(
        "{:<15} {:<5} {:>5} {:>10} {:>12} {:>6}",
        "scenario", "family", "reals", "ns/packet", "baseline ns", "ratio"
    );
    for r in &rows {
        println!(
            "{:<15} {:<5} {:>5} {:>10.1} {:>12.1} {:>6.2}",
            r.scenario, r.family, r.reals, r.ns_per_packet, r.baseline_ns_per_packet, r.ratio
        );
    }
    if let Some(dir) = std::path::Path::new(&out_path).parent() {
        std::fs::create_dir_all(dir).expect("output directory");
    }
    std::fs::write(&out_path, serde_json::to_string_pretty(&rows).unwrap())
        .expect("writing the results");
    println!("written to {out_path}");
}

/// Keeps the measurements on one CPU: a thread that moves between CPUs mid-run finds its per-CPU
/// flow cache cold, and CPUs of a virtual machine differ in how busy their host is.
fn pin_to_last_cpu() {
    // SAFETY: plain libc calls on a zeroed cpu_set_t.
    unsafe {
        let cpus = libc::sysconf(libc::_SC_NPROCESSORS_ONLN).max(1) as usize;
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus - 1, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!(
                "dataplane-bench: not pinned to CPU {}: {}",
                cpus - 1,
                std::io::Error::last_os_error()
            );
        }
    }
}

fn row(scenario: &'static str, family: &'static str, reals: usize, ours: f64, base: f64) -> Row {
    Row {
        scenario,
        family,
        reals,
        ns_per_packet: ours,
        baseline_ns_per_packet: base,
        ratio: ours / base,
    }
}
