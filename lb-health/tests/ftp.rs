//! The ftp check against vsftpd (anonymous, its own configuration, on loopback), with
//! ldirectord's own check run against the same server.

mod common;
mod servers;

use std::net::SocketAddr;
use std::time::Duration;

use common::{check_once, negotiate};
use lb_health::{CheckOutcome, CheckSpec, Login, Negotiate, Service};
use servers::{Sends, Stall, V4, V6, free_port, ldirectord_says, vsftpd};

fn ftp(addr: SocketAddr, request: &str, receive: &str, login: Option<(&str, &str)>) -> CheckSpec {
    let mut spec = negotiate(addr, Service::Ftp);
    let Negotiate::Ftp(ftp) = &mut spec.negotiate else {
        unreachable!()
    };
    ftp.request = format!("/{request}");
    ftp.receive = receive.to_owned();
    // lb-config fills in ldirectord's anonymous login when none is given.
    let (user, password) = login.unwrap_or(("anonymous", "ldirectord@xdirectord.test"));
    ftp.login = Login {
        user: user.into(),
        password: password.into(),
    };
    spec
}

/// Our verdict and ldirectord's on the same check; they must agree.
async fn both(spec: CheckSpec, ldirectord_args: &[(&str, &str)]) -> CheckOutcome {
    let outcome = check_once(spec.clone()).await;
    let addr = SocketAddr::new(spec.real.ip(), spec.check_port);
    let theirs = ldirectord_says("ftp", addr, ldirectord_args).await;
    assert_eq!(
        theirs,
        Some(outcome.up),
        "ldirectord disagrees: ours {outcome:?}"
    );
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftp_against_vsftpd() {
    let port = free_port();
    let _v4 = vsftpd(V4, port);
    let _v6 = vsftpd(V6, port);
    let addr = SocketAddr::new(V4, port);
    let anonymous = [
        ("login", "anonymous"),
        ("passwd", "ldirectord@xdirectord.test"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut all = anonymous.to_vec();
        all.extend_from_slice(extra);
        all
    };

    let up = both(
        ftp(addr, "welcome.msg", "Welcome", None),
        &with(&[("request", "welcome.msg"), ("receive", "Welcome")]),
    )
    .await;
    assert!(up.up, "{up:?}");

    let mismatch = both(
        ftp(addr, "welcome.msg", "Goodbye", None),
        &with(&[("request", "welcome.msg"), ("receive", "Goodbye")]),
    )
    .await;
    assert!(!mismatch.up);
    assert!(mismatch.reason.contains("did not match"), "{mismatch:?}");

    let missing = both(
        ftp(addr, "missing.txt", "Welcome", None),
        &with(&[("request", "missing.txt"), ("receive", "Welcome")]),
    )
    .await;
    assert!(!missing.up);
    assert!(
        missing.reason.contains("RETR /missing.txt: \"550"),
        "{missing:?}"
    );

    // vsftpd here takes anonymous users only: a named login is refused, so is the file.
    let refused = both(
        ftp(addr, "welcome.msg", "Welcome", Some(("probe", "wrong"))),
        &[
            ("login", "probe"),
            ("passwd", "wrong"),
            ("request", "welcome.msg"),
            ("receive", "Welcome"),
        ],
    )
    .await;
    assert!(!refused.up);
    assert!(refused.reason.contains("530"), "{refused:?}");

    // A file larger than what is kept is read to its end; its start matches.
    let big = check_once(ftp(addr, "big.bin", "^BIG FILE START", None)).await;
    assert!(big.up, "{big:?}");

    // IPv6: EPSV, and the data connection to the real's address.
    let v6 = check_once(ftp(
        SocketAddr::new(V6, port),
        "welcome.msg",
        "Welcome",
        None,
    ))
    .await;
    assert!(v6.up, "{v6:?}");

    let closed = check_once(ftp(
        SocketAddr::new(V4, free_port()),
        "welcome.msg",
        "Welcome",
        None,
    ))
    .await;
    assert!(!closed.up);
    assert!(closed.reason.contains("refused"), "{closed:?}");

    let stall = Stall::on(V4);
    let mut stalled = ftp(stall.tcp, "welcome.msg", "Welcome", None);
    stalled.negotiate_timeout = Duration::from_secs(1);
    let outcome = check_once(stalled).await;
    assert!(!outcome.up);
    assert_eq!(outcome.reason.as_ref(), "timed out after 1s");

    // Garbage and an endless line: bounded, down.
    let garbage = Sends::on(V4, b"SSH-2.0-OpenSSH_9.2\r\n".to_vec());
    let outcome = check_once(ftp(garbage.addr, "welcome.msg", "Welcome", None)).await;
    assert!(
        !outcome.up && outcome.reason.contains("not a reply"),
        "{outcome:?}"
    );
    let endless = Sends::on(V4, vec![b'2'; 1024 * 1024]);
    let outcome = check_once(ftp(endless.addr, "welcome.msg", "Welcome", None)).await;
    assert!(
        !outcome.up && outcome.reason.contains("line of over"),
        "{outcome:?}"
    );
}
