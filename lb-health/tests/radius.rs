//! The radius check against freeradius (its own minimal configuration, on loopback), with
//! ldirectord's own check (Authen::Radius) run against the same server.

mod common;
mod servers;

use std::net::SocketAddr;
use std::time::Duration;

use common::{check_once, negotiate};
use lb_health::{CheckSpec, Login, Negotiate, Protocol, Service};
use servers::{Stall, V4, V6, free_port, freeradius, ldirectord_says};

const SECRET: &str = servers::RADIUS_SECRET;

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
