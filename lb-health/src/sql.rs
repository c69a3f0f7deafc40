//! The `mysql` and `pgsql` negotiate checks, as ldirectord's `check_sql` (DBI).
//!
//! Connect to the real as `login` / `passwd`, to the database `database` (none when empty),
//! run `request` (without its leading `/`) and count what it returns: up iff it returns rows
//! (or, for a statement that returns none, affects some: DBI's `rows`). A refused login, an
//! unknown database, a failing query and an empty result are down, with the server's message.
//! mysql_async and tokio-postgres speak the protocols; rows are counted as they arrive, never
//! kept, so a huge result costs no memory.
//!
//! ldirectord refuses to check without a `login` and a `request` (it logs "Must specify a
//! login and request string …" and the real stays down); so does this check ([`missing`]).
//!
//! Differences: ldirectord has no timeout here at all (DBI connects and queries without one:
//! a server that accepts and stalls hangs its checks for good); here `negotiatetimeout` bounds
//! the whole check. ldirectord runs the query twice; here once. No TLS: DBD::mysql does not use
//! it unless asked, and DBD::Pg (libpq's `sslmode=prefer`) would encrypt when the server offers
//! it, which changes no verdict except for a server that only accepts TLS (down here).

use std::net::SocketAddr;

use mysql_async::prelude::Queryable;
use tokio_postgres::SimpleQueryMessage;

use crate::outcome::Outcome;
use crate::spec::{Login, Sql, SqlEngine};

/// ldirectord's refusal, for a check without a login or a query; `None` when it can run.
pub(crate) fn missing(sql: &Sql, real: SocketAddr) -> Option<String> {
    let query = query(&sql.request);
    let truthy = |s: &str| !(s.is_empty() || s == "0");
    if truthy(&sql.login.user) && truthy(query) {
        return None;
    }
    Some(format!(
        "Error: Must specify a login and request string for MySQL, Oracle and PostgreSQL \
         checks. Not adding {}.",
        crate::spec::bracketed(real.ip())
    ))
}

/// The statement: the request without ldirectord's leading `/`.
pub(crate) fn query(request: &str) -> &str {
    request.strip_prefix('/').unwrap_or(request)
}

pub(crate) async fn check(addr: SocketAddr, sql: &Sql) -> Outcome {
    let result = match sql.engine {
        SqlEngine::Mysql => {
            Box::pin(mysql(addr, &sql.login, &sql.database, query(&sql.request))).await
        }
        SqlEngine::Pgsql => {
            Box::pin(pgsql(addr, &sql.login, &sql.database, query(&sql.request))).await
        }
        SqlEngine::Oracle => unreachable!("oracle is probed by the oracle module"),
    };
    match result {
        Ok(0) => Outcome::bad_answer("the query returned no rows"),
        Ok(rows) => Outcome::up(format!("the query returned {rows} rows")),
        Err(e) => Outcome::down(e),
    }
}

async fn mysql(
    addr: SocketAddr,
    login: &Login,
    database: &str,
    query: &str,
) -> Result<u64, String> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(addr.ip().to_string())
        .tcp_port(addr.port())
        .user(Some(&login.user))
        .pass(Some(&login.password))
        .db_name((!database.is_empty()).then_some(database))
        // Otherwise, on a loopback address, the client asks the server for its socket file
        // and reconnects there: not the real's address any more.
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(opts)
        .await
        .map_err(|e| format!("mysql {addr}: {e}"))?;
    let rows = async {
        let mut result = conn.query_iter(query).await?;
        let mut rows = 0u64;
        while result.next().await?.is_some() {
            rows += 1;
        }
        let affected = result.affected_rows();
        result.drop_result().await?;
        Ok::<u64, mysql_async::Error>(rows.max(affected))
    }
    .await
    .map_err(|e| format!("mysql query: {e}"));
    let _ = conn.disconnect().await;
    rows
}

async fn pgsql(
    addr: SocketAddr,
    login: &Login,
    database: &str,
    query: &str,
) -> Result<u64, String> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(addr.ip().to_string())
        .hostaddr(addr.ip())
        .port(addr.port())
        .user(&login.user)
        .password(&login.password)
        .application_name("xdirectord");
    if !database.is_empty() {
        config.dbname(database);
    }
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("pgsql {addr}: {e}"))?;
    // The connection does the I/O; it runs beside the query, in this task (no spawn, so the
    // check's deadline drops both).
    let rows = async {
        use futures_util::StreamExt as _;
        let stream = client.simple_query_raw(query).await?;
        futures_util::pin_mut!(stream);
        let (mut rows, mut affected) = (0u64, 0u64);
        while let Some(message) = stream.next().await {
            match message? {
                SimpleQueryMessage::Row(_) => rows += 1,
                SimpleQueryMessage::CommandComplete(n) => affected = affected.max(n),
                _ => {}
            }
        }
        Ok::<u64, tokio_postgres::Error>(rows.max(affected))
    };
    tokio::pin!(connection);
    tokio::select! {
        rows = rows => rows.map_err(|e| format!("pgsql query: {e}")),
        ended = &mut connection => Err(match ended {
            Ok(()) => "pgsql: connection closed by the server".to_owned(),
            Err(e) => format!("pgsql: {e}"),
        }),
    }
}
