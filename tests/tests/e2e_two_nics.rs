//! End to end, a director with two NICs: clients arrive on `eth0`, the reals sit behind `eth1`
//! (`interface = eth0,eth1`). The agent attaches its program to both and lists both in the
//! devmap `TX_PORTS`, so a packet that came in on `eth0` leaves through `eth1` by redirect, its
//! MACs those of `eth1` and the real. The reals answer the client directly through the router.
//!
//! ```text
//!  xd12-nics-client ── brf ─┬─ xd12-nics-dir eth0 10.220.0.2 + VIP      (brf, brb: bridges of
//!  10.220.0.10              │                eth1 10.221.0.2 ── brb ─┬─ r1 .11   xd12-nics-rt,
//!                           └─ .1 router .1 ─────────────────────────┴─ r2 .12   which routes)
//! ```

use std::net::{IpAddr, SocketAddr};

use xdirectord_tests::topology::Topology;
use xtask::lab::client::{get, in_ns, tally};

const VIP: &str = "10.220.0.100";
const VIP6: &str = "fd00:220::100";
const CLIENT: &str = "10.220.0.10";
const CLIENT6: &str = "fd00:220::10";
const REALS: [(&str, &str, &str); 2] = [
    ("r1", "10.221.0.11", "fd00:221::11"),
    ("r2", "10.221.0.12", "fd00:221::12"),
];
const CONNECTIONS: usize = 40;

#[test]
fn clients_on_one_nic_reach_reals_behind_the_other() {
    let Some(mut t) = Topology::new("nics") else {
        return;
    };
    let router = t.netns("rt", true);
    let client = t.netns("client", false);
    let director = t.netns("dir", false);
    for (bridge, v4, v6) in [
        ("brf", "10.220.0.1/24", "fd00:220::1/64"),
        ("brb", "10.221.0.1/24", "fd00:221::1/64"),
    ] {
        t.bridge(&router, bridge);
        t.addr(&router, bridge, v4);
        t.addr(&router, bridge, v6);
    }
    t.port((&router, "brf", "client"), (&client, "eth0"));
    t.addr(&client, "eth0", &format!("{CLIENT}/24"));
    t.addr(&client, "eth0", &format!("{CLIENT6}/64"));

    t.port((&router, "brf", "dir0"), (&director, "eth0"));
    t.port((&router, "brb", "dir1"), (&director, "eth1"));
    t.addr(&director, "eth0", "10.220.0.2/24");
    t.addr(&director, "eth0", "fd00:220::2/64");
    t.addr(&director, "eth1", "10.221.0.2/24");
    t.addr(&director, "eth1", "fd00:221::2/64");
    t.addr(&director, "eth0", &format!("{VIP}/32"));
    t.vip6_on_director(&director, VIP6);

    let mut v4_reals = String::new();
    let mut v6_reals = String::new();
    for (name, v4, v6) in REALS {
        let ns = t.netns(name, false);
        t.port((&router, "brb", name), (&ns, "eth0"));
        t.addr(&ns, "eth0", &format!("{v4}/24"));
        t.addr(&ns, "eth0", &format!("{v6}/64"));
        t.real_vips(&ns, &[VIP, VIP6]);
        // Replies go to the client through the router, not back through the director.
        t.ip(&ns, &["route", "add", "default", "via", "10.221.0.1"]);
        t.ip(
            &ns,
            &["-6", "route", "add", "default", "via", "fd00:221::1"],
        );
        t.httpd(&ns, &format!("web{}", &name[1..]));
        v4_reals += &format!("\treal={v4}:80 gate 1\n");
        v6_reals += &format!("\treal6=[{v6}]:80 gate 1\n");
    }
    let checked = "\tprotocol=tcp\n\tservice=http\n\tscheduler=rr\n\tchecktype=negotiate\n\t\
                   request=\"/areyouthere.php\"\n\treceive=\"OK web\"\n";
    let agent = t.agent(
        &director,
        &format!(
            "checkinterval=1\nchecktimeout=2\nfailurecount=1\ninterface=eth0,eth1\n\
             virtual={VIP}:80\n{v4_reals}{checked}virtual6=[{VIP6}]:80\n{v6_reals}{checked}"
        ),
    );
    t.wait_for_reals(&agent, REALS.len());

    for dev in ["eth0", "eth1"] {
        let xdp = xtask::lab::xdp_on(&director, dev).expect("ip link show");
        assert!(
            xdp.as_deref().is_some_and(|x| x.contains("xdirectord")),
            "the balancer runs on {dev}: {xdp:?}"
        );
    }

    for (vip, client_addr) in [(VIP, CLIENT), (VIP6, CLIENT6)] {
        let to = SocketAddr::new(vip.parse::<IpAddr>().unwrap(), 80);
        let counts = in_ns(&client, || tally(to, CONNECTIONS)).expect("enter the client");
        assert_eq!(
            counts.get("web1").copied().unwrap_or(0) + counts.get("web2").copied().unwrap_or(0),
            CONNECTIONS,
            "every connection to {to} reaches a real behind eth1: {counts:?}\n--- table ---\n{:?}\n\
             --- counters ---\n{:?}\n--- log ---\n{}",
            agent.show(),
            agent.global_stats(),
            t.log()
        );
        assert_eq!(counts.len(), 2, "rr uses both reals: {counts:?}");
        // Direct routing leaves the client's address as it was.
        let reply = in_ns(&client, || get(to, "/"))
            .expect("enter the client")
            .expect("a request through the VIP");
        let seen: SocketAddr = reply.client.parse().expect("X-Client");
        assert_eq!(
            seen.ip(),
            client_addr.parse::<IpAddr>().unwrap(),
            "{reply:?}"
        );
        eprintln!("{to}: {counts:?}");
    }
    let stats = agent.global_stats().expect("show --stats --json");
    assert_eq!(stats["unresolved"], 0, "no redirect failed: {stats:?}");
}
