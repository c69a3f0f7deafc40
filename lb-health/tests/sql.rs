//! The mysql and pgsql checks against mariadb and postgresql (fresh data directories, on
//! loopback), with ldirectord's own check (DBI) run against the same servers.

mod common;
mod servers;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::{check_once, negotiate};
use lb_health::{CheckSpec, Negotiate, Service};
use servers::{Sends, Server, Stall, V4, V6, chown, free_port, ids, ldirectord_says, mariadb, run};

/// postgres (as the user postgres: it refuses root) on 127.0.0.1 and ::1, password
/// authentication over TCP, with the same user, database and tables.
fn postgres() -> (Server, u16) {
    let port = free_port();
    let dir = Server::dir("postgres");
    chown(dir.path(), "postgres");
    let data = dir.path().join("data");
    let (uid, gid) = ids("postgres");
    let bin = "/usr/lib/postgresql/15/bin";
    run(Command::new(format!("{bin}/initdb"))
        .uid(uid)
        .gid(gid)
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ])
        .args(["-E", "UTF8", "--no-sync"]));
    let mut server = Server::start(
        "postgres",
        dir,
        Command::new(format!("{bin}/postgres"))
            .uid(uid)
            .gid(gid)
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(data.parent().unwrap())
            .arg("-p")
            .arg(port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1,::1", "-c", "fsync=off"]),
    );
    server.wait_tcp(SocketAddr::new(V4, port));
    server.wait_tcp(SocketAddr::new(V6, port));
    let psql = |database: &str, sql: &str| {
        run(Command::new(format!("{bin}/psql"))
            .uid(uid)
            .gid(gid)
            .arg("-h")
            .arg(data.parent().unwrap())
            .args([
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
            ])
            .arg(database)
            .arg("-c")
            .arg(sql));
    };
    psql("postgres", "CREATE USER probe PASSWORD 's3cret'");
    psql("postgres", "CREATE DATABASE shop OWNER probe");
    psql(
        "shop",
        "CREATE TABLE items (id int); INSERT INTO items VALUES (1), (2); CREATE TABLE empty (id int); \
         GRANT SELECT ON items, empty TO probe",
    );
    (server, port)
}

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
