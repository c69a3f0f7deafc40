//! The sip check against kamailio (over UDP and TCP, on loopback), with ldirectord's own
//! check run against the same server.

mod common;
mod servers;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Settings, check_once, negotiate};
use lb_health::{CheckSpec, Negotiate, Protocol, Service};
use servers::{Stall, V4, V6, free_port, kamailio, ldirectord_says};

fn sip(addr: SocketAddr, protocol: Protocol, user: &str) -> CheckSpec {
    let mut spec = negotiate(addr, Service::Sip);
    spec.set_protocol(protocol);
    let Negotiate::Sip(sip) = &mut spec.negotiate else {
        unreachable!()
    };
    sip.user = user.into();
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_against_kamailio() {
    let (_kamailio, port) = kamailio();
    let at = SocketAddr::new(V4, port);
    for (protocol, name) in [(Protocol::Udp, "udp"), (Protocol::Tcp, "tcp")] {
        for (user, up, status) in [
            ("probe@xdirectord.test", true, "SIP/2.0 200 OK"),
            // No user part: kamailio's keepalive answer, down as in ldirectord.
            ("xdirectord.test", false, "SIP/2.0 200 Keepalive"),
            ("busy@xdirectord.test", false, "SIP/2.0 486 Busy Here"),
        ] {
            let outcome = check_once(sip(at, protocol, user)).await;
            assert_eq!(outcome.up, up, "{name} {user}: {outcome:?}");
            assert!(
                outcome.reason.contains(status),
                "{name} {user}: {outcome:?}"
            );
            let theirs = ldirectord_says("sip", at, &[("login", user), ("protocol", name)]).await;
            assert_eq!(theirs, Some(up), "ldirectord: {name} {user}");
        }
        let v6 = check_once(sip(
            SocketAddr::new(V6, port),
            protocol,
            "probe@xdirectord.test",
        ))
        .await;
        assert!(v6.up, "{name}: {v6:?}");

        let closed = check_once(sip(SocketAddr::new(V4, free_port()), protocol, "probe@x")).await;
        assert!(
            !closed.up && closed.reason.contains("refused"),
            "{name}: {closed:?}"
        );

        let stall = Stall::on(V4);
        let addr = if protocol == Protocol::Udp {
            stall.udp
        } else {
            stall.tcp
        };
        let mut stalled = sip(addr, protocol, "probe@x");
        stalled.negotiate_timeout = Duration::from_secs(2);
        let outcome = check_once(stalled).await;
        assert_eq!(
            (outcome.up, outcome.reason.as_ref()),
            (false, "timed out after 2s"),
            "{name}"
        );
    }
}
