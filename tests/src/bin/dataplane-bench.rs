//! `cargo xtask bench` (data plane): nanoseconds per packet of the balancer against a bare
//! program that parses Ethernet and IP, swaps the MACs and returns XDP_TX, both measured with
//! BPF_PROG_TEST_RUN (JIT on) side by side in the same run, for the scenarios pass-non-vip,
//! established, icmp-error-to-real (an ICMP error about an established flow), later-fragment (a
//! fragment following its first), new-flow (and new-flow-full) and persistent-hit, and for `ipip`
//! reals ipip-established and ipip-new-flow; IPv4 and IPv6, 3 and 1000 reals; then the memory
//! floor of a new flow and, on request, the same on several CPUs at once (both below).
//!
//! Every row runs one frame many times in the kernel (`repeat`), the baseline on the same frame.
//! A repeated SYN would find its own flow the second time, so new-flow and persistent-hit run
//! behind the flow maker (`xdp-bench-driver`), which makes every run a new connection (next
//! source port and address) and tail-calls the balancer: every run is a first SYN, scheduled and
//! inserted into the flow table. new-flow and persistent-hit empty the table before each
//! measurement, which never fills it; new-flow-full fills every slot of the table with live
//! established flows before each measurement, so that every SYN finds its bucket full and is
//! placed without an entry (a SYN flood into a full table). The flow maker's own cost (its run and the tail
//! call, timed in front of a program that only passes) is taken out of the figures.
//!
//! Encapsulation grows the frame, and repeated runs reuse the grown frame; so the ipip rows, ours
//! and the baseline alike, are single runs (`repeat = 1`) in a loop, each on a fresh copy of the
//! frame, averaged. A single run's figure includes the kernel's timing of it (about 65 ns here,
//! on both sides), so these ratios are lower than repeated runs' would be: compare ours minus the
//! baseline across rows. (Live frames, `BPF_F_TEST_XDP_LIVE_FRAMES`, were tried: their page-pool
//! work around each run hid the difference between a new and an established flow.)
//!
//! memory-floor is the yardstick of a new flow: a program (`xdp-memory-floor`) that hashes the
//! source address and port, as cheaply as the balancer, and reads one 64-byte bucket of an array
//! map as large as a flow table of that capacity (`flow_buckets(flows)` buckets: 64 MiB for the
//! default 4,194,304 flows, 256 MiB for 16,777,216), behind the flow maker, so every run reads
//! a random bucket: one access to memory the size of the table, the least any flow table can
//! cost. Every bucket is written once before measuring (see [`memory_floor`]). The flow table's
//! own rows (new-flow, new-flow-full, persistent-hit) are printed against it at the end (target:
//! 1.5× the floor of the same family and size).
//!
//! The many-core rows (`--cores`, or DATAPLANE_BENCH_CORES=1; `cargo xtask bench --cores`) run
//! the same program and maps from N threads at once, each pinned to its own CPU, N = 1, 2, 4, …
//! up to the CPUs this process may use, and all of them: established-cores (each CPU its own
//! established flow) and new-flow-cores (each CPU making flows of its own: the flow maker counts
//! per CPU and writes the CPU's number into the source address), 3 reals. The threads start
//! together (a barrier) and make the same number of runs; a round's figure is the mean over the
//! CPUs of the kernel's ns per packet, the baseline measured the same way on as many CPUs, and
//! the rows take medians over `ROUNDS` rounds as the others do. `scaling` is the throughput
//! against one CPU: N × ns(1) / ns(N), 1 CPU's figure measured in the same mode.
//!
//! Every row has `scenario`, `family`, `reals` (0 for memory-floor), `flows` (the capacity of
//! the table a memory-floor row read; 0 in every other row, where it does not apply), `cpus`
//! (CPUs at once: 1 except in the many-core rows), `ns_per_packet` (per CPU),
//! `baseline_ns_per_packet` and `ratio`; the many-core rows add `scaling` (absent elsewhere).
//!
//! Writes `target/bench/dataplane.json` (or the path given as the first argument that is not a
//! `--` flag). `DATAPLANE_BENCH_ONLY=SCENARIO` runs one scenario's rows (a many-core one even
//! without `--cores`).

use std::{net::IpAddr, sync::Barrier};

use aya::{
    TestRun as _, TestRunOptions,
    maps::{Array, MapData, ProgramArray},
    programs::{ProgramFd, Xdp},
};
use lb_common::{
    maps::{DEFAULT_FLOWS, FLOW_BUCKETS, FLOW_WAYS, flow_buckets},
    values::{FLOW_ESTABLISHED, FlowBucket, FlowSlot},
};
use serde::Serialize;
use xdirectord::{
    backend::xdp::{ProgramClock, RealPath},
    objects,
    table::{
        DesiredTable, Forwarding, Persistence, Protocol, Real, Service, ServiceAttrs, ServiceKey,
    },
};
use xdirectord_tests::{
    harness::{Harness, XDP_PASS, XDP_TX},
    packet::{ACK, DIRECTOR_MAC, Frame, L4, SYN},
};

/// Runs of a frame per measurement, in the kernel.
const REPEAT: u32 = 500_000;
/// Rounds per figure, each measuring ours and then the baseline. A figure is the median over the
/// rounds: of our ns, of the baseline's, and of the rounds' ratios (each taken within one round,
/// so that a moment when the shared machine runs faster or slower counts for both sides).
const ROUNDS: usize = 11;

/// Flow-table capacities (flows per family) of the memory-floor rows: the default, and four times
/// it.
const FLOOR_FLOWS: [u32; 2] = [DEFAULT_FLOWS, DEFAULT_FLOWS * 4];

#[derive(Serialize)]
struct Row {
    scenario: &'static str,
    family: &'static str,
    reals: usize,
    /// The flow table's capacity the row measured (memory-floor); 0 where it does not apply.
    flows: u32,
    /// CPUs that ran the row's program at once: 1 except in the many-core rows.
    cpus: usize,
    /// Per CPU (the mean over the CPUs in the many-core rows).
    ns_per_packet: f64,
    baseline_ns_per_packet: f64,
    ratio: f64,
    /// Many-core rows only: packets per second against one CPU's, `cpus × ns(1) / ns(cpus)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    scaling: Option<f64>,
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

/// The client of the flow maker's frames: their last 16 address bits are the maker's counter's
/// and the bits above those its CPU's number, so it needs a /8 (IPv4) of its own, apart from
/// `client`'s, or a /96 (IPv6).
fn flow_maker_client(v6: bool) -> &'static str {
    if v6 { "2001:db8:1::1" } else { "198.18.0.1" }
}

fn site(v6: bool, reals: usize, persistent: bool, forward: Forwarding) -> DesiredTable {
    let mut t = DesiredTable::default();
    t.services.insert(
        ServiceKey::Inet {
            protocol: Protocol::Tcp,
            addr: vip(v6).parse().unwrap(),
            port: 80,
        },
        Service {
            attrs: ServiceAttrs {
                scheduler: "wrr".into(),
                // A netmask wider than the flow maker's source addresses: every new connection is the
                // same persistent client's, whichever CPU made it.
                persistence: persistent.then_some(Persistence {
                    timeout_secs: 3600,
                    prefix_len: if v6 { 64 } else { 8 },
                }),
                ..ServiceAttrs::default()
            },
            reals: (0..reals)
                .map(|i| Real {
                    addr: real_addr(v6, i).parse().unwrap(),
                    port: 80,
                    forward,
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
    harness_forwarding(v6, reals, persistent, Forwarding::Gate)
}

/// The site with reals forwarded by `forward` (`ipip`: reached through a router, from the
/// director's address).
fn harness_forwarding(v6: bool, reals: usize, persistent: bool, forward: Forwarding) -> Harness {
    // The agent's program: on the kernel's clock.
    let mut h = Harness::with_flows(ProgramClock::Kernel, DEFAULT_FLOWS);
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
                vlan: 0,
                mtu: 1500,
                source: Some(if v6 { "fd00::2" } else { "10.0.0.2" }.parse().unwrap()),
            },
        );
    }
    h.apply(&site(v6, reals, persistent, forward));
    h
}

/// `ROUNDS` measurements of ours and of the baseline on the same frame, alternating.
fn side_by_side(ours: &Xdp, expect: u32, baseline: &Xdp, frame: &[u8]) -> Rounds {
    Rounds(
        (0..ROUNDS)
            .map(|_| {
                let ours = repeated(ours, frame, expect, REPEAT);
                (ours, repeated(baseline, frame, XDP_TX, REPEAT))
            })
            .collect(),
    )
}

/// `ROUNDS` measurements of ours and of the baseline on the same frame as single runs (each on a
/// fresh copy of `frame`: for programs that grow it).
fn side_by_side_single(ours: &Xdp, expect: u32, baseline: &Xdp, frame: &[u8]) -> Rounds {
    assert_eq!(once(ours, frame), expect, "unexpected verdict");
    Rounds(
        (0..ROUNDS)
            .map(|_| {
                let ours = single_runs(ours, frame, REPEAT);
                (ours, single_runs(baseline, frame, REPEAT))
            })
            .collect(),
    )
}

/// The verdict of one run.
fn once(program: &Xdp, frame: &[u8]) -> u32 {
    program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            repeat: 1,
            ..TestRunOptions::default()
        })
        .expect("test run")
        .return_value
}

/// Average ns of a tenth of `repeat` single runs of `frame` (at least 1,000; a system call
/// each), as the kernel times each.
fn single_runs(program: &Xdp, frame: &[u8], repeat: u32) -> f64 {
    let runs = (repeat / 10).max(1000);
    let total: u128 = (0..runs)
        .map(|_| {
            program
                .test_run(TestRunOptions {
                    data_in: Some(frame),
                    repeat: 1,
                    ..TestRunOptions::default()
                })
                .expect("test run")
                .duration
                .as_nanos()
        })
        .sum();
    total as f64 / runs as f64
}

/// (ours, baseline) ns per packet, a pair per round.
struct Rounds(Vec<(f64, f64)>);

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

impl Rounds {
    /// Median ns of ours, of the baseline, and median ratio.
    fn medians(&self) -> (f64, f64, f64) {
        (
            median(self.0.iter().map(|r| r.0).collect()),
            median(self.0.iter().map(|r| r.1).collect()),
            median(self.0.iter().map(|r| r.0 / r.1).collect()),
        )
    }
}

/// Average ns of one frame run `repeat` times, as the kernel measures it (whole nanoseconds).
fn repeated(program: &Xdp, frame: &[u8], expect: u32, repeat: u32) -> f64 {
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..TestRunOptions::default()
        })
        .expect("test run");
    assert_eq!(result.return_value, expect, "unexpected verdict");
    result.duration.as_nanos() as f64
}

/// Loads the single program of an object.
fn load(object: &[u8], name: &str) -> aya::Ebpf {
    let mut ebpf = aya::Ebpf::load(object).unwrap_or_else(|e| panic!("{name}: {e}"));
    let program: &mut Xdp = ebpf.program_mut(name).unwrap().try_into().unwrap();
    program
        .load()
        .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    ebpf
}

fn program<'a>(ebpf: &'a aya::Ebpf, name: &str) -> &'a Xdp {
    ebpf.program(name).unwrap().try_into().unwrap()
}

/// The flow maker, and a program that only passes to time it in front of.
struct FlowMaker {
    driver: aya::Ebpf,
    next: ProgramArray<MapData>,
    pass: aya::Ebpf,
}

impl FlowMaker {
    fn new() -> FlowMaker {
        let mut driver = load(objects::BENCH_DRIVER, objects::BENCH_DRIVER_PROGRAM);
        let next = ProgramArray::try_from(driver.take_map(objects::BENCH_DRIVER_NEXT).unwrap())
            .expect("NEXT");
        let pass = load(objects::PASS, objects::PASS_PROGRAM);
        FlowMaker { driver, next, pass }
    }

    /// ns per packet of `target` on a new flow every run (`repeat` runs a measurement, `reset`
    /// before each), and of the baseline on the first frame, `ROUNDS` times alternating; the
    /// flow maker's own cost (in front of a program that only passes, less that program alone,
    /// median over the rounds) taken out. `time` measures: [`repeated`], or [`single_runs`] for
    /// targets that grow the frame.
    fn new_flows(
        &mut self,
        target: &ProgramFd,
        baseline: &Xdp,
        frame: &[u8],
        repeat: u32,
        mut reset: impl FnMut(),
        time: impl Fn(&Xdp, &[u8], u32, u32) -> f64,
    ) -> Rounds {
        let driver = program(&self.driver, objects::BENCH_DRIVER_PROGRAM);
        let pass = program(&self.pass, objects::PASS_PROGRAM);
        let (mut driven, mut overhead) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            reset();
            self.next.set(0, target, 0).expect("NEXT[0]");
            let ours = time(driver, frame, XDP_TX, repeat);
            driven.push((ours, time(baseline, frame, XDP_TX, REPEAT)));
            self.next.set(0, pass.fd().unwrap(), 0).expect("NEXT[0]");
            let driven_pass = time(driver, frame, XDP_PASS, repeat);
            overhead.push(driven_pass - time(pass, frame, XDP_PASS, repeat));
        }
        let overhead = median(overhead);
        Rounds(driven.into_iter().map(|(d, b)| (d - overhead, b)).collect())
    }
}

/// New flows a measurement makes into an emptied table: 2.4% of the default table, so that
/// nearly every flow finds room in its bucket.
fn flows_with_room() -> u32 {
    100_000
}

/// Empties the flow table (not the persistence templates). The one place that does, for every
/// scenario and mode: a flow table of another kind changes only this.
fn forget_flows(h: &mut Harness) {
    h.dataplane.maps.flows4.clear();
    h.dataplane.maps.flows6.clear();
}

/// Fills every slot of both flow tables with a live established flow (of no real: a packet
/// that found one would be placed again), as a table that a flood of connections filled: every
/// new flow then finds its bucket full.
fn fill_flows(h: &mut Harness) {
    let clock = h.dataplane.flow_clock().expect("the program's clock");
    for table in [&h.dataplane.maps.flows4, &h.dataplane.maps.flows6] {
        for bucket in 0..table.buckets() {
            for way in 0..FLOW_WAYS as usize {
                let tag = (bucket as u32).wrapping_mul(0x9e37_79b1) ^ way as u32;
                table.write_slot(
                    bucket,
                    way,
                    FlowSlot {
                        tag: tag | 1,
                        state: FLOW_ESTABLISHED,
                        last_seen: clock,
                        ..FlowSlot::default()
                    },
                );
            }
        }
    }
}

/// The memory floor's program, loaded with its bucket map sized for `flows` flows
/// (`flow_buckets(flows)` buckets of 64 bytes, the flow table's memory) and every bucket written
/// once. The kernel allocates (vmalloc, zeroed) an array map's memory when it creates the map, so
/// its pages exist from the start; writing each bucket (zeroed, one update each) makes sure of
/// that whatever the kernel does, so that the floor is a read of memory that is really there, as
/// a flow table's is once it has served for a while.
fn memory_floor(flows: u32) -> aya::Ebpf {
    let name = objects::MEMORY_FLOOR_PROGRAM;
    let buckets = flow_buckets(flows);
    let mut ebpf = aya::EbpfLoader::new()
        .map_max_entries(objects::MEMORY_FLOOR_BUCKETS, buckets)
        .override_global(FLOW_BUCKETS, &buckets, true)
        .load(objects::MEMORY_FLOOR)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let program: &mut Xdp = ebpf.program_mut(name).unwrap().try_into().unwrap();
    program
        .load()
        .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    let mut map: Array<_, FlowBucket> =
        Array::try_from(ebpf.map_mut(objects::MEMORY_FLOOR_BUCKETS).unwrap()).expect("BUCKETS");
    for i in 0..buckets {
        map.set(i, FlowBucket::default(), 0)
            .expect("writing a bucket");
    }
    ebpf
}

/// Per family, new-flow (and new-flow-full, persistent-hit) with 3 reals against the memory
/// floor of the default flow table size: what the flow table costs above one memory access.
fn print_against_floor(rows: &[Row]) {
    let find = |scenario: &str, family: &str, reals: usize, flows: u32| {
        rows.iter()
            .find(|r| {
                r.scenario == scenario && r.family == family && r.reals == reals && r.flows == flows
            })
            .map(|r| r.ns_per_packet)
    };
    for family in ["ipv4", "ipv6"] {
        let Some(floor) = find("memory-floor", family, 0, DEFAULT_FLOWS) else {
            continue;
        };
        let against: Vec<String> = ["new-flow", "new-flow-full", "persistent-hit"]
            .iter()
            .filter_map(|s| find(s, family, 3, 0).map(|ns| format!("{s} {:.1}×", ns / floor)))
            .collect();
        if !against.is_empty() {
            println!(
                "{family}, 3 reals, against the memory floor ({floor:.1} ns, {DEFAULT_FLOWS} \
                 flows): {} (target ≤ 1.5×)",
                against.join(", ")
            );
        }
    }
}

/// The VIP's (new flows, packets).
fn traffic(h: &Harness) -> (u64, u64) {
    let live = h.dataplane.live().expect("live");
    (live[0].stats.conns, live[0].stats.in_packets)
}

/// Every packet since `before` was a new flow: the flow maker did its job.
fn assert_all_new(before: (u64, u64), after: (u64, u64)) {
    let (flows, packets) = (after.0 - before.0, after.1 - before.1);
    assert!(
        packets > 0 && flows == packets,
        "{flows} new flows in {packets} packets"
    );
}

fn balancer(h: &Harness) -> &Xdp {
    h.program()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out_path = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "target/bench/dataplane.json".into());
    // The many-core rows (`--cores` or DATAPLANE_BENCH_CORES=1) come after the others.
    let cores = args.iter().any(|a| a == "--cores")
        || std::env::var("DATAPLANE_BENCH_CORES").is_ok_and(|v| v == "1");
    // `DATAPLANE_BENCH_ONLY=established` (for profiling one path): other rows are skipped. Naming
    // a many-core scenario runs it without `--cores`.
    let only = std::env::var("DATAPLANE_BENCH_ONLY").ok();
    let wanted = |scenario: &str| match only.as_deref() {
        Some(o) => o == scenario,
        None => cores || !scenario.ends_with("-cores"),
    };
    xdirectord_tests::harness::private_netns();
    // Before the main thread pins itself: the CPUs the many-core rows may use.
    let cpus = allowed_cpus();
    pin_to_last_cpu(&cpus);
    let baseline_obj = load(objects::BASELINE, objects::BASELINE_PROGRAM);
    let baseline = program(&baseline_obj, objects::BASELINE_PROGRAM);
    let mut flow_maker = FlowMaker::new();

    let mut rows = Vec::new();
    for v6 in [false, true] {
        let family = if v6 { "ipv6" } else { "ipv4" };
        for reals in [3usize, 1000] {
            // pass-non-vip
            let mut h = harness(v6, reals, false);
            let other = if v6 { "fd00::99" } else { "10.0.0.99" };
            let frame = Frame::tcp(&client(v6, 1), 1000, other, 80, ACK).bytes();
            if wanted("pass-non-vip") {
                let rounds = side_by_side(balancer(&h), XDP_PASS, baseline, &frame);
                rows.push(row("pass-non-vip", family, reals, &rounds));
            }

            // established
            let syn = Frame::tcp(&client(v6, 1), 1000, vip(v6), 80, SYN).bytes();
            assert_eq!(h.run(&syn).action, XDP_TX);
            let ack = Frame::tcp(&client(v6, 1), 1000, vip(v6), 80, ACK).bytes();
            if wanted("established") {
                let rounds = side_by_side(balancer(&h), XDP_TX, baseline, &ack);
                rows.push(row("established", family, reals, &rounds));
            }

            // icmp-error-to-real: "fragmentation needed" / "packet too big" about the
            // established flow, from a router on the path, to the flow's real.
            if wanted("icmp-error-to-real") {
                let reply = Frame::tcp(vip(v6), 80, &client(v6, 1), 1000, ACK).ip_bytes();
                let (router, kind, quote) = if v6 {
                    ("2001:db8:ff::1", 2, 48)
                } else {
                    ("198.51.100.1", 3, 28)
                };
                let error = Frame::new(router, vip(v6), L4::Icmp { kind, code: 4 })
                    .payload(&reply[..quote])
                    .bytes();
                let rounds = side_by_side(balancer(&h), XDP_TX, baseline, &error);
                rows.push(row("icmp-error-to-real", family, reals, &rounds));
            }

            // later-fragment: a fragment after the first, following it (the first sent once).
            if wanted("later-fragment") {
                let first = Frame::tcp(&client(v6, 1), 1001, vip(v6), 80, SYN);
                let later = Frame::new(&client(v6, 1), vip(v6), L4::Other(6)).payload(&[0; 64]);
                let (first, later) = if v6 {
                    (
                        first.ipv6_frag(0, true, 7).bytes(),
                        later.ipv6_frag(72, true, 7).bytes(),
                    )
                } else {
                    (
                        first.ip_id(7).frag(0x2000).bytes(),
                        later.ip_id(7).frag(0x2000 | 9).bytes(),
                    )
                };
                assert_eq!(h.run(&first).action, XDP_TX);
                let rounds = side_by_side(balancer(&h), XDP_TX, baseline, &later);
                rows.push(row("later-fragment", family, reals, &rounds));
            }

            // new-flow: a first SYN every run, into a flow table with room (emptied before each
            // measurement); new-flow-full: the same into a table full of established flows, as
            // in a SYN flood.
            let new_flow = Frame::tcp(flow_maker_client(v6), 2000, vip(v6), 80, SYN).bytes();
            let target = balancer(&h).fd().unwrap().try_clone().expect("program fd");
            for (scenario, repeat, empty) in [
                ("new-flow", flows_with_room(), true),
                ("new-flow-full", REPEAT, false),
            ] {
                if !wanted(scenario) {
                    continue;
                }
                let before = traffic(&h);
                let rounds = flow_maker.new_flows(
                    &target,
                    baseline,
                    &new_flow,
                    repeat,
                    || {
                        if empty {
                            forget_flows(&mut h)
                        } else {
                            fill_flows(&mut h)
                        }
                    },
                    repeated,
                );
                assert_all_new(before, traffic(&h));
                rows.push(row(scenario, family, reals, &rounds));
            }
            drop(h);

            // ipip-established and ipip-new-flow: the same for reals behind a tunnel, as single
            // runs (see the top).
            if wanted("ipip-established") || wanted("ipip-new-flow") {
                let mut h = harness_forwarding(v6, reals, false, Forwarding::Ipip);
                let syn = Frame::tcp(&client(v6, 1), 1000, vip(v6), 80, SYN).bytes();
                assert_eq!(h.run(&syn).action, XDP_TX);
                if wanted("ipip-established") {
                    let ack = Frame::tcp(&client(v6, 1), 1000, vip(v6), 80, ACK).bytes();
                    let rounds = side_by_side_single(balancer(&h), XDP_TX, baseline, &ack);
                    rows.push(row("ipip-established", family, reals, &rounds));
                }
                if wanted("ipip-new-flow") {
                    let new_flow =
                        Frame::tcp(flow_maker_client(v6), 2000, vip(v6), 80, SYN).bytes();
                    let target = balancer(&h).fd().unwrap().try_clone().expect("program fd");
                    let before = traffic(&h);
                    let rounds = flow_maker.new_flows(
                        &target,
                        baseline,
                        &new_flow,
                        flows_with_room(),
                        || forget_flows(&mut h),
                        |p, f, _, r| single_runs(p, f, r),
                    );
                    assert_all_new(before, traffic(&h));
                    let tunnelled = h.global().tunnelled;
                    assert!(tunnelled > 0, "the new flows went through the tunnel");
                    rows.push(row("ipip-new-flow", family, reals, &rounds));
                }
            }

            // persistent-hit: the same (table with room), from a client whose persistence
            // template exists.
            if wanted("persistent-hit") {
                let mut h = harness(v6, reals, true);
                let client = flow_maker_client(v6);
                let first = Frame::tcp(client, 1, vip(v6), 80, SYN).bytes();
                assert_eq!(h.run(&first).action, XDP_TX);
                let again = Frame::tcp(client, 2, vip(v6), 80, SYN).bytes();
                let target = balancer(&h).fd().unwrap().try_clone().expect("program fd");
                let before = traffic(&h);
                let rounds = flow_maker.new_flows(
                    &target,
                    baseline,
                    &again,
                    flows_with_room(),
                    || forget_flows(&mut h),
                    repeated,
                );
                assert_all_new(before, traffic(&h));
                let live = h.dataplane.live().expect("live");
                let served = live[0].reals.iter().filter(|r| r.stats.conns > 0).count();
                assert_eq!(served, 1, "persistence sent the client to {served} reals");
                rows.push(row("persistent-hit", family, reals, &rounds));
            }
        }
    }

    // memory-floor: one random read of a 64-byte bucket from a table of each size, every run
    // a new flow (so a different bucket), behind the flow maker like new-flow.
    if wanted("memory-floor") {
        for flows in FLOOR_FLOWS {
            let floor = memory_floor(flows);
            let target = program(&floor, objects::MEMORY_FLOOR_PROGRAM)
                .fd()
                .unwrap()
                .try_clone()
                .expect("program fd");
            for v6 in [false, true] {
                let family = if v6 { "ipv6" } else { "ipv4" };
                let frame = Frame::tcp(flow_maker_client(v6), 2000, vip(v6), 80, SYN).bytes();
                let rounds =
                    flow_maker.new_flows(&target, baseline, &frame, REPEAT, || {}, repeated);
                let mut floor_row = row("memory-floor", family, 0, &rounds);
                floor_row.flows = flows;
                rows.push(floor_row);
            }
        }
    }

    // established-cores and new-flow-cores: the same program and maps on 1, 2, 4, … CPUs at once.
    for v6 in [false, true] {
        let family = if v6 { "ipv6" } else { "ipv4" };
        if wanted("established-cores") {
            rows.extend(established_cores(v6, family, baseline, &cpus));
        }
        if wanted("new-flow-cores") {
            rows.extend(new_flow_cores(v6, family, baseline, &mut flow_maker, &cpus));
        }
    }

    println!(
        "{:<18} {:<5} {:>5} {:>9} {:>4} {:>10} {:>12} {:>6} {:>7}",
        "scenario",
        "family",
        "reals",
        "flows",
        "cpus",
        "ns/packet",
        "baseline ns",
        "ratio",
        "scaling"
    );
    for r in &rows {
        println!(
            "{:<18} {:<5} {:>5} {:>9} {:>4} {:>10.1} {:>12.1} {:>6.2} {:>7}",
            r.scenario,
            r.family,
            r.reals,
            r.flows,
            r.cpus,
            r.ns_per_packet,
            r.baseline_ns_per_packet,
            r.ratio,
            r.scaling.map(|s| format!("{s:.2}")).unwrap_or_default()
        );
    }
    print_against_floor(&rows);
    if let Some(dir) = std::path::Path::new(&out_path).parent() {
        std::fs::create_dir_all(dir).expect("output directory");
    }
    std::fs::write(&out_path, serde_json::to_string_pretty(&rows).unwrap())
        .expect("writing the results");
    println!("written to {out_path}");
}

/// The CPUs this process may run on, in order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t filled by the kernel, read with libc's macro.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            panic!("sched_getaffinity: {}", std::io::Error::last_os_error());
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// How many CPUs the many-core rows run on: 1, 2, 4, … up to `available`, and all of them.
fn core_counts(available: usize) -> Vec<usize> {
    let mut counts: Vec<usize> = std::iter::successors(Some(1), |n| Some(n * 2))
        .take_while(|&n| n <= available)
        .collect();
    if counts.last() != Some(&available) && available > 0 {
        counts.push(available);
    }
    counts
}

/// Runs `program` on `cpus` at once, `repeat` times each, the CPU `cpus[i]` on `frames[i]` (or
/// the only frame), every thread pinned to its CPU and released together; the mean over the CPUs
/// of the kernel's ns per packet.
fn concurrent(program: &Xdp, frames: &[&[u8]], expect: u32, repeat: u32, cpus: &[usize]) -> f64 {
    let start = Barrier::new(cpus.len());
    let ns: Vec<f64> = std::thread::scope(|scope| {
        let threads: Vec<_> = cpus
            .iter()
            .enumerate()
            .map(|(i, &cpu)| {
                let (frame, start) = (frames[i % frames.len()], &start);
                scope.spawn(move || {
                    xdirectord_tests::harness::pin_to_cpu(cpu)
                        .unwrap_or_else(|e| panic!("pinning to CPU {cpu}: {e}"));
                    start.wait();
                    repeated(program, frame, expect, repeat)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a measuring thread"))
            .collect()
    });
    ns.iter().sum::<f64>() / ns.len() as f64
}

/// Many-core rows from (cpus, rounds) in the order of [`core_counts`]: scaling against the first
/// (1 CPU).
fn core_rows(
    scenario: &'static str,
    family: &'static str,
    reals: usize,
    measured: Vec<(usize, Rounds)>,
) -> Vec<Row> {
    let one = measured[0].1.medians().0;
    measured
        .into_iter()
        .map(|(cpus, rounds)| {
            let mut r = row(scenario, family, reals, &rounds);
            r.cpus = cpus;
            r.scaling = Some(cpus as f64 * one / r.ns_per_packet);
            r
        })
        .collect()
}

/// established-cores: each CPU its own established flow (a client of its own, its SYN sent
/// once before measuring), ours and the baseline on 1, 2, 4, … CPUs at once, `ROUNDS` rounds.
fn established_cores(v6: bool, family: &'static str, baseline: &Xdp, cpus: &[usize]) -> Vec<Row> {
    let reals = 3;
    let h = harness(v6, reals, false);
    let acks: Vec<Vec<u8>> = (0..cpus.len() as u32)
        .map(|i| {
            let client = client(v6, 100 + i);
            let syn = Frame::tcp(&client, 1000, vip(v6), 80, SYN).bytes();
            assert_eq!(h.run(&syn).action, XDP_TX);
            Frame::tcp(&client, 1000, vip(v6), 80, ACK).bytes()
        })
        .collect();
    let frames: Vec<&[u8]> = acks.iter().map(Vec::as_slice).collect();
    let measured = core_counts(cpus.len())
        .into_iter()
        .map(|n| {
            let on = &cpus[..n];
            let rounds = (0..ROUNDS)
                .map(|_| {
                    let ours = concurrent(balancer(&h), &frames, XDP_TX, REPEAT, on);
                    (ours, concurrent(baseline, &frames, XDP_TX, REPEAT, on))
                })
                .collect();
            (n, Rounds(rounds))
        })
        .collect();
    core_rows("established-cores", family, reals, measured)
}

/// new-flow-cores: new-flow on 1, 2, 4, … CPUs at once, each CPU's flow maker making flows of
/// its own into a flow table with room (emptied before each round), the flow maker's cost on
/// as many CPUs taken out.
fn new_flow_cores(
    v6: bool,
    family: &'static str,
    baseline: &Xdp,
    flow_maker: &mut FlowMaker,
    cpus: &[usize],
) -> Vec<Row> {
    let reals = 3;
    let mut h = harness(v6, reals, false);
    let frame = Frame::tcp(flow_maker_client(v6), 2000, vip(v6), 80, SYN).bytes();
    let target = balancer(&h).fd().unwrap().try_clone().expect("program fd");
    let measured = core_counts(cpus.len())
        .into_iter()
        .map(|n| {
            let on = &cpus[..n];
            let before = traffic(&h);
            let rounds = flow_maker.new_flows(
                &target,
                baseline,
                &frame,
                flows_with_room(),
                || forget_flows(&mut h),
                |p, f, expect, repeat| concurrent(p, &[f], expect, repeat, on),
            );
            // No two CPUs made the same flow.
            assert_all_new(before, traffic(&h));
            (n, rounds)
        })
        .collect();
    core_rows("new-flow-cores", family, reals, measured)
}

/// Keeps the measurements on one CPU: a thread that moves between CPUs mid-run finds its per-CPU
/// flow cache cold, and CPUs of a virtual machine differ in how busy their host is.
fn pin_to_last_cpu(allowed: &[usize]) {
    let cpu = *allowed.last().expect("a CPU to run on");
    if let Err(e) = xdirectord_tests::harness::pin_to_cpu(cpu) {
        eprintln!("dataplane-bench: not pinned to CPU {cpu}: {e}");
    }
}

fn row(scenario: &'static str, family: &'static str, reals: usize, rounds: &Rounds) -> Row {
    let (ours, base, ratio) = rounds.medians();
    Row {
        scenario,
        family,
        reals,
        flows: 0,
        cpus: 1,
        ns_per_packet: ours,
        baseline_ns_per_packet: base,
        ratio,
        scaling: None,
    }
}
