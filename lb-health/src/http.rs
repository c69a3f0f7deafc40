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
//!   deadline is down. At most [`http1::MAX_BODY_BYTES`] are kept for matching.
//! * The bytes on the wire are written and read by [`http1`].
//!
//! The caller bounds the whole exchange (every hop, connect, TLS, request and body) with
//! `negotiatetimeout`.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::header::HeaderValue;
use http::{StatusCode, Uri};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::CheckError;
use crate::http1::{self, Response};
use crate::outcome::Outcome;
use crate::receive::{Receive, is_blank};
use crate::spec::{CheckSpec, Http, HttpKind, HttpMethod, bracketed};
use crate::url::{Scheme, Url, check_url};

/// LWP's `max_redirect`.
const MAX_REDIRECTS: usize = 7;

/// A prepared HTTP check: everything that does not change between rounds is computed once,
/// down to the bytes of the first request.
#[derive(Debug)]
pub(crate) struct HttpCheck {
    url: Url,
    /// The first hop's request, ready to write.
    request: Box<[u8]>,
    /// Where the first hop connects, when that needs no name lookup.
    addr: Option<SocketAddr>,
    /// TLS server name of the first hop when `virtualhost` is set.
    sni: Option<ServerName<'static>>,
    method: HttpMethod,
    /// http_proxy: where to send the request.
    proxy: Option<SocketAddr>,
    receive: Option<Receive>,
}

impl HttpCheck {
    pub(crate) fn new(spec: &CheckSpec, http: &Http) -> Result<HttpCheck, CheckError> {
        let url = check_url(http.kind, &http.request, spec.real.ip(), spec.check_port)?;
        let proxy = (http.kind == HttpKind::Proxy)
            .then(|| SocketAddr::new(spec.real.ip(), spec.check_port));
        let invalid = |message: String| CheckError::InvalidRequest {
            request: http.request.clone(),
            message,
        };
        // Through a proxy, Host comes from the URL as for any hop without virtualhost.
        let host = match (proxy, &http.virtualhost) {
            (Some(_), _) => url.authority(),
            (None, Some(vhost)) => vhost.clone(),
            (None, None) => bracketed(spec.real.ip()),
        };
        let host =
            HeaderValue::from_str(&host).map_err(|e| invalid(format!("Host {host:?}: {e}")))?;
        let sni = http
            .virtualhost
            .as_deref()
            .filter(|_| proxy.is_none())
            .and_then(server_name_of_virtualhost);
        let target = request_target(&url, proxy.is_some()).map_err(invalid)?;
        let receive = if is_blank(&http.receive) {
            None
        } else {
            Some(Receive::new(&http.receive)?)
        };
        // As `fetch` chooses: the proxy for http URLs, else the URL's own address.
        let addr = match proxy {
            Some(proxy) if url.scheme == Scheme::Http => Some(proxy),
            _ => url
                .host
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, url.port)),
        };
        Ok(HttpCheck {
            request: http1::request(http.method, &target, &host),
            addr,
            url,
            sni,
            method: http.method,
            proxy,
            receive,
        })
    }

    /// One check, following redirects.
    pub(crate) async fn run(&self, tls: &TlsConnector) -> Outcome {
        // The first hop borrows what was prepared; only redirects build anew.
        let mut url = Cow::Borrowed(&self.url);
        let method = self.method;
        let mut hop = Hop {
            request: Cow::Borrowed(&*self.request),
            addr: self.addr,
            sni: self.sni.as_ref(),
        };
        for redirects in 0..=MAX_REDIRECTS {
            let response = match self.fetch(tls, &url, hop).await {
                Ok(r) => r,
                Err(e) => return Outcome::down(e),
            };
            let status = response.status;
            if is_redirect(status)
                && redirects < MAX_REDIRECTS
                && let Some(location) = response.location
            {
                url = match url.join(&location) {
                    Ok(next) => Cow::Owned(next),
                    Err(e) => {
                        return Outcome::bad_answer(format!(
                            "{} to bad Location: {e}",
                            response.line
                        ));
                    }
                };
                // LWP turns a 303 into a GET unless it was a HEAD; the checks only send those
                // two, so the method never changes.
                // LWP drops the Host header on redirect: it comes from the new URL.
                hop = match self.hop_to(&url, method) {
                    Ok(hop) => hop,
                    Err(e) => return Outcome::bad_answer(format!("bad Location: {e}")),
                };
                continue;
            }
            if !status.is_success() {
                return Outcome::bad_answer(response.line);
            }
            return match &self.receive {
                None => Outcome::up(response.line),
                Some(receive) if receive.is_match(&String::from_utf8_lossy(&response.body)) => {
                    Outcome::up(response.line)
                }
                Some(_) => {
                    Outcome::bad_answer(format!("{}, but receive did not match", response.line))
                }
            };
        }
        unreachable!("the last round never follows a redirect")
    }

    fn proxied(&self, url: &Url) -> bool {
        self.proxy.is_some() && url.scheme == Scheme::Http
    }

    /// The request of a hop after a redirect: target and Host from the new URL.
    fn hop_to(&self, url: &Url, method: HttpMethod) -> Result<Hop<'static>, String> {
        let target = request_target(url, self.proxied(url))?;
        let host = url.authority();
        let host = HeaderValue::from_str(&host).map_err(|e| format!("Host {host:?}: {e}"))?;
        Ok(Hop {
            request: Cow::Owned(http1::request(method, &target, &host).into_vec()),
            addr: None,
            sni: None,
        })
    }

    /// One request and response on a new connection.
    async fn fetch(&self, tls: &TlsConnector, url: &Url, hop: Hop<'_>) -> Result<Response, String> {
        let addr = match (hop.addr, self.proxy, self.proxied(url)) {
            (Some(addr), _, _) => addr,
            (None, Some(proxy), true) => proxy,
            _ => resolve(&url.host, url.port).await?,
        };
        let head = self.method == HttpMethod::Head;
        let mut tcp = connect(addr).await?;
        match url.scheme {
            Scheme::Http => {
                // The first write waits for the connection, and fails if it was refused.
                http1::send(&mut tcp, &hop.request)
                    .await
                    .map_err(|e| format!("connect {addr}: {e}"))?;
                http1::receive(&mut tcp, head).await
            }
            Scheme::Https => {
                tcp.writable()
                    .await
                    .map_err(|e| format!("connect {addr}: {e}"))?;
                if let Ok(Some(e)) = tcp.take_error() {
                    return Err(format!("connect {addr}: {e}"));
                }
                let name = match hop.sni {
                    Some(name) => name.clone(),
                    None => server_name_of_host(&url.host)?,
                };
                // Boxed: a TLS stream is kilobytes; plain http checks should not carry it.
                let mut stream = Box::pin(tls.connect(name, tcp))
                    .await
                    .map_err(|e| format!("tls {addr}: {e}"))?;
                Box::pin(http1::exchange(&mut stream, &hop.request, head)).await
            }
        }
    }
}

/// A connection to `addr` under way, set to end with a reset. The caller's first write waits
/// until it is established (and fails if it was refused): one system call fewer per check
/// than waiting for it here and asking the socket for its error.
///
/// Once the whole response is read the connection is closed with a reset instead of a FIN
/// exchange (as HAProxy closes its checks): the server has already answered and usually
/// closed its side, and neither end keeps TIME_WAIT state for a probe. No shutdown(2) either:
/// the socket is simply dropped.
async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let failed = |e: std::io::Error| format!("connect {addr}: {e}");
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )
    .map_err(failed)?;
    let _ = socket.set_linger(Some(Duration::ZERO));
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(failed(e)),
    }
    TcpStream::from_std(socket.into()).map_err(failed)
}

/// What changes from one hop to the next.
struct Hop<'a> {
    request: Cow<'a, [u8]>,
    /// Known without a lookup (the first hop's).
    addr: Option<SocketAddr>,
    sni: Option<&'a ServerName<'static>>,
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The request target: origin form, or absolute form through a proxy. Validated as a URI so
/// that nothing but a target can reach the request line.
fn request_target(url: &Url, absolute: bool) -> Result<String, String> {
    let text = if absolute {
        url.absolute()
    } else {
        url.path_and_query.clone()
    };
    Uri::try_from(text.as_str()).map_err(|e| e.to_string())?;
    Ok(text)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Negotiate, Protocol, Service, VirtualAddress};

    fn spec(service: Service, request: &str) -> (CheckSpec, Http) {
        let spec = CheckSpec::new(
            VirtualAddress::Socket {
                protocol: Protocol::Tcp,
                address: "192.0.2.1:80".parse().unwrap(),
            },
            "10.0.0.1:8080".parse().unwrap(),
            Negotiate::None,
        );
        let Negotiate::Http(mut http) = Negotiate::defaults(service) else {
            panic!("{service:?} is not http")
        };
        http.request = request.to_owned();
        (spec, http)
    }

    fn check(spec: &(CheckSpec, Http)) -> Result<HttpCheck, CheckError> {
        HttpCheck::new(&spec.0, &spec.1)
    }

    fn request_line_and_host(c: &HttpCheck) -> (String, String) {
        let text = String::from_utf8(c.request.to_vec()).unwrap();
        let mut lines = text.lines();
        let request_line = lines.next().unwrap().to_owned();
        let host = lines.next().unwrap().to_owned();
        (request_line, host)
    }

    #[test]
    fn host_is_virtualhost_or_the_real_address() {
        let c = check(&spec(Service::Http, "/")).unwrap();
        assert_eq!(
            request_line_and_host(&c),
            ("GET / HTTP/1.1".into(), "Host: 10.0.0.1".into())
        );
        let mut s = spec(Service::Https, "/x");
        s.1.virtualhost = Some("www.example.com".into());
        s.1.method = HttpMethod::Head;
        let c = check(&s).unwrap();
        assert_eq!(
            request_line_and_host(&c),
            ("HEAD /x HTTP/1.1".into(), "Host: www.example.com".into())
        );
        assert_eq!(
            c.sni,
            Some(ServerName::try_from("www.example.com").unwrap())
        );
    }

    #[test]
    fn proxy_sends_absolute_form_to_the_real() {
        let c = check(&spec(Service::HttpProxy, "http://origin.test/p")).unwrap();
        assert_eq!(c.proxy, Some("10.0.0.1:8080".parse().unwrap()));
        assert_eq!(
            request_line_and_host(&c),
            (
                "GET http://origin.test/p HTTP/1.1".into(),
                "Host: origin.test".into()
            )
        );
    }

    #[test]
    fn nothing_but_a_target_reaches_the_request_line() {
        let mut s = spec(Service::Http, "/a b");
        assert!(matches!(check(&s), Err(CheckError::InvalidRequest { .. })));
        s.1.request = "/".into();
        s.1.virtualhost = Some("evil\r\nX: 1".into());
        assert!(matches!(check(&s), Err(CheckError::InvalidRequest { .. })));
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
}
