//! The ldap and ldaps checks against slapd (back_mdb, its own configuration and data, on
//! loopback), with ldirectord's own check run against the same server.

mod common;
mod servers;

use std::net::SocketAddr;
use std::time::Duration;

use common::{check_once, negotiate};
use lb_health::{CheckSpec, Login, Negotiate, Service};
use servers::{Sends, Stall, V4, V6, free_port, ldirectord_says, slapd};

fn ldap(
    addr: SocketAddr,
    service: Service,
    base: &str,
    receive: &str,
    bind: Option<(&str, &str)>,
) -> CheckSpec {
    let mut spec = negotiate(addr, service);
    let Negotiate::Ldap(ldap) = &mut spec.negotiate else {
        unreachable!()
    };
    ldap.request = format!("/{base}");
    ldap.receive = receive.to_owned();
    ldap.bind = bind.map(|(user, password)| Login {
        user: user.into(),
        password: password.into(),
    });
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_against_slapd() {
    let (_slapd, port, tls_port) = slapd();
    let at = SocketAddr::new(V4, port);
    let base = "dc=example,dc=com";
    let probe_dn = "uid=probe,dc=example,dc=com";

    type Bind<'a> = Option<(&'a str, &'a str)>;
    let cases: [(&str, &str, Bind, bool); 6] = [
        // Anonymous bind, the base entry, its DN matching receive.
        (base, "example", None, true),
        // Blank receive: any one entry.
        (probe_dn, "", None, true),
        (base, "nomatch", None, false),
        // No such entry.
        ("ou=nobody,dc=example,dc=com", "", None, false),
        // Simple bind as a user.
        (probe_dn, "probe", Some((probe_dn, "s3cret")), true),
        (base, "", Some((probe_dn, "wrong")), false),
    ];
    for (request, receive, bind, up) in cases {
        let outcome = check_once(ldap(at, Service::Ldap, request, receive, bind)).await;
        assert_eq!(
            outcome.up, up,
            "{request} {receive:?} {bind:?}: {outcome:?}"
        );
        let mut settings = vec![("request", request), ("receive", receive)];
        if let Some((login, passwd)) = bind {
            settings.extend([("login", login), ("passwd", passwd)]);
        }
        assert_eq!(
            ldirectord_says("ldap", at, &settings).await,
            Some(up),
            "ldirectord: {request} {receive:?} {bind:?}"
        );
    }

    // ldaps does not verify the server, as Net::LDAP: a certificate nobody trusts, for a
    // name that is not the real's, is up.
    let ldaps = check_once(ldap(
        SocketAddr::new(V4, tls_port),
        Service::Ldaps,
        base,
        "example",
        None,
    ))
    .await;
    assert!(ldaps.up, "{ldaps:?}");
    assert_eq!(
        ldirectord_says(
            "ldaps",
            SocketAddr::new(V4, tls_port),
            &[("request", base), ("receive", "example")]
        )
        .await,
        Some(true)
    );
    let v6 = check_once(ldap(
        SocketAddr::new(V6, port),
        Service::Ldap,
        base,
        "example",
        None,
    ))
    .await;
    assert!(v6.up, "{v6:?}");
    let v6s = check_once(ldap(
        SocketAddr::new(V6, tls_port),
        Service::Ldaps,
        base,
        "",
        None,
    ))
    .await;
    assert!(v6s.up, "{v6s:?}");

    let closed = check_once(ldap(
        SocketAddr::new(V4, free_port()),
        Service::Ldap,
        base,
        "",
        None,
    ))
    .await;
    assert!(!closed.up, "{closed:?}");

    // ldirectord bounds its ldap check with checktimeout.
    let stall = Stall::on(V4);
    let mut stalled = ldap(stall.tcp, Service::Ldap, base, "", None);
    stalled.check_timeout = Duration::from_secs(1);
    let outcome = check_once(stalled).await;
    assert_eq!(
        (outcome.up, outcome.reason.as_ref()),
        (false, "timed out after 1s")
    );

    let garbage = Sends::on(V4, vec![0x30; 64 * 1024]);
    let outcome = check_once(ldap(garbage.addr, Service::Ldap, base, "", None)).await;
    assert!(!outcome.up, "{outcome:?}");
}
