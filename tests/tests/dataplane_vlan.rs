//! VLAN retagging through the real XDP program (BPF_PROG_TEST_RUN): a director on an 802.1Q trunk
//! with reals on VLAN 10, on VLAN 20 and untagged. Every forwarded frame must leave with exactly
//! its real's tag (its priority bits kept from the tag it arrived with), whatever tags it arrived
//! with; the expected output frames are compared byte for byte, and the counters after each.

use lb_common::stats::GlobalStats;
use xdirectord::{
    backend::xdp::RealPath,
    table::{DesiredTable, Protocol},
};
use xdirectord_tests::{
    harness::{Harness, XDP_DROP, XDP_TX},
    packet::{ACK, DIRECTOR_MAC, Frame, L4, SYN},
    table::{self, key, service},
};

/// One VIP per real, so that each case knows where its frame goes.
const VIP10: &str = "10.0.0.110";
const VIP20: &str = "10.0.0.120";
const VIP_UNTAGGED: &str = "10.0.0.100";
const VIP6_10: &str = "fd00::110";
const VIP6_UNTAGGED: &str = "fd00::100";
const REAL10: &str = "10.0.10.1";
const REAL20: &str = "10.0.20.1";
const REAL_UNTAGGED: &str = "10.0.1.1";
const REAL6_10: &str = "fd00:10::1";
const REAL6_UNTAGGED: &str = "fd00:1::1";
const CLIENT: &str = "192.0.2.10";
const CLIENT6: &str = "2001:db8::10";
/// Test runs enter on `lo` of the harness's namespace: the trunk.
const TRUNK: u32 = 1;

const Q: u16 = 0x8100;
const AD: u16 = 0x88a8;
/// A TCI's priority 5 and drop-eligible bit, to be kept.
const PCP5_DEI: u16 = 0xb000;
/// A TCI's priority 3.
const PCP3: u16 = 0x6000;

/// The source MAC of a real's VLAN device (the director's on that VLAN).
fn src_mac(vlan: u16) -> [u8; 6] {
    match vlan {
        0 => DIRECTOR_MAC,
        v => [0x02, 0xd1, 0, 0, (v >> 8) as u8, v as u8],
    }
}

fn mac_of(addr: &str) -> [u8; 6] {
    table::mac_of(addr.parse().unwrap())
}

fn trunk() -> Harness {
    let mut t = DesiredTable::default();
    for (vip, real) in [
        (VIP10, REAL10),
        (VIP20, REAL20),
        (VIP_UNTAGGED, REAL_UNTAGGED),
        (VIP6_10, REAL6_10),
        (VIP6_UNTAGGED, REAL6_UNTAGGED),
    ] {
        t.services
            .insert(key(Protocol::Tcp, vip, 80), service("wrr", &[(real, 1)]));
    }
    t.services
        .insert(key(Protocol::Udp, VIP10, 53), service("rr", &[(REAL10, 1)]));
    let mut h = Harness::new();
    for (real, vlan) in [
        (REAL10, 10),
        (REAL20, 20),
        (REAL_UNTAGGED, 0),
        (REAL6_10, 10),
        (REAL6_UNTAGGED, 0),
    ] {
        h.paths.set(
            real,
            RealPath::Neighbour {
                ifindex: TRUNK,
                mac: mac_of(real),
                src_mac: src_mac(vlan),
                vlan,
                mtu: 1500,
                source: None,
            },
        );
    }
    h.apply(&t);
    h
}

fn real_packets(h: &Harness, real: &str) -> u64 {
    let addr: std::net::IpAddr = real.parse().unwrap();
    let live = h.dataplane.live().expect("live table");
    live.iter()
        .flat_map(|s| &s.reals)
        .filter(|r| r.addr == addr)
        .map(|r| r.stats.in_packets)
        .sum()
}

/// `frame` as it must leave for `real` on `vlan` (0: untagged) with TCI `tci`: the real's MAC,
/// the VLAN device's source MAC, exactly one 802.1Q tag or none, everything after untouched.
fn leaving(frame: &Frame, real: &str, vlan: u16, tci: u16) -> Vec<u8> {
    let mut out = frame.clone();
    out.dst_mac = mac_of(real);
    out.src_mac = src_mac(vlan);
    out.vlans = if vlan == 0 { vec![] } else { vec![(Q, tci)] };
    out.bytes()
}

/// Runs `frame`: it must be sent (XDP_TX) as `leaving(frame, real, vlan, tci)` says, counted for
/// `real`, with the global counters moved exactly as `count` moves them (none for an ordinary
/// forwarded packet; `retag_failed` never).
fn retagged(
    h: &Harness,
    name: &str,
    frame: &Frame,
    real: &str,
    (vlan, tci): (u16, u16),
    count: impl FnOnce(&mut GlobalStats),
) {
    let (before, real_before) = (h.global(), real_packets(h, real));
    let outcome = h.run(&frame.bytes());
    assert_eq!(outcome.action, XDP_TX, "{name}: verdict");
    assert_eq!(
        outcome.frame,
        leaving(frame, real, vlan, tci),
        "{name}: output frame"
    );
    let mut want = before;
    count(&mut want);
    assert_eq!(h.global(), want, "{name}: global counters");
    assert_eq!(
        real_packets(h, real) - real_before,
        1,
        "{name}: the real's packets"
    );
}

fn forwarded(_: &mut GlobalStats) {}

fn syn(sport: u16, vip: &str) -> Frame {
    Frame::tcp(CLIENT, sport, vip, 80, SYN)
}

#[test]
fn ipv4_frames_leave_with_their_reals_tag() {
    let h = trunk();
    let cases: [(&str, Frame, &str, (u16, u16)); 11] = [
        (
            "untagged to VLAN 10: pushed",
            syn(1, VIP10),
            REAL10,
            (10, 10),
        ),
        (
            "VLAN 20 to VLAN 10: rewritten",
            syn(2, VIP10).vlan(Q, 20),
            REAL10,
            (10, 10),
        ),
        (
            "VLAN 10 to VLAN 10: the same tag",
            syn(3, VIP10).vlan(Q, 10),
            REAL10,
            (10, 10),
        ),
        (
            "VLAN 10 to VLAN 20, priority and DEI kept",
            syn(4, VIP20).vlan(Q, PCP5_DEI | 10),
            REAL20,
            (20, PCP5_DEI | 20),
        ),
        (
            "VLAN 20 to untagged: popped",
            syn(5, VIP_UNTAGGED).vlan(Q, PCP5_DEI | 20),
            REAL_UNTAGGED,
            (0, 0),
        ),
        (
            "untagged to untagged: no tag",
            syn(6, VIP_UNTAGGED),
            REAL_UNTAGGED,
            (0, 0),
        ),
        (
            "QinQ to VLAN 10: one 802.1Q tag, the inner tag's priority",
            syn(7, VIP10).vlan(AD, PCP5_DEI | 100).vlan(Q, PCP3 | 20),
            REAL10,
            (10, PCP3 | 10),
        ),
        (
            "QinQ to untagged: both popped",
            syn(8, VIP_UNTAGGED).vlan(AD, 100).vlan(Q, 20),
            REAL_UNTAGGED,
            (0, 0),
        ),
        (
            "802.1ad tag to VLAN 20: leaves as 802.1Q",
            syn(9, VIP20).vlan(AD, PCP3 | 30),
            REAL20,
            (20, PCP3 | 20),
        ),
        (
            "a full-size frame, pushed",
            syn(10, VIP20).payload(&[0xab; 1400]),
            REAL20,
            (20, 20),
        ),
        (
            "an established flow's packet, rewritten",
            Frame::tcp(CLIENT, 2, VIP10, 80, ACK).vlan(Q, 20),
            REAL10,
            (10, 10),
        ),
    ];
    for (name, frame, real, tag) in cases {
        retagged(&h, name, &frame, real, tag, forwarded);
    }
}

#[test]
fn ipv6_frames_leave_with_their_reals_tag() {
    let h = trunk();
    let syn6 = |sport, vip| Frame::tcp(CLIENT6, sport, vip, 80, SYN);
    let cases: [(&str, Frame, &str, (u16, u16)); 5] = [
        (
            "IPv6 untagged to VLAN 10: pushed",
            syn6(1, VIP6_10),
            REAL6_10,
            (10, 10),
        ),
        (
            "IPv6 VLAN 20 to VLAN 10, priority kept",
            syn6(2, VIP6_10).vlan(Q, PCP5_DEI | 20),
            REAL6_10,
            (10, PCP5_DEI | 10),
        ),
        (
            "IPv6 VLAN 10 to untagged: popped",
            syn6(3, VIP6_UNTAGGED).vlan(Q, 10),
            REAL6_UNTAGGED,
            (0, 0),
        ),
        (
            "IPv6 QinQ to VLAN 10",
            syn6(4, VIP6_10).vlan(AD, 100).vlan(Q, PCP3 | 20),
            REAL6_10,
            (10, PCP3 | 10),
        ),
        (
            "IPv6 with extension headers, rewritten",
            syn6(5, VIP6_10).ipv6_ext(0, 0).ipv6_ext(60, 1).vlan(Q, 20),
            REAL6_10,
            (10, 10),
        ),
    ];
    for (name, frame, real, tag) in cases {
        retagged(&h, name, &frame, real, tag, forwarded);
    }
}

/// ICMP errors and later fragments reach forwarding by their own paths: they are retagged too.
#[test]
fn icmp_errors_and_fragments_leave_with_their_reals_tag() {
    let h = trunk();
    retagged(&h, "SYN", &syn(1000, VIP10), REAL10, (10, 10), forwarded);
    let quoted = Frame::tcp(VIP10, 80, CLIENT, 1000, ACK).payload(&[0x5a; 200]);
    let error = Frame::new("198.51.100.1", VIP10, L4::Icmp { kind: 3, code: 4 })
        .payload(&quoted.ip_bytes()[..28])
        .vlan(Q, PCP3 | 20);
    retagged(
        &h,
        "ICMP error on VLAN 20 about a flow of a real on VLAN 10",
        &error,
        REAL10,
        (10, PCP3 | 10),
        |g| g.icmp_to_flow += 1,
    );

    let first = Frame::udp(CLIENT, 5000, VIP10, 53)
        .payload(&[0xab; 64])
        .ip_id(0x4242)
        .frag(0x2000)
        .vlan(Q, 20);
    retagged(
        &h,
        "first fragment on VLAN 20",
        &first,
        REAL10,
        (10, 10),
        |g| g.frag_first += 1,
    );
    let later = Frame::new(CLIENT, VIP10, L4::Other(17))
        .payload(&[0xcd; 72])
        .ip_id(0x4242)
        .frag(72 / 8);
    retagged(
        &h,
        "later fragment, untagged",
        &later,
        REAL10,
        (10, 10),
        |g| g.frag_later += 1,
    );
}

/// A real behind a path the program cannot tag for (stacked VLANs, say) is never sent untagged:
/// it takes no new flows, and the agent's log says why.
#[test]
fn a_real_the_program_cannot_tag_for_takes_no_new_flows() {
    let mut h = Harness::new();
    let why = "its route leaves through a VLAN device on another VLAN device (stacked tags)";
    h.paths.set(REAL10, RealPath::Unsupported(why));
    let mut t = DesiredTable::default();
    t.services.insert(
        key(Protocol::Tcp, VIP10, 80),
        service("wrr", &[(REAL10, 1)]),
    );
    let held = h.dataplane.held().expect("held");
    let ops = xdirectord::table::diff::diff(&held, &t);
    let notes = h.dataplane.execute(&ops, &mut h.paths).expect("apply");
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&format!("{why}: it takes no new connections"))),
        "{notes:?}"
    );
    let before = h.global();
    assert_eq!(h.run(&syn(1, VIP10).bytes()).action, XDP_DROP);
    let mut want = before;
    want.no_real += 1;
    assert_eq!(h.global(), want);
    // `show` tells it from a real whose MAC is not known yet.
    let live = h.dataplane.live().expect("live table");
    let real = &live[0].reals[0];
    assert!(real.unsupported && !real.resolved, "{real:?}");
}
