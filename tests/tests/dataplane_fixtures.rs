//! Packet fixtures through the real XDP program (BPF_PROG_TEST_RUN), Katran-style: an input
//! frame, the expected verdict, the expected output frame (MACs rewritten, everything else
//! untouched) and the counters after each case.

use lb_common::stats::GlobalStats;
use xdirectord::{
    backend::xdp::RealPath,
    table::{DesiredTable, Persistence, Protocol},
};
use xdirectord_tests::{
    harness::{Harness, Outcome, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX},
    packet::{ACK, DIRECTOR_MAC, FIN, Frame, L4, PSH, RST, SYN},
    table::{self, key, real, service},
};

const VIP: &str = "10.0.0.100";
const VIP6: &str = "fd00::100";
const REALS: [&str; 3] = ["10.0.1.1", "10.0.1.2", "10.0.1.3"];
const REALS6: [&str; 3] = ["fd00::1:1", "fd00::1:2", "fd00::1:3"];

fn mac_of(addr: &str) -> [u8; 6] {
    table::mac_of(addr.parse().unwrap())
}

/// The common site: TCP VIP:80 wrr 1/2/3, UDP VIP:53 rr, TCP VIP6:80 wrr 1/2/3.
fn site() -> DesiredTable {
    let mut t = DesiredTable::default();
    let weighted: Vec<(&str, u32)> = REALS.iter().copied().zip([1, 2, 3]).collect();
    t.services
        .insert(key(Protocol::Tcp, VIP, 80), service("wrr", &weighted));
    t.services
        .insert(key(Protocol::Udp, VIP, 53), service("rr", &weighted));
    let weighted6: Vec<(&str, u32)> = REALS6.iter().copied().zip([1, 2, 3]).collect();
    t.services
        .insert(key(Protocol::Tcp, VIP6, 80), service("wrr", &weighted6));
    t
}

fn harness_with(table: &DesiredTable) -> Harness {
    let mut h = Harness::new();
    h.paths.neighbours(&REALS);
    h.paths.neighbours(&REALS6);
    h.paths.neighbours(&["10.0.1.4", "10.0.1.5", "10.0.9.9"]);
    h.apply(table);
    h
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Counter {
    Passed,
    Malformed,
    FragFirst,
    FragLater,
    FragUnknown,
    FragAbsurd,
    IcmpToFlow,
    IcmpHashed,
    IcmpNotVip,
    IcmpBadInner,
    NoReal,
    Local,
    Unresolved,
    RetagFailed,
    /// Sent to a real: no global counter moves, the real's own do.
    Forwarded,
}

fn counter(g: &GlobalStats, c: Counter) -> u64 {
    match c {
        Counter::Passed => g.passed,
        Counter::Malformed => g.malformed,
        Counter::FragFirst => g.frag_first,
        Counter::FragLater => g.frag_later,
        Counter::FragUnknown => g.frag_unknown,
        Counter::FragAbsurd => g.frag_absurd,
        Counter::IcmpToFlow => g.icmp_to_flow,
        Counter::IcmpHashed => g.icmp_hashed,
        Counter::IcmpNotVip => g.icmp_not_vip,
        Counter::IcmpBadInner => g.icmp_bad_inner,
        Counter::NoReal => g.no_real,
        Counter::Local => g.local,
        Counter::Unresolved => g.unresolved,
        Counter::RetagFailed => g.retag_failed,
        Counter::Forwarded => 0,
    }
}

const ALL_COUNTERS: [Counter; 14] = [
    Counter::Passed,
    Counter::Malformed,
    Counter::FragFirst,
    Counter::FragLater,
    Counter::FragUnknown,
    Counter::FragAbsurd,
    Counter::IcmpToFlow,
    Counter::IcmpHashed,
    Counter::IcmpNotVip,
    Counter::IcmpBadInner,
    Counter::NoReal,
    Counter::Local,
    Counter::Unresolved,
    Counter::RetagFailed,
];

/// Packets counted for reals, over every service.
fn real_packets(h: &Harness) -> u64 {
    let live = h.dataplane.live().expect("live table");
    live.iter()
        .flat_map(|s| &s.reals)
        .map(|r| r.stats.in_packets)
        .sum()
}

/// Where a frame should leave to.
#[derive(Clone, Copy)]
enum To<'a> {
    /// Not forwarded: the frame must be unchanged.
    Unchanged,
    /// Forwarded to this real.
    Real(&'a str),
    /// Forwarded to one of these reals (which one is the test's to judge).
    AnyOf(&'a [&'a str]),
}

/// Runs `frame` and checks the verdict, that exactly `counted` went up by one among the global
/// outcome counters (none for a forwarded frame), that the reals' packet counters moved when a
/// real got the frame, and that the frame left unchanged or with exactly its MACs rewritten to a
/// real's and its VLAN tags removed (the reals here are untagged). Returns the real it went to
/// ("" when not forwarded).
fn check(h: &Harness, name: &str, frame: &[u8], action: u32, counted: Counter, to: To) -> String {
    let (before, real_before) = (h.global(), real_packets(h));
    let outcome = h.run(frame);
    let (after, real_after) = (h.global(), real_packets(h));
    assert_eq!(outcome.action, action, "{name}: verdict");
    for c in ALL_COUNTERS {
        let want = u64::from(c == counted);
        assert_eq!(
            counter(&after, c) - counter(&before, c),
            want,
            "{name}: counter {c:?}"
        );
    }
    // Every packet given to a real (forwarded, or passed to a local one) is counted for it.
    let to_a_real = matches!(
        counted,
        Counter::Forwarded
            | Counter::Local
            | Counter::FragFirst
            | Counter::FragLater
            | Counter::IcmpToFlow
            | Counter::IcmpHashed
    );
    assert_eq!(
        real_after - real_before,
        u64::from(to_a_real),
        "{name}: real counters"
    );
    let candidates: &[&str] = match to {
        To::Unchanged => {
            assert_eq!(outcome.frame, frame, "{name}: frame changed");
            return String::new();
        }
        To::Real(ref r) => std::slice::from_ref(r),
        To::AnyOf(rs) => rs,
    };
    let real = real_of(&outcome, candidates);
    assert_eq!(&outcome.frame[6..12], &DIRECTOR_MAC, "{name}: source MAC");
    assert_eq!(
        &outcome.frame[12..],
        &untagged(frame)[12..],
        "{name}: bytes beyond the MACs"
    );
    real
}

/// `frame` without the VLAN tags the program reads (up to two, 802.1Q or 802.1ad).
fn untagged(frame: &[u8]) -> Vec<u8> {
    let mut out = frame.to_vec();
    for _ in 0..2 {
        if out.len() >= 18 && matches!([out[12], out[13]], [0x81, 0x00] | [0x88, 0xa8]) {
            out.drain(12..16);
        }
    }
    out
}

/// The real a forwarded frame went to, among `candidates`.
fn real_of(outcome: &Outcome, candidates: &[&str]) -> String {
    candidates
        .iter()
        .find(|r| outcome.frame[..6] == mac_of(r))
        .unwrap_or_else(|| {
            panic!(
                "frame to none of {candidates:?}: {:02x?}",
                &outcome.frame[..6]
            )
        })
        .to_string()
}

fn syn(sport: u16) -> Frame {
    Frame::tcp("192.0.2.10", sport, VIP, 80, SYN)
}

// ---- frames that are not for us --------------------------------------------------------------

#[test]
fn not_for_a_vip_passes_unchanged() {
    let h = harness_with(&site());
    let cases: Vec<(&str, Frame)> = vec![
        (
            "other address",
            Frame::tcp("192.0.2.10", 1000, "10.0.0.99", 80, SYN),
        ),
        (
            "VIP, other port",
            Frame::tcp("192.0.2.10", 1000, VIP, 8080, SYN),
        ),
        (
            "VIP, UDP on a TCP-only port",
            Frame::udp("192.0.2.10", 1000, VIP, 80),
        ),
        (
            "VIP, TCP on a UDP-only port",
            Frame::tcp("192.0.2.10", 1000, VIP, 53, SYN),
        ),
        (
            "IPv6, other address",
            Frame::tcp("2001:db8::10", 1000, "fd00::99", 80, SYN),
        ),
        (
            "ICMP echo to the VIP",
            Frame::new("192.0.2.10", VIP, L4::Icmp { kind: 8, code: 0 }),
        ),
        (
            "ICMPv6 echo to the VIP",
            Frame::new("2001:db8::10", VIP6, L4::Icmp { kind: 128, code: 0 }),
        ),
        (
            "neighbour solicitation",
            Frame::new("2001:db8::10", VIP6, L4::Icmp { kind: 135, code: 0 }),
        ),
        (
            "GRE to the VIP",
            Frame::new("192.0.2.10", VIP, L4::Other(47)),
        ),
        (
            "three VLAN tags",
            syn(1000).vlan(0x88a8, 10).vlan(0x8100, 20).vlan(0x8100, 30),
        ),
    ];
    for (name, frame) in cases {
        check(
            &h,
            name,
            &frame.bytes(),
            XDP_PASS,
            Counter::Passed,
            To::Unchanged,
        );
    }
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    check(&h, "ARP", &arp, XDP_PASS, Counter::Passed, To::Unchanged);
}

// ---- ICMP errors about VIP flows ---------------------------------------------------------------

const CLIENT: &str = "192.0.2.10";
const CLIENT6: &str = "2001:db8::10";
/// A router on the path that reports an error about a real's reply.
const ROUTER: &str = "198.51.100.1";
const ROUTER6: &str = "2001:db8:ff::1";

/// An ICMP(v6) error from a router to `to`, quoting the first `quote` bytes of `quoted`'s IP
/// packet.
fn icmp_error(kind: u8, code: u8, to: &str, quoted: &Frame, quote: usize) -> Frame {
    let router = if quoted.src.is_ipv4() {
        ROUTER
    } else {
        ROUTER6
    };
    let ip = quoted.ip_bytes();
    Frame::new(router, to, L4::Icmp { kind, code }).payload(&ip[..quote.min(ip.len())])
}

/// A real's reply from the VIP to a client: what ICMP errors about a VIP flow quote.
fn reply(vip: &str, vport: u16, client: &str, cport: u16) -> Frame {
    Frame::tcp(vip, vport, client, cport, ACK).payload(&[0x5a; 200])
}

#[test]
fn icmp_errors_about_a_known_flow_go_to_its_real() {
    let h = harness_with(&site());
    check(
        &h,
        "SYN",
        &syn(1000).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[2]),
    );
    let quoted = reply(VIP, 80, CLIENT, 1000);
    for (name, kind, code, quote) in [
        ("fragmentation needed, minimal quote", 3, 4, 28),
        ("fragmentation needed, whole packet", 3, 4, usize::MAX),
        ("port unreachable", 3, 3, 28),
        ("time exceeded", 11, 0, 48),
        ("parameter problem", 12, 0, 28),
    ] {
        check(
            &h,
            name,
            &icmp_error(kind, code, VIP, &quoted, quote).bytes(),
            XDP_TX,
            Counter::IcmpToFlow,
            To::Real(REALS[2]),
        );
    }
    // Behind a VLAN tag and with IP options in the quote, too.
    let with_options = reply(VIP, 80, CLIENT, 1000).ip_options(&[1, 1, 1, 1]);
    check(
        &h,
        "quote with IP options, tagged",
        &icmp_error(3, 4, VIP, &with_options, 32)
            .vlan(0x8100, 7)
            .bytes(),
        XDP_TX,
        Counter::IcmpToFlow,
        To::Real(REALS[2]),
    );

    let syn6 = Frame::tcp(CLIENT6, 1000, VIP6, 80, SYN);
    check(
        &h,
        "IPv6 SYN",
        &syn6.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS6[2]),
    );
    let quoted6 = reply(VIP6, 80, CLIENT6, 1000);
    for (name, kind, code) in [
        ("packet too big", 2, 0),
        ("destination unreachable", 1, 4),
        ("time exceeded", 3, 0),
        ("parameter problem", 4, 0),
    ] {
        check(
            &h,
            name,
            &icmp_error(kind, code, VIP6, &quoted6, 48).bytes(),
            XDP_TX,
            Counter::IcmpToFlow,
            To::Real(REALS6[2]),
        );
    }
}

#[test]
fn icmp_errors_about_an_unknown_flow_go_where_the_hash_table_places_it() {
    let h = harness_with(&site());
    for cport in [2000, 2001, 2002, 2003] {
        let error = icmp_error(3, 4, VIP, &reply(VIP, 80, CLIENT, cport), 28);
        let to = check(
            &h,
            "frag needed, no flow",
            &error.bytes(),
            XDP_TX,
            Counter::IcmpHashed,
            To::AnyOf(&REALS),
        );
        // The error placed no flow: the flow's next packet is a lost flow, and the
        // consistent-hash table sends it where it sent the error.
        let lost_before = h.global().flow_miss_non_syn;
        let ack = Frame::tcp(CLIENT, cport, VIP, 80, ACK);
        let then = check(
            &h,
            "ACK",
            &ack.bytes(),
            XDP_TX,
            Counter::Forwarded,
            To::AnyOf(&REALS),
        );
        assert_eq!(then, to, "port {cport}: the error and the flow part ways");
        assert_eq!(
            h.global().flow_miss_non_syn,
            lost_before + 1,
            "port {cport}"
        );
    }
    let error6 = icmp_error(2, 0, VIP6, &reply(VIP6, 80, CLIENT6, 3000), 48);
    let to = check(
        &h,
        "packet too big, no flow",
        &error6.bytes(),
        XDP_TX,
        Counter::IcmpHashed,
        To::AnyOf(&REALS6),
    );
    let ack6 = Frame::tcp(CLIENT6, 3000, VIP6, 80, ACK);
    let then = check(
        &h,
        "IPv6 ACK",
        &ack6.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::AnyOf(&REALS6),
    );
    assert_eq!(then, to);
}

#[test]
fn icmp_errors_about_a_persistent_client_follow_its_template() {
    let mut table = DesiredTable::default();
    let weighted: Vec<(&str, u32)> = REALS.iter().copied().zip([1, 1, 1]).collect();
    let mut svc = service("rr", &weighted);
    svc.attrs.persistence = Some(Persistence {
        timeout_secs: 300,
        prefix_len: 32,
    });
    table.services.insert(key(Protocol::Tcp, VIP, 80), svc);
    let mut h = harness_with(&table);
    h.set_clock(1_000_000_000);
    let first = check(
        &h,
        "SYN",
        &syn(1000).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::AnyOf(&REALS),
    );
    // Another connection of the same client that the flow table does not know.
    for cport in [4000, 4001, 4002] {
        check(
            &h,
            "error about another connection of the client",
            &icmp_error(3, 4, VIP, &reply(VIP, 80, CLIENT, cport), 28).bytes(),
            XDP_TX,
            Counter::IcmpHashed,
            To::Real(&first),
        );
    }
}

#[test]
fn icmp_messages_not_about_a_vip_flow_pass_unchanged() {
    let h = harness_with(&site());
    let cases: Vec<(&str, Frame, Counter)> = vec![
        (
            "error about another address",
            icmp_error(3, 4, "10.0.0.99", &reply("10.0.0.99", 80, CLIENT, 1), 28),
            Counter::IcmpNotVip,
        ),
        (
            "error about another port of the VIP",
            icmp_error(3, 4, VIP, &reply(VIP, 8080, CLIENT, 1), 28),
            Counter::IcmpNotVip,
        ),
        (
            "error about UDP on a TCP-only port",
            icmp_error(
                3,
                3,
                VIP,
                &Frame::udp(VIP, 80, CLIENT, 1).payload(&[0; 8]),
                28,
            ),
            Counter::IcmpNotVip,
        ),
        (
            "error about an echo reply from the VIP",
            icmp_error(
                11,
                0,
                VIP,
                &Frame::new(VIP, CLIENT, L4::Icmp { kind: 0, code: 0 }),
                28,
            ),
            Counter::IcmpNotVip,
        ),
        (
            "IPv6 error about another address",
            icmp_error(2, 0, "fd00::99", &reply("fd00::99", 80, CLIENT6, 1), 48),
            Counter::IcmpNotVip,
        ),
        (
            "ICMP echo request to the VIP",
            Frame::new(CLIENT, VIP, L4::Icmp { kind: 8, code: 0 }),
            Counter::Passed,
        ),
        (
            "ICMP redirect to the VIP",
            icmp_error(5, 1, VIP, &reply(VIP, 80, CLIENT, 1), 28),
            Counter::Passed,
        ),
        (
            "ICMPv6 echo request to the VIP",
            Frame::new(CLIENT6, VIP6, L4::Icmp { kind: 128, code: 0 }),
            Counter::Passed,
        ),
    ];
    for (name, frame, counted) in cases {
        check(&h, name, &frame.bytes(), XDP_PASS, counted, To::Unchanged);
    }
}

/// The malformed-frame corpus for ICMP errors: quotes cut short or lying, never forwarded.
#[test]
fn icmp_errors_with_bad_quotes_are_counted_and_passed() {
    let h = harness_with(&site());
    // A flow the errors could be about, had their quotes been right.
    check(
        &h,
        "SYN",
        &syn(1000).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[2]),
    );
    let quoted = reply(VIP, 80, CLIENT, 1000);
    let ip = quoted.ip_bytes();
    let with = |bytes: &[u8]| {
        Frame::new(ROUTER, VIP, L4::Icmp { kind: 3, code: 4 })
            .payload(bytes)
            .bytes()
    };
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("quote cut in the IP header", with(&ip[..19])),
        ("quote cut in the ports", with(&ip[..20 + 7])),
        ("no quote at all", with(&[])),
    ];
    let mut version = ip.clone();
    version[0] = 0x65;
    cases.push(("quote claims version 6", with(&version[..28])));
    let mut short = ip.clone();
    short[0] = 0x44;
    cases.push(("quote claims a 16-byte header", with(&short[..28])));
    let mut long = ip.clone();
    long[0] = 0x4f;
    cases.push(("quote claims 60 header bytes it lacks", with(&long[..28])));
    let mut later = ip.clone();
    later[6..8].copy_from_slice(&0x0010u16.to_be_bytes());
    cases.push(("quote of a later fragment", with(&later[..28])));
    cases.push((
        "quote not from the error's destination",
        icmp_error(3, 4, "10.0.0.99", &quoted, 28).bytes(),
    ));
    let mut icmp_cut = with(&ip[..28]);
    icmp_cut.truncate(14 + 20 + 6);
    cases.push(("ICMP header cut", icmp_cut));

    let quoted6 = reply(VIP6, 80, CLIENT6, 1000);
    let ip6 = quoted6.ip_bytes();
    let with6 = |bytes: &[u8]| {
        Frame::new(ROUTER6, VIP6, L4::Icmp { kind: 2, code: 0 })
            .payload(bytes)
            .bytes()
    };
    cases.push(("IPv6 quote cut in the header", with6(&ip6[..39])));
    cases.push(("IPv6 quote cut in the ports", with6(&ip6[..47])));
    let mut version6 = ip6.clone();
    version6[0] = 0x45;
    cases.push(("IPv6 quote claims version 4", with6(&version6[..48])));
    let ext = Frame::tcp(VIP6, 80, CLIENT6, 1000, ACK)
        .ipv6_ext(60, 0)
        .ip_bytes();
    cases.push(("IPv6 quote with an extension header", with6(&ext)));
    cases.push((
        "IPv6 quote not from the error's destination",
        icmp_error(2, 0, "fd00::99", &quoted6, 48).bytes(),
    ));
    for (name, frame) in cases {
        check(
            &h,
            name,
            &frame,
            XDP_PASS,
            Counter::IcmpBadInner,
            To::Unchanged,
        );
    }
}

// ---- fragments ---------------------------------------------------------------------------------

/// The fragments of one UDP datagram to VIP:53 (rr), IPv4: the first (UDP header and 64 bytes),
/// and later ones at `offsets` (bytes, multiples of 8), the last without more-fragments.
fn udp_fragments(client: &str, id: u16, offsets: &[u16]) -> (Frame, Vec<Frame>) {
    let first = Frame::udp(client, 5000, VIP, 53)
        .payload(&[0xab; 64])
        .ip_id(id)
        .frag(0x2000);
    let later = offsets
        .iter()
        .enumerate()
        .map(|(i, at)| {
            let more = if i + 1 < offsets.len() { 0x2000 } else { 0 };
            Frame::new(client, VIP, L4::Other(17))
                .payload(&[0xcd; 72])
                .ip_id(id)
                .frag(more | (at / 8))
        })
        .collect();
    (first, later)
}

#[test]
fn later_fragments_follow_their_first_fragment() {
    let h = harness_with(&site());
    let (first, later) = udp_fragments(CLIENT, 0x4242, &[72, 144, 216]);
    let to = check(
        &h,
        "first fragment",
        &first.bytes(),
        XDP_TX,
        Counter::FragFirst,
        To::Real(REALS[0]),
    );
    for (i, f) in later.iter().enumerate() {
        check(
            &h,
            &format!("fragment {}", i + 1),
            &f.bytes(),
            XDP_TX,
            Counter::FragLater,
            To::Real(&to),
        );
    }
    // Duplicates (a retransmitting network) go the same way.
    check(
        &h,
        "duplicate later fragment",
        &later[1].bytes(),
        XDP_TX,
        Counter::FragLater,
        To::Real(&to),
    );
    check(
        &h,
        "duplicate first fragment",
        &first.bytes(),
        XDP_TX,
        Counter::FragFirst,
        To::Real(&to),
    );
    // Another client's datagram with the same id is another datagram (rr: the next real).
    let (other_first, other_later) = udp_fragments("192.0.2.77", 0x4242, &[72]);
    check(
        &h,
        "other client's first fragment",
        &other_first.bytes(),
        XDP_TX,
        Counter::FragFirst,
        To::Real(REALS[1]),
    );
    check(
        &h,
        "other client's later fragment",
        &other_later[0].bytes(),
        XDP_TX,
        Counter::FragLater,
        To::Real(REALS[1]),
    );
}

#[test]
fn a_later_fragment_without_its_first_goes_to_the_kernel() {
    let mut h = harness_with(&site());
    h.set_clock(1_000_000_000);
    let (first, later) = udp_fragments(CLIENT, 0x5555, &[72, 144]);
    // Out of order: a later fragment before the first.
    check(
        &h,
        "later fragment first",
        &later[1].bytes(),
        XDP_PASS,
        Counter::FragUnknown,
        To::Unchanged,
    );
    let to = check(
        &h,
        "first fragment",
        &first.bytes(),
        XDP_TX,
        Counter::FragFirst,
        To::AnyOf(&REALS),
    );
    check(
        &h,
        "the other later fragment",
        &later[0].bytes(),
        XDP_TX,
        Counter::FragLater,
        To::Real(&to),
    );
    // 30 s later the datagram is forgotten, as the kernel's reassembly forgets it.
    h.set_clock(1_000_000_000 + 31_000_000_000);
    check(
        &h,
        "later fragment after the timeout",
        &later[0].bytes(),
        XDP_PASS,
        Counter::FragUnknown,
        To::Unchanged,
    );
    // Not for a VIP at all.
    let stray = Frame::new(CLIENT, "10.0.0.99", L4::Other(17))
        .payload(&[0; 16])
        .frag(0x0009);
    check(
        &h,
        "later fragment to another address",
        &stray.bytes(),
        XDP_PASS,
        Counter::FragUnknown,
        To::Unchanged,
    );
    // A first fragment for no VIP is not remembered.
    let stray_first = Frame::udp(CLIENT, 5000, "10.0.0.99", 53).frag(0x2000);
    check(
        &h,
        "first fragment to another address",
        &stray_first.bytes(),
        XDP_PASS,
        Counter::Passed,
        To::Unchanged,
    );
}

#[test]
fn ipv6_fragments_follow_their_first_fragment() {
    let h = harness_with(&site());
    let first = Frame::tcp(CLIENT6, 1000, VIP6, 80, SYN)
        .payload(&[0xab; 64])
        .ipv6_frag(0, true, 0xdead_beef);
    check(
        &h,
        "IPv6 first fragment",
        &first.bytes(),
        XDP_TX,
        Counter::FragFirst,
        To::Real(REALS6[2]),
    );
    let later = Frame::new(CLIENT6, VIP6, L4::Other(6))
        .payload(&[0xcd; 64])
        .ipv6_frag(88, false, 0xdead_beef);
    check(
        &h,
        "IPv6 later fragment",
        &later.bytes(),
        XDP_TX,
        Counter::FragLater,
        To::Real(REALS6[2]),
    );
    let other_id = Frame::new(CLIENT6, VIP6, L4::Other(6))
        .payload(&[0xcd; 64])
        .ipv6_frag(88, false, 0xdead_beee);
    check(
        &h,
        "IPv6 later fragment of another datagram",
        &other_id.bytes(),
        XDP_PASS,
        Counter::FragUnknown,
        To::Unchanged,
    );
    // Offset 0 without more fragments: an atomic fragment (RFC 6946), a whole packet.
    let atomic = Frame::tcp(CLIENT6, 1001, VIP6, 80, SYN).ipv6_frag(0, false, 9);
    check(
        &h,
        "IPv6 atomic fragment",
        &atomic.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::AnyOf(&REALS6),
    );
}

/// The malformed-frame corpus for fragments: offsets beyond a datagram, lengths that lie.
#[test]
fn absurd_fragments_are_counted_and_passed() {
    let h = harness_with(&site());
    let (first, later) = udp_fragments(CLIENT, 0x6666, &[72]);
    check(
        &h,
        "first fragment",
        &first.bytes(),
        XDP_TX,
        Counter::FragFirst,
        To::AnyOf(&REALS),
    );
    let beyond = later[0].clone().frag(0x1ff8);
    let mut lying = later[0].bytes();
    lying[14 + 2..14 + 4].copy_from_slice(&10u16.to_be_bytes());
    let beyond6 = Frame::new(CLIENT6, VIP6, L4::Other(6))
        .payload(&[0; 64])
        .ipv6_frag(65528, false, 1);
    let mut lying6 = beyond6.clone().ipv6_frag(8, false, 1).bytes();
    lying6[14 + 4..14 + 6].copy_from_slice(&4u16.to_be_bytes());
    for (name, frame) in [
        ("IPv4 offset beyond 65,535", beyond.bytes()),
        ("IPv4 total length shorter than the header", lying),
        ("IPv6 offset beyond 65,535", beyond6.bytes()),
        ("IPv6 payload length shorter than the headers", lying6),
    ] {
        check(
            &h,
            name,
            &frame,
            XDP_PASS,
            Counter::FragAbsurd,
            To::Unchanged,
        );
    }
    // A first fragment too short for its transport header is malformed, as any cut header.
    let tiny = Frame::tcp(CLIENT, 1, VIP, 80, SYN).frag(0x2000).bytes();
    check(
        &h,
        "first fragment cut in the TCP header",
        &tiny[..14 + 20 + 8],
        XDP_PASS,
        Counter::Malformed,
        To::Unchanged,
    );
}

/// Every header boundary, one byte short: counted as malformed and passed, never forwarded.
#[test]
fn truncated_at_every_header_boundary_is_malformed() {
    let h = harness_with(&site());
    let tagged = syn(1000).vlan(0x8100, 7).bytes();
    check(
        &h,
        "VLAN tag cut",
        &tagged[..17],
        XDP_PASS,
        Counter::Malformed,
        To::Unchanged,
    );
    let v4 = syn(1000).bytes();
    check(
        &h,
        "IPv4 header cut",
        &v4[..14 + 19],
        XDP_PASS,
        Counter::Malformed,
        To::Unchanged,
    );
    let options = syn(1000).ip_options(&[1, 1, 1, 1, 1, 1, 1, 1]).bytes();
    check(
        &h,
        "IPv4 options cut",
        &options[..14 + 24],
        XDP_PASS,
        Counter::Malformed,
        To::Unchanged,
    );
    check(
        &h,
        "TCP header cut",
        &v4[..14 + 20 + 19],
        XDP_PASS,
        Counter::Malformed,
        To::Unchanged,
    );
    let udp = Frame::udp("192.0.2.10", 1000, VIP, 53).bytes();
    check(
        &h,
        "UDP header cut",
        &udp[..14 + 20 + 7],
        XDP_PASS,
        Counter::Malformed,
        To::Unchanged,
    );
    let icmp = Frame::new("192.0.2.10", VIP, L4::Icmp { kind: 3, code: 1 }).bytes();
    check(
        &h,
        "ICMP header cut",
        &icmp[..14 + 20 + 3],
        XDP_PASS,
        Counter::Malformed,
        To::Unchanged,
    );
    let v6 = Frame::tcp("2001:db8::10", 1000, VIP6, 80, SYN).bytes();
    check(
        &h,
        "IPv6 header cut",
        &v6[..14 + 39],
        XDP_PASS,
        Counter::Malformed,
        To::Unchanged,
    );
    check(
        &h,
        "IPv6 TCP cut",
        &v6[..14 + 40 + 19],
        XDP_PASS,
        Counter::Malformed,
        To::Unchanged,
    );
    let ext = Frame::tcp("2001:db8::10", 1000, VIP6, 80, SYN)
        .ipv6_ext(0, 1)
        .bytes();
    check(
        &h,
        "IPv6 extension header cut",
        &ext[..14 + 40 + 1],
        XDP_PASS,
        Counter::Malformed,
        To::Unchanged,
    );
    check(
        &h,
        "IPv6 TCP after extension cut",
        &ext[..14 + 40 + 16 + 10],
        XDP_PASS,
        Counter::Malformed,
        To::Unchanged,
    );
    // Not cut, but lying: version and header length that cannot be.
    let mut bad_version = v4.clone();
    bad_version[14] = 0x65;
    check(
        &h,
        "IPv4 ethertype, version 6",
        &bad_version,
        XDP_PASS,
        Counter::Malformed,
        To::Unchanged,
    );
    let mut short_ihl = v4.clone();
    short_ihl[14] = 0x44;
    check(
        &h,
        "IPv4 header length 16",
        &short_ihl,
        XDP_PASS,
        Counter::Malformed,
        To::Unchanged,
    );
    let mut bad_version6 = v6.clone();
    bad_version6[14] = 0x40;
    check(
        &h,
        "IPv6 ethertype, version 4",
        &bad_version6,
        XDP_PASS,
        Counter::Malformed,
        To::Unchanged,
    );
}

// ---- forwarding ------------------------------------------------------------------------------

// ---- forwarding ------------------------------------------------------------------------------

#[test]
fn a_syn_goes_to_the_first_real_of_the_wrr_sequence() {
    let h = harness_with(&site());
    // Weights 1, 2, 3: IPVS's sequence is 3, 2, 3, 1, 2, 3.
    check(
        &h,
        "SYN",
        &syn(1000).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[2]),
    );
    let v6 = Frame::tcp("2001:db8::10", 1000, VIP6, 80, SYN);
    check(
        &h,
        "IPv6 SYN",
        &v6.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS6[2]),
    );
    let udp = Frame::udp("192.0.2.10", 5353, VIP, 53);
    check(
        &h,
        "first UDP datagram",
        &udp.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[0]),
    );
}

#[test]
fn headers_around_the_ip_header_are_kept() {
    let h = harness_with(&site());
    let options = syn(1).ip_options(&[0x94, 4, 0, 0]);
    check(
        &h,
        "IPv4 options",
        &options.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[2]),
    );
    // The reals here are untagged: the tags come off (retagging: `dataplane_vlan.rs`).
    let tagged = syn(2).vlan(0x8100, 42);
    check(
        &h,
        "802.1Q, to an untagged real",
        &tagged.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[1]),
    );
    let qinq = syn(3).vlan(0x88a8, 100).vlan(0x8100, 42);
    check(
        &h,
        "802.1ad + 802.1Q, to an untagged real",
        &qinq.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[2]),
    );
    let ext = Frame::tcp("2001:db8::10", 4, VIP6, 80, SYN)
        .ipv6_ext(0, 0)
        .ipv6_ext(60, 1);
    check(
        &h,
        "IPv6 hop-by-hop, destination options",
        &ext.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS6[2]),
    );
    let routing = Frame::tcp("2001:db8::10", 5, VIP6, 80, SYN).ipv6_ext(43, 0);
    check(
        &h,
        "IPv6 routing header",
        &routing.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS6[1]),
    );
    let big = syn(6).payload(&[0xab; 1400]);
    check(
        &h,
        "full-size frame",
        &big.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[0]),
    );
}

#[test]
fn an_established_flow_stays_on_its_real() {
    let h = harness_with(&site());
    let chosen = check(
        &h,
        "SYN",
        &syn(1000).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[2]),
    );
    for (name, flags) in [
        ("ACK", ACK),
        ("data", ACK | PSH),
        ("retransmitted SYN", SYN),
        ("FIN", FIN | ACK),
    ] {
        let f = Frame::tcp("192.0.2.10", 1000, VIP, 80, flags);
        check(
            &h,
            name,
            &f.bytes(),
            XDP_TX,
            Counter::Forwarded,
            To::Real(&chosen),
        );
    }
    // Other flows move on in the sequence meanwhile.
    check(
        &h,
        "next SYN",
        &syn(1001).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[1]),
    );
    let udp = Frame::udp("192.0.2.10", 5353, VIP, 53);
    let first = check(
        &h,
        "UDP",
        &udp.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::AnyOf(&REALS),
    );
    check(
        &h,
        "UDP again",
        &udp.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(&first),
    );
}

#[test]
fn a_new_syn_on_a_closed_tuple_is_scheduled_again() {
    let h = harness_with(&site());
    let tcp = |flags| Frame::tcp("192.0.2.10", 1000, VIP, 80, flags).bytes();
    let first = check(
        &h,
        "SYN",
        &tcp(SYN),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[2]),
    );
    // Established, then served from this CPU's flow cache.
    for name in ["ACK", "ACK from the cache"] {
        check(
            &h,
            name,
            &tcp(ACK),
            XDP_TX,
            Counter::Forwarded,
            To::Real(&first),
        );
    }
    check(
        &h,
        "FIN",
        &tcp(FIN | ACK),
        XDP_TX,
        Counter::Forwarded,
        To::Real(&first),
    );
    check(
        &h,
        "last ACK",
        &tcp(ACK),
        XDP_TX,
        Counter::Forwarded,
        To::Real(&first),
    );
    // The sequence's next real is 10.0.1.2: the reused tuple goes there, not to its old real,
    // and so do its next packets, the cache notwithstanding.
    check(
        &h,
        "SYN reusing the tuple",
        &tcp(SYN),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[1]),
    );
    for name in ["its ACK", "its next ACK"] {
        check(
            &h,
            name,
            &tcp(ACK),
            XDP_TX,
            Counter::Forwarded,
            To::Real(REALS[1]),
        );
    }
    let rst = Frame::tcp("192.0.2.10", 1000, VIP, 80, RST);
    check(
        &h,
        "RST",
        &rst.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[1]),
    );
}

#[test]
fn a_lost_flow_is_placed_by_the_consistent_hash_table_and_remembered() {
    let h = harness_with(&site());
    let lost = Frame::tcp("192.0.2.77", 4000, VIP, 80, ACK | PSH);
    let before = h.global().flow_miss_non_syn;
    let placed = check(
        &h,
        "mid-stream packet, no flow",
        &lost.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::AnyOf(&REALS),
    );
    assert_eq!(h.global().flow_miss_non_syn, before + 1);
    // The round-robin cursor does not decide where lost flows go: new flows move it, the lost
    // flow stays where the hash put it (now from its flow-table entry).
    for port in 1..=4 {
        check(
            &h,
            "SYN moving the cursor",
            &syn(port).bytes(),
            XDP_TX,
            Counter::Forwarded,
            To::AnyOf(&REALS),
        );
    }
    check(
        &h,
        "next packet of the lost flow",
        &lost.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(&placed),
    );
    assert_eq!(h.global().flow_miss_non_syn, before + 1);
    // A second harness (a restarted director with an empty flow table) places it the same way.
    drop(h);
    let other = harness_with(&site());
    check(
        &other,
        "same packet, fresh flow table",
        &lost.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(&placed),
    );
}

#[test]
fn a_real_on_another_interface_is_reached_by_redirect() {
    let mut h = harness_with(&DesiredTable::default());
    xdirectord_tests::harness::run(&[
        "ip", "link", "add", "fx0", "type", "veth", "peer", "name", "fx1",
    ]);
    let fx0 = xdirectord::backend::xdp::ifindex("fx0").unwrap();
    h.dataplane.maps.tx_ports.insert(fx0, fx0, None, 0).unwrap();
    h.paths.set(
        "10.0.1.4",
        RealPath::Neighbour {
            ifindex: fx0,
            mac: mac_of("10.0.1.4"),
            src_mac: DIRECTOR_MAC,
            vlan: 0,
            mtu: 1500,
            source: None,
        },
    );
    let mut t = DesiredTable::default();
    t.services.insert(
        key(Protocol::Tcp, VIP, 80),
        service("wrr", &[("10.0.1.4", 1)]),
    );
    h.apply(&t);
    check(
        &h,
        "SYN to a real behind fx0",
        &syn(1).bytes(),
        XDP_REDIRECT,
        Counter::Forwarded,
        To::Real("10.0.1.4"),
    );
    // An egress interface missing from TX_PORTS cannot be redirected to: dropped, counted.
    h.dataplane.maps.tx_ports.remove(fx0).unwrap();
    check(
        &h,
        "egress not in TX_PORTS",
        &syn(2).bytes(),
        XDP_DROP,
        Counter::Unresolved,
        To::Unchanged,
    );
}

// ---- schedulers ------------------------------------------------------------------------------

/// Sends `n` new flows (distinct source ports) and counts them per real.
fn spread(h: &Harness, frame: impl Fn(u16) -> Frame, n: u16, reals: &[&str]) -> Vec<usize> {
    let mut counts = vec![0; reals.len()];
    for i in 0..n {
        let r = check(
            h,
            "new flow",
            &frame(i + 1).bytes(),
            XDP_TX,
            Counter::Forwarded,
            To::AnyOf(reals),
        );
        counts[reals.iter().position(|x| *x == r).unwrap()] += 1;
    }
    counts
}

#[test]
fn wrr_sequences_match_the_weights_exactly() {
    let h = harness_with(&site());
    assert_eq!(spread(&h, syn, 600, &REALS), vec![100, 200, 300]);
    let mut order = Vec::new();
    for port in 1000..1006 {
        order.push(check(
            &h,
            "in order",
            &syn(port).bytes(),
            XDP_TX,
            Counter::Forwarded,
            To::AnyOf(&REALS),
        ));
    }
    assert_eq!(
        order,
        [REALS[2], REALS[1], REALS[2], REALS[0], REALS[1], REALS[2]]
    );
    let v6 = |p| Frame::tcp("2001:db8::10", p, VIP6, 80, SYN);
    assert_eq!(spread(&h, v6, 60, &REALS6), vec![10, 20, 30]);
}

#[test]
fn rr_ignores_weights() {
    let h = harness_with(&site());
    let udp = |p| Frame::udp("192.0.2.10", p, VIP, 53);
    assert_eq!(spread(&h, udp, 300, &REALS), vec![100, 100, 100]);
}

fn hashed_site(scheduler: &str) -> DesiredTable {
    let mut t = DesiredTable::default();
    let reals: Vec<(&str, u32)> = REALS.iter().map(|r| (*r, 1)).collect();
    t.services
        .insert(key(Protocol::Tcp, VIP, 80), service(scheduler, &reals));
    t
}

#[test]
fn source_hashing_keeps_a_client_and_spreads_clients() {
    let h = harness_with(&hashed_site("sh"));
    let mut seen = std::collections::BTreeSet::new();
    for client in 1..=60u8 {
        let src = format!("192.0.2.{client}");
        let first = check(
            &h,
            "sh",
            &Frame::tcp(&src, 1, VIP, 80, SYN).bytes(),
            XDP_TX,
            Counter::Forwarded,
            To::AnyOf(&REALS),
        );
        let again = check(
            &h,
            "sh, other port",
            &Frame::tcp(&src, 2, VIP, 80, SYN).bytes(),
            XDP_TX,
            Counter::Forwarded,
            To::AnyOf(&REALS),
        );
        assert_eq!(first, again, "client {src} moved");
        seen.insert(first);
    }
    assert_eq!(seen.len(), 3, "60 clients all hashed to {seen:?}");
}

#[test]
fn destination_hashing_sends_a_vip_to_one_real() {
    let h = harness_with(&hashed_site("dh"));
    let first = check(
        &h,
        "dh",
        &syn(1).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::AnyOf(&REALS),
    );
    for client in 2..=30u8 {
        let f = Frame::tcp(
            &format!("192.0.2.{client}"),
            1000 + client as u16,
            VIP,
            80,
            SYN,
        );
        check(
            &h,
            "dh, other client",
            &f.bytes(),
            XDP_TX,
            Counter::Forwarded,
            To::Real(&first),
        );
    }
}

#[test]
fn maglev_hashing_places_by_flow_and_spreads() {
    let h = harness_with(&hashed_site("mh"));
    let counts = spread(&h, syn, 600, &REALS);
    for c in &counts {
        assert!((150..=250).contains(c), "mh spread {counts:?}");
    }
    // Same tuple, another director (empty flow table): same real.
    let f = syn(4242).bytes();
    let first = check(
        &h,
        "mh",
        &Frame::tcp("192.0.2.10", 4242, VIP, 80, RST).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::AnyOf(&REALS),
    );
    let other = harness_with(&hashed_site("mh"));
    check(
        &other,
        "mh elsewhere",
        &f,
        XDP_TX,
        Counter::Forwarded,
        To::Real(&first),
    );
}

#[test]
fn least_connection_schedulers_follow_the_counts() {
    for scheduler in ["lc", "wlc", "sed", "nq"] {
        let mut t = DesiredTable::default();
        t.services.insert(
            key(Protocol::Tcp, VIP, 80),
            service(scheduler, &[(REALS[0], 1), (REALS[1], 3)]),
        );
        let h = harness_with(&t);
        // Established connections (SYN then ACK) on each real, as the schedulers choose.
        let mut placed = Vec::new();
        for port in 1..=8u16 {
            let r = check(
                &h,
                scheduler,
                &syn(port).bytes(),
                XDP_TX,
                Counter::Forwarded,
                To::AnyOf(&REALS[..2]),
            );
            let ack = Frame::tcp("192.0.2.10", port, VIP, 80, ACK);
            check(
                &h,
                "ACK",
                &ack.bytes(),
                XDP_TX,
                Counter::Forwarded,
                To::Real(&r),
            );
            placed.push(r);
        }
        let on_second = placed.iter().filter(|r| *r == REALS[1]).count();
        match scheduler {
            // lc ignores weights: it alternates.
            "lc" => assert_eq!(on_second, 4, "{scheduler}: {placed:?}"),
            // The weighted ones give the weight-3 real about three quarters.
            _ => assert!((5..=7).contains(&on_second), "{scheduler}: {placed:?}"),
        }
    }
}

// ---- persistence -----------------------------------------------------------------------------

fn persistent_site(timeout_secs: u32, prefix_len: u8) -> DesiredTable {
    let mut t = hashed_site("rr");
    let s = t.services.values_mut().next().unwrap();
    s.attrs.persistence = Some(Persistence {
        timeout_secs,
        prefix_len,
    });
    t
}

#[test]
fn persistence_keeps_a_client_under_its_netmask_until_it_expires() {
    let mut h = harness_with(&persistent_site(30, 24));
    h.set_clock(1_000_000_000);
    let first = check(
        &h,
        "first connection",
        &syn(1).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[0]),
    );
    // rr would move on; persistence keeps the client, and its /24 neighbours.
    check(
        &h,
        "second connection",
        &syn(2).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(&first),
    );
    let neighbour = Frame::tcp("192.0.2.200", 7, VIP, 80, SYN);
    check(
        &h,
        "same /24",
        &neighbour.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(&first),
    );
    let stranger = Frame::tcp("198.51.100.1", 7, VIP, 80, SYN);
    check(
        &h,
        "other /24",
        &stranger.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[1]),
    );
    // Each new connection refreshes the template: 29 s later, still there.
    h.set_clock(30_000_000_000);
    check(
        &h,
        "29 s later",
        &syn(3).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(&first),
    );
    // 31 s after the last new connection, it has expired: scheduled afresh.
    h.set_clock(61_000_000_000);
    check(
        &h,
        "expired",
        &syn(4).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[2]),
    );
}

// ---- weight changes, removal, fallback -------------------------------------------------------

#[test]
fn a_quiescent_real_keeps_its_flows_and_templates_but_gets_no_new_ones() {
    let mut t = persistent_site(300, 32);
    let mut h = harness_with(&t);
    let client = |p| Frame::tcp("192.0.2.10", p, VIP, 80, SYN);
    let first = check(
        &h,
        "client",
        &client(1).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[0]),
    );
    let other = |p| Frame::tcp("198.51.100.9", p, VIP, 80, SYN);
    check(
        &h,
        "other client",
        &other(1).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[1]),
    );
    t.services.values_mut().next().unwrap().reals[0].weight = 0;
    h.apply(&t);
    let ack = Frame::tcp("192.0.2.10", 1, VIP, 80, ACK);
    check(
        &h,
        "established flow",
        &ack.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(&first),
    );
    check(
        &h,
        "persistent client",
        &client(2).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(&first),
    );
    for n in 2..=20u8 {
        let f = Frame::tcp(&format!("203.0.113.{n}"), 9, VIP, 80, SYN);
        check(
            &h,
            "new client",
            &f.bytes(),
            XDP_TX,
            Counter::Forwarded,
            To::AnyOf(&REALS[1..]),
        );
    }
}

#[test]
fn a_removed_real_loses_its_flows_on_their_next_packet() {
    let mut t = hashed_site("rr");
    let mut h = harness_with(&t);
    check(
        &h,
        "flow to real 1",
        &syn(1).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[0]),
    );
    check(
        &h,
        "flow to real 2",
        &syn(2).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[1]),
    );
    t.services.values_mut().next().unwrap().reals.remove(0);
    h.apply(&t);
    let ack1 = Frame::tcp("192.0.2.10", 1, VIP, 80, ACK);
    check(
        &h,
        "flow of the removed real",
        &ack1.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::AnyOf(&REALS[1..]),
    );
    let ack2 = Frame::tcp("192.0.2.10", 2, VIP, 80, ACK);
    check(
        &h,
        "flow of a kept real",
        &ack2.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[1]),
    );
    // The live table no longer shows it.
    let live = h.dataplane.live().unwrap();
    assert!(live[0].reals.iter().all(|r| r.addr.to_string() != REALS[0]));
}

#[test]
fn the_fallback_takes_new_flows_only_while_no_real_has_weight() {
    let mut t = hashed_site("wrr");
    {
        let s = t.services.values_mut().next().unwrap();
        s.fallback = Some(real("10.0.9.9", 1));
    }
    let mut h = harness_with(&t);
    check(
        &h,
        "reals up: not the fallback",
        &syn(1).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::AnyOf(&REALS),
    );
    for r in &mut t.services.values_mut().next().unwrap().reals {
        r.weight = 0;
    }
    h.apply(&t);
    check(
        &h,
        "all quiescent: fallback",
        &syn(2).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real("10.0.9.9"),
    );
    let ack = Frame::tcp("192.0.2.10", 1, VIP, 80, ACK);
    check(
        &h,
        "earlier flow continues",
        &ack.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::AnyOf(&REALS),
    );
    t.services.values_mut().next().unwrap().reals[1].weight = 1;
    h.apply(&t);
    check(
        &h,
        "one back: not the fallback",
        &syn(3).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[1]),
    );
}

#[test]
fn a_local_fallback_goes_to_the_local_stack() {
    let mut t = hashed_site("wrr");
    {
        let s = t.services.values_mut().next().unwrap();
        s.reals.clear();
        s.fallback = Some(real("127.0.0.1", 1));
    }
    let mut h = harness_with(&DesiredTable::default());
    h.paths.set("127.0.0.1", RealPath::Local);
    h.apply(&t);
    check(
        &h,
        "to the local fallback",
        &syn(1).bytes(),
        XDP_PASS,
        Counter::Local,
        To::Unchanged,
    );
    let ack = Frame::tcp("192.0.2.10", 1, VIP, 80, ACK);
    check(
        &h,
        "its next packet",
        &ack.bytes(),
        XDP_PASS,
        Counter::Local,
        To::Unchanged,
    );
}

#[test]
fn no_usable_real_and_no_fallback_drops() {
    let mut t = hashed_site("wrr");
    for r in &mut t.services.values_mut().next().unwrap().reals {
        r.weight = 0;
    }
    let h = harness_with(&t);
    check(
        &h,
        "all quiescent, no fallback",
        &syn(1).bytes(),
        XDP_DROP,
        Counter::NoReal,
        To::Unchanged,
    );
    let lost = Frame::tcp("192.0.2.10", 2, VIP, 80, ACK);
    check(
        &h,
        "lost flow, nothing to place it on",
        &lost.bytes(),
        XDP_DROP,
        Counter::NoReal,
        To::Unchanged,
    );
}

#[test]
fn an_unresolved_real_takes_no_new_flows() {
    let mut t = hashed_site("rr");
    t.services
        .values_mut()
        .next()
        .unwrap()
        .reals
        .push(real("10.0.1.8", 1));
    let h = harness_with(&t); // 10.0.1.8 has no path in the harness
    let counts = spread(&h, syn, 30, &REALS);
    assert_eq!(counts, vec![10, 10, 10]);
    let live = h.dataplane.live().unwrap();
    let unresolved = live[0]
        .reals
        .iter()
        .find(|r| r.addr.to_string() == "10.0.1.8")
        .unwrap();
    assert!(!unresolved.resolved);
    assert_eq!(unresolved.weight, 1, "shows its configured weight");
}

// ---- counters --------------------------------------------------------------------------------

#[test]
fn counters_per_vip_and_per_real() {
    let h = harness_with(&site());
    let frames = [
        syn(1).bytes(),
        syn(2).bytes(),
        Frame::tcp("192.0.2.10", 1, VIP, 80, ACK).bytes(),
    ];
    for f in &frames {
        h.run(f);
    }
    let live = h.dataplane.live().unwrap();
    let vip = live
        .iter()
        .find(|s| s.key == key(Protocol::Tcp, VIP, 80))
        .unwrap();
    assert_eq!(vip.stats.in_packets, 3);
    assert_eq!(vip.stats.conns, 2);
    assert_eq!(
        vip.stats.in_bytes,
        frames.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    let by_addr = |a: &str| vip.reals.iter().find(|r| r.addr.to_string() == a).unwrap();
    assert_eq!(by_addr(REALS[2]).stats.in_packets, 2);
    assert_eq!(by_addr(REALS[2]).stats.conns, 1);
    assert_eq!(by_addr(REALS[1]).stats.in_packets, 1);
    assert_eq!(by_addr(REALS[0]).stats.in_packets, 0);
    // SYN then ACK: established (active); the other is half-open (inactive).
    assert_eq!(
        (
            by_addr(REALS[2]).active_conns,
            by_addr(REALS[2]).inactive_conns
        ),
        (1, 0)
    );
    assert_eq!(
        (
            by_addr(REALS[1]).active_conns,
            by_addr(REALS[1]).inactive_conns
        ),
        (0, 1)
    );
}

/// The flow cache serves a busy flow without touching the flow table, but still refreshes the
/// flow's last-seen time every `CACHE_FRESH_TICKS`: a flow that keeps sending never looks idle
/// to the agent's sweep, however long it lives.
#[test]
fn flows_the_cache_serves_stay_alive() {
    let mut h = harness_with(&hashed_site("rr"));
    h.set_clock(1_000_000_000);
    let tcp = |flags| Frame::tcp("192.0.2.10", 1, VIP, 80, flags).bytes();
    let to = check(
        &h,
        "SYN",
        &tcp(SYN),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[0]),
    );
    // The handshake's ACK at once (a flow left in SYN_RECV is over after 60 s), then a packet
    // every 100 s for 2,000 s, each first from the flow table (the cached entry is stale by
    // then), then from the cache.
    h.set_clock(2_000_000_000);
    check(
        &h,
        "ACK",
        &tcp(ACK),
        XDP_TX,
        Counter::Forwarded,
        To::Real(&to),
    );
    for secs in (100..=2_000).step_by(100) {
        h.set_clock(secs * 1_000_000_000);
        for name in ["ACK", "ACK from the cache"] {
            check(
                &h,
                name,
                &tcp(ACK),
                XDP_TX,
                Counter::Forwarded,
                To::Real(&to),
            );
        }
    }
    // 800 s after its last packet, 2,800 s after its first: alive (established: 900 s).
    h.set_clock(2_800_000_000_000);
    let expiry = h.dataplane.expire_flows().unwrap();
    assert_eq!((expiry.live, expiry.expired), (1, 0));
    assert_eq!(h.global().flow_miss_non_syn, 0);
}

#[test]
fn idle_flows_expire_and_connection_counts_follow() {
    let mut h = harness_with(&hashed_site("rr"));
    h.set_clock(1_000_000_000);
    let established = Frame::tcp("192.0.2.10", 1, VIP, 80, SYN);
    let to = check(
        &h,
        "SYN",
        &established.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[0]),
    );
    let ack = Frame::tcp("192.0.2.10", 1, VIP, 80, ACK);
    check(
        &h,
        "ACK",
        &ack.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(&to),
    );
    check(
        &h,
        "half-open",
        &syn(2).bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[1]),
    );
    let conns = |h: &Harness, real: &str| {
        let live = h.dataplane.live().unwrap();
        let r = live[0]
            .reals
            .iter()
            .find(|r| r.addr.to_string() == real)
            .unwrap();
        (r.active_conns, r.inactive_conns)
    };
    assert_eq!(conns(&h, REALS[0]), (1, 0));
    assert_eq!(conns(&h, REALS[1]), (0, 1));

    // 61 s later the half-open flow has expired (IPVS: 60 s in SYN_RECV), the established one not.
    h.set_clock(62_000_000_000);
    let expiry = h.dataplane.expire_flows().unwrap();
    assert_eq!((expiry.live, expiry.expired), (1, 1));
    assert_eq!(conns(&h, REALS[1]), (0, 0));
    assert_eq!(conns(&h, REALS[0]), (1, 0));
    // The established flow still goes to its real.
    check(
        &h,
        "established, later",
        &ack.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(&to),
    );

    // Past 900 s without a packet, it expires too; its next packet is a lost flow.
    h.set_clock(1_000_000_000_000);
    let expiry = h.dataplane.expire_flows().unwrap();
    assert_eq!((expiry.live, expiry.expired), (0, 1));
    assert_eq!(conns(&h, REALS[0]), (0, 0));
    let before = h.global().flow_miss_non_syn;
    check(
        &h,
        "expired flow's packet",
        &ack.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::AnyOf(&REALS),
    );
    assert_eq!(h.global().flow_miss_non_syn, before + 1);
}
