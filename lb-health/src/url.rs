//! URLs for HTTP checks: the URL ldirectord builds for a real, and redirect targets.
//!
//! Pure string work, so it is unit-tested without a network.

use std::net::IpAddr;

use http::Uri;

use crate::error::CheckError;
use crate::spec::{HttpKind, bracketed};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// An absolute http or https URL, split as the client needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    pub(crate) scheme: Scheme,
    /// Host name or address, IPv6 without brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Always starts with `/`.
    pub(crate) path_and_query: String,
}

impl Url {
    /// Parses an absolute `http://` or `https://` URL.
    pub(crate) fn parse(text: &str) -> Result<Url, String> {
        let uri: Uri = text.parse().map_err(|e| format!("{e}"))?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            Some(s) => return Err(format!("unsupported scheme {s}")),
            None => return Err("not an absolute URL".to_owned()),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| "URL has no host".to_owned())?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(scheme.default_port());
        let path_and_query = match uri.path_and_query() {
            Some(pq) if pq.as_str().starts_with('/') => pq.as_str().to_owned(),
            Some(pq) => format!("/{}", pq.as_str()),
            None => "/".to_owned(),
        };
        Ok(Url {
            scheme,
            host,
            port,
            path_and_query,
        })
    }

    /// `host[:port]` as LWP writes the Host header for a URL: the port only when it is not
    /// the scheme's default, IPv6 in brackets.
    pub(crate) fn authority(&self) -> String {
        let host = self.host_bracketed();
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    fn host_bracketed(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(ip) => bracketed(ip),
            Err(_) => self.host.clone(),
        }
    }

    /// The absolute form, as a request line through a proxy carries it.
    pub(crate) fn absolute(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{scheme}://{}{}", self.authority(), self.path_and_query)
    }

    /// Resolves a `Location` header against this URL (absolute, scheme-relative,
    /// absolute-path and relative-path references, as LWP's `URI->new_abs` does).
    pub(crate) fn join(&self, location: &str) -> Result<Url, String> {
        let location = location.trim();
        if has_scheme(location) {
            return Url::parse(location);
        }
        if let Some(rest) = location.strip_prefix("//") {
            let scheme = match self.scheme {
                Scheme::Http => "http",
                Scheme::Https => "https",
            };
            return Url::parse(&format!("{scheme}://{rest}"));
        }
        let path_and_query = if location.starts_with('/') {
            location.to_owned()
        } else if location.starts_with('?') {
            let path = self
                .path_and_query
                .split('?')
                .next()
                .unwrap_or("/")
                .to_owned();
            format!("{path}{location}")
        } else {
            let path = self.path_and_query.split('?').next().unwrap_or("/");
            let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
            format!("{dir}{location}")
        };
        Ok(Url {
            path_and_query,
            ..self.clone()
        })
    }
}

fn has_scheme(text: &str) -> bool {
    match text.find("://") {
        Some(i) => {
            i > 0
                && text[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// The URL ldirectord's `ld_setup` builds for an HTTP check (§1.5, last bullet): the request
/// (one leading `/` removed) itself when it is an absolute URL, otherwise
/// `<schema>://<realip>:<checkport>/<request>` with the schema `http` for `http_proxy`.
///
/// Differences from ldirectord, on purpose: an absolute request is recognised whether it was
/// set on the real or on the virtual, and by its own `http://` or `https://` prefix whatever
/// the service (ldirectord only honours a per-real request containing `<service>://`, and
/// turns a virtual-level one into a path). `http_proxy` needs an absolute request: ldirectord
/// would fetch an empty URL and fail every check.
pub(crate) fn check_url(
    kind: HttpKind,
    request: &str,
    real: IpAddr,
    check_port: u16,
) -> Result<Url, CheckError> {
    let uri = request.strip_prefix('/').unwrap_or(request);
    let invalid = |message: String| CheckError::InvalidRequest {
        request: request.to_owned(),
        message,
    };
    if has_scheme(uri) {
        return Url::parse(uri).map_err(invalid);
    }
    let schema = match kind {
        HttpKind::Https => "https",
        HttpKind::Proxy => return Err(CheckError::ProxyRequestNotAbsolute(request.to_owned())),
        HttpKind::Http => "http",
    };
    Url::parse(&format!(
        "{schema}://{}:{check_port}/{uri}",
        bracketed(real)
    ))
    .map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn path_request_is_fetched_from_the_real() {
        let u = check_url(HttpKind::Http, "/health?x=1", ip("10.0.0.1"), 8080).unwrap();
        assert_eq!(u.scheme, Scheme::Http);
        assert_eq!(u.host, "10.0.0.1");
        assert_eq!(u.port, 8080);
        assert_eq!(u.path_and_query, "/health?x=1");
        assert_eq!(u.authority(), "10.0.0.1:8080");
    }

    #[test]
    fn https_and_ipv6_reals() {
        let u = check_url(HttpKind::Https, "/", ip("2001:db8::5"), 443).unwrap();
        assert_eq!(u.scheme, Scheme::Https);
        assert_eq!(u.host, "2001:db8::5");
        assert_eq!(u.authority(), "[2001:db8::5]");
        assert_eq!(u.absolute(), "https://[2001:db8::5]/");
    }

    #[test]
    fn request_without_leading_slash_and_empty_request() {
        let u = check_url(HttpKind::Http, "index.html", ip("10.0.0.1"), 80).unwrap();
        assert_eq!(u.path_and_query, "/index.html");
        let u = check_url(HttpKind::Http, "/", ip("10.0.0.1"), 80).unwrap();
        assert_eq!(u.path_and_query, "/");
    }

    #[test]
    fn absolute_request_is_used_as_is() {
        let u = check_url(
            HttpKind::Http,
            "/http://www.example.com:8000/a",
            ip("10.0.0.1"),
            80,
        )
        .unwrap();
        assert_eq!(u.host, "www.example.com");
        assert_eq!(u.port, 8000);
        assert_eq!(u.path_and_query, "/a");
    }

    #[test]
    fn proxy_needs_an_absolute_request() {
        assert!(matches!(
            check_url(HttpKind::Proxy, "/", ip("10.0.0.1"), 3128),
            Err(CheckError::ProxyRequestNotAbsolute(_))
        ));
        let u = check_url(
            HttpKind::Proxy,
            "http://origin.example/x",
            ip("10.0.0.1"),
            3128,
        )
        .unwrap();
        assert_eq!(u.absolute(), "http://origin.example/x");
    }

    #[test]
    fn locations_resolve_like_lwp() {
        let base = Url::parse("http://10.0.0.1:8080/a/b?q").unwrap();
        assert_eq!(
            base.join("/c").unwrap().absolute(),
            "http://10.0.0.1:8080/c"
        );
        assert_eq!(
            base.join("c?d").unwrap().absolute(),
            "http://10.0.0.1:8080/a/c?d"
        );
        assert_eq!(
            base.join("?z").unwrap().absolute(),
            "http://10.0.0.1:8080/a/b?z"
        );
        assert_eq!(
            base.join("https://other/x").unwrap().absolute(),
            "https://other/x"
        );
        assert_eq!(
            base.join("//other:81/y").unwrap().absolute(),
            "http://other:81/y"
        );
    }

    #[test]
    fn url_without_path_gets_slash() {
        assert_eq!(
            Url::parse("http://example.com").unwrap().path_and_query,
            "/"
        );
        assert!(Url::parse("ftp://example.com/").is_err());
    }
}
