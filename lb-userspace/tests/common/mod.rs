//! What the agent's integration tests share: real HTTP servers on loopback that can be
//! stopped and started again on their port, an SMTP sink, and waiting for the fake backend.

#![allow(dead_code, reason = "each test binary uses a different part")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use xdirectord::backend::fake::FakeBackend;
use xdirectord::table::DesiredTable;

/// Long enough for a loaded CI machine; only ever waited for, never asserted as a speed.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A real web server on 127.0.0.1 answering `GET /health` with `ok`.
pub struct WebReal {
    pub addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl WebReal {
    pub async fn start() -> WebReal {
        WebReal::on("127.0.0.1:0".parse().unwrap()).await
    }

    async fn on(addr: SocketAddr) -> WebReal {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                connections.spawn(async move {
                    let service = service_fn(|_req| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"status: ok\n",
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        WebReal {
            addr,
            task: Some(task),
        }
    }

    /// The server goes away: its port refuses connections.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// The server comes back on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        *self = WebReal::on(self.addr).await;
    }
}

impl Drop for WebReal {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Waits until the last table the backend was given satisfies `ready`.
pub async fn wait_for_table(
    backend: &FakeBackend,
    lines: &Arc<Mutex<Vec<String>>>,
    what: &str,
    ready: impl Fn(&DesiredTable) -> bool,
) -> DesiredTable {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let table = backend.current();
        if ready(&table) {
            return table;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}\ntable: {table:#?}\nlog: {:#?}",
                lines.lock().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the log has a line containing `text`.
pub async fn wait_for_line(lines: &Arc<Mutex<Vec<String>>>, text: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !lines.lock().unwrap().iter().any(|l| l.contains(text)) {
        if tokio::time::Instant::now() > deadline {
            panic!(
                "timed out waiting for a log line with {text:?}\nlog: {:#?}",
                lines.lock().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the file exists and contains `text`.
pub async fn wait_for_file(path: &Path, text: &str) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let content = std::fs::read_to_string(path).unwrap_or_default();
        if content.contains(text) {
            return content;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "timed out waiting for {text:?} in {}: {content:?}",
                path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The weight of `real` in the only service of `table`, `None` if it is not there.
pub fn weight(table: &DesiredTable, real: SocketAddr) -> Option<u32> {
    table
        .services
        .values()
        .flat_map(|s| s.reals.iter())
        .find(|r| r.addr == real.ip() && r.port == real.port())
        .map(|r| r.weight)
}

/// A minimal SMTP server that accepts every message and keeps it.
pub struct SmtpSink {
    pub port: u16,
    pub messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&messages);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = Arc::clone(&kept);
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut read = BufReader::new(read);
                    let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" | "HELO" => b"250 sink\r\n",
                            "DATA" => {
                                let _ = write.write_all(b"354 go on\r\n").await;
                                let mut message = String::new();
                                loop {
                                    line.clear();
                                    if read.read_line(&mut line).await.unwrap_or(0) == 0 {
                                        return;
                                    }
                                    if line == ".\r\n" {
                                        break;
                                    }
                                    message.push_str(&line);
                                }
                                // Unfolded, so tests can look for whole header lines.
                                kept.lock()
                                    .unwrap()
                                    .push(message.replace("\r\n ", " ").replace("\r\n\t", " "));
                                b"250 kept\r\n"
                            }
                            "QUIT" => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                return;
                            }
                            _ => b"250 ok\r\n",
                        };
                        if write.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SmtpSink { port, messages }
    }

    pub async fn wait_for(&self, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(m) = self
                .messages
                .lock()
                .unwrap()
                .iter()
                .find(|m| m.contains(text))
            {
                return m.clone();
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "no mail with {text:?}: {:#?}",
                    self.messages.lock().unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
