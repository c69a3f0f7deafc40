//! ICMP echo checks (as root: raw sockets) of the loopback addresses and of an address that
//! never answers.

mod common;

use std::time::Duration;

use common::{Settings, check_once, negotiate};
use lb_health::{CheckType, Checker, Probes, Protocol, Service};

fn ping(addr: &str) -> lb_health::CheckSpec {
    let mut spec = negotiate(format!("{addr}:0").parse().unwrap(), Service::None);
    spec.check_type = CheckType::Ping;
    spec.check_timeout = Duration::from_secs(2);
    spec
}

#[tokio::test]
async fn ipv4_loopback_answers() {
    let outcome = check_once(ping("127.0.0.1")).await;
    assert!(outcome.up, "{outcome:?}");
}

#[tokio::test]
async fn ipv6_loopback_answers() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    let outcome = check_once(ping("[::1]")).await;
    assert!(outcome.up, "{outcome:?}");
}

#[tokio::test]
async fn connect_over_udp_pings() {
    let mut spec = ping("127.0.0.1");
    spec.check_type = CheckType::Connect;
    spec.set_protocol(Protocol::Udp);
    assert!(check_once(spec).await.up);
}

#[tokio::test]
async fn unanswered_address_is_down_after_every_attempt() {
    // TEST-NET-1 (RFC 5737) is never assigned: either no route (down at once) or no reply.
    let mut spec = ping("192.0.2.123");
    spec.check_timeout = Duration::from_millis(200);
    spec.check_count = 2;
    let outcome = check_once(spec).await;
    assert!(!outcome.up, "{outcome:?}");
}

#[tokio::test]
async fn many_concurrent_pings_share_the_socket() {
    let probes = Probes::default();
    let mut checks = Vec::new();
    for _ in 0..50 {
        let probes = probes.clone();
        let mut checker = Checker::new(ping("127.0.0.1")).unwrap();
        checks.push(tokio::spawn(async move {
            checker.check(&probes).await.unwrap()
        }));
    }
    for check in checks {
        let outcome = check.await.unwrap();
        assert!(outcome.up, "{outcome:?}");
    }
}
