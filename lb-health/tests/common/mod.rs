//! Real servers on loopback for the integration tests, and spec helpers.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use lb_health::{CheckOutcome, CheckSpec, CheckType, Checker, Probes, Service, VirtualServer};
use tokio::net::TcpListener;

/// Short for tests, with room to spare on a loaded CI machine.
pub const TIMEOUT: Duration = Duration::from_secs(5);

pub type Handler = Arc<dyn Fn(Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync>;

/// A hyper HTTP/1 server on 127.0.0.1 (any port) answering with `handler`.
pub async fn http_server(handler: Handler) -> SocketAddr {
    http_server_on("127.0.0.1:0".parse().unwrap(), handler).await
}

pub async fn http_server_on(bind: SocketAddr, handler: Handler) -> SocketAddr {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = Arc::clone(&handler);
                    async move { Ok::<_, Infallible>(handler(req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

pub fn respond(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// A negotiate check of `service` on `real`, timeouts `TIMEOUT`.
pub fn negotiate(real: SocketAddr, service: Service) -> CheckSpec {
    let mut spec = CheckSpec::new(
        VirtualServer::Addr("192.0.2.1:80".parse().unwrap()),
        real,
        service,
    );
    spec.check_type = CheckType::Negotiate;
    spec.check_timeout = TIMEOUT;
    spec.negotiate_timeout = TIMEOUT;
    spec.check_interval = Duration::from_secs(1);
    spec
}

/// One round of a check.
pub async fn check_once(spec: CheckSpec) -> CheckOutcome {
    let probes = Probes::default();
    let mut checker = Checker::new(spec).expect("valid spec");
    checker.check(&probes).await.expect("a result")
}
