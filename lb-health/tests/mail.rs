//! The smtp, submission, pop, pops, imap and imaps checks against exim and dovecot (private
//! configurations, on loopback), with ldirectord's own checks run against the same servers.

mod common;
mod servers;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{check_once, negotiate};
use lb_health::{CheckOutcome, CheckSpec, Checker, Login, Negotiate, Probes, Service, TrustedCas};
use servers::{
    Certificates, Sends, Server, Stall, V4, V6, certificates, chown, free_port, ldirectord_says,
};

/// exim on three ports of 127.0.0.1 and ::1: `normal`; `no_ehlo`, which refuses EHLO (so
/// the client falls back to HELO); `refused`, which greets with 554.
struct Exim {
    _server: Server,
    normal: u16,
    no_ehlo: u16,
    refused: u16,
}

fn exim() -> Exim {
    let (normal, no_ehlo, refused) = (free_port(), free_port(), free_port());
    let dir = Server::dir("exim");
    for sub in ["spool", "log"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        chown(&dir.path().join(sub), "Debian-exim");
    }
    let conf = dir.path().join("exim.conf");
    // exim accepts -C from root only for a file owned by root and written by no one else.
    std::fs::write(
        &conf,
        format!(
            "primary_hostname = xdirectord.test\n\
             spool_directory = {dir}/spool\n\
             log_file_path = {dir}/log/%slog\n\
             pid_file_path = {dir}/exim.pid\n\
             local_interfaces = <; 127.0.0.1 ; ::1\n\
             daemon_smtp_ports = {normal} : {no_ehlo} : {refused}\n\
             acl_smtp_connect = acl_connect\n\
             acl_smtp_helo = acl_helo\n\
             begin acl\n\
             acl_connect:\n  deny condition = ${{if eq{{$received_port}}{{{refused}}}}}\n  accept\n\
             acl_helo:\n  deny condition = ${{if and{{{{eq{{$received_port}}{{{no_ehlo}}}}}\
             {{match{{$smtp_command}}{{\\N^(?i)ehlo\\N}}}}}}}}\n  accept\n\
             begin routers\nbegin transports\n",
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let mut server = Server::start(
        "exim",
        dir,
        Command::new("/usr/sbin/exim4")
            .args(["-bdf", "-C"])
            .arg(&conf),
    );
    for port in [normal, no_ehlo, refused] {
        server.wait_tcp(SocketAddr::new(V4, port));
        server.wait_tcp(SocketAddr::new(V6, port));
    }
    Exim {
        _server: server,
        normal,
        no_ehlo,
        refused,
    }
}

/// dovecot on 127.0.0.1 and ::1: imap, imaps, pop3 and pop3s. Users `probe` (one message in
/// its mailbox) and `empty` (none), password `s3cret`. Its certificate names 127.0.0.1 and
/// localhost (not ::1) and is signed by `certs.ca_der`.
struct Dovecot {
    _server: Server,
    imap: u16,
    imaps: u16,
    pop3: u16,
    pop3s: u16,
    certs: Certificates,
}

fn dovecot() -> Dovecot {
    let (imap, imaps, pop3, pop3s) = (free_port(), free_port(), free_port(), free_port());
    let dir = Server::dir("dovecot");
    let d = dir.path();
    let certs = certificates(&["127.0.0.1", "localhost"]);
    std::fs::write(d.join("cert.pem"), &certs.cert_pem).unwrap();
    std::fs::write(d.join("key.pem"), &certs.key_pem).unwrap();
    std::fs::write(
        d.join("users"),
        "probe:{PLAIN}s3cret\nempty:{PLAIN}s3cret\n",
    )
    .unwrap();
    let new = d.join("home/probe/Maildir/new");
    std::fs::create_dir_all(&new).unwrap();
    for sub in ["cur", "tmp"] {
        std::fs::create_dir_all(d.join("home/probe/Maildir").join(sub)).unwrap();
    }
    std::fs::write(
        new.join("1.xdt"),
        "From: a@xdirectord.test\r\nSubject: hello\r\n\r\nbody\r\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("home/empty")).unwrap();
    chown(&d.join("home"), "nobody");
    let conf = d.join("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "base_dir = {d}/run\nstate_dir = {d}/state\ninstance_name = xdt-{imap}\n\
             log_path = {d}/dovecot.log\nprotocols = imap pop3\nlisten = 127.0.0.1, ::1\n\
             ssl = yes\nssl_cert = <{d}/cert.pem\nssl_key = <{d}/key.pem\n\
             disable_plaintext_auth = no\nauth_mechanisms = plain login cram-md5\n\
             auth_failure_delay = 0\nlogin_trusted_networks = 127.0.0.0/8 ::1/128\n\
             default_login_user = dovenull\ndefault_internal_user = dovecot\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {d}/users\n}}\n\
             userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={d}/home/%u\n}}\n\
             mail_location = maildir:~/Maildir\n\
             service imap-login {{\n  inet_listener imap {{\n    port = {imap}\n  }}\n\
               inet_listener imaps {{\n    port = {imaps}\n    ssl = yes\n  }}\n}}\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    port = {pop3}\n  }}\n\
               inet_listener pop3s {{\n    port = {pop3s}\n    ssl = yes\n  }}\n}}\n",
            d = d.display()
        ),
    )
    .unwrap();
    let mut server = Server::start(
        "dovecot",
        dir,
        Command::new("/usr/sbin/dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&conf),
    );
    for port in [imap, imaps, pop3, pop3s] {
        server.wait_tcp(SocketAddr::new(V4, port));
        server.wait_tcp(SocketAddr::new(V6, port));
    }
    Dovecot {
        _server: server,
        imap,
        imaps,
        pop3,
        pop3s,
        certs,
    }
}

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
