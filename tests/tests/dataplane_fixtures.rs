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
/// Test runs enter on `lo` of the harness's namespace.
const INGRESS: u32 = 1;

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
    for addr in REALS
        .iter()
        .chain(&REALS6)
        .chain(&["10.0.1.4", "10.0.1.5", "10.0.9.9"])
    {
        h.paths.set(
            addr,
            RealPath::Neighbour {
                ifindex: INGRESS,
                mac: mac_of(addr),
                src_mac: DIRECTOR_MAC,
            },
        );
    }
    h.apply(table);
    h
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Counter {
    Passed,
    Malformed,
    Fragments,
    IcmpErrors,
    NoReal,
    Local,
    Unresolved,
    /// Sent to a real: no global counter moves, the real's own do.
    Forwarded,
}

fn counter(g: &GlobalStats, c: Counter) -> u64 {
    match c {
        Counter::Passed => g.passed,
        Counter::Malformed => g.malformed,
        Counter::Fragments => g.fragments,
        Counter::IcmpErrors => g.icmp_errors,
        Counter::NoReal => g.no_real,
        Counter::Local => g.local,
        Counter::Unresolved => g.unresolved,
        Counter::Forwarded => 0,
    }
}

const ALL_COUNTERS: [Counter; 7] = [
    Counter::Passed,
    Counter::Malformed,
    Counter::Fragments,
    Counter::IcmpErrors,
    Counter::NoReal,
    Counter::Local,
    Counter::Unresolved,
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
/// real's. Returns the real it went to ("" when not forwarded).
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
    let to_a_real = matches!(counted, Counter::Forwarded | Counter::Local);
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
        &frame[12..],
        "{name}: bytes beyond the MACs"
    );
    real
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

#[test]
fn fragments_and_icmp_errors_go_to_the_kernel_and_are_counted() {
    let h = harness_with(&site());
    check(
        &h,
        "first fragment",
        &syn(1000).frag(0x2000).bytes(),
        XDP_PASS,
        Counter::Fragments,
        To::Unchanged,
    );
    check(
        &h,
        "later fragment",
        &syn(1000).frag(0x00b9).bytes(),
        XDP_PASS,
        Counter::Fragments,
        To::Unchanged,
    );
    let frag6 = Frame::tcp("2001:db8::10", 1000, VIP6, 80, SYN).ipv6_ext(44, 0);
    check(
        &h,
        "IPv6 fragment header",
        &frag6.bytes(),
        XDP_PASS,
        Counter::Fragments,
        To::Unchanged,
    );
    let unreachable = Frame::new("192.0.2.10", VIP, L4::Icmp { kind: 3, code: 4 });
    check(
        &h,
        "ICMP fragmentation needed",
        &unreachable.bytes(),
        XDP_PASS,
        Counter::IcmpErrors,
        To::Unchanged,
    );
    let exceeded = Frame::new("192.0.2.10", VIP, L4::Icmp { kind: 11, code: 0 });
    check(
        &h,
        "ICMP time exceeded",
        &exceeded.bytes(),
        XDP_PASS,
        Counter::IcmpErrors,
        To::Unchanged,
    );
    let too_big = Frame::new("2001:db8::10", VIP6, L4::Icmp { kind: 2, code: 0 });
    check(
        &h,
        "ICMPv6 packet too big",
        &too_big.bytes(),
        XDP_PASS,
        Counter::IcmpErrors,
        To::Unchanged,
    );
    let unreachable6 = Frame::new("2001:db8::10", VIP6, L4::Icmp { kind: 1, code: 4 });
    check(
        &h,
        "ICMPv6 unreachable",
        &unreachable6.bytes(),
        XDP_PASS,
        Counter::IcmpErrors,
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
    let tagged = syn(2).vlan(0x8100, 42);
    check(
        &h,
        "802.1Q",
        &tagged.bytes(),
        XDP_TX,
        Counter::Forwarded,
        To::Real(REALS[1]),
    );
    let qinq = syn(3).vlan(0x88a8, 100).vlan(0x8100, 42);
    check(
        &h,
        "802.1ad + 802.1Q",
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
    // A packet every 100 s for 2,000 s, each first from the flow table (the cached entry is
    // stale by then), then from the cache.
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
