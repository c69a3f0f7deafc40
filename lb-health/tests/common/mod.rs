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
use lb_health::{
    CheckOutcome, CheckSpec, CheckType, Checker, HttpMethod, Negotiate, Probes, Protocol, Service,
    VirtualAddress,
};
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

/// A TCP virtual at `address`.
pub fn tcp_virtual(address: &str) -> VirtualAddress {
    VirtualAddress::Socket {
        protocol: Protocol::Tcp,
        address: address.parse().unwrap(),
    }
}

/// A negotiate check of `service` (ldirectord's defaults) on `real`, timeouts `TIMEOUT`.
pub fn negotiate(real: SocketAddr, service: Service) -> CheckSpec {
    let mut spec = CheckSpec::new(
        tcp_virtual("192.0.2.1:80"),
        real,
        Negotiate::defaults(service),
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

/// The settings of a spec's negotiate check that tests change, whatever its service.
pub trait Settings {
    fn request(&mut self) -> &mut String;
    fn receive(&mut self) -> &mut String;
    fn virtualhost(&mut self) -> &mut Option<String>;
    fn http_method(&mut self) -> &mut HttpMethod;
    /// Moves the virtual to `protocol`, keeping its address.
    fn set_protocol(&mut self, protocol: Protocol);
}

impl Settings for CheckSpec {
    fn request(&mut self) -> &mut String {
        match &mut self.negotiate {
            Negotiate::Http(h) => &mut h.request,
            Negotiate::SimpleTcp(e) | Negotiate::Dns(e) => &mut e.request,
            Negotiate::Ftp(f) => &mut f.request,
            Negotiate::Ldap(l) => &mut l.request,
            Negotiate::Sql(s) => &mut s.request,
            other => panic!("{other:?} has no request"),
        }
    }

    fn receive(&mut self) -> &mut String {
        match &mut self.negotiate {
            Negotiate::Http(h) => &mut h.receive,
            Negotiate::SimpleTcp(e) | Negotiate::Dns(e) => &mut e.receive,
            Negotiate::Ftp(f) => &mut f.receive,
            Negotiate::Ldap(l) => &mut l.receive,
            other => panic!("{other:?} has no receive"),
        }
    }

    fn virtualhost(&mut self) -> &mut Option<String> {
        match &mut self.negotiate {
            Negotiate::Http(h) => &mut h.virtualhost,
            other => panic!("{other:?} has no virtualhost"),
        }
    }

    fn http_method(&mut self) -> &mut HttpMethod {
        match &mut self.negotiate {
            Negotiate::Http(h) => &mut h.method,
            other => panic!("{other:?} has no httpmethod"),
        }
    }

    fn set_protocol(&mut self, protocol: Protocol) {
        let address = match self.virtual_address {
            VirtualAddress::Socket { address, .. } => address,
            VirtualAddress::Fwmark { .. } => "192.0.2.1:80".parse().unwrap(),
        };
        self.virtual_address = VirtualAddress::Socket { protocol, address };
    }
}
