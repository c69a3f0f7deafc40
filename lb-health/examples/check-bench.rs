//! check-bench: how much CPU and memory the runner needs for N HTTP negotiate checks.
//!
//! ```text
//! cargo run --release -p lb-health --example check-bench -- [--checks N] [--seconds T]
//!     [--interval-ms MS] [--runtime multi|current] [--own-thread | --caller-thread]
//!     [--receive REGEX] [--fail K]
//! ```
//!
//! `--runtime` is the flavour of the runtime the runner is created in (the agent's);
//! `--own-thread` (the default, as [`RunnerConfig::default`]) and `--caller-thread` set
//! [`RunnerConfig::own_thread`]; `--receive ''` checks without a pattern.
//!
//! Starts N hyper HTTP servers on 127.0.0.1 (one port each) in a child process, so their CPU is
//! not counted as ours, then runs N `checktype = negotiate`, `service = http` checks (receive
//! pattern, GET, new connection each round) at the interval for T seconds, after one interval
//! of warm-up. Halfway through, `--fail K` servers (5 by default) stop listening, so their
//! ports refuse connections, and the time until each one's check reports it down is measured.
//! Prints one JSON object: checks per second achieved and intended, this process's CPU share
//! (CPU seconds / wall seconds from getrusage; 1.0 = one core) and peak RSS (VmHWM), the
//! failure detection times, plus the runner's counters and the servers' CPU share for
//! context.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lb_health::{
    CheckSpec, CheckType, HealthRunner, Negotiate, Protocol, RunnerConfig, Service, VirtualAddress,
    raise_nofile_limit,
};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Args {
    checks: usize,
    seconds: u64,
    interval: Duration,
    current_thread: bool,
    own_thread: bool,
    receive: String,
    serve: Option<usize>,
    fail: usize,
    niced: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        checks: 1000,
        seconds: 10,
        interval: Duration::from_secs(1),
        current_thread: false,
        own_thread: RunnerConfig::default().own_thread,
        receive: "status: ok".to_owned(),
        serve: None,
        fail: 5,
        niced: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| usage(&flag))
        };
        match flag.as_str() {
            "--checks" => args.checks = value() as usize,
            "--seconds" => args.seconds = value(),
            "--interval-ms" => args.interval = Duration::from_millis(value()),
            "--serve" => args.serve = Some(value() as usize),
            "--fail" => args.fail = value() as usize,
            "--own-thread" => args.own_thread = true,
            "--caller-thread" => args.own_thread = false,
            "--runtime" => match it.next().as_deref() {
                Some("multi") => args.current_thread = false,
                Some("current") => args.current_thread = true,
                _ => usage(&flag),
            },
            "--receive" => args.receive = it.next().unwrap_or_else(|| usage(&flag)),
            _ => usage(&flag),
        }
    }
    args
}

fn usage(flag: &str) -> ! {
    eprintln!(
        "check-bench: bad argument {flag:?}\n\
         usage: check-bench [--checks N] [--seconds T] [--interval-ms MS]\n\
         \x20                  [--runtime multi|current] [--own-thread | --caller-thread]\n\
         \x20                  [--receive REGEX] [--fail K]"
    );
    std::process::exit(2)
}

fn main() {
    let mut args = parse_args();
    // Other jobs share the machine: run the servers and the checker ahead of them (when
    // allowed), so a starved server does not show up as slow checks. CPU time is measured,
    // not wall time, so this does not flatter the CPU figures. Done before the runtime
    // starts: Linux niceness is per thread, and new threads inherit it.
    args.niced = renice_self();
    let _ = raise_nofile_limit();
    let runtime = if args.current_thread && args.serve.is_none() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()
    .expect("tokio runtime");
    match args.serve {
        Some(n) => runtime.block_on(serve(n)),
        None => runtime.block_on(bench(args)),
    }
}

/// The child: N servers, their ports on stdout, until stdin closes. A line `fail I J …` on
/// stdin closes the listeners of servers I, J, …: their ports then refuse connections.
async fn serve(n: usize) {
    let mut ports = Vec::with_capacity(n);
    let mut listeners = Vec::with_capacity(n);
    for _ in 0..n {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        ports.push(listener.local_addr().expect("addr").port().to_string());
        let accepting = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = service_fn(|_req| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"<html><body>status: ok</body></html>\n",
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        listeners.push(accepting);
    }
    println!("{}", ports.join(","));
    // The parent closes our stdin when it is done (or dies).
    let (tx, mut commands) = mpsc::unbounded_channel::<Vec<usize>>();
    std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
            if let Some(rest) = line.trim().strip_prefix("fail ") {
                let _ = tx.send(rest.split(' ').filter_map(|i| i.parse().ok()).collect());
            }
            line.clear();
        }
    });
    while let Some(failing) = commands.recv().await {
        for i in failing {
            if let Some(accepting) = listeners.get(i) {
                // Dropping the accept loop closes the listening socket.
                accepting.abort();
            }
        }
    }
}

async fn bench(args: Args) {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args(["--serve", &args.checks.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ports from the server process");
    let ports: Vec<u16> = line
        .trim()
        .split(',')
        .map(|p| p.parse().expect("port"))
        .collect();
    assert_eq!(
        ports.len(),
        args.checks,
        "server process started every server"
    );

    let checks = ports.iter().enumerate().map(|(i, &port)| {
        let real = SocketAddr::from(([127, 0, 0, 1], port));
        let mut http = Negotiate::defaults(Service::Http);
        if let Negotiate::Http(h) = &mut http {
            h.receive = args.receive.clone();
        }
        let virtual_address = VirtualAddress::Socket {
            protocol: Protocol::Tcp,
            address: SocketAddr::from(([192, 0, 2, 1], 80)),
        };
        let mut spec = CheckSpec::new(virtual_address, real, http);
        spec.check_type = CheckType::Negotiate;
        spec.check_interval = args.interval;
        spec.negotiate_timeout = Duration::from_secs(5);
        (i, spec)
    });

    let shutdown = CancellationToken::new();
    // The servers that fail halfway, spread over the set, and when each was first seen down.
    let failing: Vec<usize> = (0..args.fail.min(args.checks))
        .map(|i| i * args.checks / args.fail.max(1))
        .collect();
    let seen: Arc<Mutex<Failures>> = Arc::default();
    // The bench consumes results as fast as it can, as the director would.
    let (tx, mut rx) = mpsc::channel::<lb_health::CheckResult<usize>>(4096);
    let drain = {
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let (mut up, mut down) = (0u64, 0u64);
            while let Some(result) = rx.recv().await {
                if result.up {
                    up += 1;
                    continue;
                }
                down += 1;
                let mut seen = seen.lock().unwrap();
                if let Some(failed_at) = seen.failed_at {
                    seen.down_after
                        .entry(result.key)
                        .or_insert(failed_at.elapsed());
                }
            }
            (up, down)
        })
    };
    let config = RunnerConfig {
        own_thread: args.own_thread,
        ..RunnerConfig::default()
    };
    let mut runner = HealthRunner::new(tx, config, &shutdown);
    let reload = runner.replace(checks);
    assert!(reload.rejected.is_empty());

    // Warm-up: the first checks are spread over one interval.
    tokio::time::sleep(args.interval.min(Duration::from_secs(5))).await;
    let start_stats = runner.stats();
    let start_cpu = cpu_seconds();
    let start_user = cpu_split().0;
    let start_server_cpu = process_cpu_seconds(child.id());
    let start = Instant::now();
    let window = Duration::from_secs(args.seconds);
    tokio::time::sleep(window / 2).await;
    if !failing.is_empty() {
        let command = failing
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        let stdin = child.stdin.as_mut().expect("the server process's stdin");
        writeln!(stdin, "fail {command}").expect("tell the server process");
        stdin.flush().expect("tell the server process");
        seen.lock().unwrap().failed_at = Some(Instant::now());
    }
    tokio::time::sleep(window - window / 2).await;
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - start_cpu;
    let user = cpu_split().0 - start_user;
    let server_cpu = process_cpu_seconds(child.id()) - start_server_cpu;
    let end_stats = runner.stats();

    runner.shutdown().await;
    let (up, down) = drain.await.unwrap_or_default();
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();

    let rounds = end_stats.rounds - start_stats.rounds;
    let mut failure_seen_ms: Vec<f64> = {
        let seen = seen.lock().unwrap();
        failing
            .iter()
            .filter_map(|i| seen.down_after.get(i))
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect()
    };
    failure_seen_ms.sort_by(f64::total_cmp);
    let report = serde_json::json!({
        "checks": args.checks,
        "interval_s": args.interval.as_secs_f64(),
        "runtime": if args.current_thread { "current" } else { "multi" },
        "own_thread": args.own_thread,
        "receive": args.receive,
        "load_average_1m": load_average(),
        "niced": args.niced,
        "seconds": wall,
        "intended_checks_per_s": args.checks as f64 / args.interval.as_secs_f64(),
        "achieved_checks_per_s": rounds as f64 / wall,
        "cpu_share": cpu / wall,
        "cpu_user_share": user / wall,
        "cpu_system_share": (cpu - user) / wall,
        "peak_rss_mib": peak_rss_kib() as f64 / 1024.0,
        "results_up": up,
        "results_down": down,
        "waited_for_slot": end_stats.waited_for_slot,
        "overran": end_stats.overran,
        "results_waited": end_stats.results_waited,
        "rounds_held": end_stats.rounds_held,
        "server_process_cpu_share": server_cpu / wall,
        "failures": failing.len(),
        "failures_seen": failure_seen_ms.len(),
        "failure_seen_ms": failure_seen_ms,
    });
    println!("{report}");
}

/// The servers made to fail, and how long after that each was first reported down.
#[derive(Default)]
struct Failures {
    failed_at: Option<Instant>,
    down_after: HashMap<usize, Duration>,
}

/// User + system CPU seconds of this process, all threads.
fn cpu_seconds() -> f64 {
    let (user, system) = cpu_split();
    user + system
}

/// User and system CPU seconds of this process, all threads.
fn cpu_split() -> (f64, f64) {
    // SAFETY: getrusage fills the struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

/// User + system CPU seconds of another process, from /proc/PID/stat.
fn process_cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name.
    (ticks(11) + ticks(12)) / hz
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

/// The machine's 1-minute load average: check-bench shares the machine, so say how busy it was.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Raises this thread's priority (and so its future threads') to nice -10; false when not
/// allowed.
fn renice_self() -> bool {
    // SAFETY: setpriority only changes a scheduling attribute of the calling thread.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) == 0 }
}
