//! End to end, fragmented UDP through the director: datagrams of 4,000 and 9,000 bytes to a UDP
//! VIP leave the client in 3 and 7 fragments (MTU 1500). Only the first carries the ports; the
//! director places it like any packet and remembers where it went, and its later fragments follow
//! it (`frag_first`, `frag_later`). Each real's server (`xtask lab-udp`) answers with the length
//! and digest of what it reassembled, which the client checks: a fragment sent to the other real
//! would leave the datagram incomplete and unanswered. Datagrams come from several source ports
//! (rr spreads them over both reals), from the client's stack (fragments in order) and made by
//! hand with the later fragments in reverse order.
//!
//! ```text
//!  xd12-frag-client   xd12-frag-dir          xd12-frag-r1   xd12-frag-r2
//!  .10 ::10           .2 ::2 + VIP, VIP6     .11 ::11       .12 ::12        10.230.0.0/24
//!     └───────────────────┴──── br0 in xd12-frag-sw ──┴──────────┘           fd00:230::/64
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use xdirectord_tests::netns::RawIp;
use xdirectord_tests::packet::Frame;
use xdirectord_tests::topology::Topology;
use xtask::lab::agent::Agent;
use xtask::lab::client::in_ns;
use xtask::lab::udp::answer;

const VIP: &str = "10.230.0.100";
const VIP6: &str = "fd00:230::100";
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 230, 0, 10);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x230, 0, 0, 0, 0, 0, 0x10);
const PORT: u16 = 5000;
const REALS: [(&str, &str, &str); 2] = [
    ("r1", "10.230.0.11", "fd00:230::11"),
    ("r2", "10.230.0.12", "fd00:230::12"),
];
/// Datagram sizes (UDP payload): 3 and 7 fragments at MTU 1500.
const SIZES: [usize; 2] = [4000, 9000];
/// Source ports (sockets) per family: enough for rr to use both reals.
const SOCKETS: usize = 4;

struct Site {
    topology: Topology,
    client: String,
    agent: Agent,
}

fn build() -> Option<Site> {
    let mut t = Topology::new("frag")?;
    let switch = t.netns("sw", false);
    t.bridge(&switch, "br0");
    let client = t.netns("client", false);
    t.port((&switch, "br0", "client"), (&client, "eth0"));
    t.addr(&client, "eth0", &format!("{CLIENT}/24"));
    t.addr(&client, "eth0", "fd00:230::10/64");
    let director = t.netns("dir", false);
    t.port((&switch, "br0", "dir"), (&director, "eth0"));
    t.addr(&director, "eth0", "10.230.0.2/24");
    t.addr(&director, "eth0", "fd00:230::2/64");
    t.addr(&director, "eth0", &format!("{VIP}/32"));
    t.vip6_on_director(&director, VIP6);

    let (mut v4_reals, mut v6_reals) = (String::new(), String::new());
    for (name, v4, v6) in REALS {
        let ns = t.netns(name, false);
        t.port((&switch, "br0", name), (&ns, "eth0"));
        t.addr(&ns, "eth0", &format!("{v4}/24"));
        t.addr(&ns, "eth0", &format!("{v6}/64"));
        t.real_vips(&ns, &[VIP, VIP6]);
        let binds = [
            SocketAddr::new(VIP.parse().unwrap(), PORT),
            SocketAddr::new(VIP6.parse().unwrap(), PORT),
        ];
        t.udp_server(&ns, &format!("web{}", &name[1..]), &binds);
        v4_reals += &format!("\treal={v4}:{PORT} gate 1\n");
        v6_reals += &format!("\treal6=[{v6}]:{PORT} gate 1\n");
    }
    // Ping: a check that works for a UDP service with no request of its own.
    let udp = "\tprotocol=udp\n\tscheduler=rr\n\tchecktype=ping\n";
    let agent = t.agent(
        &director,
        &format!(
            "checkinterval=1\nchecktimeout=2\nfailurecount=1\ninterface=eth0\n\
             virtual={VIP}:{PORT}\n{v4_reals}{udp}virtual6=[{VIP6}]:{PORT}\n{v6_reals}{udp}"
        ),
    );
    t.wait_for_reals(&agent, REALS.len());
    Some(Site {
        topology: t,
        client,
        agent,
    })
}

/// A datagram's payload: different for every size and sender, so no answer fits another.
fn payload(size: usize, salt: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 7) ^ salt.wrapping_mul(0x9e)) as u8)
        .collect()
}

/// Waits for the answer to `sent` on `socket` (connected to the VIP), sending again up to twice
/// (UDP may lose the very first datagram while neighbours resolve). Returns the real's name.
fn exchange(socket: &UdpSocket, sent: &[u8], send: &dyn Fn()) -> Result<String, String> {
    let mut buf = [0u8; 256];
    for _ in 0..3 {
        send();
        match socket.recv(&mut buf) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let name = text.split(' ').next().unwrap_or("").to_owned();
                return if text == answer(&name, sent) {
                    Ok(name)
                } else {
                    Err(format!(
                        "the real reassembled something else: {text:?}, expected {:?}",
                        answer(&name, sent)
                    ))
                };
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
    Err(format!("no answer to a {}-byte datagram", sent.len()))
}

fn udp_socket(local: IpAddr, vip: IpAddr) -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddr::new(local, 0)).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    socket.connect(SocketAddr::new(vip, PORT)).expect("connect");
    socket
}

/// Datagrams the client's stack fragments, in order: the names of the reals that answered.
fn kernel_fragmented(vip: IpAddr, local: IpAddr) -> Result<Vec<String>, String> {
    let mut served = Vec::new();
    for s in 0..SOCKETS {
        let socket = udp_socket(local, vip);
        for size in SIZES {
            let data = payload(size, s);
            let send = || {
                socket.send(&data).expect("send");
            };
            served.push(exchange(&socket, &data, &send)?);
        }
    }
    Ok(served)
}

/// Datagrams fragmented here, from `client` to `vip`: the first fragment, then the later ones
/// last first.
fn reverse_fragmented(client: IpAddr, vip: IpAddr) -> Result<Vec<String>, String> {
    let family = if vip.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    // IPPROTO_RAW: the packets carry their own IP headers.
    let raw = RawIp::open(family, libc::IPPROTO_RAW);
    let mut served = Vec::new();
    let mut result = Ok(());
    'sockets: for s in 0..SOCKETS {
        let socket = udp_socket(client, vip);
        let sport = socket.local_addr().unwrap().port();
        for (k, size) in SIZES.into_iter().enumerate() {
            let data = payload(size, 100 + s);
            let id = (0x4000 + s * 16 + k) as u16;
            let frames = fragments(client, vip, sport, &data, id);
            let send = || {
                for frame in &frames {
                    raw.send(vip, frame);
                }
            };
            match exchange(&socket, &data, &send) {
                Ok(name) => served.push(name),
                Err(e) => {
                    result = Err(e);
                    break 'sockets;
                }
            }
        }
    }
    result.map(|()| served)
}

/// The fragments (IP header included) of a UDP datagram, at most 1500 bytes each: the first,
/// then the others in reverse order. IPv6 fragments carry a fragment header after the fixed one.
fn fragments(src: IpAddr, dst: IpAddr, sport: u16, data: &[u8], id: u16) -> Vec<Vec<u8>> {
    // The whole datagram, checksum included, then cut after its IP header.
    let whole = Frame::udp(&src.to_string(), sport, &dst.to_string(), PORT)
        .payload(data)
        .ip_bytes();
    let udp = &whole[if dst.is_ipv6() { 40 } else { 20 }..];

    // Payload per fragment: a multiple of 8 that fills 1500 bytes with the headers (20; 40 + 8).
    let per_fragment = if dst.is_ipv6() { 1448 } else { 1480 };
    let chunks: Vec<&[u8]> = udp.chunks(per_fragment).collect();
    let mut frames: Vec<Vec<u8>> = chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let more = i + 1 < chunks.len();
            let offset_units = (i * per_fragment / 8) as u16;
            let mut ip = Vec::new();
            match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    let field = offset_units | if more { 0x2000 } else { 0 };
                    ip.extend_from_slice(&[0x45, 0]);
                    ip.extend_from_slice(&((20 + chunk.len()) as u16).to_be_bytes());
                    ip.extend_from_slice(&id.to_be_bytes());
                    ip.extend_from_slice(&field.to_be_bytes());
                    ip.extend_from_slice(&[64, 17, 0, 0]);
                    ip.extend_from_slice(&s.octets());
                    ip.extend_from_slice(&d.octets());
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    ip.extend_from_slice(&[0x60, 0, 0, 0]);
                    ip.extend_from_slice(&((8 + chunk.len()) as u16).to_be_bytes());
                    ip.extend_from_slice(&[44, 64]);
                    ip.extend_from_slice(&s.octets());
                    ip.extend_from_slice(&d.octets());
                    let field = offset_units << 3 | u16::from(more);
                    ip.extend_from_slice(&[17, 0]);
                    ip.extend_from_slice(&field.to_be_bytes());
                    ip.extend_from_slice(&u32::from(id).to_be_bytes());
                }
                _ => unreachable!("checked above"),
            }
            ip.extend_from_slice(chunk);
            ip
        })
        .collect();
    frames[1..].reverse();
    frames
}

fn counters(agent: &Agent) -> (u64, u64) {
    let stats = agent.global_stats().expect("show --stats --json");
    (stats["frag_first"], stats["frag_later"])
}

fn check(site: &Site, what: &str, outcome: Result<Vec<String>, String>) {
    let served = outcome.unwrap_or_else(|e| {
        panic!(
            "{what}: {e}\n--- table ---\n{:?}\n--- counters ---\n{:?}\n--- log ---\n{}",
            site.agent.show(),
            site.agent.global_stats(),
            site.topology.log()
        )
    });
    let mut names = served.clone();
    names.sort();
    names.dedup();
    assert_eq!(
        names,
        ["web1", "web2"],
        "{what}: rr spreads the senders over both reals: {served:?}"
    );
    eprintln!(
        "{what}: {} datagrams answered whole, by {names:?}",
        served.len()
    );
}

/// Fragments of one datagram: 3 for 4,000 bytes, 7 for 9,000 (1,480 bytes each at MTU 1500).
fn later_fragments_per_round() -> u64 {
    SIZES
        .iter()
        .map(|s| ((8 + s).div_ceil(1480) - 1) as u64)
        .sum()
}

#[test]
fn fragmented_datagrams_reach_one_real_whole_and_in_any_later_order() {
    let Some(site) = build() else { return };
    let vip: Ipv4Addr = VIP.parse().unwrap();
    let vip6: IpAddr = VIP6.parse().unwrap();

    let outcome = in_ns(&site.client, || {
        kernel_fragmented(vip.into(), CLIENT.into())
    })
    .unwrap();
    check(&site, "IPv4, in order", outcome);
    let outcome = in_ns(&site.client, || kernel_fragmented(vip6, CLIENT6.into())).unwrap();
    check(&site, "IPv6, in order", outcome);
    let outcome = in_ns(&site.client, || {
        reverse_fragmented(CLIENT.into(), vip.into())
    })
    .unwrap();
    check(&site, "IPv4, later fragments reversed", outcome);
    let outcome = in_ns(&site.client, || reverse_fragmented(CLIENT6.into(), vip6)).unwrap();
    check(&site, "IPv6, later fragments reversed", outcome);

    let (first, later) = counters(&site.agent);
    eprintln!("frag_first = {first}, frag_later = {later}");
    // Four rounds (two families, in order and reversed) of SOCKETS senders, each sending every
    // size.
    let datagrams = 4 * SOCKETS as u64 * SIZES.len() as u64;
    assert!(
        first >= datagrams,
        "every datagram's first fragment was placed: frag_first = {first}, {datagrams} datagrams"
    );
    assert!(
        later >= 4 * SOCKETS as u64 * later_fragments_per_round(),
        "every later fragment followed its first: frag_later = {later}"
    );
}

/// A later fragment that overtakes its first has no remembered first to follow: it goes to the
/// director's own kernel (`frag_unknown`), as an IPVS director's would, and is not sent to some
/// real. Its datagram is then incomplete on the real and goes unanswered; sent again in order
/// (a new datagram), it is answered.
#[test]
fn a_later_fragment_that_overtakes_its_first_goes_to_the_directors_kernel() {
    let Some(site) = build() else { return };
    let vip: Ipv4Addr = VIP.parse().unwrap();
    let outcome = in_ns(&site.client, || {
        let raw = RawIp::open(libc::AF_INET, libc::IPPROTO_RAW);
        let socket = udp_socket(CLIENT.into(), vip.into());
        let sport = socket.local_addr().unwrap().port();
        let data = payload(9000, 7);
        // [first, last, …]: the last fragment goes out before the first.
        let frames = fragments(CLIENT.into(), vip.into(), sport, &data, 0x5000);
        for frame in [&frames[1], &frames[0]].into_iter().chain(&frames[2..]) {
            raw.send(vip.into(), frame);
        }
        // Once only: sent again, the same datagram's last fragment would find its first.
        let mut buf = [0u8; 256];
        let overtaken = socket.recv(&mut buf).map(|n| buf[..n].to_vec());
        let frames = fragments(CLIENT.into(), vip.into(), sport, &data, 0x5001);
        let in_order = || {
            for frame in [&frames[0]].into_iter().chain(frames[1..].iter().rev()) {
                raw.send(vip.into(), frame);
            }
        };
        let answered = exchange(&socket, &data, &in_order);
        (overtaken, answered)
    })
    .unwrap();
    let (overtaken, answered) = outcome;
    let stats = site.agent.global_stats().expect("show --stats --json");
    assert!(
        overtaken.is_err(),
        "a datagram whose last fragment went to the director was answered: {:?}",
        overtaken.map(|a| String::from_utf8_lossy(&a).into_owned())
    );
    assert!(
        stats["frag_unknown"] >= 1,
        "the overtaking fragment was passed to the director's kernel: {stats:?}"
    );
    let served = answered.unwrap_or_else(|e| panic!("the same datagram in order: {e}"));
    eprintln!(
        "overtaken: no answer, frag_unknown = {}; in order: answered by {served}",
        stats["frag_unknown"]
    );
}
