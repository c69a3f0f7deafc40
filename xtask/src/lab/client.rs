//! HTTP/1.1 from inside a lab namespace, for the demo and the end-to-end tests: a thread enters
//! the namespace with setns(2) (as `ip netns exec` does for a process), then plain
//! [`std::net::TcpStream`]s talk to the lab's web servers, which name themselves in `Server`.
//!
//! [`Connection`] is one TCP connection that can carry several requests (keep-alive), so a test
//! can hold it open across a restart and use it again; [`get`] is one request on a new
//! connection. Errors are [`io::Error`]s, so a caller can tell a reset from a timeout.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd as _;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

/// How long a connect or a read may take before the request counts as failed.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Moves the calling thread into network namespace `ns` (a name of `ip netns`). Threads it starts
/// afterwards are in it too.
pub fn enter(ns: &str) -> Result<()> {
    let path = format!("/var/run/netns/{ns}");
    let file = File::open(&path).with_context(|| format!("cannot open {path}"))?;
    // SAFETY: a namespace file descriptor, for the calling thread only.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {ns}: {}", io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a thread of its own inside namespace `ns` and returns what it returns.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                enter(ns)?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// One response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// The `Server` header: which lab web server answered (`web1`, …, `fallback`).
    pub server: String,
    /// The `X-Client` header: the client's address and port as the server saw them.
    pub client: String,
    /// The body without its trailing newline.
    pub body: String,
}

/// A TCP connection to a web server, carrying one request after another.
pub struct Connection {
    reader: BufReader<TcpStream>,
    /// Its local address (the client's address and port as the server sees them).
    pub local: SocketAddr,
}

impl Connection {
    /// Connects to `to` from an address and port the kernel picks.
    pub fn open(to: SocketAddr) -> io::Result<Connection> {
        Connection::from_stream(TcpStream::connect_timeout(&to, TIMEOUT)?)
    }

    /// Connects to `to` from `from` (port 0: any port of that address). The address is reused
    /// (`SO_REUSEADDR`), so a test can open the same flow again once the previous one closed.
    pub fn open_from(from: SocketAddr, to: SocketAddr) -> io::Result<Connection> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(to),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.bind(&from.into())?;
        socket.connect_timeout(&to.into(), TIMEOUT)?;
        Connection::from_stream(socket.into())
    }

    fn from_stream(stream: TcpStream) -> io::Result<Connection> {
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            local: stream.local_addr()?,
            reader: BufReader::new(stream),
        })
    }

    /// `GET path`, keeping the connection open for the next request.
    pub fn get(&mut self, path: &str) -> io::Result<Reply> {
        self.exchange(path, false)
    }

    /// `GET path` with `Connection: close`; waits for the server to close first, so this side
    /// leaves no TIME_WAIT behind and the same flow can be opened again at once.
    pub fn get_and_close(mut self, path: &str) -> io::Result<Reply> {
        let reply = self.exchange(path, true)?;
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest)?;
        Ok(reply)
    }

    fn exchange(&mut self, path: &str, close: bool) -> io::Result<Reply> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: {}\r\n\r\n",
            if close { "close" } else { "keep-alive" }
        );
        self.reader.get_mut().write_all(request.as_bytes())?;
        self.read_reply()
    }

    fn read_reply(&mut self) -> io::Result<Reply> {
        let status_line = self.line()?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        let (mut server, mut client, mut length) = (String::new(), String::new(), None);
        loop {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(invalid(format!("bad header {line:?}")));
            };
            match name.to_ascii_lowercase().as_str() {
                "server" => server = value.trim().to_owned(),
                "x-client" => client = value.trim().to_owned(),
                "content-length" => {
                    length = Some(
                        value
                            .trim()
                            .parse::<usize>()
                            .map_err(|_| invalid(format!("bad length {value:?}")))?,
                    );
                }
                _ => {}
            }
        }
        let length = length.ok_or_else(|| invalid("no Content-Length".into()))?;
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        let body = String::from_utf8_lossy(&body).trim_end().to_owned();
        Ok(Reply {
            status,
            server,
            client,
            body,
        })
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// `GET path` on a new connection to `to`, closed afterwards.
pub fn get(to: SocketAddr, path: &str) -> io::Result<Reply> {
    Connection::open(to)?.get_and_close(path)
}

/// `n` new connections to `to`, one after the other, one `GET /` each: how many each server
/// answered (by its `Server` name), and the errors (`error: …`), in name order.
pub fn tally(to: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let key = match get(to, "/") {
            Ok(reply) if reply.status == 200 => reply.server,
            Ok(reply) => format!("error: status {} from {}", reply.status, reply.server),
            Err(e) => format!("error: {e}"),
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}
