//! The oracle check (a TNS CONNECT probe) against a TNS listener played by the test: no
//! Oracle server or client is free to install. The listener answers as Oracle's does, in the
//! TNS packet layout (ACCEPT, REFUSE with the listener's error, REDIRECT, RESEND), chosen by
//! the SID the check asks for; it also checks the CONNECT packet the check sends.

mod common;
mod servers;

use std::net::SocketAddr;
use std::time::Duration;

use common::{check_once, negotiate};
use lb_health::{CheckSpec, Login, Negotiate, Service};
use servers::{Sends, Stall, V4, V6, free_port, tns_listener};

fn oracle(addr: SocketAddr, sid: &str) -> CheckSpec {
    let mut spec = negotiate(addr, Service::Oracle);
    let Negotiate::Sql(sql) = &mut spec.negotiate else {
        unreachable!()
    };
    sql.login = Login {
        user: "scott".into(),
        password: "tiger".into(),
    };
    sql.database = sid.into();
    sql.request = "/SELECT 1 FROM DUAL".into();
    spec
}

#[tokio::test]
async fn oracle_against_a_tns_listener() {
    let at = tns_listener(V4).await;
    for (sid, up, reason) in [
        ("ORCL", true, "TNS ACCEPT"),
        ("SHARED", true, "TNS REDIRECT"),
        ("BUSY", true, "TNS ACCEPT"),
        ("NOSUCH", false, "TNS REFUSE (ORA-12505)"),
    ] {
        let outcome = check_once(oracle(at, sid)).await;
        assert_eq!((outcome.up, outcome.reason.as_ref()), (up, reason), "{sid}");
    }
    let v6 = check_once(oracle(tns_listener(V6).await, "ORCL")).await;
    assert!(v6.up, "{v6:?}");

    // Without a login, ldirectord refuses to check; so does this check.
    let mut no_login = oracle(at, "ORCL");
    if let Negotiate::Sql(sql) = &mut no_login.negotiate {
        sql.login.user.clear();
    }
    let outcome = check_once(no_login).await;
    assert!(
        !outcome.up && outcome.reason.starts_with("Error: Must specify a login"),
        "{outcome:?}"
    );

    let closed = check_once(oracle(SocketAddr::new(V4, free_port()), "ORCL")).await;
    assert!(
        !closed.up && closed.reason.contains("refused"),
        "{closed:?}"
    );

    let stall = Stall::on(V4);
    let mut stalled = oracle(stall.tcp, "ORCL");
    stalled.negotiate_timeout = Duration::from_secs(1);
    let outcome = check_once(stalled).await;
    assert_eq!(
        (outcome.up, outcome.reason.as_ref()),
        (false, "timed out after 1s")
    );

    let garbage = Sends::on(V4, b"\x00\x04garbage".to_vec());
    let outcome = check_once(oracle(garbage.addr, "ORCL")).await;
    assert!(
        !outcome.up && outcome.reason.contains("not a TNS packet"),
        "{outcome:?}"
    );
}
