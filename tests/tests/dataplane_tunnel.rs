//! Packet fixtures for `ipip` reals through the real XDP program (BPF_PROG_TEST_RUN): the outer
//! header byte for byte (checksum included), its source (the egress address, or a per-flow one
//! from `tunnelsource`), IPv4 and IPv6 in their own family and across, VLAN tags kept in front,
//! and the answers to packets too big for the tunnel: ICMP "fragmentation needed" and ICMPv6
//! "packet too big", with their MTU and checksums, or the kernel.

use std::net::IpAddr;

use lb_common::stats::GlobalStats;
use xdirectord::{
    backend::xdp::RealPath,
    table::{DesiredTable, Forwarding, Protocol, Real},
};
use xdirectord_tests::{
    harness::{Harness, Outcome, XDP_PASS, XDP_TX},
    packet::{ACK, CLIENT_MAC, DIRECTOR_MAC, Frame, L4, SYN},
    table::{key, mac_of, service},
};

const VIP: &str = "10.0.0.100";
const VIP6: &str = "fd00::100";
/// Reals in another subnet, behind a router.
const REAL: &str = "10.9.0.11";
const REAL6: &str = "fd09::11";
/// The director's address on the egress interface.
const SOURCE: &str = "10.0.0.2";
const SOURCE6: &str = "fd00::2";
const ROUTER_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 0x01];
const CLIENT: &str = "192.0.2.10";
const CLIENT6: &str = "2001:db8::10";
/// The egress interface's MTU.
const MTU: u16 = 1500;

fn tunnel_real(addr: &str) -> Real {
    Real {
        forward: Forwarding::Ipip,
        ..xdirectord_tests::table::real(addr, 1)
    }
}

/// TCP :80 on VIP to `real4`, and on VIP6 to `real6`, both by ipip.
fn site(real4: &str, real6: &str) -> DesiredTable {
    let mut t = DesiredTable::default();
    for (vip, real) in [(VIP, real4), (VIP6, real6)] {
        let mut s = service("wrr", &[]);
        s.reals.push(tunnel_real(real));
        t.services.insert(key(Protocol::Tcp, vip, 80), s);
    }
    t
}

fn harness(table: &DesiredTable, tunnel_source: Vec<lb_config::TunnelPrefix>) -> Harness {
    let mut h = Harness::new();
    h.dataplane.tunnel_source = tunnel_source;
    for (real, source) in [(REAL, SOURCE), (REAL6, SOURCE6)] {
        h.paths.set(
            real,
            RealPath::Neighbour {
                ifindex: 1,
                mac: ROUTER_MAC,
                src_mac: DIRECTOR_MAC,
                vlan: 0,
                mtu: MTU,
                source: Some(source.parse().unwrap()),
            },
        );
    }
    h.apply(table);
    h
}

/// The global counters a run moved: (tunnelled, too big answered, too big passed, failed).
fn tunnel_counters(before: &GlobalStats, after: &GlobalStats) -> [u64; 4] {
    [
        after.tunnelled - before.tunnelled,
        after.tunnel_too_big - before.tunnel_too_big,
        after.tunnel_too_big_passed - before.tunnel_too_big_passed,
        after.tunnel_failed - before.tunnel_failed,
    ]
}

fn run(h: &Harness, frame: &Frame) -> (Outcome, [u64; 4]) {
    let before = h.global();
    let outcome = h.run(&frame.bytes());
    (outcome, tunnel_counters(&before, &h.global()))
}

/// The frame the real should get: `inner`'s IP packet inside an outer header from `source` to
/// `real`, sent untagged (the real's path has no VLAN) to the router.
fn encapsulated(inner: &Frame, source: &str, real: &str) -> Vec<u8> {
    let proto = if inner.src.is_ipv4() { 4 } else { 41 };
    let mut outer = Frame::new(source, real, L4::Other(proto))
        .ip_id(0)
        .payload(&inner.ip_bytes());
    // The outer header keeps "don't fragment" when the inner one has it; IPv6, which routers
    // never fragment, always has it (RFC 4213).
    outer.frag = if inner.src.is_ipv6() {
        0x4000
    } else {
        inner.frag & 0x4000
    };
    outer.dst_mac = ROUTER_MAC;
    outer.src_mac = DIRECTOR_MAC;
    outer.bytes()
}

/// The IPv6 flow label of an IPv6 frame (whose IP header starts at `l3`).
fn flow_label(frame: &[u8], l3: usize) -> u32 {
    u32::from_be_bytes([0, frame[l3 + 1] & 0x0f, frame[l3 + 2], frame[l3 + 3]])
}

#[test]
fn ipv4_in_ipv4_byte_for_byte() {
    let h = harness(&site(REAL, REAL6), Vec::new());
    for (name, inner) in [
        ("SYN", Frame::tcp(CLIENT, 40000, VIP, 80, SYN)),
        (
            "ACK with DF",
            Frame::tcp(CLIENT, 40000, VIP, 80, ACK).frag(0x4000),
        ),
        (
            "tagged",
            Frame::tcp(CLIENT, 40001, VIP, 80, SYN).vlan(0x8100, 10),
        ),
        (
            "two tags",
            Frame::tcp(CLIENT, 40002, VIP, 80, SYN)
                .vlan(0x88a8, 100)
                .vlan(0x8100, 10),
        ),
    ] {
        let (outcome, counters) = run(&h, &inner);
        assert_eq!(outcome.action, XDP_TX, "{name}: verdict");
        assert_eq!(counters, [1, 0, 0, 0], "{name}: counters");
        assert_eq!(
            outcome.frame,
            encapsulated(&inner, SOURCE, REAL),
            "{name}: frame"
        );
    }
}

#[test]
fn ipv6_in_ipv6_byte_for_byte_but_the_flow_label() {
    let h = harness(&site(REAL, REAL6), Vec::new());
    let first = Frame::tcp(CLIENT6, 40000, VIP6, 80, SYN);
    let (outcome, counters) = run(&h, &first);
    assert_eq!(outcome.action, XDP_TX);
    assert_eq!(counters, [1, 0, 0, 0]);
    let mut want = encapsulated(&first, SOURCE6, REAL6);
    let label = flow_label(&outcome.frame, 14);
    // The flow label is the flow's entropy, the same for each of its packets.
    want[15] |= (label >> 16) as u8;
    want[16] = (label >> 8) as u8;
    want[17] = label as u8;
    assert_eq!(outcome.frame, want);
    let (next, _) = run(&h, &Frame::tcp(CLIENT6, 40000, VIP6, 80, ACK));
    assert_eq!(flow_label(&next.frame, 14), label, "same flow, same label");
    let labels: std::collections::BTreeSet<u32> = (1..=16)
        .map(|port| {
            flow_label(
                &run(&h, &Frame::tcp(CLIENT6, port, VIP6, 80, SYN)).0.frame,
                14,
            )
        })
        .collect();
    assert!(labels.len() > 8, "flows spread over labels: {labels:?}");
}

#[test]
fn ipv4_vips_to_ipv6_reals_and_back() {
    let h = harness(&site(REAL6, REAL), Vec::new());
    let v4 = Frame::tcp(CLIENT, 40000, VIP, 80, SYN);
    let (outcome, counters) = run(&h, &v4);
    assert_eq!((outcome.action, counters), (XDP_TX, [1, 0, 0, 0]));
    let mut want = encapsulated(&v4, SOURCE6, REAL6);
    assert_eq!(&want[12..14], &[0x86, 0xdd], "an IPv6 ethertype");
    let label = flow_label(&outcome.frame, 14);
    want[15] |= (label >> 16) as u8;
    want[16] = (label >> 8) as u8;
    want[17] = label as u8;
    assert_eq!(outcome.frame, want, "IPv4 in IPv6: next header 4");

    let v6 = Frame::tcp(CLIENT6, 40000, VIP6, 80, SYN);
    let (outcome, counters) = run(&h, &v6);
    assert_eq!((outcome.action, counters), (XDP_TX, [1, 0, 0, 0]));
    assert_eq!(
        outcome.frame,
        encapsulated(&v6, SOURCE, REAL),
        "IPv6 in IPv4: protocol 41"
    );
}

#[test]
fn a_per_flow_source_varies_its_host_bits_by_flow() {
    let prefixes = vec![
        lb_config::TunnelPrefix {
            addr: "172.16.0.0".parse().unwrap(),
            len: 12,
        },
        lb_config::TunnelPrefix {
            addr: "fd10::".parse().unwrap(),
            len: 64,
        },
    ];
    let h = harness(&site(REAL, REAL6), prefixes);
    let source_of = |frame: &[u8]| -> IpAddr {
        if frame[12..14] == [0x08, 0x00] {
            IpAddr::from(<[u8; 4]>::try_from(&frame[26..30]).unwrap())
        } else {
            IpAddr::from(<[u8; 16]>::try_from(&frame[22..38]).unwrap())
        }
    };
    let mut sources = std::collections::BTreeSet::new();
    for port in 1..=16 {
        let inner = Frame::tcp(CLIENT, port, VIP, 80, SYN);
        let (outcome, _) = run(&h, &inner);
        let IpAddr::V4(source) = source_of(&outcome.frame) else {
            panic!("an IPv4 outer header")
        };
        assert_eq!(source.octets()[0], 172);
        assert_eq!(source.octets()[1] & 0xf0, 16, "{source} in 172.16.0.0/12");
        sources.insert(source);
        // Everything but the source (and the header checksum) as from the egress address.
        let mut want = encapsulated(&inner, &source.to_string(), REAL);
        want[24..26].copy_from_slice(&outcome.frame[24..26]);
        assert_eq!(outcome.frame, want);
        let (again, _) = run(&h, &Frame::tcp(CLIENT, port, VIP, 80, ACK));
        assert_eq!(source_of(&again.frame), IpAddr::V4(source), "same flow");
    }
    assert!(sources.len() > 8, "flows spread over sources: {sources:?}");
    let IpAddr::V6(source) = source_of(&run(&h, &Frame::tcp(CLIENT6, 1, VIP6, 80, SYN)).0.frame)
    else {
        panic!("an IPv6 outer header")
    };
    assert_eq!(
        source.segments()[..4],
        [0xfd10, 0, 0, 0],
        "{source} in fd10::/64"
    );
}

/// What the program answers a too-big IPv4 packet with: ICMP "fragmentation needed" from the
/// VIP, quoting 56 bytes of the packet, back to where it came from.
fn fragmentation_needed(packet: &Frame, mtu: u16) -> Vec<u8> {
    let quote = &packet.ip_bytes()[..56];
    let mut icmp = vec![3, 4, 0, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(quote);
    let mut answer = Frame::new(VIP, CLIENT, L4::Other(1))
        .ip_id(0)
        .payload(&icmp);
    answer.dst_mac = CLIENT_MAC;
    answer.src_mac = DIRECTOR_MAC;
    answer.vlans = packet.vlans.clone();
    answer.bytes()
}

/// ICMPv6 "packet too big" from the VIP, quoting 200 bytes of the packet.
fn packet_too_big(packet: &Frame, mtu: u32) -> Vec<u8> {
    let mut icmp = vec![2, 0, 0, 0];
    icmp.extend_from_slice(&mtu.to_be_bytes());
    icmp.extend_from_slice(&packet.ip_bytes()[..200]);
    let mut answer = Frame::new(VIP6, CLIENT6, L4::Other(58)).payload(&icmp);
    answer.dst_mac = CLIENT_MAC;
    answer.src_mac = DIRECTOR_MAC;
    answer.bytes()
}

#[test]
fn too_big_for_the_tunnel_is_answered_or_passed() {
    let h = harness(&site(REAL, REAL6), Vec::new());
    // 20 + 20 + 1440 = 1480 fits 1500 with the outer 20; one byte more does not.
    let fits = Frame::tcp(CLIENT, 41000, VIP, 80, ACK)
        .frag(0x4000)
        .payload(&[7; 1440]);
    let (outcome, counters) = run(&h, &fits);
    assert_eq!((outcome.action, counters), (XDP_TX, [1, 0, 0, 0]), "fits");
    assert_eq!(outcome.frame.len(), 14 + 1500);

    for tags in [0, 1] {
        let mut big = Frame::tcp(CLIENT, 41001, VIP, 80, ACK)
            .frag(0x4000)
            .payload(&[7; 1441]);
        if tags == 1 {
            big = big.vlan(0x8100, 10);
        }
        let (outcome, counters) = run(&h, &big);
        assert_eq!(
            (outcome.action, counters),
            (XDP_TX, [0, 1, 0, 0]),
            "DF, {tags} tags"
        );
        assert_eq!(
            outcome.frame,
            fragmentation_needed(&big, MTU - 20),
            "DF, {tags} tags"
        );
    }

    // May be fragmented: the kernel's, unchanged.
    let fragmentable = Frame::tcp(CLIENT, 41002, VIP, 80, ACK).payload(&[7; 1441]);
    let (outcome, counters) = run(&h, &fragmentable);
    assert_eq!((outcome.action, counters), (XDP_PASS, [0, 0, 1, 0]));
    assert_eq!(outcome.frame, fragmentable.bytes());

    // IPv6: always answered; 40 + 20 + 1400 = 1460 fits 1500 with the outer 40.
    let fits6 = Frame::tcp(CLIENT6, 41000, VIP6, 80, ACK).payload(&[7; 1400]);
    assert_eq!(run(&h, &fits6).1, [1, 0, 0, 0], "IPv6 fits");
    let big6 = Frame::tcp(CLIENT6, 41001, VIP6, 80, ACK).payload(&[7; 1401]);
    let (outcome, counters) = run(&h, &big6);
    assert_eq!((outcome.action, counters), (XDP_TX, [0, 1, 0, 0]), "IPv6");
    assert_eq!(outcome.frame, packet_too_big(&big6, (MTU - 40) as u32));
}

#[test]
fn forwarding_is_byte_identical_to_direct_routing_for_gate_reals() {
    // A gate real next to a tunnel real: the tunnel changes nothing for it.
    let mut t = site(REAL, REAL6);
    t.services
        .get_mut(&key(Protocol::Tcp, VIP, 80))
        .unwrap()
        .reals
        .push(xdirectord_tests::table::real("10.0.0.12", 1));
    let mut h = harness(&DesiredTable::default(), Vec::new());
    h.paths.set(
        "10.0.0.12",
        RealPath::Neighbour {
            ifindex: 1,
            mac: mac_of("10.0.0.12".parse().unwrap()),
            src_mac: DIRECTOR_MAC,
            vlan: 0,
            mtu: MTU,
            source: None,
        },
    );
    h.apply(&t);
    let mut seen = [0; 2];
    for port in 1..=8 {
        let inner = Frame::tcp(CLIENT, port, VIP, 80, SYN);
        let (outcome, counters) = run(&h, &inner);
        if outcome.frame[..6] == mac_of("10.0.0.12".parse().unwrap()) {
            assert_eq!(counters, [0; 4]);
            assert_eq!(outcome.frame[12..], inner.bytes()[12..]);
            seen[0] += 1;
        } else {
            assert_eq!(counters, [1, 0, 0, 0]);
            assert_eq!(outcome.frame, encapsulated(&inner, SOURCE, REAL));
            seen[1] += 1;
        }
    }
    assert_eq!(seen, [4, 4], "wrr 1:1 over a gate and a tunnel real");
}
