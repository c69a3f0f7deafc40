//! The ldap and ldaps checks against slapd (back_mdb, its own configuration and data, on
//! loopback), with ldirectord's own check run against the same server.

mod common;
mod servers;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{check_once, negotiate};
use lb_health::{CheckSpec, Login, Negotiate, Service};
use servers::{Sends, Server, Stall, V4, V6, certificates, free_port, ldirectord_says, run};

const SLAPD_CONF: &str = "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile DIR/slapd.pid
TLSCertificateFile DIR/cert.pem
TLSCertificateKeyFile DIR/key.pem
database mdb
maxsize 10485760
suffix \"dc=example,dc=com\"
rootdn \"cn=admin,dc=example,dc=com\"
rootpw secret
directory DIR/db
";

const DATA: &str = "dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: uid=probe,dc=example,dc=com
objectClass: inetOrgPerson
uid: probe
cn: Probe
sn: Probe
userPassword: s3cret
";

/// slapd on 127.0.0.1 and ::1: ldap on `.1`, ldaps (a certificate no store trusts) on `.2`.
fn slapd() -> (Server, u16, u16) {
    let (ldap, ldaps) = (free_port(), free_port());
    let dir = Server::dir("slapd");
    let d = dir.path().display().to_string();
    std::fs::create_dir(dir.path().join("db")).unwrap();
    let certs = certificates(&["ldap.invalid"]);
    std::fs::write(dir.path().join("cert.pem"), &certs.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &certs.key_pem).unwrap();
    let conf = dir.path().join("slapd.conf");
    std::fs::write(&conf, SLAPD_CONF.replace("DIR", &d)).unwrap();
    std::fs::write(dir.path().join("data.ldif"), DATA).unwrap();
    run(Command::new("/usr/sbin/slapadd")
        .arg("-f")
        .arg(&conf)
        .arg("-l")
        .arg(dir.path().join("data.ldif")));
    let urls = format!(
        "ldap://127.0.0.1:{ldap}/ ldap://[::1]:{ldap}/ ldaps://127.0.0.1:{ldaps}/ ldaps://[::1]:{ldaps}/"
    );
    let mut server = Server::start(
        "slapd",
        dir,
        Command::new("/usr/sbin/slapd")
            .args(["-d", "0", "-h", &urls, "-f"])
            .arg(&conf),
    );
    for port in [ldap, ldaps] {
        server.wait_tcp(SocketAddr::new(V4, port));
        server.wait_tcp(SocketAddr::new(V6, port));
    }
    (server, ldap, ldaps)
}

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
