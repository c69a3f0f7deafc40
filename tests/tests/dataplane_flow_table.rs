//! The flow table (`lb-ebpf/src/flows.rs`) through the real program: tables of one bucket (four
//! slots), so that every case fills it on purpose. Who may take a slot: a free or expired one
//! anyone; a half-open flow's an established one; an established flow's nobody. A flow that
//! finds no room is placed by the consistent-hash table, where its next packets find it again.

use std::net::IpAddr;

use aya::{TestRun as _, TestRunOptions, maps::ProgramArray, programs::Xdp};
use lb_common::{
    IPPROTO_TCP,
    maps::FLOW_WAYS,
    values::{FLOW_ESTABLISHED, FlowSlot, flow_clock},
};
use xdirectord::{
    objects,
    table::{DesiredTable, Protocol},
};
use xdirectord_tests::{
    harness::{Harness, XDP_TX, pin_to_cpu},
    packet::{ACK, Frame, SYN},
    table::{self, key, service},
};

const VIP: &str = "10.0.0.100";
const OTHER_VIP: &str = "10.0.0.101";
const REALS: [&str; 3] = ["10.0.1.1", "10.0.1.2", "10.0.1.3"];
const SECOND: u64 = 1_000_000_000;

/// TCP VIP:80 with `scheduler` over three reals of weight 1, 2, 3 (and OTHER_VIP:80, rr, for
/// the collision case); flow tables of one bucket.
fn harness(scheduler: &str) -> Harness {
    let mut h = Harness::new_with_flows(FLOW_WAYS);
    h.paths.neighbours(&REALS);
    let weighted: Vec<(&str, u32)> = REALS.iter().copied().zip([1, 2, 3]).collect();
    let mut t = DesiredTable::default();
    t.services
        .insert(key(Protocol::Tcp, VIP, 80), service(scheduler, &weighted));
    t.services.insert(
        key(Protocol::Tcp, OTHER_VIP, 80),
        service("rr", &weighted[..1]),
    );
    h.apply(&t);
    h.set_clock(SECOND);
    assert_eq!(h.dataplane.maps.flows4.buckets(), 1);
    h
}

fn client(i: u32) -> String {
    format!("192.0.{}.{}", (i >> 8) & 0xff, i & 0xff)
}

fn tcp(i: u32, flags: u8) -> Vec<u8> {
    Frame::tcp(&client(i), 1000, VIP, 80, flags).bytes()
}

/// The real a frame went to (it must have been forwarded).
fn real(h: &Harness, frame: &[u8]) -> String {
    let out = h.run(frame);
    assert_eq!(out.action, XDP_TX, "forwarded");
    REALS
        .iter()
        .find(|r| out.frame[..6] == table::mac_of(r.parse().unwrap()))
        .expect("to a real")
        .to_string()
}

/// Opens flow `i` (SYN, then ACK); returns its real.
fn establish(h: &Harness, i: u32) -> String {
    let to = real(h, &tcp(i, SYN));
    assert_eq!(real(h, &tcp(i, ACK)), to, "flow {i}'s ACK follows its SYN");
    to
}

/// Live slots of the IPv4 table.
fn live_slots(h: &Harness, now: u64) -> Vec<FlowSlot> {
    h.dataplane
        .maps
        .flows4
        .used()
        .map(|(_, slot)| slot)
        .filter(|slot| slot.live(flow_clock(now)))
        .collect()
}

#[test]
fn a_syn_flood_cannot_push_out_established_flows() {
    for scheduler in ["wrr", "mh"] {
        let h = harness(scheduler);
        let reals: Vec<String> = (1..=4).map(|i| establish(&h, i)).collect();
        assert!(
            live_slots(&h, SECOND)
                .iter()
                .all(|s| s.state == FLOW_ESTABLISHED)
        );
        let before = h.global();
        // A flood of SYNs from 1,000 sources: the bucket has no room for any of them.
        for i in 1000..2000 {
            real(&h, &tcp(i, SYN));
        }
        let after = h.global();
        assert_eq!(
            after.flow_table_full - before.flow_table_full,
            1000,
            "{scheduler}"
        );
        assert_eq!(after.flow_evicted, before.flow_evicted, "{scheduler}");
        for (i, to) in (1..=4).zip(&reals) {
            assert_eq!(
                &real(&h, &tcp(i, ACK)),
                to,
                "{scheduler}: flow {i} kept its real"
            );
        }
        assert_eq!(after.flow_miss_non_syn, h.global().flow_miss_non_syn);
    }
}

#[test]
fn a_connection_that_finds_no_room_is_placed_by_the_hash_table_from_syn_to_fin() {
    // wrr would send consecutive new connections to different reals; without room a connection
    // goes where the consistent-hash table says, for its SYN and for its later packets alike.
    let h = harness("wrr");
    for i in 1..=4 {
        establish(&h, i);
    }
    for i in 100..140 {
        let to = real(&h, &tcp(i, SYN));
        for _ in 0..3 {
            assert_eq!(real(&h, &tcp(i, ACK)), to, "connection {i}");
        }
    }
}

#[test]
fn an_established_flow_pushes_out_a_half_open_one_but_a_syn_does_not() {
    let h = harness("wrr");
    for i in 1..=4 {
        real(&h, &tcp(i, SYN));
    }
    let before = h.global();
    // A fifth SYN: no free slot, and a half-open flow may not push out another.
    real(&h, &tcp(5, SYN));
    assert_eq!(h.global().flow_table_full, before.flow_table_full + 1);
    assert_eq!(h.global().flow_evicted, before.flow_evicted);
    // A mid-stream packet of a flow the table does not know is an established flow: it takes
    // a half-open flow's slot, and its next packet finds it there.
    real(&h, &tcp(6, ACK));
    assert_eq!(h.global().flow_evicted, before.flow_evicted + 1);
    let misses = h.global().flow_miss_non_syn;
    real(&h, &tcp(6, ACK));
    assert_eq!(h.global().flow_miss_non_syn, misses, "found in the table");
    assert_eq!(live_slots(&h, SECOND).len(), FLOW_WAYS as usize);
}

#[test]
fn expired_flows_leave_their_slots_to_new_ones() {
    let mut h = harness("wrr");
    for i in 1..=4 {
        real(&h, &tcp(i, SYN));
    }
    // SYN_RECV lasts 60 s: a minute later the four slots are free again.
    let later = 62 * SECOND;
    h.set_clock(later);
    assert!(live_slots(&h, later).is_empty());
    let before = h.global();
    let to = real(&h, &tcp(7, SYN));
    assert_eq!(h.global().flow_table_full, before.flow_table_full);
    assert_eq!(h.global().flow_evicted, before.flow_evicted);
    assert_eq!(real(&h, &tcp(7, ACK)), to);
    assert_eq!(live_slots(&h, later).len(), 1);
    // The agent's sweep frees the expired slots and counts the live flow.
    let expiry = h.dataplane.expire_flows().unwrap();
    assert_eq!((expiry.live, expiry.expired), (1, 3));
}

#[test]
fn a_flow_keeps_its_real_on_another_cpu() {
    let cpus = aya::util::online_cpus().expect("online CPUs");
    if cpus.len() < 2 {
        eprintln!("one CPU: nothing to move to");
        return;
    }
    let h = harness("wrr");
    pin_to_cpu(cpus[0] as usize).unwrap();
    // Several flows, so that they go to different reals (per-CPU round-robin cursors: the
    // second CPU would schedule them afresh from its own cursor).
    let reals: Vec<String> = (1..=4).map(|i| real(&h, &tcp(i, SYN))).collect();
    pin_to_cpu(cpus[1] as usize).unwrap();
    for (i, to) in (1..=4).zip(&reals) {
        assert_eq!(&real(&h, &tcp(i, ACK)), to, "flow {i} on CPU {}", cpus[1]);
    }
    pin_to_cpu(cpus[0] as usize).unwrap();
    for (i, to) in (1..=4).zip(&reals) {
        assert_eq!(
            &real(&h, &tcp(i, ACK)),
            to,
            "flow {i} back on CPU {}",
            cpus[0]
        );
    }
}

#[test]
fn a_tag_of_another_virtual_service_never_sends_a_flow_there() {
    // A slot with this flow's tag, naming OTHER_VIP's real (as a collision of 31-bit tags
    // would): the flow is for VIP, so the slot is not its own; it is placed again.
    let h = harness("wrr");
    let table = &h.dataplane.maps.flows4;
    let src: IpAddr = client(9).parse().unwrap();
    let (bucket, tag) = table.locate(src, 1000, VIP.parse().unwrap(), 80, IPPROTO_TCP);
    let other_vip = lb_common::hash::vip_fold(
        &lb_common::hash::addr_words(&[10, 0, 0, 101]).0[..1],
        80,
        IPPROTO_TCP,
    );
    let (other, def, _) = h
        .dataplane
        .programmed()
        .unwrap()
        .into_values()
        .flat_map(|p| p.reals)
        .find(|(_, def, _)| def.vip_fold == other_vip)
        .expect("the other VIP's real");
    let generation = def.generation;
    table.write_slot(
        bucket,
        0,
        FlowSlot {
            tag,
            real_id: other as u16,
            state: FLOW_ESTABLISHED,
            real_generation: generation,
            last_seen: flow_clock(SECOND),
            ..FlowSlot::default()
        },
    );
    let misses = h.global().flow_miss_non_syn;
    let to = real(&h, &tcp(9, ACK));
    assert!(REALS.contains(&to.as_str()));
    assert_eq!(
        h.global().flow_miss_non_syn,
        misses + 1,
        "placed as a lost flow"
    );
    // It took its own slot back: the next packet finds it.
    assert_eq!(real(&h, &tcp(9, ACK)), to);
    assert_eq!(h.global().flow_miss_non_syn, misses + 1);
}

#[test]
fn a_table_of_ten_million_flows() {
    // 10,000,000 flows per family: 2,500,000 buckets, 160 MB each. The flow maker (the
    // benchmark's `xdp-bench-driver`) makes every run of one SYN frame a new connection and
    // tail-calls the balancer: ten million new flows in one BPF_PROG_TEST_RUN.
    const FLOWS: u32 = 10_000_000;
    let mut h = Harness::new_with_flows(FLOWS);
    h.paths.neighbours(&REALS);
    let reals: Vec<(&str, u32)> = REALS.iter().map(|r| (*r, 1)).collect();
    let mut t = DesiredTable::default();
    t.services
        .insert(key(Protocol::Tcp, VIP, 80), service("mh", &reals));
    h.apply(&t);
    let tables = h.dataplane.flow_tables().unwrap();
    assert_eq!(tables.ipv4.capacity, u64::from(FLOWS));
    assert_eq!(tables.ipv4.bytes, u64::from(FLOWS) * 16);

    let mut driver = aya::Ebpf::load(objects::BENCH_DRIVER).unwrap();
    let program: &mut Xdp = driver
        .program_mut(objects::BENCH_DRIVER_PROGRAM)
        .unwrap()
        .try_into()
        .unwrap();
    program.load().unwrap();
    let mut next =
        ProgramArray::try_from(driver.take_map(objects::BENCH_DRIVER_NEXT).unwrap()).unwrap();
    next.set(0, h.program().fd().unwrap(), 0).unwrap();
    let driver: &Xdp = driver
        .program(objects::BENCH_DRIVER_PROGRAM)
        .unwrap()
        .try_into()
        .unwrap();
    let frame = Frame::tcp("198.18.0.1", 2000, VIP, 80, SYN).bytes();
    let run = driver
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            repeat: FLOWS,
            ..TestRunOptions::default()
        })
        .unwrap();
    assert_eq!(run.return_value, XDP_TX);

    // Every flow was new; those whose bucket was full (a bucket takes four, and ten million
    // flows over 2.5 million buckets leave about a fifth without a slot) went by the hash table.
    let live = h.dataplane.live().unwrap();
    assert_eq!(live[0].stats.conns, u64::from(FLOWS));
    let tables = h.dataplane.flow_tables().unwrap();
    assert_eq!(tables.ipv4.entries + tables.no_room, u64::from(FLOWS));
    assert!(
        tables.ipv4.entries > u64::from(FLOWS) * 3 / 4,
        "{} flows held",
        tables.ipv4.entries
    );
    assert_eq!(tables.evicted, 0, "SYNs push nothing out");
    // The agent's sweep reads all of them (mapped, no system call per flow) and counts them.
    let expiry = h.dataplane.expire_flows().unwrap();
    assert_eq!(expiry.live as u64, tables.ipv4.entries);
    let inactive: u64 = h.dataplane.live().unwrap()[0]
        .reals
        .iter()
        .map(|r| r.inactive_conns)
        .sum();
    assert_eq!(
        inactive, tables.ipv4.entries,
        "half-open flows, as IPVS counts them"
    );
}
