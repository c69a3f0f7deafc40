//! End to end, IPIP to reals in another subnet: the director encapsulates (IPv4-in-IPv4,
//! IPv6-in-IPv6) towards a real behind a router, the real decapsulates and answers the client
//! directly through the router. This kernel has no ipip module, so the reals run the project's
//! own `xdp-ipip-decap` on `eth0`, which strips the outer header and passes the inner packet to the
//! stack, where the VIP sits on `lo` (as `tunl0` / `ip6tnl0` would deliver it).
//!
//! The links from the director through the router to the reals have MTU 1600, so a client's
//! full-size packet (1500, the client's own MTU) still fits once encapsulated; one test leaves
//! them at 1500, so that the client must learn the tunnel's smaller MTU from the director.
//!
//! ```text
//!  xd12-ipip-client ── brf ─┬─ xd12-ipip-dir 10.240.0.2 + VIP (route to 10.241.0.0/24 via .1)
//!  10.240.0.10 (MTU 1500)   └─ .1 router (xd12-ipip-rt) .1 ── brr ─┬─ r1 10.241.0.11  decap on
//!  fd00:240::10                fd00:240::1    fd00:241::1          └─ r2 10.241.0.12  eth0, VIP on lo
//! ```

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use xdirectord_tests::netns::RawIp;
use xdirectord_tests::packet::Frame;
use xdirectord_tests::topology::Topology;
use xtask::lab::agent::Agent;
use xtask::lab::client::{get, in_ns, tally};
use xtask::lab::udp::answer;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 240, 0, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x240, 0, 0, 0, 0, 0, 0x100);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 240, 0, 10);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x240, 0, 0, 0, 0, 0, 0x10);
const REALS: [(&str, Ipv4Addr, Ipv6Addr); 2] = [
    (
        "r1",
        Ipv4Addr::new(10, 241, 0, 11),
        Ipv6Addr::new(0xfd00, 0x241, 0, 0, 0, 0, 0, 0x11),
    ),
    (
        "r2",
        Ipv4Addr::new(10, 241, 0, 12),
        Ipv6Addr::new(0xfd00, 0x241, 0, 0, 0, 0, 0, 0x12),
    ),
];
/// The lab-udp servers' port on the reals (the decapsulation check).
const UDP_PORT: u16 = 5000;
/// On every link from the director to the reals: room for the outer header.
const TUNNEL_MTU: &str = "1600";

struct Site {
    t: Topology,
    client: String,
    director: String,
    /// The reals' namespaces, in [`REALS`] order.
    reals: Vec<String>,
}

/// The routed topology, the reals' servers running; `decap`: whether the reals run
/// `xdp-ipip-decap` from the start; `headroom`: whether the links from the director to the reals
/// get [`TUNNEL_MTU`] (otherwise 1500, as the client's).
fn build(test: &str, decap: bool, headroom: bool) -> Option<Site> {
    let mtu = if headroom { TUNNEL_MTU } else { "1500" };
    let mut t = Topology::new(test)?;
    let router = t.netns("rt", true);
    let client = t.netns("client", false);
    let director = t.netns("dir", false);
    for (bridge, v4, v6) in [
        ("brf", "10.240.0.1/24", "fd00:240::1/64"),
        ("brr", "10.241.0.1/24", "fd00:241::1/64"),
    ] {
        t.bridge(&router, bridge);
        t.addr(&router, bridge, v4);
        t.addr(&router, bridge, v6);
    }
    t.port((&router, "brf", "client"), (&client, "eth0"));
    t.addr(&client, "eth0", &format!("{CLIENT}/24"));
    t.addr(&client, "eth0", &format!("{CLIENT6}/64"));
    t.ip(&client, &["route", "add", "default", "via", "10.240.0.1"]);
    t.ip(
        &client,
        &["-6", "route", "add", "default", "via", "fd00:240::1"],
    );
    t.port((&router, "brf", "dir"), (&director, "eth0"));
    t.ip(&director, &["link", "set", "dev", "eth0", "mtu", mtu]);
    t.addr(&director, "eth0", "10.240.0.2/24");
    t.addr(&director, "eth0", "fd00:240::2/64");
    t.addr(&director, "eth0", &format!("{VIP}/32"));
    t.vip6_on_director(&director, &VIP6.to_string());
    t.ip(
        &director,
        &["route", "add", "10.241.0.0/24", "via", "10.240.0.1"],
    );
    t.ip(
        &director,
        &["-6", "route", "add", "fd00:241::/64", "via", "fd00:240::1"],
    );

    let decap_object = xtask::lab::xdp_ipip_decap_object().expect("the xdp-ipip-decap object");
    let decap_object = decap_object.to_str().expect("a UTF-8 path");
    let mut reals = Vec::new();
    for (name, v4, v6) in REALS {
        let ns = t.netns(name, false);
        t.port((&router, "brr", name), (&ns, "eth0"));
        t.ip(&ns, &["link", "set", "dev", "eth0", "mtu", mtu]);
        t.addr(&ns, "eth0", &format!("{v4}/24"));
        t.addr(&ns, "eth0", &format!("{v6}/64"));
        t.real_vips(&ns, &[&VIP.to_string(), &VIP6.to_string()]);
        t.ip(&ns, &["route", "add", "default", "via", "10.241.0.1"]);
        t.ip(
            &ns,
            &["-6", "route", "add", "default", "via", "fd00:241::1"],
        );
        let web = format!("web{}", &name[1..]);
        t.httpd(&ns, &web);
        let binds = [
            SocketAddr::new(VIP.into(), UDP_PORT),
            SocketAddr::new(VIP6.into(), UDP_PORT),
        ];
        t.udp_server(&ns, &web, &binds);
        if decap {
            t.attach_xdp(&ns, "eth0", decap_object);
        }
        reals.push(ns);
    }
    // The router's ports and bridges towards the director and the reals carry the larger
    // packets; the client's own end stays at 1500.
    for dev in ["brf", "brr", "client", "dir", "r1", "r2"] {
        t.ip(&router, &["link", "set", "dev", dev, "mtu", mtu]);
    }
    Some(Site {
        t,
        client,
        director,
        reals,
    })
}

/// A UDP datagram (checksum included) from `src` to `dst`, as an IPv4 or IPv6 packet: what the
/// director would put inside the tunnel.
fn inner_udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    Frame::udp(
        &src.ip().to_string(),
        src.port(),
        &dst.ip().to_string(),
        dst.port(),
    )
    .payload(payload)
    .ip_bytes()
}

/// A raw socket of the director's namespace that sends its payload (an inner packet) to a real
/// inside an outer IPv4 (protocol 4) or IPv6 (next header 41) header the kernel writes: the
/// outer source is the director's address towards the router, as the director's own
/// encapsulation will choose it.
struct Tunnel(RawIp);

impl Tunnel {
    fn open(director: &str, v6: bool) -> Tunnel {
        let (family, protocol) = if v6 {
            (libc::AF_INET6, 41)
        } else {
            (libc::AF_INET, 4)
        };
        // In a thread of the director's namespace; the socket stays there when the thread ends.
        Tunnel(in_ns(director, || RawIp::open(family, protocol)).expect("enter the director"))
    }

    fn send(&self, to: IpAddr, inner: &[u8]) {
        self.0.send(to, inner);
    }
}

/// Sends, through `tunnel`, a datagram from the client to `vip`'s UDP port to the real at
/// `real`, and waits for the real's answer at the client (from the VIP, directly): the name of
/// the server that answered, or why none did. `tries` sends, each given `wait`.
fn through_tunnel(
    site: &Site,
    tunnel: &Tunnel,
    real: IpAddr,
    vip: IpAddr,
    tries: usize,
    wait: Duration,
) -> Result<String, String> {
    let local = if vip.is_ipv6() {
        IpAddr::V6(CLIENT6)
    } else {
        IpAddr::V4(CLIENT)
    };
    // SAFETY-free: a std socket created in the client's namespace stays there.
    let socket = in_ns(&site.client, || UdpSocket::bind(SocketAddr::new(local, 0)))
        .expect("enter the client")
        .expect("bind at the client");
    socket.set_read_timeout(Some(wait)).unwrap();
    socket.connect(SocketAddr::new(vip, UDP_PORT)).unwrap();
    let from = socket.local_addr().unwrap();
    let payload = format!("through the tunnel to {real} from {from}").into_bytes();
    let inner = inner_udp(from, SocketAddr::new(vip, UDP_PORT), &payload);
    let mut buf = [0u8; 256];
    for _ in 0..tries {
        tunnel.send(real, &inner);
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let name = text.split(' ').next().unwrap_or("").to_owned();
            return if text == answer(&name, &payload) {
                Ok(name)
            } else {
                Err(format!("a wrong answer {text:?}"))
            };
        }
    }
    Err(format!("no answer from {real} within {tries} tries"))
}

/// The decapsulation program and the routed topology, before the director's encapsulation
/// exists: IPv4-in-IPv4 and IPv6-in-IPv6 packets made by the kernel's raw sockets on the
/// director reach each real's server, which answers the client from the VIP through the router.
/// The control: the same packets to a real without the program get no answer.
#[test]
fn hand_made_ipip_packets_reach_the_real_server_decapsulated() {
    let Some(site) = build("decap", false, true) else {
        return;
    };
    let tunnel4 = Tunnel::open(&site.director, false);
    let tunnel6 = Tunnel::open(&site.director, true);

    let (_, r1, r1_6) = REALS[0];
    for (tunnel, real, vip) in [
        (&tunnel4, IpAddr::V4(r1), IpAddr::V4(VIP)),
        (&tunnel6, r1_6.into(), VIP6.into()),
    ] {
        let undecapsulated = through_tunnel(&site, tunnel, real, vip, 2, Duration::from_secs(2));
        assert!(
            undecapsulated.is_err(),
            "without xdp-ipip-decap the real's kernel (no ipip module) should drop tunnelled \
             packets, but {real} answered: {undecapsulated:?}"
        );
    }

    let decap = xtask::lab::xdp_ipip_decap_object().expect("the xdp-ipip-decap object");
    for ns in &site.reals {
        site.t.attach_xdp(ns, "eth0", decap.to_str().unwrap());
    }
    for (i, (name, v4, v6)) in REALS.into_iter().enumerate() {
        let web = format!("web{}", &name[1..]);
        for (tunnel, real, vip) in [
            (&tunnel4, IpAddr::V4(v4), IpAddr::V4(VIP)),
            (&tunnel6, v6.into(), VIP6.into()),
        ] {
            let served = through_tunnel(&site, tunnel, real, vip, 3, Duration::from_secs(3))
                .unwrap_or_else(|e| {
                    panic!("{vip} inside a tunnel to {real} ({}): {e}", site.reals[i])
                });
            assert_eq!(served, web, "the tunnel to {real} ends at {real}");
            eprintln!("{vip} in a tunnel to {real}: answered by {served}");
        }
    }

    // Anything else passes untouched: the reals still answer plain traffic to their addresses.
    for (name, v4, v6) in REALS {
        for addr in [IpAddr::V4(v4), IpAddr::V6(v6)] {
            let reply = in_ns(&site.client, || get(SocketAddr::new(addr, 80), "/"))
                .expect("enter the client")
                .unwrap_or_else(|e| panic!("plain HTTP to {addr}: {e}"));
            assert_eq!(reply.body, format!("web{}", &name[1..]));
        }
    }
}

/// An agent on the director with both VIPs served by every real through `ipip`, HTTP-checked;
/// returned once every real is in.
fn ipip_agent(site: &mut Site) -> Agent {
    let (mut v4_reals, mut v6_reals) = (String::new(), String::new());
    for (_, v4, v6) in REALS {
        v4_reals += &format!("\treal={v4}:80 ipip 1\n");
        v6_reals += &format!("\treal6=[{v6}]:80 ipip 1\n");
    }
    let checked = "\tprotocol=tcp\n\tservice=http\n\tscheduler=rr\n\tchecktype=negotiate\n\t\
                   request=\"/areyouthere.php\"\n\treceive=\"OK web\"\n";
    let director = site.director.clone();
    let agent = site.t.agent(
        &director,
        &format!(
            "checkinterval=1\nchecktimeout=2\nfailurecount=1\ninterface=eth0\n\
             virtual={VIP}:80\n{v4_reals}{checked}virtual6=[{VIP6}]:80\n{v6_reals}{checked}"
        ),
    );
    site.t.wait_for_reals(&agent, REALS.len());
    agent
}

/// HTTP through the VIPs to `ipip` reals in a routed subnet: each real gets connections,
/// decapsulates them and answers the client directly, with the client's address intact, and a
/// 1 MiB response arrives whole.
#[test]
fn http_through_the_vip_reaches_ipip_reals_behind_a_router() {
    let Some(mut site) = build("ipip", true, true) else {
        return;
    };
    let agent = ipip_agent(&mut site);
    let table = agent.show().expect("show");
    assert!(
        table.contains("Tunnel"),
        "the reals are served by IPIP: {table}"
    );

    for (vip, client_addr) in [
        (IpAddr::V4(VIP), IpAddr::V4(CLIENT)),
        (VIP6.into(), CLIENT6.into()),
    ] {
        let to = SocketAddr::new(vip, 80);
        let counts = in_ns(&site.client, || tally(to, 40)).expect("enter the client");
        let (web1, web2) = (
            counts.get("web1").copied().unwrap_or(0),
            counts.get("web2").copied().unwrap_or(0),
        );
        // rr's cursors are per CPU: both reals, not necessarily 20/20.
        assert!(
            web1 + web2 == 40 && web1 > 0 && web2 > 0,
            "rr over both ipip reals, no connection lost: {counts:?}\n--- table ---\n{:?}\n\
             --- counters ---\n{:?}\n--- log ---\n{}",
            agent.show(),
            agent.global_stats(),
            site.t.log()
        );
        let reply = in_ns(&site.client, || get(to, "/"))
            .expect("enter the client")
            .expect("a request through the VIP");
        let seen: SocketAddr = reply.client.parse().expect("X-Client");
        assert_eq!(
            seen.ip(),
            client_addr,
            "the real sees the client: {reply:?}"
        );

        // The response does not pass the director (the real answers directly), but its
        // full-size segments show that the path back through the router is whole.
        let body = in_ns(&site.client, || -> std::io::Result<Vec<u8>> {
            let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(10))?;
            stream.set_read_timeout(Some(Duration::from_secs(20)))?;
            std::io::Write::write_all(
                &mut stream,
                b"GET /bytes/1048576 HTTP/1.1\r\nHost: ipip\r\nConnection: close\r\n\r\n",
            )?;
            let mut all = Vec::new();
            stream.read_to_end(&mut all)?;
            Ok(all)
        })
        .expect("enter the client")
        .expect("a 1 MiB response");
        let start = body
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head")
            + 4;
        let body = &body[start..];
        assert_eq!(body.len(), 1_048_576);
        assert!(
            body.iter()
                .enumerate()
                .all(|(i, &b)| b == xtask::lab::httpd::body_byte(i))
        );
    }
    let stats = agent.global_stats().expect("show --stats --json");
    assert_eq!(stats["unresolved"], 0, "{stats:?}");
}

/// A client's full-size packets through the tunnel when the links to the reals have no room for
/// the outer header (MTU 1500 everywhere): the director answers each too-big packet with ICMP
/// fragmentation needed / packet too big, the client lowers its path MTU to the VIP, and a
/// 200,000-byte request body reaches the real (which answers only once it has read it all).
#[test]
fn a_client_learns_the_tunnels_mtu_from_the_director() {
    let Some(mut site) = build("ipmtu", true, false) else {
        return;
    };
    let agent = ipip_agent(&mut site);

    const BODY: usize = 200_000;
    for vip in [IpAddr::V4(VIP), VIP6.into()] {
        let to = SocketAddr::new(vip, 80);
        let answer = in_ns(&site.client, || -> std::io::Result<String> {
            let mut stream = TcpStream::connect_timeout(&to, Duration::from_secs(10))?;
            stream.set_read_timeout(Some(Duration::from_secs(20)))?;
            stream.set_write_timeout(Some(Duration::from_secs(20)))?;
            let head = format!(
                "GET / HTTP/1.1\r\nHost: ipip\r\nContent-Length: {BODY}\r\nConnection: close\r\n\r\n"
            );
            std::io::Write::write_all(&mut stream, head.as_bytes())?;
            std::io::Write::write_all(&mut stream, &vec![b'x'; BODY])?;
            let mut all = String::new();
            stream.read_to_string(&mut all)?;
            Ok(all)
        })
        .expect("enter the client")
        .unwrap_or_else(|e| {
            panic!(
                "a {BODY}-byte request to {to}: {e}\n--- counters ---\n{:?}\n--- log ---\n{}",
                agent.global_stats(),
                site.t.log()
            )
        });
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "the real read the whole body and answered: {answer:?}"
        );
        eprintln!(
            "{BODY} bytes to {to}: {}",
            answer.lines().next().unwrap_or("")
        );
    }
    // The client learnt the smaller MTU from the director's answers, not by luck.
    let stats = agent.global_stats().expect("show --stats --json");
    assert!(
        stats["tunnel_too_big"] >= 2,
        "the director answered too-big packets, for each family: {stats:?}"
    );
    assert_eq!(stats["tunnel_too_big_passed"], 0, "{stats:?}");
}
