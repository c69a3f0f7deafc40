//! The mysql and pgsql checks against mariadb and postgresql (fresh data directories, on
//! loopback), with ldirectord's own check (DBI) run against the same servers.

mod common;
mod servers;

use std::net::SocketAddr;
use std::time::Duration;

use common::{check_once, negotiate};
use lb_health::{CheckSpec, Negotiate, Service};
use servers::{Sends, Stall, V4, V6, free_port, ldirectord_says, mariadb, postgres};

fn sql(addr: SocketAddr, service: Service, login: &str, passwd: &str, query: &str) -> CheckSpec {
    let mut spec = negotiate(addr, service);
    let Negotiate::Sql(sql) = &mut spec.negotiate else {
        unreachable!()
    };
    sql.login.user = login.into();
    sql.login.password = passwd.into();
    sql.database = "shop".into();
    sql.request = format!("/{query}");
    spec
}

/// The cases every SQL service must pass, ours and ldirectord's verdicts compared.
async fn cases(service: Service, ldirectord_name: &str, port: u16) {
    let at = SocketAddr::new(V4, port);
    let cases = [
        ("probe", "s3cret", "SELECT * FROM items", true),
        // No rows.
        ("probe", "s3cret", "SELECT * FROM empty", false),
        // A failing query.
        ("probe", "s3cret", "SELECT * FROM missing", false),
        // Wrong credentials.
        ("probe", "wrong", "SELECT * FROM items", false),
        // No login: ldirectord refuses to check.
        ("", "", "SELECT * FROM items", false),
    ];
    for (login, passwd, query, up) in cases {
        let outcome = check_once(sql(at, service, login, passwd, query)).await;
        assert_eq!(outcome.up, up, "{service:?} {login} {query}: {outcome:?}");
        let theirs = ldirectord_says(
            ldirectord_name,
            at,
            &[
                ("login", login),
                ("passwd", passwd),
                ("database", "shop"),
                ("request", query),
            ],
        )
        .await;
        assert_eq!(theirs, Some(up), "ldirectord: {service:?} {login} {query}");
        if login.is_empty() {
            assert!(
                outcome.reason.starts_with("Error: Must specify a login"),
                "{outcome:?}"
            );
        }
    }
    let v6 = check_once(sql(
        SocketAddr::new(V6, port),
        service,
        "probe",
        "s3cret",
        "SELECT * FROM items",
    ))
    .await;
    assert!(v6.up && v6.reason.contains("2 rows"), "{v6:?}");

    let closed = check_once(sql(
        SocketAddr::new(V4, free_port()),
        service,
        "probe",
        "s3cret",
        "SELECT 1",
    ))
    .await;
    assert!(!closed.up, "{closed:?}");

    // ldirectord would hang here for good: no timeout in DBI. negotiatetimeout bounds it.
    let stall = Stall::on(V4);
    let mut stalled = sql(stall.tcp, service, "probe", "s3cret", "SELECT 1");
    stalled.negotiate_timeout = Duration::from_secs(1);
    let outcome = check_once(stalled).await;
    assert_eq!(
        (outcome.up, outcome.reason.as_ref()),
        (false, "timed out after 1s")
    );

    let garbage = Sends::on(V4, b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec());
    let outcome = check_once(sql(garbage.addr, service, "probe", "s3cret", "SELECT 1")).await;
    assert!(!outcome.up, "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_against_mariadb() {
    let (_server, port) = mariadb();
    cases(Service::Mysql, "mysql", port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgsql_against_postgres() {
    let (_server, port) = postgres();
    cases(Service::Pgsql, "pgsql", port).await;
}
