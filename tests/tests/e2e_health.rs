//! End to end on the lab (docs/lab.md): what health checks do to real connections. A real whose
//! server stops gets no new connection once the agent has decided; a real failing its check
//! keeps its established connections with `quiescent = yes` and loses them to another real with
//! `quiescent = no`; with every real down the fallback on the director serves, and the first
//! real back takes the traffic again.

use std::io;
use std::time::Instant;

use xdirectord_tests::e2e::{
    self, GLOBALS, Traffic, from_client, get, lab, tally, virtual_service, web,
};
use xtask::lab::client::Connection;
use xtask::lab::{FALLBACK_BODY, REALS, VIP};

#[test]
fn a_failed_real_gets_no_new_connection_once_the_agent_has_decided() {
    let Some(lab) = lab() else { return };
    // Two failures decide: failurecount × checkinterval + checktimeout is at most 4 s here.
    let agent = lab.agent(
        "e2e-failover",
        &format!(
            "{}failurecount=2\nquiescent=no\n{}",
            GLOBALS.replace("failurecount=1\n", ""),
            virtual_service(VIP.into(), "scheduler=wrr")
        ),
    );
    agent.wait_for_reals(VIP, &[(0, 10), (1, 20), (2, 30)]);

    let traffic = Traffic::start(&[web(VIP)], 0);
    xtask::lab::stop_server(&REALS[0]).unwrap();
    agent.wait_for_log("Deleted real server: 10.200.0.11:80 (10.200.0.100:80)", 1);
    agent.wait_for_reals(VIP, &[(1, 20), (2, 30)]);
    let before = traffic.finish();
    assert!(
        agent
            .log_text()
            .contains("Soft failure real server: 10.200.0.11:80 (tcp:10.200.0.100:80) failure 1/2"),
        "{}",
        agent.log_text()
    );
    // The client kept connecting while the agent decided (those that reached web1's stopped
    // server meanwhile were refused: what failurecount × checkinterval + checktimeout bounds).
    assert!(before.served.values().sum::<usize>() > 0, "{before:?}");

    // From now on: every new connection is served, and never by web1.
    let decided = Instant::now();
    let after = tally(web(VIP), 100);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        ["web2", "web3"],
        "after the decision ({:?} ago): {after:?}",
        decided.elapsed()
    );
    assert_eq!(after.values().sum::<usize>(), 100, "{after:?}");
}

/// Opens keep-alive connections to the VIP until one is served by web1; returns them all.
fn connections_including_web1() -> Vec<(Connection, String)> {
    from_client(|| {
        let mut held = Vec::new();
        for _ in 0..12 {
            let mut c = Connection::open(web(VIP)).unwrap();
            let server = c.get("/").unwrap().server;
            held.push((c, server));
            if held.iter().any(|(_, s)| s == "web1") && held.len() >= 3 {
                break;
            }
        }
        assert!(
            held.iter().any(|(_, s)| s == "web1"),
            "no connection reached web1"
        );
        held
    })
}

#[test]
fn quiescent_yes_keeps_established_connections_to_a_failing_real() {
    let Some(lab) = lab() else { return };
    let agent = lab.agent(
        "e2e-quiescent",
        &format!(
            "{GLOBALS}quiescent=yes\n{}",
            virtual_service(VIP.into(), "scheduler=wrr")
        ),
    );
    agent.wait_for_reals(VIP, &[(0, 10), (1, 20), (2, 30)]);
    let mut held = connections_including_web1();

    xtask::lab::set_sick(&REALS[0], true).unwrap();
    agent.wait_for_log("Quiescent real server: 10.200.0.11:80 (10.200.0.100:80)", 1);
    agent.wait_for_reals(VIP, &[(0, 0), (1, 20), (2, 30)]);

    // New connections avoid web1 (weight 0)…
    let counts = tally(web(VIP), 30);
    assert!(!counts.contains_key("web1"), "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 30, "{counts:?}");
    // …and every established one, web1's included, keeps working on its real.
    from_client(|| {
        for (connection, server) in &mut held {
            for _ in 0..3 {
                let reply = connection.get("/").unwrap();
                assert_eq!(&reply.server, server);
            }
        }
    });
}

#[test]
fn quiescent_no_moves_established_connections_off_a_failing_real() {
    let Some(lab) = lab() else { return };
    let agent = lab.agent(
        "e2e-not-quiescent",
        &format!(
            "{GLOBALS}quiescent=no\n{}",
            virtual_service(VIP.into(), "scheduler=wrr")
        ),
    );
    agent.wait_for_reals(VIP, &[(0, 10), (1, 20), (2, 30)]);
    let mut held = connections_including_web1();

    // web1 fails its check but its server still runs: had a packet reached it, it would answer.
    xtask::lab::set_sick(&REALS[0], true).unwrap();
    agent.wait_for_log("Deleted real server: 10.200.0.11:80 (10.200.0.100:80)", 1);
    agent.wait_for_reals(VIP, &[(1, 20), (2, 30)]);

    from_client(|| {
        for (connection, server) in &mut held {
            let outcome = connection.get("/");
            if server == "web1" {
                // Rescheduled: the flow now goes to another real, which knows no such connection
                // and resets it.
                let error = outcome.expect_err("web1's connection should not reach web1");
                assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
            } else {
                assert_eq!(&outcome.unwrap().server, server);
            }
        }
    });
    let counts = tally(web(VIP), 30);
    assert!(!counts.contains_key("web1"), "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 30, "{counts:?}");
}

#[test]
fn the_fallback_serves_while_every_real_is_down_and_the_first_real_back_takes_over() {
    let Some(lab) = lab() else { return };
    // quiescent = yes: failed reals stay in with weight 0, and the fallback still comes in,
    // since no real is up.
    let agent = lab.agent(
        "e2e-fallback",
        &format!(
            "{GLOBALS}quiescent=yes\n{}",
            virtual_service(VIP.into(), "scheduler=wrr\nfallback=127.0.0.1:80 gate")
        ),
    );
    agent.wait_for_reals(VIP, &[(0, 10), (1, 20), (2, 30)]);

    for real in &REALS {
        xtask::lab::set_sick(real, true).unwrap();
    }
    agent.wait_for_log("Added fallback server: 127.0.0.1:80 (10.200.0.100:80)", 1);
    agent.wait_for_table("the fallback in, the reals quiescent", |table| {
        e2e::find(table, VIP.into()).is_some_and(|s| {
            s.has_fallback() && s.reals.iter().all(|r| r.fallback || r.weight == 0)
        })
    });
    let counts = tally(web(VIP), 20);
    assert_eq!(counts.get("fallback"), Some(&20), "{counts:?}");
    assert_eq!(get(web(VIP)).unwrap().body, FALLBACK_BODY);

    xtask::lab::set_sick(&REALS[1], false).unwrap();
    agent.wait_for_log("Deleted fallback server: 127.0.0.1:80 (10.200.0.100:80)", 1);
    agent.wait_for_reals(VIP, &[(0, 0), (1, 20), (2, 0)]);
    let counts = tally(web(VIP), 20);
    assert_eq!(counts.get("web2"), Some(&20), "{counts:?}");
}
