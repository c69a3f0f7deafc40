//! The smtp, submission, pop, pops, imap and imaps checks against exim and dovecot (private
//! configurations, on loopback), with ldirectord's own checks run against the same servers.

mod common;
mod servers;

use std::net::SocketAddr;
use std::time::Duration;

use common::{check_once, negotiate};
use lb_health::{CheckOutcome, CheckSpec, Checker, Login, Negotiate, Probes, Service, TrustedCas};
use servers::{Sends, Stall, V4, V6, dovecot, exim, free_port, ldirectord_says};

fn mailbox(addr: SocketAddr, service: Service, login: Option<(&str, &str)>) -> CheckSpec {
    let mut spec = negotiate(addr, service);
    let login = login.map(|(user, password)| Login {
        user: user.into(),
        password: password.into(),
    });
    match &mut spec.negotiate {
        Negotiate::Pop(m) | Negotiate::Imap(m) => m.login = login,
        other => panic!("{other:?}"),
    }
    spec
}

/// One round with the test CA trusted instead of the system's store.
async fn check_trusting(spec: CheckSpec, ca: &[u8]) -> CheckOutcome {
    let probes = Probes::with_trusted_cas(4, &TrustedCas::Only(vec![ca.to_vec()]));
    Checker::new(spec).unwrap().check(&probes).await.unwrap()
}

fn stalled(addr: SocketAddr, service: Service) -> CheckSpec {
    let mut spec = negotiate(addr, service);
    spec.negotiate_timeout = Duration::from_secs(1);
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_against_exim() {
    let exim = exim();
    let at = |port| SocketAddr::new(V4, port);

    let up = check_once(negotiate(at(exim.normal), Service::Smtp)).await;
    assert!(
        up.up && up.reason.starts_with("220 xdirectord.test ESMTP Exim"),
        "{up:?}"
    );
    assert_eq!(
        ldirectord_says("smtp", at(exim.normal), &[]).await,
        Some(true)
    );

    let submission = check_once(negotiate(at(exim.normal), Service::Submission)).await;
    assert!(submission.up, "{submission:?}");

    // EHLO refused with 550: HELO, as Net::SMTP falls back.
    let helo = check_once(negotiate(at(exim.no_ehlo), Service::Smtp)).await;
    assert!(helo.up, "{helo:?}");
    assert_eq!(
        ldirectord_says("smtp", at(exim.no_ehlo), &[]).await,
        Some(true)
    );

    let refused = check_once(negotiate(at(exim.refused), Service::Smtp)).await;
    assert!(!refused.up && refused.reason.contains("550"), "{refused:?}");
    assert_eq!(
        ldirectord_says("smtp", at(exim.refused), &[]).await,
        Some(false)
    );

    let v6 = check_once(negotiate(SocketAddr::new(V6, exim.normal), Service::Smtp)).await;
    assert!(v6.up, "{v6:?}");

    let closed = check_once(negotiate(at(free_port()), Service::Smtp)).await;
    assert!(
        !closed.up && closed.reason.contains("refused"),
        "{closed:?}"
    );
    assert_eq!(
        ldirectord_says("smtp", closed_addr(), &[]).await,
        Some(false)
    );

    let stall = Stall::on(V4);
    let outcome = check_once(stalled(stall.tcp, Service::Smtp)).await;
    assert_eq!(
        (outcome.up, outcome.reason.as_ref()),
        (false, "timed out after 1s")
    );

    let huge: Vec<u8> = b"220-a banner that never ends\r\n".repeat(10_000);
    let banner = Sends::on(V4, huge);
    let outcome = check_once(negotiate(banner.addr, Service::Smtp)).await;
    assert!(
        !outcome.up && outcome.reason.contains("reply of over"),
        "{outcome:?}"
    );
}

fn closed_addr() -> SocketAddr {
    SocketAddr::new(V4, free_port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop_and_imap_against_dovecot() {
    let dovecot = dovecot();
    let at = |port| SocketAddr::new(V4, port);
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), pem("CERTIFICATE", &dovecot.certs.ca_der)).unwrap();
    let ca_env = ca_file.path().to_str().unwrap();
    let probe = [("login", "probe"), ("passwd", "s3cret")];
    let wrong = [("login", "probe"), ("passwd", "wrong")];
    // ldirectord's imap checks of an IPv4 real connect to port 143 (993) whatever the port:
    // Net::IMAP::Simple drops the port option when the host is an IPv4 address. Given a
    // host name it honours the port, so its checks are compared on `localhost`.
    let imap_host = ("server", "localhost");

    // imap: greeting only, then LOGIN.
    let greeting = check_once(mailbox(at(dovecot.imap), Service::Imap, None)).await;
    assert!(
        greeting.up && greeting.reason.starts_with("* OK"),
        "{greeting:?}"
    );
    assert_eq!(
        ldirectord_says("imap", at(dovecot.imap), &[imap_host]).await,
        Some(true)
    );
    let login = check_once(mailbox(
        at(dovecot.imap),
        Service::Imap,
        Some(("probe", "s3cret")),
    ))
    .await;
    assert!(login.up, "{login:?}");
    assert_eq!(
        ldirectord_says("imap", at(dovecot.imap), &[imap_host, probe[0], probe[1]]).await,
        Some(true)
    );
    let refused = check_once(mailbox(
        at(dovecot.imap),
        Service::Imap,
        Some(("probe", "wrong")),
    ))
    .await;
    assert!(
        !refused.up && refused.reason.contains("LOGIN as probe"),
        "{refused:?}"
    );
    assert_eq!(
        ldirectord_says("imap", at(dovecot.imap), &[imap_host, wrong[0], wrong[1]]).await,
        Some(false)
    );
    let v6 = check_once(mailbox(
        SocketAddr::new(V6, dovecot.imap),
        Service::Imap,
        Some(("probe", "s3cret")),
    ))
    .await;
    assert!(v6.up, "{v6:?}");

    // imaps: the chain against the store and the name against the real's address.
    let imaps = mailbox(at(dovecot.imaps), Service::Imaps, Some(("probe", "s3cret")));
    let trusted = check_trusting(imaps.clone(), &dovecot.certs.ca_der).await;
    assert!(trusted.up, "{trusted:?}");
    assert_eq!(
        ldirectord_says(
            "imaps",
            at(dovecot.imaps),
            &[imap_host, probe[0], probe[1], ("ENV:SSL_CERT_FILE", ca_env)]
        )
        .await,
        Some(true)
    );
    let untrusted = check_once(imaps).await;
    assert!(
        !untrusted.up && untrusted.reason.contains("UnknownIssuer"),
        "{untrusted:?}"
    );
    assert_eq!(
        ldirectord_says("imaps", at(dovecot.imaps), &[imap_host, probe[0], probe[1]]).await,
        Some(false)
    );
    // The certificate names 127.0.0.1, not ::1.
    let v6 = mailbox(SocketAddr::new(V6, dovecot.imaps), Service::Imaps, None);
    let misnamed = check_trusting(v6, &dovecot.certs.ca_der).await;
    assert!(
        !misnamed.up && misnamed.reason.contains("not valid for name"),
        "{misnamed:?}"
    );

    // pop: dovecot offers CRAM-MD5 in CAPA, so both clients log in with it.
    let pop = check_once(mailbox(
        at(dovecot.pop3),
        Service::Pop,
        Some(("probe", "s3cret")),
    ))
    .await;
    assert!(pop.up && pop.reason.contains("+OK 1 "), "{pop:?}");
    assert_eq!(
        ldirectord_says("pop", at(dovecot.pop3), &probe).await,
        Some(true)
    );
    let refused = check_once(mailbox(
        at(dovecot.pop3),
        Service::Pop,
        Some(("probe", "wrong")),
    ))
    .await;
    assert!(!refused.up, "{refused:?}");
    // Slow (half a minute): Mail::POP3Client tries every way twice, and dovecot delays
    // each failure more than the last.
    assert_eq!(
        ldirectord_says("pop", at(dovecot.pop3), &wrong).await,
        Some(false)
    );
    // An empty mailbox is up too (Mail::POP3Client's login returns the message count, 0,
    // but ldirectord's second login() call answers true once logged in).
    let empty = [("login", "empty"), ("passwd", "s3cret")];
    let outcome = check_once(mailbox(
        at(dovecot.pop3),
        Service::Pop,
        Some(("empty", "s3cret")),
    ))
    .await;
    assert!(
        outcome.up && outcome.reason.contains("+OK 0 0"),
        "{outcome:?}"
    );
    assert_eq!(
        ldirectord_says("pop", at(dovecot.pop3), &empty).await,
        Some(true)
    );
    let v6 = check_once(mailbox(
        SocketAddr::new(V6, dovecot.pop3),
        Service::Pop,
        Some(("probe", "s3cret")),
    ))
    .await;
    assert!(v6.up, "{v6:?}");

    // pops, as imaps.
    let pops = mailbox(at(dovecot.pop3s), Service::Pops, Some(("probe", "s3cret")));
    assert!(check_trusting(pops.clone(), &dovecot.certs.ca_der).await.up);
    assert_eq!(
        ldirectord_says(
            "pops",
            at(dovecot.pop3s),
            &[probe[0], probe[1], ("ENV:SSL_CERT_FILE", ca_env)]
        )
        .await,
        Some(true)
    );
    let untrusted = check_once(pops).await;
    assert!(!untrusted.up, "{untrusted:?}");
    assert_eq!(
        ldirectord_says("pops", at(dovecot.pop3s), &probe).await,
        Some(false)
    );

    // pop without login is up whatever happens, in ldirectord and here: even with nothing
    // listening.
    let closed = closed_addr();
    let anything = check_once(mailbox(closed, Service::Pop, None)).await;
    assert!(
        anything.up && anything.reason.contains("refused"),
        "{anything:?}"
    );
    assert_eq!(ldirectord_says("pop", closed, &[]).await, Some(true));
    let with_login = check_once(mailbox(closed, Service::Pop, Some(("probe", "s3cret")))).await;
    assert!(!with_login.up, "{with_login:?}");
    let imap_closed = check_once(mailbox(closed, Service::Imap, None)).await;
    assert!(!imap_closed.up, "{imap_closed:?}");

    let stall = Stall::on(V4);
    for service in [Service::Imap, Service::Imaps] {
        let outcome = check_once(stalled(stall.tcp, service)).await;
        assert_eq!(
            (outcome.up, outcome.reason.as_ref()),
            (false, "timed out after 1s"),
            "{service:?}"
        );
    }
    for service in [Service::Pop, Service::Pops] {
        let mut pop = mailbox(stall.tcp, service, Some(("probe", "s3cret")));
        pop.negotiate_timeout = Duration::from_secs(1);
        let outcome = check_once(pop).await;
        assert_eq!(
            (outcome.up, outcome.reason.as_ref()),
            (false, "timed out after 1s"),
            "{service:?}"
        );
    }

    let bye = Sends::on(V4, b"* BYE not today\r\n".to_vec());
    let outcome = check_once(mailbox(bye.addr, Service::Imap, None)).await;
    assert!(!outcome.up && outcome.reason.contains("BYE"), "{outcome:?}");
}

/// PEM text of one DER block.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}
