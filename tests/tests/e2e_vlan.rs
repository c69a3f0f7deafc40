//! End to end on an 802.1Q trunk, in namespaces of this test's own (`xdvl-…`): the real
//! xdirectord attached to the director's trunk balances real TCP connections (HTTP) to reals on
//! two VLANs, each frame leaving with its real's tag, which is not the one it arrived with (or it
//! arrived with none).
//!
//! This machine's kernel has no VLAN devices (`CONFIG_VLAN_8021Q` is not set, and its bridge
//! filters no VLANs), so the test runs in the 6.1 test guest (docs/ipvs-vm.md), whose kernel has
//! them (`8021q`): the host builds the binaries, boots the guest and runs this test binary there,
//! which builds the site below and runs the binaries by their host paths.
//!
//! ```text
//!  xdvl-dir                   xdvl-sw: a bridge per VLAN, and the reals' router
//!  trunk .1.2 ────── sw-dir   sw-dir.10 ─ br10 (.10.1) ─ sw-r10 ── xdvl-r10  eth0 10.61.10.11
//!   trunk.10 .10.2            sw-dir.20 ─ br20 (.20.1) ─ sw-r20 ── xdvl-r20  eth0 10.61.20.11
//!   trunk.20 .20.2            sw-dir.30 ─ br30 (.30.1) ─ sw-cl  ── xdvl-cl   eth0 10.61.30.10
//!   trunk.30 .30.2 + VIP      sw-dir    ─ br1  (.1.1)  ─ sw-cl1 ── xdvl-cl1  eth0 10.61.1.10
//!                               (untagged)                          (the reals: VIP on lo)
//! ```
//!
//! (The switch takes the tags off with VLAN devices of its own rather than a VLAN-filtering
//! bridge: what a VLAN-aware switch does inside, with nothing more than the director needs.)
//!
//! One client reaches the VIP on VLAN 30, so its frames reach the director tagged 30; the other
//! on the trunk's untagged segment (a route to the VIP through the director's `trunk` address),
//! so its frames arrive untagged. The program must send both out of the trunk tagged 10 or 20
//! (the tag rewritten, or pushed), where the switch delivers them to the real's access port. The reals answer the client directly (direct routing) through the switch's
//! router. Nothing listens on the director: a connection answered by `web10` or `web20` was
//! balanced by the XDP program. The agent finds each real's VLAN from the kernel (the route to
//! 10.61.10.11 leaves through `trunk.10`).
//!
//! Every switch port's peer runs `xdp-pass` (a veth delivers XDP_TX only then) and every veth has
//! transmit checksum offload off (a forwarded frame carries no checksum for the kernel to
//! complete). Everything is removed on drop, also when the test fails: the agent and its pins,
//! the web servers, the namespaces.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xdirectord_tests::{e2e, netns::NetNs, vm::Vm};
use xtask::lab::{
    CHECK_PATH, HTTP_PORT,
    agent::{Agent, Service, parse_table},
    client,
};

const VIP: &str = "10.61.30.100";
/// (namespace prefix, address, how it reaches the VIP): a client on VLAN 30, where the VIP is,
/// and one on the trunk's untagged segment, routed to the VIP through the director.
const CLIENTS: [(&str, &str, &str); 2] = [
    ("xdvl-cl", "10.61.30.10", "VLAN 30"),
    ("xdvl-cl1", "10.61.1.10", "untagged"),
];
/// (VLAN, the real's address, its web server's name).
const REALS: [(u16, &str, &str); 2] = [(10, "10.61.10.11", "web10"), (20, "10.61.20.11", "web20")];
/// The trunk's tagged VLANs: the reals' two and a client's.
const VLANS: [&str; 3] = ["10", "20", "30"];
/// How long the agent may take to check and resolve its reals (in an emulated guest).
const PATIENCE: Duration = Duration::from_secs(120);

/// Set in the guest: the test binary is running there, and builds the site. The binaries' host
/// paths come in these variables too.
const IN_GUEST: &str = "XDIRECTORD_IN_GUEST";
const XDIRECTORD: &str = "XDVL_XDIRECTORD";
const XTASK: &str = "XDVL_XTASK";
const XDP_PASS: &str = "XDVL_XDP_PASS";
const TEST: &str = "reals_on_two_vlans_of_a_trunk_serve_real_connections";

/// The site, torn down on drop: the agent (with its pins and pid file) first, then the web
/// servers, then the namespaces with their interfaces.
struct Trunk {
    agent: Option<Agent>,
    servers: Vec<Child>,
    director: NetNs,
    switch: NetNs,
    clients: Vec<NetNs>,
    reals: Vec<NetNs>,
    dir: tempfile::TempDir,
}

impl Drop for Trunk {
    fn drop(&mut self) {
        if let Some(agent) = &self.agent {
            agent.kill();
        }
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

fn sysctl(ns: &NetNs, settings: &[&str]) {
    let mut argv = vec!["sysctl", "-q", "-w"];
    argv.extend_from_slice(settings);
    ns.exec(&argv);
}

/// A veth from `ns`'s `inside` to the switch's `port`, both ends up, without transmit checksum
/// offload, `xdp-pass` on the switch's end.
fn wire(switch: &NetNs, port: &str, ns: &NetNs, inside: &str, xdp_pass: &str) {
    switch.ip(&[
        "link", "add", port, "type", "veth", "peer", "name", inside, "netns", &ns.name,
    ]);
    switch.exec(&["ethtool", "-K", port, "tx", "off"]);
    ns.exec(&["ethtool", "-K", inside, "tx", "off"]);
    switch.ip(&["link", "set", port, "xdpdrv", "obj", xdp_pass, "sec", "xdp"]);
    switch.ip(&["link", "set", port, "up"]);
    ns.ip(&["link", "set", inside, "up"]);
}

impl Trunk {
    fn new(xdp_pass: &Path) -> Trunk {
        let xdp_pass = xdp_pass.to_str().expect("a UTF-8 path");
        let trunk = Trunk {
            agent: None,
            servers: Vec::new(),
            director: NetNs::new("xdvl-dir"),
            switch: NetNs::new("xdvl-sw"),
            clients: CLIENTS.iter().map(|(ns, ..)| NetNs::new(ns)).collect(),
            reals: REALS
                .iter()
                .map(|(vlan, ..)| NetNs::new(&format!("xdvl-r{vlan}")))
                .collect(),
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        let (sw, dir) = (&trunk.switch, &trunk.director);

        // The switch: a bridge per VLAN, and a router leg on each.
        sysctl(
            sw,
            &["net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0"],
        );
        for vlan in VLANS {
            let bridge = format!("br{vlan}");
            sw.ip(&["link", "add", &bridge, "type", "bridge"]);
            sw.ip(&["addr", "add", &format!("10.61.{vlan}.1/24"), "dev", &bridge]);
            sw.ip(&["link", "set", &bridge, "up"]);
        }

        // The trunk: on the director a VLAN device per VLAN (the VIP on the clients' VLAN); on
        // the switch one per VLAN too, each in its VLAN's bridge.
        wire(sw, "sw-dir", dir, "trunk", xdp_pass);
        for vlan in VLANS {
            let device = format!("trunk.{vlan}");
            dir.ip(&[
                "link", "add", "link", "trunk", "name", &device, "type", "vlan", "id", vlan,
            ]);
            dir.ip(&["addr", "add", &format!("10.61.{vlan}.2/24"), "dev", &device]);
            dir.ip(&["link", "set", &device, "up"]);
            let port = format!("sw-dir.{vlan}");
            sw.ip(&[
                "link", "add", "link", "sw-dir", "name", &port, "type", "vlan", "id", vlan,
            ]);
            sw.ip(&["link", "set", &port, "master", &format!("br{vlan}")]);
            sw.ip(&["link", "set", &port, "up"]);
        }
        dir.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "trunk.30"]);

        // The trunk's untagged segment: the switch's own end of it in a bridge of its own.
        sw.ip(&["link", "add", "br1", "type", "bridge"]);
        sw.ip(&["addr", "add", "10.61.1.1/24", "dev", "br1"]);
        sw.ip(&["link", "set", "br1", "up"]);
        sw.ip(&["link", "set", "sw-dir", "master", "br1"]);
        dir.ip(&["addr", "add", "10.61.1.2/24", "dev", "trunk"]);

        let [on_vlan30, untagged] = &trunk.clients[..] else {
            unreachable!("two clients")
        };
        wire(sw, "sw-cl", on_vlan30, "eth0", xdp_pass);
        sw.ip(&["link", "set", "sw-cl", "master", "br30"]);
        on_vlan30.ip(&[
            "addr",
            "add",
            &format!("{}/24", CLIENTS[0].1),
            "dev",
            "eth0",
        ]);
        wire(sw, "sw-cl1", untagged, "eth0", xdp_pass);
        sw.ip(&["link", "set", "sw-cl1", "master", "br1"]);
        untagged.ip(&[
            "addr",
            "add",
            &format!("{}/24", CLIENTS[1].1),
            "dev",
            "eth0",
        ]);
        untagged.ip(&["route", "add", &format!("{VIP}/32"), "via", "10.61.1.2"]);

        // The reals: the VIP on lo, not announced (docs/lab.md), replies through the router.
        for ((vlan, addr, _), ns) in REALS.iter().zip(&trunk.reals) {
            let port = format!("sw-r{vlan}");
            wire(sw, &port, ns, "eth0", xdp_pass);
            sw.ip(&["link", "set", &port, "master", &format!("br{vlan}")]);
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
            ns.ip(&["addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
            ns.ip(&["route", "add", "default", "via", &format!("10.61.{vlan}.1")]);
            let mut settings = Vec::new();
            for conf in ["all", "eth0", "lo"] {
                settings.push(format!("net.ipv4.conf.{conf}.arp_ignore=1"));
                settings.push(format!("net.ipv4.conf.{conf}.arp_announce=2"));
            }
            sysctl(ns, &settings.iter().map(String::as_str).collect::<Vec<_>>());
        }
        trunk
    }

    /// Starts each real's web server (the lab's `xtask lab-httpd`) and waits until it serves.
    fn start_servers(&mut self, xtask: &Path) {
        for ((_, _, name), ns) in REALS.iter().zip(&self.reals) {
            let pid_file = self.dir.path().join(format!("{name}.pid"));
            let log = std::fs::File::create(self.dir.path().join(format!("{name}.log")))
                .expect("a server log");
            let child = Command::new("ip")
                .args(["netns", "exec", &ns.name])
                .arg(xtask)
                .args(["lab-httpd", "--name", name, "--index", name])
                .args(["--check", &format!("OK {name}")])
                .args(["--port", &HTTP_PORT.to_string()])
                .arg("--pid-file")
                .arg(&pid_file)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("start a web server");
            self.servers.push(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !pid_file.exists() {
                assert!(Instant::now() < deadline, "{name} did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn netns_path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.director.name)
    }

    /// `nsenter --net=<director> xdirectord ARGS…` (the host's mounts: its pins are the host's).
    fn xdirectord(&self, binary: &Path, args: &[&str]) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.netns_path().display()))
            .arg(binary)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run xdirectord");
        assert!(
            out.status.success(),
            "xdirectord {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes the configuration and starts the agent on it, attached to the trunk.
    fn start_agent(&mut self, binary: &Path) -> Agent {
        // Unique per run: it names the pid file and the pin directory.
        let config = self.dir.path().join(format!(
            "xdvl-{}.cf",
            self.director.name.replace("xdvl-dir-", "")
        ));
        let log = self.dir.path().join("xdirectord.log");
        let mut text = format!(
            "logfile=\"{}\"\ninterface=trunk\ncheckinterval=1\nchecktimeout=2\n\
             virtual={VIP}:{HTTP_PORT}\n",
            log.display()
        );
        for (_, addr, _) in REALS {
            text += &format!("\treal={addr}:{HTTP_PORT} gate 1\n");
        }
        text += &format!(
            "\tprotocol=tcp\n\tscheduler=rr\n\tservice=http\n\tchecktype=negotiate\n\t\
             request=\"{CHECK_PATH}\"\n\treceive=\"OK web\"\n"
        );
        std::fs::write(&config, text).expect("write the configuration");
        let agent = Agent::new(binary, &config);
        self.agent = Some(agent.clone());
        let config = config.to_str().expect("a UTF-8 path");
        self.xdirectord(binary, &[config, "start"]);
        agent
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("xdirectord.log")).unwrap_or_default()
    }

    /// The live table, read back from the data plane.
    fn table(&self, binary: &Path, agent: &Agent) -> Vec<Service> {
        let config = agent.config.to_str().expect("a UTF-8 path");
        parse_table(&self.xdirectord(binary, &["show", config, "--json"])).expect("show --json")
    }
}

#[test]
fn reals_on_two_vlans_of_a_trunk_serve_real_connections() {
    if std::env::var_os(IN_GUEST).is_some() {
        in_the_guest();
        return;
    }
    if !xtask::lab::is_root() {
        eprintln!("skipped: namespaces and the test guest need root");
        return;
    }
    // Built before the boot: the guest sees the host's files as they were then.
    let binaries = e2e::build().expect("build xdirectord and xtask");
    let xdp_pass = xtask::lab::xdp_pass_object().expect("the xdp-pass object");
    let exe = std::env::current_exe().expect("the test binary");
    let vm = Vm::boot();
    let out = vm.run_timeout(
        &format!(
            "uname -r; {IN_GUEST}=1 {XDIRECTORD}={} {XTASK}={} {XDP_PASS}={} {} --exact {TEST} \
             --nocapture --test-threads 1",
            binaries.xdirectord.display(),
            binaries.xtask.display(),
            xdp_pass.display(),
            exe.display()
        ),
        Duration::from_secs(900),
    );
    println!("{}", out.stdout);
    assert!(out.success(), "in the 6.1 guest: {out:#?}");
    assert!(
        out.stdout.contains("test result: ok. 1 passed"),
        "{}",
        out.stdout
    );
}

/// What the guest runs: the site, the agent, the connections.
fn in_the_guest() {
    let path = |var: &str| PathBuf::from(std::env::var_os(var).expect(var));
    let (xdirectord, xtask, xdp_pass) = (path(XDIRECTORD), path(XTASK), path(XDP_PASS));
    let mut trunk = Trunk::new(&xdp_pass);
    trunk.start_servers(&xtask);
    let agent = trunk.start_agent(&xdirectord);

    // Both reals checked and their paths resolved: each at its configured weight (a real whose
    // MAC is unknown shows weight 0).
    let vip: IpAddr = VIP.parse().unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let table = trunk.table(&xdirectord, &agent);
        let weights = table
            .iter()
            .find(|s| s.addr == vip)
            .map(|s| s.weights())
            .unwrap_or_default();
        if weights.len() == 2 && weights.iter().all(|(_, w)| *w == 1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reals did not come up: {table:?}\n--- log ---\n{}",
            trunk.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let to = SocketAddr::new(vip, HTTP_PORT);
    let n = 40;
    for ((_, addr, how), ns) in CLIENTS.iter().zip(&trunk.clients) {
        let counts = client::in_ns(&ns.name, || client::tally(to, n)).expect("client");
        println!("{n} connections to {to} from {addr} ({how}): {counts:?}");
        let served: usize = REALS
            .iter()
            .map(|(_, _, name)| counts.get(*name).copied().unwrap_or(0))
            .sum();
        assert!(
            served == n
                && REALS
                    .iter()
                    .all(|(_, _, name)| counts.get(*name) > Some(&0)),
            "{n} connections from {addr} ({how}) to {to}, each to web10 or web20: {counts:?}\n\
             --- log ---\n{}",
            trunk.log()
        );
        // Direct routing keeps the client's address: the real saw the client itself.
        let reply = client::in_ns(&ns.name, || client::get(to, "/"))
            .expect("client")
            .expect("a reply");
        assert!(reply.client.starts_with(&format!("{addr}:")), "{reply:?}");
    }

    // Nothing was dropped for want of headroom, nothing passed for want of a MAC.
    let json = trunk.xdirectord(
        &xdirectord,
        &["show", agent.config.to_str().unwrap(), "--stats", "--json"],
    );
    let stats: serde_json::Value = serde_json::from_str(&json).expect("show --stats --json");
    let global = &stats["xdp"]["global"];
    assert_eq!(global["retag_failed"], 0, "{global}");
    assert_eq!(global["unresolved"], 0, "{global}");
}
