//! Network topologies the shared lab does not have (a router with a small-MTU link, a director
//! with two NICs, reals in a routed subnet), built per test from namespaces named
//! `xd12-<test>-<host>`, and taken apart when the [`Topology`] drops, also when the test fails:
//! its agents (stopped, pins and pid files removed), the servers it started, its namespaces (with
//! their veths and bridges) and its directory under `/run/xd12`.
//!
//! Switch ports are bridge ports in a namespace of the test's, each running `xdp-pass`, since a
//! veth delivers frames its peer sends with XDP_TX or a redirect only when it runs XDP itself.
//! Checksum offload is off on every veth, as in the lab: frames an XDP program forwards carry no
//! checksum for the kernel to complete.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use xtask::lab::agent::{Agent, Service, wait_for};

use crate::e2e::{Binaries, PATIENCE};
use crate::harness::run;

/// Every namespace, configuration and pin directory of these topologies starts with this (the
/// shared lab's are `xdlab-`).
pub const PREFIX: &str = "xd12-";
/// Configurations, logs and pid files of the topologies, one directory per test.
pub const RUN_ROOT: &str = "/run/xd12";

/// One topology at a time per test binary: they are cheap to build, and the machine is small.
static TURN: Mutex<()> = Mutex::new(());

/// The binaries, built once per test binary.
fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| crate::e2e::build().expect("build xdirectord and xtask"))
}

/// The `xdp-pass` object, found once per test binary.
fn xdp_pass() -> &'static str {
    static OBJECT: OnceLock<String> = OnceLock::new();
    OBJECT.get_or_init(|| {
        xtask::lab::xdp_pass_object()
            .expect("the xdp-pass object")
            .to_string_lossy()
            .into_owned()
    })
}

/// A test's namespaces, servers and agents; all of it goes when this drops.
pub struct Topology {
    pub test: String,
    pub dir: PathBuf,
    namespaces: Vec<String>,
    children: Vec<Child>,
    agents: Vec<Agent>,
    _turn: MutexGuard<'static, ()>,
}

impl Topology {
    /// An empty topology for `test` (short: it names namespaces); `None` (the test is skipped)
    /// when not root. Removes what a previous run of the same test left if it was killed.
    pub fn new(test: &str) -> Option<Topology> {
        if !xtask::lab::is_root() {
            eprintln!("skipped: the topology needs root");
            return None;
        }
        let turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
        let binaries = binaries();
        let dir = Path::new(RUN_ROOT).join(test);
        let topology = Topology {
            test: test.to_owned(),
            dir: dir.clone(),
            namespaces: Vec::new(),
            children: Vec::new(),
            agents: Vec::new(),
            _turn: turn,
        };
        // Leftovers of a run that was killed: its agent (by its pid file) and namespaces.
        Agent::new(&binaries.xdirectord, dir.join(topology.config_name())).kill();
        let list = run(&["ip", "netns", "list"]);
        let ours = format!("{PREFIX}{test}-");
        for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if ns.starts_with(&ours) {
                run(&["ip", "netns", "delete", ns]);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the topology's directory");
        Some(topology)
    }

    fn config_name(&self) -> String {
        format!("{PREFIX}{}.cf", self.test)
    }

    /// Creates namespace `xd12-<test>-<host>` with `lo` up, DAD off (IPv6 addresses work at
    /// once) and forwarding as asked; returns its name.
    pub fn netns(&mut self, host: &str, forwarding: bool) -> String {
        let ns = format!("{PREFIX}{}-{host}", self.test);
        run(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        let forward = u8::from(forwarding);
        self.sysctl(
            &ns,
            &[
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
                &format!("net.ipv4.ip_forward={forward}"),
                &format!("net.ipv6.conf.all.forwarding={forward}"),
                // The reals answer from the VIP, which the router's routes place elsewhere.
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ],
        );
        ns
    }

    /// `ip -n NS ARGS…`.
    pub fn ip(&self, ns: &str, args: &[&str]) -> String {
        let mut argv = vec!["ip", "-n", ns];
        argv.extend_from_slice(args);
        run(&argv)
    }

    /// A command inside `ns`, its output.
    pub fn exec(&self, ns: &str, argv: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(argv);
        run(&full)
    }

    pub fn sysctl(&self, ns: &str, settings: &[&str]) {
        let mut argv = vec!["sysctl", "-q", "-w"];
        argv.extend_from_slice(settings);
        self.exec(ns, &argv);
    }

    /// A veth pair `a.0:a.1` — `b.0:b.1`, both ends up with checksum offload off.
    pub fn veth(&self, a: (&str, &str), b: (&str, &str)) {
        // Created in `a`'s namespace: an interface of a common name in the root namespace would
        // clash with the machine's own.
        self.ip(
            a.0,
            &[
                "link", "add", "name", a.1, "type", "veth", "peer", "name", b.1, "netns", b.0,
            ],
        );
        for (ns, dev) in [a, b] {
            self.exec(ns, &["ethtool", "-K", dev, "tx", "off"]);
            self.ip(ns, &["link", "set", "dev", dev, "up"]);
        }
    }

    /// A bridge `name` in `ns`, up.
    pub fn bridge(&self, ns: &str, name: &str) {
        self.ip(ns, &["link", "add", "name", name, "type", "bridge"]);
        self.ip(ns, &["link", "set", "dev", name, "up"]);
    }

    /// Connects `host`'s interface `dev` to bridge `bridge` in `switch_ns` through a veth whose
    /// switch end, `port`, runs `xdp-pass`.
    pub fn port(&self, (switch_ns, bridge, port): (&str, &str, &str), (host, dev): (&str, &str)) {
        self.veth((switch_ns, port), (host, dev));
        self.ip(switch_ns, &["link", "set", "dev", port, "master", bridge]);
        self.attach_xdp(switch_ns, port, xdp_pass());
    }

    /// Attaches the XDP object `object` (section `xdp`) to `dev` in `ns`, native mode.
    pub fn attach_xdp(&self, ns: &str, dev: &str, object: &str) {
        self.ip(
            ns,
            &[
                "link", "set", "dev", dev, "xdpdrv", "obj", object, "sec", "xdp",
            ],
        );
    }

    /// Adds an address (`nodad` for IPv6).
    pub fn addr(&self, ns: &str, dev: &str, cidr: &str) {
        let mut args = vec!["address", "add", cidr, "dev", dev];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.ip(ns, &args);
    }

    /// The director's VIP6 on its `eth0`, deprecated (preferred lifetime 0) so that the director
    /// never picks it as the source of its own health checks, whose answers would then stay on
    /// the real.
    pub fn vip6_on_director(&self, ns: &str, vip6: &str) {
        self.ip(
            ns,
            &[
                "address",
                "add",
                &format!("{vip6}/128"),
                "dev",
                "eth0",
                "nodad",
                "preferred_lft",
                "0",
            ],
        );
    }

    /// A real server: `vips` on `lo`, quiet about them in ARP (as the lab's reals are).
    pub fn real_vips(&self, ns: &str, vips: &[&str]) {
        for vip in vips {
            let len = if vip.contains(':') { 128 } else { 32 };
            self.addr(ns, "lo", &format!("{vip}/{len}"));
        }
        let mut settings = Vec::new();
        for conf in ["all", "default", "lo"] {
            settings.push(format!("net.ipv4.conf.{conf}.arp_ignore=1"));
            settings.push(format!("net.ipv4.conf.{conf}.arp_announce=2"));
        }
        self.sysctl(ns, &settings.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// Starts `xtask ARGS…` in `ns` (a lab server) with `--pid-file` added, and waits until it
    /// has written its pid file (it has bound its sockets then). Killed when the topology drops.
    fn server(&mut self, ns: &str, name: &str, args: &[&str]) {
        let pid_file = self.dir.join(format!("{name}.pid"));
        let log = self.dir.join(format!("{name}.log"));
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(&binaries().xtask)
            .args(args)
            .arg("--pid-file")
            .arg(&pid_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a server log"))
            .spawn()
            .expect("start a lab server");
        self.children.push(child);
        let child = self.children.last_mut().expect("pushed above");
        let started = wait_for(&format!("{name} to serve"), PATIENCE, || {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!(
                    "{name} exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            Ok(pid_file.exists().then_some(()))
        });
        started.unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// The lab's web server (`xtask lab-httpd`) on port 80 in `ns`, answering as `name`: `/`
    /// gives `name`, `/areyouthere.php` `OK name`, `/bytes/N` N bytes.
    pub fn httpd(&mut self, ns: &str, name: &str) {
        let check = format!("OK {name}");
        self.server(
            ns,
            name,
            &[
                "lab-httpd",
                "--name",
                name,
                "--index",
                name,
                "--check",
                &check,
                "--port",
                "80",
            ],
        );
    }

    /// The lab's UDP server (`xtask lab-udp`) in `ns` on each of `binds`, answering as `name`.
    pub fn udp_server(&mut self, ns: &str, name: &str, binds: &[SocketAddr]) {
        let binds: Vec<String> = binds.iter().map(SocketAddr::to_string).collect();
        let mut args = vec!["lab-udp", "--name", name];
        for bind in &binds {
            args.extend(["--bind", bind]);
        }
        self.server(ns, &format!("{name}-udp"), &args);
    }

    /// Starts xdirectord in `ns` on configuration `xd12-<test>.cf` holding `text` (after a
    /// `logfile` of its own), and returns once its data plane is open.
    pub fn agent(&mut self, ns: &str, text: &str) -> Agent {
        let config = self.dir.join(self.config_name());
        std::fs::write(
            &config,
            format!("logfile=\"{}\"\n{text}", self.log_path().display()),
        )
        .expect("write the configuration");
        let agent = Agent::in_netns(&binaries().xdirectord, &config, ns);
        self.agents.push(agent.clone());
        if let Err(e) = agent.start() {
            panic!("{e:#}\n--- log ---\n{}", self.log());
        }
        agent
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{PREFIX}{}.log", self.test))
    }

    /// The agent's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits until `agent`'s live table satisfies `condition`; panics with the table and the log
    /// otherwise.
    pub fn wait_for_table(
        &self,
        agent: &Agent,
        what: &str,
        condition: impl Fn(&[Service]) -> bool,
    ) -> Vec<Service> {
        let mut last = None;
        let found = wait_for(what, PATIENCE, || {
            let table = agent.table()?;
            let ok = condition(&table);
            last = Some(table.clone());
            Ok(ok.then_some(table))
        });
        found.unwrap_or_else(|e| {
            panic!(
                "{e:#}\n--- table ---\n{last:#?}\n--- log ---\n{}",
                self.log()
            )
        })
    }

    /// Waits until every service of `agent` holds `reals` reals with a weight above 0.
    pub fn wait_for_reals(&self, agent: &Agent, reals: usize) {
        self.wait_for_table(
            agent,
            &format!("every service to hold {reals} live reals"),
            |table| {
                !table.is_empty()
                    && table.iter().all(|s| {
                        s.reals
                            .iter()
                            .filter(|r| !r.fallback && r.weight > 0)
                            .count()
                            == reals
                    })
            },
        );
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for agent in &self.agents {
            agent.kill();
        }
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
        // A failing test has printed the agent's log already.
        let _ = std::fs::remove_dir_all(&self.dir);
        // Only when empty: another test binary's topology may be using it.
        let _ = std::fs::remove_dir(RUN_ROOT);
    }
}

/// A generous wait for a transfer that should complete (the machine is small and shared).
pub const TRANSFER_PATIENCE: Duration = Duration::from_secs(60);
