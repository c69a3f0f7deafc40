//! End to end on the lab (docs/lab.md): the data plane keeps forwarding while its agent stops
//! and starts (`cleanstop = no`) and reloads (SIGHUP), with a client opening connections
//! continuously and holding some open: no request fails, no established connection breaks or
//! changes real. A reload that adds a virtual serves it at once and disturbs no other; a reload
//! of a bad file is refused and everything keeps serving.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use xdirectord_tests::e2e::{
    GLOBALS, Traffic, TrafficReport, find, lab, tally, virtual_service, web,
};
use xtask::lab::VIP;

/// Lets the traffic run a while between disturbances (not a measurement: more traffic, more
/// chances to see a failure).
fn pause() {
    std::thread::sleep(Duration::from_millis(1500));
}

fn assert_clean(report: &TrafficReport, what: &str) {
    assert!(report.failures.is_empty(), "{what}: {report:?}");
    assert!(
        report.served.values().sum::<usize>() >= 50 && report.held_requests >= 50,
        "{what}: too little traffic to tell: {report:?}"
    );
}

#[test]
fn restarts_and_reloads_lose_no_connection() {
    let Some(lab) = lab() else { return };
    // quiescent = no is the hard case: a restarted agent whose reals are not checked yet must
    // not take them out of the data plane.
    let config = |weight1: u32| {
        format!(
            "{GLOBALS}quiescent=no\ncleanstop=no\n{}",
            virtual_service(VIP.into(), "scheduler=wrr").replace(
                "10.200.0.11:80 gate 10",
                &format!("10.200.0.11:80 gate {weight1}")
            )
        )
    };
    let agent = lab.agent("e2e-hitless", &config(10));
    agent.wait_for_reals(VIP, &[(0, 10), (1, 20), (2, 30)]);
    let traffic = Traffic::start(&[web(VIP)], 6);
    pause();

    // Stopped: the virtual stays in the data plane, pinned, and keeps forwarding.
    agent.agent.stop().unwrap();
    assert!(agent.agent.pin_dir().exists());
    assert!(
        agent
            .log_text()
            .contains("xdirectord daemon terminated on signal: TERM")
    );
    pause();

    // Started again on the same pins.
    agent.agent.start().unwrap();
    agent.wait_for_log("Starting xdirectord", 2);
    pause();
    agent.wait_for_reals(VIP, &[(0, 10), (1, 20), (2, 30)]);

    // Reloaded unchanged, then with a new weight.
    agent.agent.reload().unwrap();
    agent.wait_for_log("Reloading xdirectord daemon config on signal", 1);
    pause();
    agent.write_config(&config(15));
    agent.agent.reload().unwrap();
    agent.wait_for_log("Reloading xdirectord daemon config on signal", 2);
    agent.wait_for_reals(VIP, &[(0, 15), (1, 20), (2, 30)]);
    pause();

    // And the whole cycle once more, quickly.
    agent.agent.stop().unwrap();
    agent.agent.start().unwrap();
    agent.wait_for_log("Starting xdirectord", 3);
    pause();

    let report = traffic.finish();
    assert_clean(&report, "across two restarts and two reloads");
    assert_eq!(
        report.served.keys().collect::<Vec<_>>(),
        ["web1", "web2", "web3"]
    );
}

#[test]
fn a_reload_adding_a_virtual_serves_it_and_a_bad_reload_keeps_serving() {
    let Some(lab) = lab() else { return };
    let vip2 = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 101));
    lab.add_vips(&[vip2]);
    let first = virtual_service(VIP.into(), "scheduler=wrr");
    let agent = lab.agent("e2e-reload", &format!("{GLOBALS}{first}"));
    agent.wait_for_reals(VIP, &[(0, 10), (1, 20), (2, 30)]);
    let traffic = Traffic::start(&[web(VIP)], 6);
    pause();

    // A second virtual: served as soon as its reals pass their checks.
    let second = virtual_service(vip2, "scheduler=rr");
    agent.write_config(&format!("{GLOBALS}{first}{second}"));
    agent.agent.reload().unwrap();
    agent.wait_for_log("Added virtual server: 10.200.0.101:80", 1);
    agent.wait_for_reals(vip2, &[(0, 10), (1, 20), (2, 30)]);
    let counts = tally(web(vip2), 30);
    // rr keeps a cursor per CPU: exact on each, so nearly exact overall.
    assert!(
        counts.len() == 3 && counts.values().all(|&n| (8..=12).contains(&n)),
        "rr over three reals: {counts:?}"
    );
    pause();

    // A bad file: reported, and the running configuration stays in force.
    agent.write_config(&format!("{GLOBALS}{first}{second}\tscheduler=nonsense\n"));
    agent.agent.reload().unwrap();
    agent.wait_for_log("reading file", 1);
    pause();
    let table = agent.agent.table().unwrap();
    for vip in [IpAddr::from(VIP), vip2] {
        let service = find(&table, vip).unwrap_or_else(|| panic!("{vip} left: {table:?}"));
        assert_eq!(service.reals.len(), 3, "{service:?}");
    }
    assert_eq!(tally(web(vip2), 6).values().sum::<usize>(), 6);

    let report = traffic.finish();
    assert_clean(&report, "across two reloads, one bad");
    assert!(
        agent.agent.pid().is_some(),
        "the agent died:\n{}",
        agent.log_text()
    );
}
