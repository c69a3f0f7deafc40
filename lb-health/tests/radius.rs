//! The radius check against freeradius (its own minimal configuration, on loopback), with
//! ldirectord's own check (Authen::Radius) run against the same server.

mod common;
mod servers;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{check_once, negotiate};
use lb_health::{CheckSpec, Login, Negotiate, Protocol, Service};
use servers::{Server, Stall, V4, V6, free_port, ldirectord_says};

const SECRET: &str = "testing123";

/// freeradius on two ports: `plain` (127.0.0.1 and ::1) accepts requests without a
/// Message-Authenticator, `strict` (127.0.0.1) requires one, as FreeRADIUS does by default
/// since BlastRADIUS (3.2.5). User `probe`, password `s3cret`.
fn freeradius() -> (Server, u16, u16) {
    let (plain, strict) = (free_port(), free_port());
    let dir = Server::dir("freeradius");
    let d = dir.path().display().to_string();
    let client = |name: &str, address: &str, require: &str| {
        format!(
            "  client {name} {{\n    {address}\n    secret = {SECRET}\n    \
             require_message_authenticator = {require}\n  }}\n"
        )
    };
    let listen = |address: &str, port: u16, clients: &str| {
        format!(
            "  listen {{\n    type = auth\n    {address}\n    port = {port}\n    clients = {clients}\n  }}\n"
        )
    };
    let conf = format!(
        "prefix = /usr\nexec_prefix = /usr\nsysconfdir = /etc\nlocalstatedir = /var\n\
         sbindir = /usr/sbin\nlogdir = {d}\nraddbdir = {d}\nradacctdir = {d}\nname = freeradius\n\
         confdir = {d}\nmodconfdir = {d}\nrun_dir = {d}\ndb_dir = {d}\nlibdir = /usr/lib/freeradius\n\
         dictdir = /usr/share/freeradius\npidfile = {d}/radiusd.pid\nmax_request_time = 5\n\
         cleanup_delay = 0\nmax_requests = 1024\nhostname_lookups = no\n\
         log {{\n  destination = stderr\n}}\n\
         security {{\n  allow_core_dumps = no\n  max_attributes = 200\n  reject_delay = 0\n  status_server = no\n}}\n\
         modules {{\n  pap {{\n  }}\n  files {{\n    filename = {d}/users\n  }}\n}}\n\
         clients plain {{\n{}{}}}\nclients strict {{\n{}}}\n\
         server default {{\n{}{}{}  authorize {{\n    files\n    pap\n  }}\n  authenticate {{\n    pap\n  }}\n}}\n",
        client("v4", "ipaddr = 127.0.0.1", "no"),
        client("v6", "ipv6addr = ::1", "no"),
        client("v4", "ipaddr = 127.0.0.1", "yes"),
        listen("ipaddr = 127.0.0.1", plain, "plain"),
        listen("ipv6addr = ::1", plain, "plain"),
        listen("ipaddr = 127.0.0.1", strict, "strict"),
    );
    std::fs::write(dir.path().join("radiusd.conf"), conf).unwrap();
    std::fs::write(dir.path().join("dictionary"), "").unwrap();
    std::fs::write(
        dir.path().join("users"),
        "probe Cleartext-Password := \"s3cret\"\n",
    )
    .unwrap();
    let conf_dir = dir.path().to_owned();
    let mut server = Server::start(
        "freeradius",
        dir,
        Command::new("/usr/sbin/freeradius")
            .arg("-X")
            .arg("-d")
            .arg(&conf_dir),
    );
    server.wait_udp(SocketAddr::new(V4, plain));
    server.wait_udp(SocketAddr::new(V6, plain));
    server.wait_udp(SocketAddr::new(V4, strict));
    (server, plain, strict)
}

fn radius(addr: SocketAddr, user: &str, password: &str, secret: &str) -> CheckSpec {
    let mut spec = negotiate(addr, Service::Radius);
    spec.virtual_address = lb_health::VirtualAddress::Socket {
        protocol: Protocol::Udp,
        address: "192.0.2.1:1812".parse().unwrap(),
    };
    let Negotiate::Radius(radius) = &mut spec.negotiate else {
        unreachable!()
    };
    radius.login = Login {
        user: user.into(),
        password: password.into(),
    };
    radius.secret = secret.into();
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radius_against_freeradius() {
    let (_freeradius, plain, strict) = freeradius();
    let at = SocketAddr::new(V4, plain);
    for (user, password, secret, up, reason) in [
        ("probe", "s3cret", SECRET, true, "Access-Accept"),
        ("probe", "wrong", SECRET, false, "Access-Reject"),
        ("nobody", "s3cret", SECRET, false, "Access-Reject"),
        // A wrong secret: the server drops the request, whose Message-Authenticator does not
        // verify (ldirectord's, without one, gets a reject signed with the server's secret,
        // which does not verify either).
        ("probe", "s3cret", "other", false, "timed out after 2s"),
    ] {
        let mut spec = radius(at, user, password, secret);
        spec.check_timeout = Duration::from_secs(2);
        let outcome = check_once(spec).await;
        assert_eq!(outcome.up, up, "{user} {password} {secret}: {outcome:?}");
        assert!(outcome.reason.contains(reason), "{outcome:?}");
        let theirs = ldirectord_says(
            "radius",
            at,
            &[
                ("login", user),
                ("passwd", password),
                ("secret", secret),
                ("checktimeout", "2"),
            ],
        )
        .await;
        assert_eq!(theirs, Some(up), "ldirectord: {user} {password} {secret}");
    }

    // A server that requires a Message-Authenticator: ours sends one, ldirectord's does not
    // (its requests are dropped, so it is down).
    let strict_at = SocketAddr::new(V4, strict);
    let outcome = check_once(radius(strict_at, "probe", "s3cret", SECRET)).await;
    assert!(outcome.up, "{outcome:?}");
    let theirs = ldirectord_says(
        "radius",
        strict_at,
        &[
            ("login", "probe"),
            ("passwd", "s3cret"),
            ("secret", SECRET),
            ("checktimeout", "2"),
        ],
    )
    .await;
    assert_eq!(theirs, Some(false));

    // IPv6, with NAS-IPv6-Address.
    let v6 = check_once(radius(
        SocketAddr::new(V6, plain),
        "probe",
        "s3cret",
        SECRET,
    ))
    .await;
    assert!(v6.up, "{v6:?}");

    let closed = check_once(radius(
        SocketAddr::new(V4, free_port()),
        "probe",
        "s3cret",
        SECRET,
    ))
    .await;
    assert!(
        !closed.up && closed.reason.contains("refused"),
        "{closed:?}"
    );

    // ldirectord bounds its radius check with checktimeout.
    let stall = Stall::on(V4);
    let mut stalled = radius(stall.udp, "probe", "s3cret", SECRET);
    stalled.check_timeout = Duration::from_secs(2);
    let outcome = check_once(stalled).await;
    assert_eq!(
        (outcome.up, outcome.reason.as_ref()),
        (false, "timed out after 2s")
    );
}
