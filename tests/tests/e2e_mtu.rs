//! End to end, path-MTU discovery through the director: a client behind a router whose link
//! towards it has a smaller MTU (1400) than the client's own end (1500), so the client advertises
//! MSS 1460 and the reals' full-size segments reach the router, which answers each with an ICMP
//! "fragmentation needed" (IPv6: "packet too big") sent to the VIP, i.e. to the director. Its XDP
//! program sends the error to the real that owns the flow (`icmp_to_flow`), the real lowers its
//! path MTU, and a 1 MiB HTTP body arrives intact.
//!
//! The control: while the router cannot send those errors (policy routing sends its ICMP towards
//! the VIPs to a blackhole), the same transfer stalls, which shows that the transfer depends on
//! the forwarding. It runs first, before any real has learned the path MTU.
//!
//! ```text
//!  xd12-mtu-client ── 1500 | 1400 ── xd12-mtu-rt ── br0 ── xd12-mtu-dir (VIP on eth0)
//!  10.211.0.10                 .1    10.210.0.1      ├──── xd12-mtu-r1 10.210.0.11 (VIP on lo)
//!  fd00:211::10                ::1   fd00:210::1     └──── xd12-mtu-r2 10.210.0.12
//! ```

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use xdirectord_tests::e2e::GLOBALS;
use xdirectord_tests::topology::Topology;
use xtask::lab::agent::Agent;
use xtask::lab::client::in_ns;
use xtask::lab::httpd::body_byte;

const VIP: &str = "10.210.0.100";
const VIP6: &str = "fd00:210::100";
/// Router: its end of the client's link has the small MTU.
const SMALL_MTU: &str = "1400";
const BODY: usize = 1024 * 1024;
const REALS: [(&str, &str, &str); 2] = [
    ("r1", "10.210.0.11", "fd00:210::11"),
    ("r2", "10.210.0.12", "fd00:210::12"),
];

/// The directives after the reals: round robin, checked by fetching the check page.
const CHECKED_HTTP: &str = "\tprotocol=tcp\n\tservice=http\n\tscheduler=rr\n\tchecktype=negotiate\n\t\
                            request=\"/areyouthere.php\"\n\treceive=\"OK web\"\n";

struct Site {
    topology: Topology,
    client: String,
    router: String,
    agent: Agent,
}

fn build() -> Option<Site> {
    let mut t = Topology::new("mtu")?;
    let router = t.netns("rt", true);
    let client = t.netns("client", false);
    let director = t.netns("dir", false);
    t.bridge(&router, "br0");
    t.addr(&router, "br0", "10.210.0.1/24");
    t.addr(&router, "br0", "fd00:210::1/64");

    t.veth((&router, "cl"), (&client, "eth0"));
    t.ip(&router, &["link", "set", "dev", "cl", "mtu", SMALL_MTU]);
    t.addr(&router, "cl", "10.211.0.1/24");
    t.addr(&router, "cl", "fd00:211::1/64");
    t.addr(&client, "eth0", "10.211.0.10/24");
    t.addr(&client, "eth0", "fd00:211::10/64");
    t.ip(&client, &["route", "add", "default", "via", "10.211.0.1"]);
    t.ip(
        &client,
        &["-6", "route", "add", "default", "via", "fd00:211::1"],
    );

    t.port((&router, "br0", "dir"), (&director, "eth0"));
    t.addr(&director, "eth0", "10.210.0.2/24");
    t.addr(&director, "eth0", "fd00:210::2/64");
    t.addr(&director, "eth0", &format!("{VIP}/32"));
    t.vip6_on_director(&director, VIP6);

    for (name, v4, v6) in REALS {
        let ns = t.netns(name, false);
        t.port((&router, "br0", name), (&ns, "eth0"));
        t.addr(&ns, "eth0", &format!("{v4}/24"));
        t.addr(&ns, "eth0", &format!("{v6}/64"));
        t.real_vips(&ns, &[VIP, VIP6]);
        t.ip(&ns, &["route", "add", "default", "via", "10.210.0.1"]);
        t.ip(
            &ns,
            &["-6", "route", "add", "default", "via", "fd00:210::1"],
        );
        t.httpd(&ns, &format!("web{}", &name[1..]));
    }

    let mut config = GLOBALS.to_owned();
    config += &format!("virtual={VIP}:80\n");
    for (_, v4, _) in REALS {
        config += &format!("\treal={v4}:80 gate 1\n");
    }
    config += CHECKED_HTTP;
    config += &format!("virtual6=[{VIP6}]:80\n");
    for (_, _, v6) in REALS {
        config += &format!("\treal6=[{v6}]:80 gate 1\n");
    }
    config += CHECKED_HTTP;
    let agent = t.agent(&director, &config);
    t.wait_for_reals(&agent, REALS.len());
    Some(Site {
        topology: t,
        client,
        router,
        agent,
    })
}

/// Why a transfer failed.
#[derive(Debug)]
enum Failure {
    /// Before the body: connecting, sending the request, or reading the response head.
    Before(String),
    /// In the body, after `got` bytes from `server`: a full-size segment that never arrived.
    Stalled {
        got: usize,
        server: String,
        why: String,
    },
    /// The body arrived, but not as sent.
    Corrupt(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Before(why) | Failure::Corrupt(why) => f.write_str(why),
            Failure::Stalled { got, server, why } => {
                write!(f, "{got} of {BODY} bytes from {server}, then: {why}")
            }
        }
    }
}

/// One transfer of `/bytes/BODY` from the client: the server that sent it whole.
fn transfer(client: &str, to: SocketAddr, read_timeout: Duration) -> Result<String, Failure> {
    in_ns(client, || fetch(to, read_timeout))
        .unwrap_or_else(|e| Err(Failure::Before(format!("entering {client}: {e:#}"))))
}

fn fetch(to: SocketAddr, read_timeout: Duration) -> Result<String, Failure> {
    let before =
        |what: &'static str| move |e: std::io::Error| Failure::Before(format!("{what}: {e}"));
    let stream =
        TcpStream::connect_timeout(&to, Duration::from_secs(10)).map_err(before("connect"))?;
    stream
        .set_read_timeout(Some(read_timeout))
        .map_err(before("set_read_timeout"))?;
    let mut reader = BufReader::new(stream);
    reader
        .get_mut()
        .write_all(
            format!("GET /bytes/{BODY} HTTP/1.1\r\nHost: mtu\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(before("request"))?;
    let (mut server, mut length) = (String::new(), None);
    loop {
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(before("response head"))?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "server" => server = value.trim().to_owned(),
                "content-length" => length = value.trim().parse::<usize>().ok(),
                _ => {}
            }
        }
    }
    if length != Some(BODY) {
        return Err(Failure::Before(format!(
            "Content-Length {length:?}, expected {BODY}"
        )));
    }
    let mut body = Vec::with_capacity(BODY);
    let mut chunk = vec![0u8; 64 * 1024];
    while body.len() < BODY {
        match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) => {
                return Err(Failure::Stalled {
                    got: body.len(),
                    server,
                    why: e.to_string(),
                });
            }
        }
    }
    if body.len() != BODY {
        return Err(Failure::Stalled {
            got: body.len(),
            server,
            why: "the end of the stream".into(),
        });
    }
    if let Some(i) = (0..BODY).find(|&i| body[i] != body_byte(i)) {
        return Err(Failure::Corrupt(format!("byte {i} from {server} differs")));
    }
    Ok(server)
}

fn icmp_to_flow(agent: &Agent) -> u64 {
    agent.global_stats().expect("show --stats --json")["icmp_to_flow"]
}

/// Makes the router unable to send ICMP to the VIPs (policy routing: ICMP towards a VIP finds
/// only a blackhole route), so its "fragmentation needed" and "packet too big" never leave it.
/// The clients' connections to the VIPs (TCP) are routed as before. (This kernel has no tc
/// actions and no netfilter to drop them with.)
fn block_path_mtu_errors(site: &Site) {
    let t = &site.topology;
    for (family, vip, icmp) in [("-4", VIP, "1"), ("-6", VIP6, "58")] {
        t.ip(
            &site.router,
            &[
                family,
                "route",
                "add",
                "blackhole",
                "default",
                "table",
                "100",
            ],
        );
        t.ip(
            &site.router,
            &[
                family, "rule", "add", "to", vip, "ipproto", icmp, "table", "100",
            ],
        );
    }
}

fn unblock(site: &Site) {
    let t = &site.topology;
    for (family, vip, icmp) in [("-4", VIP, "1"), ("-6", VIP6, "58")] {
        t.ip(
            &site.router,
            &[
                family, "rule", "del", "to", vip, "ipproto", icmp, "table", "100",
            ],
        );
    }
    // The control taught the reals nothing, but start from the same state whatever happened.
    for (name, _, _) in REALS {
        let ns = format!("xd12-mtu-{name}");
        t.ip(&ns, &["route", "flush", "cache"]);
        t.ip(&ns, &["-6", "route", "flush", "cache"]);
    }
}

fn large_responses_cross_the_small_mtu_link(vip: IpAddr) {
    let Some(site) = build() else { return };
    let to = SocketAddr::new(vip, 80);

    // Control: without the router's errors the reals never learn the path MTU.
    block_path_mtu_errors(&site);
    let started = Instant::now();
    let blocked = transfer(&site.client, to, Duration::from_secs(8));
    // The connection and the response head (small segments) get through; the body does not.
    assert!(
        matches!(blocked, Err(Failure::Stalled { got, .. }) if got < BODY),
        "with the path-MTU errors dropped the body should stall: {blocked:?}"
    );
    eprintln!(
        "control (errors dropped): {} after {:.1}s",
        blocked.unwrap_err(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        icmp_to_flow(&site.agent),
        0,
        "no error reached the director"
    );
    unblock(&site);

    // Both reals, each on a path it has not learned yet: every transfer first hits the router.
    let mut servers = Vec::new();
    for _ in 0..REALS.len() * 2 {
        let started = Instant::now();
        let served = transfer(&site.client, to, Duration::from_secs(20)).unwrap_or_else(|e| {
            panic!(
                "transfer through {to}: {e}\n--- table ---\n{:?}\n--- counters ---\n{:?}\n--- log ---\n{}",
                site.agent.show(),
                site.agent.global_stats(),
                site.topology.log()
            )
        });
        eprintln!(
            "{BODY} bytes from {served} in {:.2}s",
            started.elapsed().as_secs_f64()
        );
        servers.push(served);
    }
    servers.sort();
    servers.dedup();
    assert_eq!(
        servers.len(),
        REALS.len(),
        "rr spreads over both: {servers:?}"
    );
    let forwarded = icmp_to_flow(&site.agent);
    eprintln!("icmp_to_flow = {forwarded}");
    assert!(
        forwarded >= REALS.len() as u64,
        "each real learned the path MTU from an error the director forwarded: icmp_to_flow = {forwarded}"
    );
}

#[test]
fn ipv4_fragmentation_needed_reaches_the_real_and_a_large_response_arrives() {
    large_responses_cross_the_small_mtu_link(VIP.parse().unwrap());
}

#[test]
fn ipv6_packet_too_big_reaches_the_real_and_a_large_response_arrives() {
    large_responses_cross_the_small_mtu_link(VIP6.parse().unwrap());
}
