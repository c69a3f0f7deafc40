//! The sip check against kamailio (over UDP and TCP, on loopback), with ldirectord's own
//! check run against the same server.

mod common;
mod servers;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{Settings, check_once, negotiate};
use lb_health::{CheckSpec, Negotiate, Protocol, Service};
use servers::{Server, Stall, V4, V6, free_port, ldirectord_says};

/// kamailio's stock configuration answers an OPTIONS without a user part with
/// `200 Keepalive`, which ldirectord counts as down; this one does the same, answers
/// `486 Busy Here` for the user `busy` and `200 OK` for any other.
const KAMAILIO_CFG: &str = r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=1
auto_aliases=no
listen=udp:127.0.0.1:PORT
listen=tcp:127.0.0.1:PORT
listen=udp:[::1]:PORT
listen=tcp:[::1]:PORT
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "pv.so"
request_route {
    if ($rm == "OPTIONS") {
        if ($rU == $null) {
            sl_send_reply("200", "Keepalive");
        } else if ($rU == "busy") {
            sl_send_reply("486", "Busy Here");
        } else {
            sl_send_reply("200", "OK");
        }
        exit;
    }
    sl_send_reply("405", "Method Not Allowed");
}
"#;

fn kamailio() -> (Server, u16) {
    let port = free_port();
    let dir = Server::dir("kamailio");
    let cfg = dir.path().join("kamailio.cfg");
    std::fs::write(&cfg, KAMAILIO_CFG.replace("PORT", &port.to_string())).unwrap();
    let pid = dir.path().join("kamailio.pid");
    let run_dir = dir.path().to_owned();
    let mut server = Server::start(
        "kamailio",
        dir,
        Command::new("/usr/sbin/kamailio")
            .arg("-f")
            .arg(&cfg)
            .args(["-DD", "-E", "-m", "32", "-M", "8", "-P"])
            .arg(&pid)
            .arg("-Y")
            .arg(&run_dir),
    );
    for ip in [V4, V6] {
        server.wait_tcp(SocketAddr::new(ip, port));
        server.wait_udp(SocketAddr::new(ip, port));
    }
    (server, port)
}

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
