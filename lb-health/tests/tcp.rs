//! connect and simpletcp checks against real sockets on loopback.

mod common;

use std::time::Duration;

use common::{Settings, check_once, negotiate};
use lb_health::{CheckType, Failure, Protocol, Service};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};

async fn closed_port() -> std::net::SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn connect_up_and_down() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut spec = negotiate(listener.local_addr().unwrap(), Service::None);
    spec.check_type = CheckType::Connect;
    let outcome = check_once(spec.clone()).await;
    assert!(outcome.up, "{outcome:?}");

    spec.real = closed_port().await;
    spec.check_port = spec.real.port();
    let outcome = check_once(spec).await;
    assert!(!outcome.up);
    assert!(outcome.reason.contains("refused"), "{outcome:?}");
    assert_eq!(outcome.failure, Some(Failure::Refused));
}

#[tokio::test]
async fn check_port_overrides_the_real_port() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut spec = negotiate(closed_port().await, Service::None);
    spec.check_type = CheckType::Connect;
    spec.check_port = listener.local_addr().unwrap().port();
    assert!(check_once(spec).await.up);
}

/// A line server: reads the request until EOF, answers with `reply`, records the request.
async fn line_server(
    reply: &'static str,
) -> (std::net::SocketAddr, tokio::sync::mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            // simpletcp shuts down its write side, so EOF ends the request.
            let _ = stream.read_to_end(&mut request).await;
            let _ = tx.send(request).await;
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn simpletcp_sends_request_and_matches_a_line() {
    let (addr, mut requests) = line_server("hello\nSTATUS OK\nbye\n").await;
    let mut spec = negotiate(addr, Service::Simpletcp);
    *spec.request() = "/PING\\nextra".into();
    *spec.receive() = "^STATUS OK$".into();
    let outcome = check_once(spec).await;
    assert!(outcome.up, "{outcome:?}");
    assert_eq!(requests.recv().await.unwrap(), b"PING\nextra");
}

#[tokio::test]
async fn simpletcp_without_a_matching_line_is_down() {
    let (addr, _requests) = line_server("hello\nSTATUS FAIL\n").await;
    let mut spec = negotiate(addr, Service::Simpletcp);
    *spec.receive() = "OK".into();
    let outcome = check_once(spec).await;
    assert!(!outcome.up);
    assert_eq!(&*outcome.reason, "no line matched receive");
}

#[tokio::test]
async fn simpletcp_silent_server_fails_at_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // Hold the connection open, say nothing.
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(_)) = lines.next_line().await {}
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    let mut spec = negotiate(addr, Service::Simpletcp);
    *spec.receive() = "OK".into();
    spec.negotiate_timeout = Duration::from_millis(500);
    let outcome = check_once(spec).await;
    assert!(!outcome.up);
    assert!(outcome.reason.contains("timed out"), "{outcome:?}");
    assert_eq!(outcome.failure, Some(Failure::Timeout));
}

#[tokio::test]
async fn simpletcp_over_udp() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = server.recv_from(&mut buf).await {
            let reply = if &buf[..n] == b"status\n" {
                "line one\nall good\n"
            } else {
                "what?\n"
            };
            let _ = server.send_to(reply.as_bytes(), peer).await;
        }
    });
    let mut spec = negotiate(addr, Service::Simpletcp);
    spec.set_protocol(Protocol::Udp);
    *spec.request() = "/status\\n".into();
    *spec.receive() = "^all good$".into();
    let outcome = check_once(spec.clone()).await;
    assert!(outcome.up, "{outcome:?}");

    *spec.request() = "/other".into();
    spec.negotiate_timeout = Duration::from_millis(500);
    let outcome = check_once(spec).await;
    assert!(!outcome.up);
}
