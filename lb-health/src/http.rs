//! The `http`, `https` and `http_proxy` negotiate checks, as ldirectord's LWP request.
//!
//! * `GET` or `HEAD` of the check URL ([`crate::url::check_url`]) on a new connection,
//!   HTTP/1.1 with `Connection: close`.
//! * `Host` is `virtualhost`, else the real's address (no port, as ldirectord sets it). For
//!   https, `virtualhost` is also the TLS server name (SNI); without it no SNI is sent, as for
//!   any IP address. (ldirectord sends no SNI at all: LWP takes it from the URL, which holds the
//!   real's address.)
//! * `http_proxy`: the request is an absolute URL, sent in absolute form to the real acting as
//!   proxy (`real:checkport`); `Host` comes from that URL.
//! * Redirects (301, 302, 303, 307, 308 with a `Location`) are followed like LWP: at most 7,
//!   `Host` recomputed from the new URL, method kept (GET or HEAD), across http and https.
//! * Up iff the final status is 2xx and (`receive` is blank or the body matches it). The body
//!   of a 2xx is read to its end, as LWP does, so a server that drips its body past the
//!   deadline is down. At most [`MAX_BODY_BYTES`] are kept for matching.
//!
//! The caller bounds the whole exchange (every hop, connect, TLS, request and body) with
//! `negotiatetimeout`.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{CONNECTION, HOST, HeaderValue, LOCATION, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::CheckError;
use crate::outcome::Outcome;
use crate::receive::{Receive, is_blank};
use crate::spec::{CheckSpec, HttpMethod, Service, bracketed};
use crate::url::{Scheme, Url, check_url};

/// LWP's `max_redirect`.
const MAX_REDIRECTS: usize = 7;

/// Body bytes kept for `receive` matching; the rest is read and dropped.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

const AGENT: &str = "xdirectord health check (ldirectord compatible)";

/// A prepared HTTP check: everything that does not change between rounds is computed once.
#[derive(Debug)]
pub(crate) struct HttpCheck {
    url: Url,
    /// Request target of the first hop (origin or absolute form).
    target: Uri,
    /// `Host` of the first hop; `None` derives it from the URL (http_proxy).
    host: Option<HeaderValue>,
    /// TLS server name of the first hop when `virtualhost` is set.
    sni: Option<ServerName<'static>>,
    method: Method,
    /// http_proxy: where to send the request.
    proxy: Option<SocketAddr>,
    receive: Option<Receive>,
}

impl HttpCheck {
    pub(crate) fn new(spec: &CheckSpec) -> Result<HttpCheck, CheckError> {
        let url = check_url(spec.service, &spec.request, spec.real.ip(), spec.check_port)?;
        let proxy = (spec.service == Service::HttpProxy)
            .then(|| SocketAddr::new(spec.real.ip(), spec.check_port));
        let invalid = |message: String| CheckError::InvalidRequest {
            request: spec.request.clone(),
            message,
        };
        let host = match (proxy, &spec.virtualhost) {
            (Some(_), _) => None,
            (None, Some(vhost)) => Some(vhost.clone()),
            (None, None) => Some(bracketed(spec.real.ip())),
        };
        let host = host
            .map(|h| HeaderValue::from_str(&h).map_err(|e| invalid(format!("Host {h:?}: {e}"))))
            .transpose()?;
        let sni = spec
            .virtualhost
            .as_deref()
            .filter(|_| proxy.is_none())
            .and_then(server_name_of_virtualhost);
        let target = request_target(&url, proxy.is_some()).map_err(invalid)?;
        let receive = if is_blank(&spec.receive) {
            None
        } else {
            Some(Receive::new(&spec.receive)?)
        };
        let method = match spec.http_method {
            HttpMethod::Get => Method::GET,
            HttpMethod::Head => Method::HEAD,
        };
        Ok(HttpCheck {
            url,
            target,
            host,
            sni,
            method,
            proxy,
            receive,
        })
    }

    /// One check, following redirects.
    pub(crate) async fn run(&self, tls: &TlsConnector) -> Outcome {
        let mut url = self.url.clone();
        let mut method = self.method.clone();
        let mut hop = Hop {
            target: self.target.clone(),
            host: self.host.clone(),
            sni: self.sni.clone(),
        };
        for redirects in 0..=MAX_REDIRECTS {
            let response = match self.fetch(tls, &url, &method, hop).await {
                Ok(r) => r,
                Err(e) => return Outcome::down(e),
            };
            let status = response.status;
            if is_redirect(status)
                && redirects < MAX_REDIRECTS
                && let Some(location) = response.location
            {
                url = match url.join(&location) {
                    Ok(next) => next,
                    Err(e) => {
                        return Outcome::down(format!("{} to bad Location: {e}", line(status)));
                    }
                };
                if status == StatusCode::SEE_OTHER && method != Method::HEAD {
                    method = Method::GET;
                }
                // LWP drops the Host header on redirect: it comes from the new URL.
                hop = Hop {
                    target: match request_target(&url, self.proxied(&url)) {
                        Ok(t) => t,
                        Err(e) => return Outcome::down(format!("bad Location: {e}")),
                    },
                    host: None,
                    sni: None,
                };
                continue;
            }
            if !status.is_success() {
                return Outcome::down(line(status));
            }
            return match &self.receive {
                None => Outcome::up(line(status)),
                Some(receive) if receive.is_match(&String::from_utf8_lossy(&response.body)) => {
                    Outcome::up(line(status))
                }
                Some(_) => Outcome::down(format!("{}, but receive did not match", line(status))),
            };
        }
        unreachable!("the last round never follows a redirect")
    }

    fn proxied(&self, url: &Url) -> bool {
        self.proxy.is_some() && url.scheme == Scheme::Http
    }

    /// One request and response on a new connection.
    async fn fetch(
        &self,
        tls: &TlsConnector,
        url: &Url,
        method: &Method,
        hop: Hop,
    ) -> Result<Response, String> {
        let addr = match (self.proxy, self.proxied(url)) {
            (Some(proxy), true) => proxy,
            _ => resolve(&url.host, url.port).await?,
        };
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        // Once the whole response is read the connection is closed with a reset instead of a
        // FIN exchange (as HAProxy closes its checks): the server has already answered and
        // usually closed its side, and neither end keeps TIME_WAIT state for a probe.
        let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
        let host = match hop.host {
            Some(h) => h,
            None => HeaderValue::from_str(&url.authority()).map_err(|e| format!("Host: {e}"))?,
        };
        let request = Request::builder()
            .method(method.clone())
            .uri(hop.target)
            .header(HOST, host)
            .header(USER_AGENT, AGENT)
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        match url.scheme {
            Scheme::Http => exchange(tcp, request).await,
            Scheme::Https => {
                let name = match hop.sni {
                    Some(name) => name,
                    None => server_name_of_host(&url.host)?,
                };
                // Boxed: a TLS stream is kilobytes; plain http checks should not carry it.
                let stream = Box::pin(tls.connect(name, tcp))
                    .await
                    .map_err(|e| format!("tls {addr}: {e}"))?;
                Box::pin(exchange(stream, request)).await
            }
        }
    }
}

/// What changes from one hop to the next.
struct Hop {
    target: Uri,
    host: Option<HeaderValue>,
    sni: Option<ServerName<'static>>,
}

struct Response {
    status: StatusCode,
    location: Option<String>,
    body: Vec<u8>,
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// A status line as LWP's `status_line`: `200 OK`. The usual ones cost no allocation.
fn line(status: StatusCode) -> Cow<'static, str> {
    match status.as_u16() {
        200 => "200 OK".into(),
        204 => "204 No Content".into(),
        301 => "301 Moved Permanently".into(),
        302 => "302 Found".into(),
        404 => "404 Not Found".into(),
        500 => "500 Internal Server Error".into(),
        503 => "503 Service Unavailable".into(),
        code => match status.canonical_reason() {
            Some(reason) => format!("{code} {reason}").into(),
            None => code.to_string().into(),
        },
    }
}

fn request_target(url: &Url, absolute: bool) -> Result<Uri, String> {
    let text = if absolute {
        url.absolute()
    } else {
        url.path_and_query.clone()
    };
    Uri::try_from(text).map_err(|e| e.to_string())
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("resolve {host}: no address"))
}

/// SNI from `virtualhost`: its host part, when that is a DNS name.
fn server_name_of_virtualhost(vhost: &str) -> Option<ServerName<'static>> {
    let host = match vhost.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => vhost,
    };
    server_name_of_host(host).ok()
}

/// The TLS server name of a URL host; an address sends no SNI.
fn server_name_of_host(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_owned()).map_err(|e| format!("server name {host:?}: {e}"))
}

/// Sends `request` on `io` and reads the response, keeping a 2xx body. The connection is
/// driven in this task (not spawned), so a check is one task and nothing outlives it.
async fn exchange<T>(io: T, request: Request<Empty<Bytes>>) -> Result<Response, String>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("http: {e}"))?;
    let read = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("http: {e}"))?;
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        if status.is_success() {
            let mut incoming = response.into_body();
            while let Some(frame) = incoming.frame().await {
                let frame = frame.map_err(|e| format!("http body: {e}"))?;
                if let Ok(data) = frame.into_data() {
                    let room = MAX_BODY_BYTES.saturating_sub(body.len());
                    body.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
        }
        Ok(Response {
            status,
            location,
            body,
        })
    };
    // Without shutdown: when the exchange is over the socket is simply dropped (see the
    // linger setting in `fetch`), saving a shutdown(2) per check.
    let conn = conn.without_shutdown();
    tokio::pin!(conn);
    tokio::pin!(read);
    tokio::select! {
        biased;
        result = &mut read => result,
        // The connection can finish first (the server closed after the response); the
        // response and any buffered body are still there to read.
        finished = &mut conn => {
            let result = read.await;
            match (result, finished) {
                (Err(_), Err(e)) => Err(format!("http: {e}")),
                (result, _) => result,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::VirtualServer;

    fn spec(service: Service, request: &str) -> CheckSpec {
        let mut s = CheckSpec::new(
            VirtualServer::Addr("192.0.2.1:80".parse().unwrap()),
            "10.0.0.1:8080".parse().unwrap(),
            service,
        );
        s.request = request.to_owned();
        s
    }

    #[test]
    fn host_is_virtualhost_or_the_real_address() {
        let c = HttpCheck::new(&spec(Service::Http, "/")).unwrap();
        assert_eq!(c.host.unwrap(), "10.0.0.1");
        assert_eq!(c.target, "/");
        let mut s = spec(Service::Https, "/x");
        s.virtualhost = Some("www.example.com".into());
        let c = HttpCheck::new(&s).unwrap();
        assert_eq!(c.host.unwrap(), "www.example.com");
        assert_eq!(
            c.sni,
            Some(ServerName::try_from("www.example.com").unwrap())
        );
    }

    #[test]
    fn proxy_sends_absolute_form_to_the_real() {
        let c = HttpCheck::new(&spec(Service::HttpProxy, "http://origin.test/p")).unwrap();
        assert_eq!(c.proxy, Some("10.0.0.1:8080".parse().unwrap()));
        assert_eq!(c.target, "http://origin.test/p");
        assert!(c.host.is_none());
    }

    #[test]
    fn virtualhost_with_port_gives_sni_without_it() {
        assert_eq!(
            server_name_of_virtualhost("www.example.com:8443"),
            Some(ServerName::try_from("www.example.com").unwrap())
        );
        assert!(matches!(
            server_name_of_host("[::1]"),
            Ok(ServerName::IpAddress(_))
        ));
    }

    #[test]
    fn status_lines() {
        assert_eq!(line(StatusCode::OK), "200 OK");
        assert_eq!(line(StatusCode::from_u16(599).unwrap()), "599");
        assert_eq!(line(StatusCode::IM_A_TEAPOT), "418 I'm a teapot");
    }
}
