//! End to end on the lab (docs/lab.md): a SYN flood cannot push established connections out of
//! the XDP flow table. 10,000 keep-alive connections from the client, spread by the scheduler
//! over the three web servers, keep sending while the client floods the VIP with spoofed SYNs
//! from random sources, twice as many as the flow table holds (`maxflows`); then the agent is
//! restarted on the full table. Every request on every connection must be answered by the server
//! that answered its first: a connection whose flow were lost would be placed again, on wrr most
//! likely on another server, which would reset it. On wrr and on mh.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use xdirectord_tests::e2e::{GLOBALS, from_client, lab, virtual_service, web};
use xdirectord_tests::netns::RawIp;
use xdirectord_tests::packet::{Frame, SYN};
use xtask::lab::VIP;
use xtask::lab::client::{self, Connection};

/// Connections held open through the flood.
const CONNECTIONS: usize = 10_000;
/// The flow table's size per family: room for the connections (about one bucket in 2,500
/// overflows at this fill, and a connection without a slot is placed by the hash table, which
/// keeps it too), small enough that the flood overfills it many times.
const FLOWS: usize = 65_536;
/// Client threads sending on the held connections: each connection gets a request well within
/// the lab server's 10-second idle timeout.
const SENDERS: usize = 16;

/// Raises this process's open-file limit (the client's sockets; the lab's web servers, started
/// by this process, inherit it): 10,000 connections need more than the usual 1,024. The soft
/// limit goes up to the hard one, and the hard one too where the process may raise it.
fn raise_open_files(at_least: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let wanted = libc::rlimit {
            rlim_cur: limit.rlim_max.max(at_least),
            rlim_max: limit.rlim_max.max(at_least),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
            limit.rlim_cur = limit.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
            assert!(
                limit.rlim_max >= at_least,
                "{at_least} open files needed, the hard limit is {} and cannot be raised",
                limit.rlim_max
            );
        }
    }
}

/// What the senders saw.
#[derive(Default)]
struct Report {
    requests: usize,
    /// Connections broken (a failed request).
    broken: usize,
    /// The first few, described.
    failures: Vec<String>,
}

/// The held connections: `SENDERS` threads, each sending on its share of them in turn until
/// `stop`, and once more after it.
struct Held {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<Report>>,
}

impl Held {
    /// Each sender opens its share of the connections (a request each: its server), so that
    /// none waits long for its next request, then sends on them in turn. A connection that
    /// fails once is broken: it is reported and left alone.
    fn open(to: SocketAddr) -> Held {
        let (stop, rounds) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let threads = (0..SENDERS)
            .map(|sender| {
                let (stop, rounds) = (Arc::clone(&stop), Arc::clone(&rounds));
                std::thread::spawn(move || {
                    client::enter(xtask::lab::CLIENT.ns).expect("enter the client's namespace");
                    let mut mine: Vec<(Connection, String)> = (sender..CONNECTIONS)
                        .step_by(SENDERS)
                        .map(|i| {
                            let mut c = Connection::open(to)
                                .unwrap_or_else(|e| panic!("connection {i} to {to}: {e}"));
                            let reply = c.get("/").unwrap_or_else(|e| panic!("request {i}: {e}"));
                            (c, reply.server)
                        })
                        .collect();
                    let mut report = Report::default();
                    loop {
                        let last = stop.load(Ordering::Relaxed);
                        let round = rounds.load(Ordering::Relaxed) / SENDERS;
                        mine.retain_mut(|(connection, server)| match connection.get("/") {
                            Ok(reply) if reply.status == 200 && reply.server == *server => {
                                report.requests += 1;
                                true
                            }
                            outcome => {
                                report.broken += 1;
                                if report.failures.len() < 10 {
                                    report.failures.push(format!(
                                        "round {round}: {} (to {server}): {outcome:?}",
                                        connection.local
                                    ));
                                }
                                false
                            }
                        });
                        rounds.fetch_add(1, Ordering::Relaxed);
                        if last {
                            break report;
                        }
                    }
                })
            })
            .collect();
        Held {
            stop,
            rounds,
            threads,
        }
    }

    /// Waits until every sender has been round its connections `n` more times.
    fn wait_rounds(&self, n: usize) {
        let start = Instant::now();
        let target = self.rounds.load(Ordering::Relaxed) + n * SENDERS;
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.rounds.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "the senders stalled");
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "round {}: {n} rounds in {:.1} s",
            target / SENDERS,
            start.elapsed().as_secs_f64()
        );
    }

    fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Report::default();
        for thread in self.threads {
            let report = thread.join().expect("a sender panicked");
            total.requests += report.requests;
            total.broken += report.broken;
            total.failures.extend(report.failures);
        }
        total
    }
}

/// `n` SYNs to the VIP's web port from random sources outside the lab (100.64.0.0/10), sent
/// from the client's namespace through a raw socket.
fn flood(n: usize) {
    from_client(|| {
        let raw = RawIp::open(libc::AF_INET, libc::IPPROTO_RAW);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..n {
            // xorshift: a new source address and port every SYN.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let src = Ipv4Addr::from(0x6440_0000 | (x as u32 & 0x003f_ffff));
            let sport = (x >> 32) as u16 | 1024;
            let syn = Frame::tcp(&src.to_string(), sport, &VIP.to_string(), 80, SYN);
            raw.send(IpAddr::V4(VIP), &syn.ip_bytes());
        }
    });
}

#[test]
fn a_syn_flood_and_a_restart_break_no_established_connection() {
    raise_open_files(CONNECTIONS as u64 + 2_000);
    let Some(lab) = lab() else { return };
    for scheduler in ["wrr", "mh"] {
        let text = format!(
            "{GLOBALS}cleanstop=no\nmaxflows={FLOWS}\n{}",
            virtual_service(VIP.into(), &format!("scheduler={scheduler}"))
        );
        let agent = lab.agent(&format!("e2e-flood-{scheduler}"), &text);
        agent.wait_for_reals(VIP, &[(0, 10), (1, 20), (2, 30)]);
        let held = Held::open(web(VIP));
        held.wait_rounds(1);
        let before = agent.agent.global_stats().expect("show --stats --json");

        let start = Instant::now();
        flood(2 * FLOWS);
        eprintln!(
            "flood: {} SYNs in {:.1} s",
            2 * FLOWS,
            start.elapsed().as_secs_f64()
        );
        held.wait_rounds(2);
        let after = agent.agent.global_stats().expect("show --stats --json");
        let show: serde_json::Value =
            serde_json::from_str(&agent.agent.show_with(&["--json"]).expect("show --json"))
                .expect("show --json");
        let table = &show["xdp"]["flow_tables"]["ipv4"];
        for (name, v) in &after {
            if *v != before[name] {
                eprintln!("{scheduler}: {name} +{}", v - before[name]);
            }
        }
        eprintln!(
            "{scheduler}: flow table {table}, new flows without room {}, pushed out {}",
            after["flow_table_full"] - before["flow_table_full"],
            after["flow_evicted"] - before["flow_evicted"]
        );
        // Restarted on the full table: the pinned table and its flows are kept.
        eprintln!(
            "restart at round {}",
            held.rounds.load(Ordering::Relaxed) / SENDERS
        );
        agent.agent.stop().unwrap();
        agent.agent.start().unwrap();
        agent.wait_for_log("Starting xdirectord", 2);
        agent.wait_for_reals(VIP, &[(0, 10), (1, 20), (2, 30)]);
        held.wait_rounds(2);

        let report = held.finish();
        let log = agent.log_text();
        let changes: Vec<&str> = log.lines().filter(|l| l.contains("real server")).collect();
        assert!(
            report.broken == 0,
            "{scheduler}: {} connections broken, the first: {:#?}\nthe agent's changes: {changes:#?}",
            report.broken,
            report.failures
        );
        assert_eq!(table["capacity"], FLOWS, "maxflows");
        assert!(
            after["flow_table_full"] + after["flow_evicted"]
                - before["flow_table_full"]
                - before["flow_evicted"]
                >= FLOWS as u64 / 2,
            "{scheduler}: the flood did not overfill the table"
        );

        assert!(
            report.requests >= CONNECTIONS * 5,
            "{scheduler}: too few requests"
        );
        eprintln!("{scheduler}: {} requests, none failed", report.requests);
    }
}
