//! http, https and http_proxy negotiate checks against real hyper servers on loopback.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{Settings, TIMEOUT, check_once, http_server, negotiate, respond};
use http_body_util::Full;
use hyper::Response;
use lb_health::{Failure, HttpMethod, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test]
async fn status_2xx_is_up() {
    let addr = http_server(Arc::new(|_| respond(204, ""))).await;
    let outcome = check_once(negotiate(addr, Service::Http)).await;
    assert!(outcome.up, "{outcome:?}");
    assert_eq!(&*outcome.reason, "204 No Content");
}

#[tokio::test]
async fn status_404_is_down() {
    let addr = http_server(Arc::new(|_| respond(404, "nope"))).await;
    let outcome = check_once(negotiate(addr, Service::Http)).await;
    assert!(!outcome.up);
    assert_eq!(&*outcome.reason, "404 Not Found");
    assert_eq!(outcome.failure, Some(Failure::BadAnswer));
}

#[tokio::test]
async fn connection_refused_is_down() {
    // Bind then drop: the port is very likely closed now.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let outcome = check_once(negotiate(addr, Service::Http)).await;
    assert!(!outcome.up);
    assert!(outcome.reason.contains("connect"), "{outcome:?}");
    assert_eq!(outcome.failure, Some(Failure::Refused), "{outcome:?}");
}

#[tokio::test]
async fn receive_regex_match_and_mismatch() {
    let addr = http_server(Arc::new(|_| respond(200, "<h1>status: healthy</h1>\n"))).await;
    let mut spec = negotiate(addr, Service::Http);
    *spec.receive() = "status: (healthy|ok)".into();
    assert!(check_once(spec.clone()).await.up);
    *spec.receive() = "^<h1>.*</h1>$".into();
    assert!(
        check_once(spec.clone()).await.up,
        "$ matches before the final newline"
    );
    *spec.receive() = "unhealthy|down".into();
    let outcome = check_once(spec).await;
    assert!(!outcome.up);
    assert!(outcome.reason.contains("receive did not match"));
    assert_eq!(outcome.failure, Some(Failure::BadAnswer));
}

#[tokio::test]
async fn request_path_and_query_reach_the_server() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let addr = http_server(Arc::new(move |req| {
        log.lock().unwrap().push(req.uri().to_string());
        respond(200, "")
    }))
    .await;
    let mut spec = negotiate(addr, Service::Http);
    *spec.request() = "/health/check?deep=1".into();
    assert!(check_once(spec.clone()).await.up);
    *spec.request() = "plain.html".into();
    assert!(check_once(spec).await.up);
    assert_eq!(
        *seen.lock().unwrap(),
        ["/health/check?deep=1", "/plain.html"]
    );
}

#[tokio::test]
async fn head_method_is_sent() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let addr = http_server(Arc::new(move |req| {
        log.lock().unwrap().push(req.method().to_string());
        respond(200, "body")
    }))
    .await;
    let mut spec = negotiate(addr, Service::Http);
    *spec.http_method() = HttpMethod::Head;
    assert!(check_once(spec).await.up);
    assert_eq!(*seen.lock().unwrap(), ["HEAD"]);
}

#[tokio::test]
async fn host_header_is_virtualhost_or_the_real_address() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let addr = http_server(Arc::new(move |req| {
        let host = req.headers()["host"].to_str().unwrap().to_owned();
        log.lock().unwrap().push(host);
        respond(200, "")
    }))
    .await;
    let mut spec = negotiate(addr, Service::Http);
    assert!(check_once(spec.clone()).await.up);
    *spec.virtualhost() = Some("www.example.test".into());
    assert!(check_once(spec).await.up);
    assert_eq!(*seen.lock().unwrap(), ["127.0.0.1", "www.example.test"]);
}

#[tokio::test]
async fn redirects_are_followed_with_host_from_the_new_url() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let addr = http_server(Arc::new(move |req| {
        let host = req.headers()["host"].to_str().unwrap().to_owned();
        log.lock().unwrap().push(format!("{} {host}", req.uri()));
        match req.uri().path() {
            "/old" => Response::builder()
                .status(301)
                .header("location", "/new")
                .body(Full::new(Bytes::new()))
                .unwrap(),
            "/new" => respond(200, "arrived"),
            _ => respond(404, ""),
        }
    }))
    .await;
    let mut spec = negotiate(addr, Service::Http);
    *spec.request() = "/old".into();
    *spec.receive() = "arrived".into();
    *spec.virtualhost() = Some("vhost.test".into());
    let outcome = check_once(spec).await;
    assert!(outcome.up, "{outcome:?}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], "/old vhost.test");
    assert_eq!(seen[1], format!("/new 127.0.0.1:{}", addr.port()));
}

#[tokio::test]
async fn redirect_loops_stop_after_seven() {
    let count = Arc::new(Mutex::new(0));
    let hits = Arc::clone(&count);
    let addr = http_server(Arc::new(move |_| {
        *hits.lock().unwrap() += 1;
        Response::builder()
            .status(302)
            .header("location", "/again")
            .body(Full::new(Bytes::new()))
            .unwrap()
    }))
    .await;
    let outcome = check_once(negotiate(addr, Service::Http)).await;
    assert!(!outcome.up);
    assert_eq!(&*outcome.reason, "302 Found");
    assert_eq!(*count.lock().unwrap(), 8, "the request and 7 redirects");
}

#[tokio::test]
async fn chunked_body_from_hyper_is_matched() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let seen = Arc::clone(&seen);
                    async move {
                        // A body of unknown length: hyper sends it chunked, in two chunks.
                        let (mut tx, body) = http_body_util::Channel::<Bytes>::new(2);
                        tokio::spawn(async move {
                            let _ = tx.send_data(Bytes::from_static(b"status: ")).await;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            let _ = tx.send_data(Bytes::from_static(b"healthy\n")).await;
                        });
                        seen.lock().unwrap().push(());
                        Ok::<_, std::convert::Infallible>(Response::new(body))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let mut spec = negotiate(addr, Service::Http);
    *spec.receive() = "^status: healthy$".into();
    let outcome = check_once(spec).await;
    assert!(outcome.up, "{outcome:?}");
    assert_eq!(requests.lock().unwrap().len(), 1);
}

/// A server that sends headers, then one body byte at a time, slower than the deadline.
async fn slow_drip_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                    .await;
                for _ in 0..1000 {
                    if stream.write_all(b"x").await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn slow_drip_body_fails_at_the_deadline() {
    let addr = slow_drip_server().await;
    let mut spec = negotiate(addr, Service::Http);
    spec.negotiate_timeout = Duration::from_millis(700);
    let outcome = check_once(spec).await;
    assert!(!outcome.up);
    assert!(outcome.reason.contains("timed out"), "{outcome:?}");
    assert_eq!(outcome.failure, Some(Failure::Timeout));
}

#[tokio::test]
async fn server_that_never_answers_fails_at_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts (the kernel does, via the backlog) but never reads or writes.
    let mut spec = negotiate(addr, Service::Http);
    spec.negotiate_timeout = Duration::from_millis(500);
    let outcome = check_once(spec).await;
    drop(listener);
    assert!(!outcome.up);
    assert!(outcome.reason.contains("timed out"), "{outcome:?}");
    assert_eq!(outcome.failure, Some(Failure::Timeout));
}

#[tokio::test]
async fn http_proxy_fetches_the_absolute_url_through_the_real() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    // The "proxy" answers for the origin itself, as a caching proxy would.
    let addr = http_server(Arc::new(move |req| {
        let host = req.headers()["host"].to_str().unwrap().to_owned();
        log.lock().unwrap().push((req.uri().to_string(), host));
        respond(200, "from origin")
    }))
    .await;
    let mut spec = negotiate(addr, Service::HttpProxy);
    *spec.request() = "http://origin.example.test/page".into();
    *spec.receive() = "origin".into();
    let outcome = check_once(spec).await;
    assert!(outcome.up, "{outcome:?}");
    assert_eq!(
        *seen.lock().unwrap(),
        [(
            "http://origin.example.test/page".to_owned(),
            "origin.example.test".to_owned()
        )]
    );
}

#[tokio::test]
async fn ipv6_real() {
    let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    drop(listener);
    let addr = common::http_server_on(
        "[::1]:0".parse().unwrap(),
        Arc::new(|req| respond(200, req.headers()["host"].to_str().unwrap())),
    )
    .await;
    let mut spec = negotiate(addr, Service::Http);
    *spec.receive() = r"^\[::1\]$".into();
    let outcome = check_once(spec).await;
    assert!(outcome.up, "{outcome:?}");
    let _ = TIMEOUT;
}

mod https {
    use super::*;
    use lb_health::{
        CheckOutcome, CheckSpec, Checker, HealthRunner, Probes, RunnerConfig, TrustedCas,
    };
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, date_time_ymd};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::CertifiedKey;
    use tokio_util::sync::CancellationToken;

    /// A test CA and the certificates it or nobody signs, made fresh for each test.
    struct Pki {
        ca: rcgen::Certificate,
        ca_key: KeyPair,
    }

    /// A certificate chain (leaf first) and its key.
    struct Served {
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    }

    impl Pki {
        fn new() -> Pki {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "xdirectord test CA");
            let ca_key = KeyPair::generate().unwrap();
            let ca = params.self_signed(&ca_key).unwrap();
            Pki { ca, ca_key }
        }

        /// What a check trusting only this CA trusts.
        fn trusted(&self) -> TrustedCas {
            TrustedCas::Only(vec![self.ca.der().to_vec()])
        }

        /// A leaf for `name`, signed by this CA (chain: leaf, CA), valid now unless `expired`.
        fn leaf(&self, name: &str, expired: bool) -> Served {
            let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
            if expired {
                params.not_before = date_time_ymd(2020, 1, 1);
                params.not_after = date_time_ymd(2020, 2, 1);
            }
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
            Served {
                chain: vec![
                    CertificateDer::from(cert.der().to_vec()),
                    CertificateDer::from(self.ca.der().to_vec()),
                ],
                key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            }
        }
    }

    /// A self-signed certificate for 127.0.0.1: even its name would match.
    fn self_signed() -> Served {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        Served {
            chain: vec![CertificateDer::from(cert.cert.der().to_vec())],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der())),
        }
    }

    /// Records the SNI each handshake asked for and serves one certificate chain.
    #[derive(Debug)]
    struct Recorder {
        key: Arc<CertifiedKey>,
        names: Arc<Mutex<Vec<Option<String>>>>,
    }

    impl ResolvesServerCert for Recorder {
        fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            self.names
                .lock()
                .unwrap()
                .push(hello.server_name().map(str::to_owned));
            Some(Arc::clone(&self.key))
        }
    }

    /// An HTTPS server serving `served`, recording the Host headers it is sent and the SNI it
    /// is asked for.
    async fn https_server(
        served: Served,
        hosts: Arc<Mutex<Vec<String>>>,
    ) -> (std::net::SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signing = provider.key_provider.load_private_key(served.key).unwrap();
        let names = Arc::new(Mutex::new(Vec::new()));
        let resolver = Recorder {
            key: Arc::new(CertifiedKey::new(served.chain, signing)),
            names: Arc::clone(&names),
        };
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let hosts = Arc::clone(&hosts);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let hosts = Arc::clone(&hosts);
                        async move {
                            let host = req.headers()["host"].to_str().unwrap().to_owned();
                            hosts.lock().unwrap().push(host);
                            Ok::<_, std::convert::Infallible>(respond(200, "secure ok"))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        (addr, names)
    }

    async fn check_trusting(spec: CheckSpec, trusted: &TrustedCas) -> CheckOutcome {
        let probes = Probes::with_trusted_cas(1, trusted);
        let mut checker = Checker::new(spec).expect("valid spec");
        checker.check(&probes).await.expect("a result")
    }

    #[tokio::test]
    async fn self_signed_certificate_is_down() {
        let (addr, _) = https_server(self_signed(), Arc::default()).await;
        let spec = negotiate(addr, Service::Https);
        let outcome = check_once(spec.clone()).await;
        assert!(!outcome.up, "{outcome:?}");
        assert!(outcome.reason.contains("certificate"), "{outcome:?}");
        // Trusting another CA changes nothing.
        let outcome = check_trusting(spec, &Pki::new().trusted()).await;
        assert!(!outcome.up, "{outcome:?}");
    }

    #[tokio::test]
    async fn trusted_ca_is_up_whatever_the_name_and_sni_is_virtualhost() {
        let pki = Pki::new();
        let hosts = Arc::new(Mutex::new(Vec::new()));
        let (addr, names) = https_server(pki.leaf("cert.invalid", false), Arc::clone(&hosts)).await;
        let mut spec = negotiate(addr, Service::Https);
        *spec.receive() = "secure".into();
        let outcome = check_trusting(spec.clone(), &pki.trusted()).await;
        assert!(outcome.up, "{outcome:?}");
        *spec.virtualhost() = Some("www.example.test".into());
        let outcome = check_trusting(spec, &pki.trusted()).await;
        assert!(outcome.up, "{outcome:?}");
        assert_eq!(
            *names.lock().unwrap(),
            [None, Some("www.example.test".to_owned())],
            "no SNI for an address, virtualhost otherwise"
        );
        assert_eq!(*hosts.lock().unwrap(), ["127.0.0.1", "www.example.test"]);
    }

    #[tokio::test]
    async fn a_ca_the_system_does_not_trust_is_down() {
        let pki = Pki::new();
        let (addr, _) = https_server(pki.leaf("127.0.0.1", false), Arc::default()).await;
        let outcome = check_once(negotiate(addr, Service::Https)).await;
        assert!(!outcome.up, "{outcome:?}");
    }

    #[tokio::test]
    async fn expired_certificate_is_down_even_from_a_trusted_ca() {
        let pki = Pki::new();
        let (addr, _) = https_server(pki.leaf("cert.invalid", true), Arc::default()).await;
        let outcome = check_trusting(negotiate(addr, Service::Https), &pki.trusted()).await;
        assert!(!outcome.up, "{outcome:?}");
        assert!(outcome.reason.contains("xpired"), "{outcome:?}");
    }

    #[tokio::test]
    async fn the_runner_checks_with_its_configured_cas() {
        let pki = Pki::new();
        let (addr, _) = https_server(pki.leaf("cert.invalid", false), Arc::default()).await;
        let shutdown = CancellationToken::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let config = RunnerConfig {
            trusted_cas: pki.trusted(),
            ..RunnerConfig::default()
        };
        let mut runner = HealthRunner::new(tx, config, &shutdown);
        runner.replace([("real", negotiate(addr, Service::Https))]);
        let result = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("a result within 20 s")
            .expect("runner alive");
        assert!(result.up, "{result:?}");
        runner.shutdown().await;
    }

    #[tokio::test]
    async fn plain_http_server_fails_an_https_check() {
        let addr = http_server(Arc::new(|_| respond(200, ""))).await;
        let outcome = check_once(negotiate(addr, Service::Https)).await;
        assert!(!outcome.up);
        assert!(outcome.reason.contains("tls"), "{outcome:?}");
    }

    /// A self-signed certificate for 127.0.0.1 that says it is a CA, as `openssl req -x509`
    /// makes them.
    fn self_signed_ca(expired: bool) -> Served {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2020, 2, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Served {
            chain: vec![CertificateDer::from(cert.der().to_vec())],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    #[tokio::test]
    async fn a_self_signed_certificate_in_the_store_is_trusted_while_valid() {
        for (served, up) in [
            (self_signed(), true),
            (self_signed_ca(false), true),
            (self_signed_ca(true), false),
        ] {
            let trusted = TrustedCas::Only(vec![served.chain[0].to_vec()]);
            let (addr, _) = https_server(served, Arc::default()).await;
            let outcome = check_trusting(negotiate(addr, Service::Https), &trusted).await;
            assert_eq!(outcome.up, up, "{outcome:?}");
        }
    }
}
