//! The metrics endpoint: HTTP/1 on hyper, every path answered with the scrape. A scraper
//! cannot stall the agent: at most [`Limits::connections`] connections are served at once
//! (more wait in the listen backlog), a client has [`Limits::header_timeout`] to send its
//! request and [`Limits::request_timeout`] for the whole exchange, and the scrape's reading is
//! done on a blocking thread, never on the director's task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::collect;
use super::record::Recorder;

/// What a scraper is allowed.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub connections: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections: 16,
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the endpoint could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr` (an address in use or not this machine's is an error naming it).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// Serves scrapes on `listener` until `shutdown`: the data planes of configuration
/// `config_name` and what `recorder` holds.
pub async fn serve(
    listener: TcpListener,
    config_name: String,
    recorder: Arc<Recorder>,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.connections));
    let config_name: Arc<str> = config_name.into();
    loop {
        let slot = tokio::select! {
            () = shutdown.cancelled() => return,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors, a connection reset before accept: try the next one.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (name, recorder, shutdown) = (
            Arc::clone(&config_name),
            Arc::clone(&recorder),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |request: Request<Incoming>| {
                let (name, recorder) = (Arc::clone(&name), Arc::clone(&recorder));
                async move { Ok::<_, std::convert::Infallible>(answer(request, name, recorder).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                () = shutdown.cancelled() => {}
                _ = tokio::time::timeout(limits.request_timeout, connection) => {}
            }
        });
    }
}

/// One request: the scrape, read on a blocking thread.
async fn answer(
    request: Request<Incoming>,
    name: Arc<str>,
    recorder: Arc<Recorder>,
) -> Response<Full<Bytes>> {
    let respond = |status: u16, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("a valid response")
    };
    if request.method() != hyper::Method::GET && request.method() != hyper::Method::HEAD {
        return respond(405, "text/plain", "only GET\n".to_string());
    }
    let scraped =
        tokio::task::spawn_blocking(move || collect::render(collect::gather(&name, &recorder)))
            .await;
    match scraped {
        Ok((text, content_type)) => respond(200, content_type, text),
        Err(e) => respond(500, "text/plain", format!("scrape failed: {e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// A server for a configuration with no data plane, and its address.
    async fn server(limits: Limits) -> (SocketAddr, CancellationToken) {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(
            listener,
            "xdirectord-metrics-unit-test.cf".into(),
            Arc::new(Recorder::default()),
            limits,
            shutdown.clone(),
        ));
        (addr, shutdown)
    }

    async fn scrape(addr: SocketAddr) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn an_address_in_use_is_an_error_naming_it() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = bind(addr).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!("cannot serve metrics on {addr}: ")),
            "{text}"
        );
        assert!(text.contains("in use"), "{text}");
        // Not this machine's address.
        let e = bind("192.0.2.1:9100".parse().unwrap()).await.unwrap_err();
        assert!(e.to_string().contains("192.0.2.1:9100"), "{e}");
    }

    #[tokio::test]
    async fn a_silent_client_does_not_hold_up_other_scrapes() {
        // The silent client would be dropped only after an hour: the scrape must not wait.
        let (addr, shutdown) = server(Limits {
            header_timeout: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(3600),
            ..Limits::default()
        })
        .await;
        let _silent = TcpStream::connect(addr).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(20), scrape(addr))
            .await
            .expect("the scrape is answered while the silent client is connected");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            answer.contains("\r\ncontent-type: text/plain; version=0.0.4"),
            "{answer}"
        );
        assert!(
            answer.contains("\nxdirectord_build_info{version="),
            "{answer}"
        );
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_silent_client_is_dropped_at_the_header_timeout_and_frees_its_slot() {
        let (addr, shutdown) = server(Limits {
            connections: 1,
            header_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_secs(3600),
        })
        .await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        // The one slot is the silent client's until the server gives up on its request.
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(20), silent.read_to_end(&mut rest))
            .await
            .expect("the server closes a client that sends nothing");
        assert!(closed.is_ok());
        let answer = tokio::time::timeout(Duration::from_secs(20), scrape(addr))
            .await
            .expect("the freed slot serves the next scrape");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        shutdown.cancel();
    }
}
