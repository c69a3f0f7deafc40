//! bench-checks: health checks at scale through the real director.
//!
//! ```text
//! cargo run --release -p lb-userspace --example bench-checks -- \
//!     [--reals 100,1000,10000] [--seconds 10] [--failures 5] [--out target/bench/checks.json]
//! ```
//!
//! `--services LIST` (default: every protocol service, `none` for none) adds one row per
//! service: 1,000 reals (`--service-reals`) at `checkinterval = 1`, checked by the real
//! director against the real server of that service (Debian's, as the tests start it: one
//! server on loopback, which every real's `checkport` names; the reals' own addresses only
//! tell the checks apart). Measured as for HTTP: checks per second achieved against intended,
//! the agent's CPU share and peak RSS; the server's CPU is not the agent's.
//!
//! For each size N: N web servers on 127.0.0.1 (one port each) in a child process, so their
//! CPU is not counted as the agent's; an ldirectord configuration with N reals (virtuals of
//! 100 reals, `checktype = negotiate`, `service = http`, `checkinterval = 1`,
//! `failurecount = 1`, `checktimeout = negotiatetimeout = 3`) run by the real director on a
//! backend that only notes when tables arrive. Each size runs in a process of its own, so the
//! peak RSS is that size's.
//!
//! Measured: checks per second achieved against intended, the agent's CPU share (CPU seconds
//! per wall second, 1.0 = one core) and peak RSS (VmHWM) over the measurement window, then,
//! for a few reals one after the other, the time from stopping the real's server (its port
//! refuses connections) to the table without it reaching the backend, and the director's
//! longest time from a check result to the apply it caused.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use xdirectord::alert::{Alerts, Mailer};
use xdirectord::backend::{Backend, BackendError, Notes};
use xdirectord::director::{Director, DirectorSettings};
use xdirectord::hooks::Hooks;
use xdirectord::log::{LogSink, Logger};
use xdirectord::table::{DesiredTable, diff::Op};

// lb-health's real servers, as its tests start them.
#[path = "../../lb-health/tests/servers/mod.rs"]
mod servers;

/// The protocol services a row is measured for, in `--services` spelling.
const SERVICES: [&str; 15] = [
    "ftp",
    "smtp",
    "submission",
    "pop",
    "pops",
    "imap",
    "imaps",
    "nntp",
    "ldap",
    "ldaps",
    "mysql",
    "pgsql",
    "oracle",
    "sip",
    "radius",
];

const CHECKTIMEOUT_S: u64 = 3;
const REALS_PER_VIRTUAL: usize = 100;

struct Args {
    reals: Vec<usize>,
    seconds: u64,
    failures: usize,
    out: String,
    one: Option<usize>,
    serve: Option<usize>,
    /// `negotiate` (HTTP, the real cost) or `on` (no probe: the runner and the director alone).
    checktype: String,
    /// Protocol services to measure, one row each.
    services: Vec<String>,
    /// Reals per protocol service row.
    service_reals: usize,
    /// In a child: the protocol service of this row.
    service: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        reals: vec![100, 1000, 10_000],
        seconds: 10,
        failures: 5,
        out: "target/bench/checks.json".into(),
        one: None,
        serve: None,
        checktype: "negotiate".into(),
        services: SERVICES.iter().map(|s| s.to_string()).collect(),
        service_reals: 1000,
        service: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage(&flag));
        let number = || value.parse::<usize>().unwrap_or_else(|_| usage(&flag));
        match flag.as_str() {
            "--reals" => {
                args.reals = value
                    .split(',')
                    .map(|v| v.trim().parse().unwrap_or_else(|_| usage(&flag)))
                    .collect()
            }
            "--seconds" => args.seconds = number() as u64,
            "--failures" => args.failures = number(),
            "--out" => args.out = value.clone(),
            "--one" => args.one = Some(number()),
            "--serve" => args.serve = Some(number()),
            "--checktype" if value == "negotiate" || value == "on" => {
                args.checktype = value.clone()
            }
            "--services" if value == "none" => args.services.clear(),
            "--services" => {
                args.services = value.split(',').map(|v| v.trim().to_owned()).collect();
                if let Some(bad) = args
                    .services
                    .iter()
                    .find(|s| !SERVICES.contains(&s.as_str()))
                {
                    eprintln!("bench-checks: no protocol service {bad:?}");
                    usage(&flag);
                }
            }
            "--service-reals" => args.service_reals = number(),
            "--service" if SERVICES.contains(&value.as_str()) => args.service = Some(value.clone()),
            _ => usage(&flag),
        }
    }
    args
}

fn usage(flag: &str) -> ! {
    eprintln!(
        "bench-checks: bad argument {flag:?}\n\
         usage: bench-checks [--reals N[,N…]] [--seconds T] [--failures K] [--checktype negotiate|on]\n\
         \x20                   [--services none|S[,S…]] [--service-reals N] [--out FILE]"
    );
    std::process::exit(2)
}

fn main() {
    let args = parse_args();
    let _ = lb_health::raise_nofile_limit();
    // As lb-health's check-bench: agent and servers at nice -10 (set before any thread
    // starts, since niceness is per thread), so other jobs on a shared machine starve neither.
    // SAFETY: setpriority has no memory-safety preconditions.
    let niced = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) } == 0;
    if let Some(n) = args.serve {
        runtime().block_on(serve(n));
        return;
    }
    if let (Some(n), Some(service)) = (args.one, &args.service) {
        let mut report = runtime().block_on(one_service(n, service, args.seconds));
        report["niced"] = niced.into();
        println!("{report}");
        return;
    }
    if let Some(n) = args.one {
        let mut report = runtime().block_on(one(n, &args));
        report["niced"] = niced.into();
        println!("{report}");
        return;
    }
    // Each size in a process of its own: VmHWM is a process's high-water mark.
    let exe = std::env::current_exe().expect("current exe");
    let run_one = |n: usize, checktype: &str| -> serde_json::Value {
        eprintln!("bench-checks: {n} reals, checktype {checktype} …");
        let output = Command::new(&exe)
            .args([
                "--one",
                &n.to_string(),
                "--seconds",
                &args.seconds.to_string(),
            ])
            .args([
                "--failures",
                &args.failures.to_string(),
                "--checktype",
                checktype,
            ])
            .stderr(Stdio::inherit())
            .output()
            .expect("run one size");
        assert!(output.status.success(), "the run with {n} reals failed");
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("one JSON object per size");
        eprintln!("{report}");
        report
    };
    let results: Vec<serde_json::Value> = args
        .reals
        .iter()
        .map(|n| run_one(*n, &args.checktype))
        .collect();
    // The same largest size without probes: what the runner and the director cost by
    // themselves, so the checks' own cost can be told apart.
    let largest = args.reals.iter().copied().max().unwrap_or(0);
    let overhead = (args.checktype != "on" && largest > 0).then(|| run_one(largest, "on"));
    let services: Vec<serde_json::Value> = args
        .services
        .iter()
        .map(|service| {
            eprintln!(
                "bench-checks: {} reals, service {service} …",
                args.service_reals
            );
            let output = Command::new(&exe)
                .args([
                    "--one",
                    &args.service_reals.to_string(),
                    "--service",
                    service,
                ])
                .args(["--seconds", &args.seconds.to_string()])
                .stderr(Stdio::inherit())
                .output()
                .expect("run one service");
            // A row that fails is reported as such; the others still run.
            let report: serde_json::Value = match serde_json::from_slice(&output.stdout) {
                Ok(report) if output.status.success() => report,
                _ => serde_json::json!({ "service": service, "failed": output.status.to_string() }),
            };
            eprintln!("{report}");
            report
        })
        .collect();
    let report = serde_json::json!({
        "bench": "checks",
        "description": "HTTP negotiate checks of N reals on loopback through the director, checkinterval 1 s",
        "targets": {
            "cpu_share_at_10000": 0.5,
            "peak_rss_mib_at_10000": 100,
            "removal_ms": CHECKTIMEOUT_S * 1000 + 100,
        },
        "results": results,
        "without_probes": overhead,
        "services": services,
    });
    if let Some(dir) = std::path::Path::new(&args.out).parent() {
        std::fs::create_dir_all(dir).expect("output directory");
    }
    std::fs::write(
        &args.out,
        serde_json::to_string_pretty(&report).unwrap() + "\n",
    )
    .expect("write the report");
    eprintln!("bench-checks: wrote {}", args.out);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The child: N servers, their ports on stdout; then `stop I` on stdin closes server I and
/// answers `stopped I`. Ends when stdin closes.
async fn serve(n: usize) {
    let mut ports = Vec::with_capacity(n);
    let mut servers = Vec::with_capacity(n);
    for _ in 0..n {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        ports.push(listener.local_addr().expect("addr").port().to_string());
        servers.push(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = service_fn(|_req| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"status: ok\n",
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }));
    }
    println!("{}", ports.join(","));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if let Some(i) = line
                .strip_prefix("stop ")
                .and_then(|i| i.trim().parse().ok())
            {
                let _ = tx.send(i);
            }
        }
    });
    while let Some(i) = rx.recv().await {
        if let Some(server) = servers.get(i) {
            server.abort();
        }
        println!("stopped {i}");
        let _ = std::io::stdout().flush();
    }
}

/// A real to look out for, and when the first table without it arrived.
type Gone = Option<(SocketAddr, Option<Instant>)>;

/// A backend that keeps the table and what the bench asks about.
#[derive(Clone, Default)]
struct Watch {
    table: Arc<Mutex<DesiredTable>>,
    reals: Arc<AtomicUsize>,
    applies: Arc<AtomicU64>,
    gone: Arc<Mutex<Gone>>,
}

impl Backend for Watch {
    fn held(&self) -> Result<DesiredTable, BackendError> {
        Ok(self.table.lock().unwrap().clone())
    }

    fn apply(&mut self, ops: &[Op]) -> Result<Notes, BackendError> {
        let now = Instant::now();
        let mut table = self.table.lock().unwrap();
        table.apply_ops(ops);
        self.applies.fetch_add(1, Ordering::Relaxed);
        self.reals.store(
            table.services.values().map(|s| s.reals.len()).sum(),
            Ordering::Relaxed,
        );
        let mut gone = self.gone.lock().unwrap();
        if let Some((real, when @ None)) = gone.as_mut() {
            let present = table.services.values().any(|s| {
                s.reals
                    .iter()
                    .any(|r| r.addr == real.ip() && r.port == real.port())
            });
            if !present {
                *when = Some(now);
            }
        }
        Ok(Notes::new())
    }
}

fn config_text(ports: &[u16], checktype: &str) -> String {
    let mut text = format!(
        "checkinterval=1\nchecktimeout={CHECKTIMEOUT_S}\nnegotiatetimeout={CHECKTIMEOUT_S}\nfailurecount=1\n\
         logfile=\"/dev/null\"\n"
    );
    for (v, chunk) in ports.chunks(REALS_PER_VIRTUAL).enumerate() {
        text.push_str(&format!("virtual=10.{}.{}.1:80\n", v / 250, v % 250));
        for port in chunk {
            text.push_str(&format!("\treal=127.0.0.1:{port} gate\n"));
        }
        text.push_str(&format!(
            "\tchecktype={checktype}\n\tservice=http\n\trequest=\"health\"\n\treceive=\"status: ok\"\n\n"
        ));
    }
    text
}

async fn one(n: usize, args: &Args) -> serde_json::Value {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args(["--serve", &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server process");
    let mut commands = child.stdin.take().expect("stdin");
    let mut replies = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    replies.read_line(&mut line).expect("ports");
    let ports: Vec<u16> = line
        .trim()
        .split(',')
        .map(|p| p.parse().expect("port"))
        .collect();
    assert_eq!(ports.len(), n);

    let text = config_text(&ports, &args.checktype);
    let config = lb_config::parse(
        text.as_bytes(),
        "bench.cf".as_ref(),
        &lb_config::SystemEnvironment,
    )
    .expect("the generated configuration is valid");
    let watch = Watch::default();
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let logger = Logger::new(LogSink::File("/dev/null".into()), "bench");
    let settings = DirectorSettings {
        logger: logger.clone(),
        status_file: None,
        runner: lb_health::RunnerConfig::default(),
        alerts: Alerts::spawn(Mailer::new(), logger.clone(), &tracker),
        hooks: Hooks::spawn(logger, "/bin/true".into(), &tracker),
        recorder: Default::default(),
    };
    let (director, handle) = Director::new(
        config,
        Default::default(),
        Box::new(watch.clone()),
        settings,
        &shutdown,
    );
    let task = tokio::spawn(director.run());

    // Every real up: the first round is spread over one interval.
    let start = Instant::now();
    while watch.reals.load(Ordering::Relaxed) < n {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "not every real came up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_up_s = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let before = handle.snapshot().await.expect("running");
    let (before, runner_before) = (before.stats, before.runner);
    let cpu_before = cpu_seconds();
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let wall = window.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let after = handle.snapshot().await.expect("running");
    let (after, runner_after) = (after.stats, after.runner);
    let peak_rss_mib = peak_rss_kib() as f64 / 1024.0;

    // Failures, one at a time, spread over the reals.
    let mut removals_ms = Vec::new();
    let mut director_ms = Vec::new();
    // With `checktype = on` nothing is probed, so nothing fails.
    let failures = if args.checktype == "on" {
        0
    } else {
        args.failures.min(n)
    };
    for k in 0..failures {
        let i = k * n / failures;
        let real = SocketAddr::from(([127, 0, 0, 1], ports[i]));
        *watch.gone.lock().unwrap() = Some((real, None));
        let failed = Instant::now();
        writeln!(commands, "stop {i}").expect("tell the servers");
        line.clear();
        replies.read_line(&mut line).expect("stopped");
        let removed = loop {
            if let Some((_, Some(when))) = *watch.gone.lock().unwrap() {
                break when;
            }
            assert!(
                failed.elapsed() < Duration::from_secs(60),
                "real {real} was never removed"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        removals_ms.push(removed.duration_since(failed).as_secs_f64() * 1000.0);
        let stats = handle.snapshot().await.expect("running").stats;
        director_ms.push(stats.result_to_apply_last_us as f64 / 1000.0);
    }
    let last = handle.snapshot().await.expect("running").stats;
    handle.stop().await;
    let _ = task.await;
    shutdown.cancel();
    drop(commands);
    let _ = child.kill();
    let _ = child.wait();

    let mut sorted = removals_ms.clone();
    sorted.sort_by(f64::total_cmp);
    serde_json::json!({
        "reals": n,
        "checkinterval_s": 1,
        "checktimeout_s": CHECKTIMEOUT_S,
        "seconds": wall,
        "all_up_after_s": all_up_s,
        "intended_checks_per_s": n as f64,
        "achieved_checks_per_s": (after.results - before.results) as f64 / wall,
        "cpu_share": cpu / wall,
        "peak_rss_mib": peak_rss_mib,
        "failure_to_removal_ms": {
            "samples": removals_ms,
            "median": sorted.get(sorted.len() / 2),
            "max": sorted.last(),
        },
        "checktype": args.checktype,
        "removal_result_to_apply_ms": director_ms,
        "result_to_apply_max_ms": last.result_to_apply_max_us as f64 / 1000.0,
        "late_rounds_in_window": runner_after.overran - runner_before.overran,
        "waited_for_slot_in_window": runner_after.waited_for_slot - runner_before.waited_for_slot,
        "load_average_1m": load_average(),
        "applies": last.applies,
    })
}

/// The real server of `service` (kept running until dropped), the port every check goes to,
/// the settings of the virtual, and the CAs the checks must trust.
struct ServiceServer {
    _servers: Vec<servers::Server>,
    port: u16,
    settings: String,
    trusted: Option<Vec<u8>>,
}

async fn service_server(service: &str) -> ServiceServer {
    let login = "\tlogin=\"probe\"\n\tpasswd=\"s3cret\"\n";
    let sql = format!("{login}\tdatabase=\"shop\"\n\trequest=\"SELECT * FROM items\"\n");
    let plain = |server, port, settings: &str| ServiceServer {
        _servers: vec![server],
        port,
        settings: settings.to_owned(),
        trusted: None,
    };
    match service {
        "ftp" => {
            let port = servers::free_port();
            let server = servers::vsftpd(servers::V4, port);
            plain(
                server,
                port,
                "\trequest=\"welcome.msg\"\n\treceive=\"Welcome\"\n",
            )
        }
        "smtp" | "submission" => {
            let exim = servers::exim();
            plain(exim.server, exim.normal, "")
        }
        "pop" | "pops" | "imap" | "imaps" => {
            let dovecot = servers::dovecot();
            let port = match service {
                "pop" => dovecot.pop3,
                "pops" => dovecot.pop3s,
                "imap" => dovecot.imap,
                _ => dovecot.imaps,
            };
            ServiceServer {
                _servers: vec![dovecot.server],
                port,
                settings: login.to_owned(),
                trusted: Some(dovecot.certs.ca_der),
            }
        }
        "nntp" => {
            let (server, port) = servers::nnrpd(None);
            plain(server, port, "")
        }
        "ldap" | "ldaps" => {
            let (server, ldap, ldaps) = servers::slapd();
            let port = if service == "ldap" { ldap } else { ldaps };
            plain(
                server,
                port,
                "\trequest=\"dc=example,dc=com\"\n\treceive=\"example\"\n",
            )
        }
        "mysql" => {
            let (server, port) = servers::mariadb();
            plain(server, port, &sql)
        }
        "pgsql" => {
            let (server, port) = servers::postgres();
            plain(server, port, &sql)
        }
        "oracle" => {
            // A task of this runtime, for as long as the row runs.
            let addr = servers::tns_listener(servers::V4).await;
            ServiceServer {
                _servers: Vec::new(),
                port: addr.port(),
                settings: format!("{login}\tdatabase=\"ORCL\"\n\trequest=\"SELECT 1 FROM DUAL\"\n"),
                trusted: None,
            }
        }
        "sip" => {
            let (server, port) = servers::kamailio();
            plain(
                server,
                port,
                "\tprotocol=udp\n\tlogin=\"probe@xdirectord.test\"\n",
            )
        }
        "radius" => {
            let (server, port, _strict) = servers::freeradius();
            plain(
                server,
                port,
                &format!(
                    "\tprotocol=udp\n{login}\tsecret=\"{}\"\n",
                    servers::RADIUS_SECRET
                ),
            )
        }
        other => unreachable!("no server for {other}"),
    }
}

/// One protocol service's row: `n` reals, every check against one real server.
async fn one_service(n: usize, service: &str, seconds: u64) -> serde_json::Value {
    let server = service_server(service).await;
    let mut text = format!(
        "checkinterval=1\nchecktimeout={CHECKTIMEOUT_S}\nnegotiatetimeout={CHECKTIMEOUT_S}\n\
         failurecount=1\nlogfile=\"/dev/null\"\n"
    );
    for v in 0..n.div_ceil(REALS_PER_VIRTUAL) {
        text.push_str(&format!("virtual=10.{}.{}.1:80\n", v / 250, v % 250));
        for i in v * REALS_PER_VIRTUAL..((v + 1) * REALS_PER_VIRTUAL).min(n) {
            // Distinct reals (each its own check), all checked at the server's port.
            text.push_str(&format!("\treal=127.0.0.1:{} gate\n", 20_000 + i));
        }
        text.push_str(&format!(
            "\tchecktype=negotiate\n\tservice={service}\n\tcheckport={}\n{}\n",
            server.port, server.settings
        ));
    }
    let config = lb_config::parse(
        text.as_bytes(),
        "bench.cf".as_ref(),
        &lb_config::SystemEnvironment,
    )
    .expect("the generated configuration is valid");
    let mut runner = lb_health::RunnerConfig::default();
    if let Some(ca) = &server.trusted {
        runner.trusted_cas = lb_health::TrustedCas::Only(vec![ca.clone()]);
    }
    let watch = Watch::default();
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let logger = Logger::new(LogSink::File("/dev/null".into()), "bench");
    let settings = DirectorSettings {
        logger: logger.clone(),
        status_file: None,
        runner,
        alerts: Alerts::spawn(Mailer::new(), logger.clone(), &tracker),
        hooks: Hooks::spawn(logger, "/bin/true".into(), &tracker),
        recorder: Default::default(),
    };
    let (director, handle) = Director::new(
        config,
        Default::default(),
        Box::new(watch.clone()),
        settings,
        &shutdown,
    );
    let task = tokio::spawn(director.run());

    // A server that cannot answer every check in time (one process per connection on a
    // loaded machine) keeps some reals down: measured all the same, and said.
    let start = Instant::now();
    while watch.reals.load(Ordering::Relaxed) < n && start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_up_s =
        (watch.reals.load(Ordering::Relaxed) == n).then(|| start.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reals_up = watch.reals.load(Ordering::Relaxed);

    let before = handle.snapshot().await.expect("running");
    let cpu_before = cpu_seconds();
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let wall = window.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let after = handle.snapshot().await.expect("running");
    let peak_rss_mib = peak_rss_kib() as f64 / 1024.0;
    handle.stop().await;
    let _ = task.await;
    shutdown.cancel();
    drop(server);
    serde_json::json!({
        "service": service,
        "reals": n,
        "checkinterval_s": 1,
        "seconds": wall,
        "all_up_after_s": all_up_s,
        "reals_up_at_window_start": reals_up,
        "intended_checks_per_s": n as f64,
        "achieved_checks_per_s": (after.stats.results - before.stats.results) as f64 / wall,
        "down_results_in_window": after.runner.down - before.runner.down,
        "cpu_share": cpu / wall,
        "peak_rss_mib": peak_rss_mib,
        "late_rounds_in_window": after.runner.overran - before.runner.overran,
        "waited_for_slot_in_window": after.runner.waited_for_slot - before.runner.waited_for_slot,
        "load_average_1m": load_average(),
    })
}

/// User + system CPU seconds of this process, all threads.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Peak resident set size (VmHWM) in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The machine's 1-minute load average: the figures depend on what else runs.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}
