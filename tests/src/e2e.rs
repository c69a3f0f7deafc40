//! End-to-end runs on the lab (`cargo xtask lab`, docs/lab.md): xdirectord on the director's
//! namespace, real TCP connections from the client's, real web servers on the reals.
//!
//! Every test calls [`lab`] first. The first call in a test binary builds the binaries, refuses to
//! go on if a lab is up already (it would be taken down), brings the lab up and arranges for it to
//! come down when the binary exits, whatever happened. Each call takes a process-wide lock, so the
//! tests of a binary run one at a time on the lab's fixed namespaces, and puts the lab back as it
//! was built (every web server running, none sick). Each test's xdirectord is a [`TestAgent`],
//! stopped with its pins removed when dropped, also when the test fails.
//!
//! Nothing waits a fixed time for an outcome: conditions are polled with generous deadlines
//! ([`PATIENCE`]), so a loaded machine makes the tests slower, not flaky.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use xtask::lab::agent::{Agent, Service, wait_for};
use xtask::lab::client::{self, Connection, Reply};
use xtask::lab::{self, CHECK_PATH, CLIENT, DIRECTOR, HTTP_PORT, REALS, RUN_DIR};

/// How long the agent may take to act on a change; checks run every second.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Global settings every test configuration starts with: checks every second, a failed check
/// decided at once, the lab director's interface.
pub const GLOBALS: &str = "checkinterval=1\nchecktimeout=2\nfailurecount=1\ninterface=eth0\n";

/// The lab's binaries, found next to the test binary's target directory.
pub struct Binaries {
    pub xtask: PathBuf,
    pub xdirectord: PathBuf,
}

/// What the first [`lab`] call of this binary found: the binaries, or why it could not start.
static SETUP: Mutex<Option<Result<Arc<Binaries>, String>>> = Mutex::new(None);
/// The tests of a binary share the lab: one at a time.
static TURN: Mutex<()> = Mutex::new(());

/// The lab, for one test at a time. Dropping it lets the next test run.
pub struct Lab {
    pub binaries: Arc<Binaries>,
    _turn: MutexGuard<'static, ()>,
}

/// Waits for this test's turn, then gives the lab as it was built; `None` (the test is skipped)
/// when not root. Panics if the lab cannot be brought up, e.g. because one is up already.
pub fn lab() -> Option<Lab> {
    if !lab::is_root() {
        eprintln!("skipped: the lab needs root");
        return None;
    }
    // A test that failed while holding the lock poisons it; the lab is reset below anyway.
    let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let binaries = {
        let mut setup = SETUP.lock().unwrap_or_else(|p| p.into_inner());
        setup
            .get_or_insert_with(|| set_up().map(Arc::new).map_err(|e| format!("{e:#}")))
            .clone()
            .unwrap_or_else(|e| panic!("the lab could not be brought up: {e}"))
    };
    for real in &REALS {
        lab::set_sick(real, false).expect("cure a real");
        lab::start_server(&binaries.xtask, real).expect("start a real's server");
    }
    Some(Lab {
        binaries,
        _turn: turn,
    })
}

fn set_up() -> anyhow::Result<Binaries> {
    let existing = lab::existing_namespaces()?;
    let agents = lab::lab_agents();
    anyhow::ensure!(
        existing.is_empty() && agents.is_empty(),
        "a lab is up ({existing:?}, agents {agents:?}) and these tests would take it down: run \
         `cargo xtask lab down` first"
    );
    let binaries = build()?;
    // SAFETY: registers a plain function; libtest leaves through exit(3), which runs it.
    unsafe { libc::atexit(take_lab_down) };
    lab::up(&binaries.xtask)?;
    Ok(binaries)
}

extern "C" fn take_lab_down() {
    if let Err(e) = lab::down() {
        eprintln!("e2e: lab down failed: {e:#}");
    }
}

/// Builds xdirectord and xtask (the lab's web servers) into this test binary's target directory
/// and profile, so `cargo test -p xdirectord-tests` alone tests current binaries.
pub fn build() -> anyhow::Result<Binaries> {
    use anyhow::Context as _;
    // <target>/<profile dir>/deps/<test binary>
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test binary is not in <target>/<profile>/deps")?;
    let target_dir = profile_dir.parent().context("no target directory")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let binaries = Binaries {
        xtask: profile_dir.join("xtask"),
        xdirectord: profile_dir.join("xdirectord"),
    };
    for package in ["lb-userspace", "xtask"] {
        // Without the variables `cargo test` set for us, or this build would not match the
        // one that built this test (see `xtask::cargo`).
        let built = xtask::run(
            xtask::cargo()
                .args([
                    "build",
                    "--quiet",
                    "--package",
                    package,
                    "--profile",
                    profile,
                ])
                .arg("--target-dir")
                .arg(target_dir)
                .current_dir(xtask::workspace_root()),
        );
        // A working tree being edited may not build for a moment; the binaries cargo test built
        // just now are as good.
        if let Err(e) = built {
            anyhow::ensure!(
                binaries.xtask.exists() && binaries.xdirectord.exists(),
                "{e:#}"
            );
            eprintln!(
                "e2e: warning: {e:#}; using the binaries in {}",
                profile_dir.display()
            );
        }
    }
    Ok(binaries)
}

impl Lab {
    /// Adds these VIPs to the lab unless it has them (the director's `eth0`, the reals' `lo`).
    pub fn add_vips(&self, vips: &[IpAddr]) {
        let held = lab::addresses(DIRECTOR.ns).expect("director addresses");
        for vip in vips {
            let len = if vip.is_ipv4() { 32 } else { 128 };
            let cidr = format!("{vip}/{len}");
            if !held.iter().any(|(_, addrs)| addrs.contains(&cidr)) {
                lab::add_vip(*vip).expect("add a VIP");
            }
        }
    }

    /// Adds `n` more IPv4 addresses to the client (10.200.0.150 on), for tests that need many
    /// sources; returns them.
    pub fn client_addresses(&self, n: u8) -> Vec<IpAddr> {
        assert!(n <= 100, "10.200.0.150-249 at most");
        let held = lab::addresses(CLIENT.ns).expect("client addresses");
        (0..n)
            .map(|i| {
                let addr = Ipv4Addr::new(10, 200, 0, 150 + i);
                let cidr = format!("{addr}/24");
                if !held.iter().any(|(_, a)| a.contains(&cidr)) {
                    lab::exec_in(CLIENT.ns, &["ip", "address", "add", &cidr, "dev", "eth0"])
                        .expect("add a client address");
                }
                IpAddr::V4(addr)
            })
            .collect()
    }

    /// Starts xdirectord on a configuration named `xdlab-<name>.cf` holding `text` (with a
    /// `logfile` of its own added), and waits until the data plane is open.
    pub fn agent(&self, name: &str, text: &str) -> TestAgent {
        let dir = Path::new(RUN_DIR).join("e2e");
        std::fs::create_dir_all(&dir).expect("create the tests' directory");
        let config = dir.join(format!("xdlab-{name}.cf"));
        let log = dir.join(format!("xdlab-{name}.log"));
        let _ = std::fs::remove_file(&log);
        let agent = TestAgent {
            agent: Agent::new(&self.binaries.xdirectord, &config),
            log,
        };
        // A previous run killed without cleaning up may have left them.
        agent.agent.kill();
        agent.write_config(text);
        if let Err(e) = agent.agent.start() {
            panic!("{e:#}\n{}", agent.log_text());
        }
        agent
    }
}

/// The socket address of a VIP's web service.
pub fn web(vip: impl Into<IpAddr>) -> SocketAddr {
    SocketAddr::new(vip.into(), HTTP_PORT)
}

/// The lab's real `i` (0, 1, 2) in `family`'s address.
pub fn real_addr(i: usize, v6: bool) -> IpAddr {
    if v6 {
        REALS[i].ipv6.into()
    } else {
        REALS[i].ipv4.into()
    }
}

/// The name a real's web server answers with (`web1`…).
pub fn real_name(i: usize) -> &'static str {
    REALS[i].web.expect("a real has a web server").name
}

/// A virtual service on `vip` (IPv4 or IPv6) with the lab's three reals weighted 10/20/30, each
/// checked by fetching `/areyouthere.php`, plus `lines` (one directive per line).
pub fn virtual_service(vip: IpAddr, lines: &str) -> String {
    let v6 = vip.is_ipv6();
    let mut text = if v6 {
        format!("virtual6=[{vip}]:{HTTP_PORT}\n")
    } else {
        format!("virtual={vip}:{HTTP_PORT}\n")
    };
    for (i, weight) in [10, 20, 30].into_iter().enumerate() {
        let addr = real_addr(i, v6);
        if v6 {
            text += &format!("\treal6=[{addr}]:{HTTP_PORT} gate {weight}\n");
        } else {
            text += &format!("\treal={addr}:{HTTP_PORT} gate {weight}\n");
        }
    }
    text += &format!(
        "\tprotocol=tcp\n\tservice=http\n\tchecktype=negotiate\n\trequest=\"{CHECK_PATH}\"\n\t\
         receive=\"OK web[0-9]+\"\n"
    );
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        text += &format!("\t{}\n", line.trim());
    }
    text
}

/// An xdirectord of a test, on the lab's director: stopped, with its pins and pid file removed,
/// when dropped.
pub struct TestAgent {
    pub agent: Agent,
    log: PathBuf,
}

impl TestAgent {
    /// Writes the configuration file: `logfile` of its own, then `text`.
    pub fn write_config(&self, text: &str) {
        let full = format!("logfile=\"{}\"\n{text}", self.log.display());
        std::fs::write(&self.agent.config, full).expect("write the configuration");
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log holds `text` `times` times (or more).
    pub fn wait_for_log(&self, text: &str, times: usize) {
        let found = wait_for(&format!("{text:?} in the log"), PATIENCE, || {
            Ok((self.log_text().matches(text).count() >= times).then_some(()))
        });
        if let Err(e) = found {
            panic!("{e:#}\n--- log ---\n{}", self.log_text());
        }
    }

    /// Waits until the live table (read back from the data plane) satisfies `condition`, and
    /// returns it.
    pub fn wait_for_table(
        &self,
        what: &str,
        condition: impl Fn(&[Service]) -> bool,
    ) -> Vec<Service> {
        let mut last = None;
        let found = wait_for(what, PATIENCE, || {
            let table = self.agent.table()?;
            let ok = condition(&table);
            last = Some(table.clone());
            Ok(ok.then_some(table))
        });
        found.unwrap_or_else(|e| {
            panic!(
                "{e:#}\n--- table ---\n{last:#?}\n--- log ---\n{}",
                self.log_text()
            )
        })
    }

    /// Waits until `vip`'s service holds exactly these reals (index into the lab's reals,
    /// weight), without the fallback.
    pub fn wait_for_reals(&self, vip: impl Into<IpAddr>, reals: &[(usize, u32)]) -> Service {
        let vip = vip.into();
        let want: Vec<(IpAddr, u32)> = reals
            .iter()
            .map(|&(i, w)| (real_addr(i, vip.is_ipv6()), w))
            .collect();
        let table = self.wait_for_table(&format!("{vip} to hold {want:?}"), |table| {
            find(table, vip).is_some_and(|s| !s.has_fallback() && s.weights() == want)
        });
        find(&table, vip).expect("found above").clone()
    }

    /// Waits until `vip`'s service holds only its fallback.
    pub fn wait_for_fallback(&self, vip: impl Into<IpAddr>) {
        let vip = vip.into();
        self.wait_for_table(&format!("{vip} to hold only its fallback"), |table| {
            find(table, vip).is_some_and(|s| s.reals.len() == 1 && s.has_fallback())
        });
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.agent.kill();
    }
}

/// The service of `vip` (port 80) in a table.
pub fn find(table: &[Service], vip: IpAddr) -> Option<&Service> {
    table.iter().find(|s| s.addr == vip && s.port == HTTP_PORT)
}

/// Runs `f` in the client's namespace.
pub fn from_client<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    client::in_ns(CLIENT.ns, f).expect("enter the client's namespace")
}

/// `n` new connections from the client to `to`: how many each server answered.
pub fn tally(to: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    from_client(|| client::tally(to, n))
}

/// One request on a new connection from the client.
pub fn get(to: SocketAddr) -> io::Result<Reply> {
    from_client(|| client::get(to, "/"))
}

/// Client traffic in the background while a test disturbs the director: one thread opens new
/// connections one after the other (a request each), another holds keep-alive connections open
/// and sends a request on each of them every half second. Every request must succeed, and a held
/// connection must always be answered by the server that answered it first.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<TrafficReport>>,
}

/// What [`Traffic`] saw.
#[derive(Default)]
pub struct TrafficReport {
    /// New connections answered, by server.
    pub served: BTreeMap<String, usize>,
    /// Requests on held connections answered.
    pub held_requests: usize,
    /// Every failure: what, when (since the start), and why.
    pub failures: Vec<String>,
}

impl std::fmt::Debug for TrafficReport {
    /// A summary: the counts, and the first few failures.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "new connections served {:?}, requests on held connections {}, {} failures",
            self.served,
            self.held_requests,
            self.failures.len()
        )?;
        for failure in self.failures.iter().take(10) {
            write!(f, "\n  {failure}")?;
        }
        Ok(())
    }
}

impl Traffic {
    /// Starts `held` keep-alive connections to each of `targets` (kept open and used every half
    /// second) and one thread opening new connections to them in turn.
    pub fn start(targets: &[SocketAddr], held: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let mut threads = Vec::new();
        {
            let (stop, targets) = (Arc::clone(&stop), targets.to_vec());
            threads.push(std::thread::spawn(move || {
                client::enter(CLIENT.ns).expect("enter the client's namespace");
                let mut report = TrafficReport::default();
                for to in targets.iter().cycle() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match client::get(*to, "/") {
                        Ok(reply) if reply.status == 200 => {
                            *report.served.entry(reply.server).or_default() += 1;
                        }
                        outcome => report.failures.push(format!(
                            "{:.1}s new connection to {to}: {outcome:?}",
                            started.elapsed().as_secs_f64()
                        )),
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                report
            }));
        }
        {
            let (stop, targets) = (Arc::clone(&stop), targets.to_vec());
            threads.push(std::thread::spawn(move || {
                client::enter(CLIENT.ns).expect("enter the client's namespace");
                let mut report = TrafficReport::default();
                let mut connections: Vec<(SocketAddr, Connection, String)> = Vec::new();
                for to in targets.iter().flat_map(|t| std::iter::repeat_n(*t, held)) {
                    let first = Connection::open(to).and_then(|mut c| {
                        let reply = c.get("/")?;
                        Ok((c, reply.server))
                    });
                    match first {
                        Ok((c, server)) => connections.push((to, c, server)),
                        Err(e) => report
                            .failures
                            .push(format!("opening a held connection to {to}: {e}")),
                    }
                }
                // A request on each held connection every half second, and a last round after
                // the stop, after whatever the test did.
                loop {
                    let last = stop.load(Ordering::Relaxed);
                    for (to, connection, server) in &mut connections {
                        match connection.get("/") {
                            Ok(reply) if reply.status == 200 && reply.server == *server => {
                                report.held_requests += 1;
                            }
                            outcome => {
                                let when = if last {
                                    "last request on".to_string()
                                } else {
                                    format!("{:.1}s", started.elapsed().as_secs_f64())
                                };
                                report.failures.push(format!(
                                    "{when} held connection {} -> {to} (to {server}): {outcome:?}",
                                    connection.local
                                ))
                            }
                        }
                    }
                    if last {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                report
            }));
        }
        Traffic { stop, threads }
    }

    /// Stops the traffic and returns what it saw.
    pub fn finish(mut self) -> TrafficReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = TrafficReport::default();
        for thread in self.threads.drain(..) {
            let report = thread.join().expect("a traffic thread panicked");
            for (server, n) in report.served {
                *total.served.entry(server).or_default() += n;
            }
            total.held_requests += report.held_requests;
            total.failures.extend(report.failures);
        }
        total
    }
}

impl Drop for Traffic {
    /// A test that failed before [`Traffic::finish`]: the threads end before the next test.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
