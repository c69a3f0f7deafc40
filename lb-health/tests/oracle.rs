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
use servers::{Sends, Stall, V4, V6, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A TNS packet: the 8-byte header (length, checksum 0, type, reserved, header checksum 0),
/// then `body`.
fn packet(kind: u8, body: &[u8]) -> Vec<u8> {
    let length = u16::try_from(8 + body.len()).unwrap();
    let mut p = length.to_be_bytes().to_vec();
    p.extend_from_slice(&[0, 0, kind, 0, 0, 0]);
    p.extend_from_slice(body);
    p
}

/// ACCEPT: version 313, no options, SDU 2048, TDU 32767, byte order, no data (offset 32),
/// connect flags.
fn accept() -> Vec<u8> {
    packet(
        2,
        &[
            0x01, 0x39, 0x00, 0x00, 0x08, 0x00, 0x7f, 0xff, 0x01, 0x00, 0x00, 0x00, 0x00, 0x20,
            0x41, 0x01, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    )
}

/// REFUSE: user and system reason, then the listener's descriptor with its error.
fn refuse(error: u32) -> Vec<u8> {
    let text = format!(
        "(DESCRIPTION=(TMP=)(VSNNUM=318767104)(ERR={error})(ERROR_STACK=(ERROR=(CODE={error})(EMFI=4))))"
    );
    let mut body = vec![0x22, 0x00];
    body.extend_from_slice(&u16::try_from(text.len()).unwrap().to_be_bytes());
    body.extend_from_slice(text.as_bytes());
    packet(4, &body)
}

/// REDIRECT to a dispatcher.
fn redirect() -> Vec<u8> {
    let text = "(ADDRESS=(PROTOCOL=tcp)(HOST=192.0.2.50)(PORT=40123))";
    let mut body = u16::try_from(text.len()).unwrap().to_be_bytes().to_vec();
    body.extend_from_slice(text.as_bytes());
    packet(5, &body)
}

/// The listener: answers each CONNECT by the SID it names, after checking its layout.
async fn listener(ip: std::net::IpAddr) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut resent = false;
                loop {
                    let mut header = [0u8; 8];
                    if stream.read_exact(&mut header).await.is_err() {
                        return;
                    }
                    let length = usize::from(u16::from_be_bytes([header[0], header[1]]));
                    let mut body = vec![0u8; length - 8];
                    stream.read_exact(&mut body).await.unwrap();
                    assert_eq!(header[4], 1, "a CONNECT packet");
                    let version = u16::from_be_bytes([body[0], body[1]]);
                    assert!(version >= 300, "version {version}");
                    let data_length = usize::from(u16::from_be_bytes([body[16], body[17]]));
                    let data_offset = usize::from(u16::from_be_bytes([body[18], body[19]]));
                    assert_eq!(data_offset + data_length, length, "connect data at the end");
                    let data = String::from_utf8(body[data_offset - 8..].to_vec()).unwrap();
                    assert!(
                        data.starts_with("(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST="),
                        "{data}"
                    );
                    let sid = data
                        .split("(SID=")
                        .nth(1)
                        .and_then(|rest| rest.split(')').next())
                        .unwrap_or_default()
                        .to_owned();
                    let answer = match sid.as_str() {
                        "ORCL" => accept(),
                        "SHARED" => redirect(),
                        "BUSY" if !resent => {
                            resent = true;
                            packet(11, &[])
                        }
                        "BUSY" => accept(),
                        _ => refuse(12505),
                    };
                    let _ = stream.write_all(&answer).await;
                    if sid != "BUSY" || !resent || answer[4] == 2 {
                        // Keep the connection open: the check closes it.
                        let mut rest = Vec::new();
                        let _ = stream.read_to_end(&mut rest).await;
                        return;
                    }
                }
            });
        }
    });
    addr
}

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
    let at = listener(V4).await;
    for (sid, up, reason) in [
        ("ORCL", true, "TNS ACCEPT"),
        ("SHARED", true, "TNS REDIRECT"),
        ("BUSY", true, "TNS ACCEPT"),
        ("NOSUCH", false, "TNS REFUSE (ORA-12505)"),
    ] {
        let outcome = check_once(oracle(at, sid)).await;
        assert_eq!((outcome.up, outcome.reason.as_ref()), (up, reason), "{sid}");
    }
    let v6 = check_once(oracle(listener(V6).await, "ORCL")).await;
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
