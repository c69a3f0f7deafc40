//! `xtask lab-httpd`: the web server of the lab's reals and director. `lab up` starts one in each
//! of those namespaces as a child of the xtask binary, so the lab needs no interpreter and a server
//! is up in milliseconds.
//!
//! HTTP/1.1 with keep-alive (HTTP/1.0 only when asked for), a thread per connection. `/` answers
//! the server's index body, [`super::CHECK_PATH`] its check body, each followed by a newline; every
//! response names the server (`Server`) and the client address it saw (`X-Client`, which direct
//! routing leaves intact). While the `--sick-file` exists, [`super::CHECK_PATH`] answers 503 and
//! everything else as usual: the server fails its health check but keeps serving, which is what
//! the quiescent tests need. `/bytes/N` answers a body of exactly N bytes of [`body_byte`] (no
//! newline), up to [`MAX_GENERATED`]: a response large enough to fill full-size segments, whose
//! every byte the client can check.

use anyhow::{Context as _, Result, bail};
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// An idle keep-alive connection is closed after this, so threads do not pile up.
const IDLE: Duration = Duration::from_secs(10);
const MAX_LINE: u64 = 8 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_BODY: u64 = 1024 * 1024;
/// The largest body `/bytes/N` generates.
pub const MAX_GENERATED: usize = 64 * 1024 * 1024;

/// Byte `i` of a `/bytes/N` body: printable, and not periodic over any short distance, so a lost,
/// repeated or misplaced segment changes what the client reads.
pub fn body_byte(i: usize) -> u8 {
    const ALPHABET: &[u8; 64] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_";
    ALPHABET[(i ^ (i >> 6) ^ (i >> 13) ^ (i >> 19)) % 64]
}

struct Site {
    name: String,
    index_body: String,
    check_body: String,
    sick_file: Option<PathBuf>,
}

/// `lab-httpd --name NAME --index BODY --check BODY --port PORT --pid-file PATH [--sick-file PATH]`
pub fn main(args: &[String]) -> Result<()> {
    let (mut name, mut index_body, mut check_body, mut port, mut pid_file) =
        (None, None, None, None, None);
    let mut sick_file = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .with_context(|| format!("lab-httpd: {flag} needs a value"))?
            .clone();
        match flag.as_str() {
            "--name" => name = Some(value),
            "--index" => index_body = Some(value),
            "--check" => check_body = Some(value),
            "--port" => port = Some(value.parse::<u16>().context("lab-httpd: --port")?),
            "--pid-file" => pid_file = Some(PathBuf::from(value)),
            "--sick-file" => sick_file = Some(PathBuf::from(value)),
            other => bail!("lab-httpd: unknown option {other}"),
        }
    }
    let (Some(name), Some(index_body), Some(check_body), Some(port), Some(pid_file)) =
        (name, index_body, check_body, port, pid_file)
    else {
        bail!(
            "usage: xtask lab-httpd --name NAME --index BODY --check BODY --port PORT --pid-file PATH \
             [--sick-file PATH]"
        );
    };

    let listeners = bind(port)?;
    // Written only once the port is bound: `lab up` waits for this file.
    let pid = std::process::id();
    let tmp = pid_file.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{pid}\n"))
        .and_then(|()| std::fs::rename(&tmp, &pid_file))
        .with_context(|| format!("cannot write {}", pid_file.display()))?;
    eprintln!(
        "lab-httpd {name}: listening on {} (pid {pid})",
        listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    );

    let site = Arc::new(Site {
        name,
        index_body: index_body + "\n",
        check_body: check_body + "\n",
        sick_file,
    });
    let mut acceptors = Vec::new();
    for listener in listeners {
        let site = Arc::clone(&site);
        acceptors.push(std::thread::spawn(move || accept(listener, site)));
    }
    for acceptor in acceptors {
        acceptor
            .join()
            .map_err(|_| anyhow::anyhow!("accept thread panicked"))??;
    }
    Ok(())
}

/// `[::]:PORT`, which also takes IPv4 while net.ipv6.bindv6only is 0 (the default); if the
/// namespace says otherwise, `0.0.0.0:PORT` binds too and serves IPv4 on its own.
fn bind(port: u16) -> Result<Vec<TcpListener>> {
    let v6 = TcpListener::bind((Ipv6Addr::UNSPECIFIED, port))
        .with_context(|| format!("cannot bind [::]:{port}"))?;
    match TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)) {
        Ok(v4) => Ok(vec![v6, v4]),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(vec![v6]),
        Err(e) => Err(e).with_context(|| format!("cannot bind 0.0.0.0:{port}")),
    }
}

fn accept(listener: TcpListener, site: Arc<Site>) -> Result<()> {
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            // ECONNABORTED and friends concern one connection, not the listener.
            continue;
        };
        let site = Arc::clone(&site);
        // A connection that cannot get a thread is dropped; the client sees a reset.
        let _ = std::thread::Builder::new().spawn(move || {
            let _ = serve(stream, &site);
        });
    }
    Ok(())
}

struct Request {
    method: String,
    target: String,
    keep_alive: bool,
}

/// Why a request could not be read: answered with this status, then the connection closes.
struct Refusal(u16);

fn serve(stream: TcpStream, site: &Site) -> io::Result<()> {
    let client = stream.peer_addr()?;
    let client = SocketAddr::new(client.ip().to_canonical(), client.port());
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let (status, body, keep_alive, head_only) = match read_request(&mut reader) {
            // The client closed, went idle, or broke off mid-request: nothing to answer.
            Ok(None) | Err(_) => return Ok(()),
            Ok(Some(Err(Refusal(status)))) => (
                status,
                format!("{}\n", reason(status)).into_bytes(),
                false,
                false,
            ),
            Ok(Some(Ok(request))) => {
                let (status, body) = route(&request, site);
                (status, body, request.keep_alive, request.method == "HEAD")
            }
        };
        let mut response = format!(
            "HTTP/1.1 {status} {}\r\nServer: {}\r\nX-Client: {client}\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: {}\r\n",
            reason(status),
            site.name,
            body.len(),
            if keep_alive { "keep-alive" } else { "close" },
        );
        if status == 405 {
            response.push_str("Allow: GET, HEAD\r\n");
        }
        response.push_str("\r\n");
        writer.write_all(response.as_bytes())?;
        if !head_only {
            writer.write_all(&body)?;
        }
        if !keep_alive {
            return Ok(());
        }
    }
}

fn route(request: &Request, site: &Site) -> (u16, Vec<u8>) {
    if request.method != "GET" && request.method != "HEAD" {
        return (405, format!("{}\n", reason(405)).into_bytes());
    }
    // Absolute form (`GET http://host/path`), as proxies send it, names the same path.
    let target = request
        .target
        .strip_prefix("http://")
        .map(|rest| rest.find('/').map_or("/", |i| &rest[i..]))
        .unwrap_or(&request.target);
    let path = target.split(['?', '#']).next().unwrap_or(target);
    if let Some(n) = path.strip_prefix("/bytes/") {
        return match n.parse::<usize>() {
            Ok(n) if n <= MAX_GENERATED => (200, (0..n).map(body_byte).collect()),
            _ => (404, format!("{}\n", reason(404)).into_bytes()),
        };
    }
    let (status, body) = match path {
        "/" => (200, site.index_body.clone()),
        super::CHECK_PATH if site.sick_file.as_ref().is_some_and(|f| f.exists()) => {
            (503, format!("sick {}\n", site.name))
        }
        super::CHECK_PATH => (200, site.check_body.clone()),
        _ => (404, format!("{}\n", reason(404))),
    };
    (status, body.into_bytes())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// One request head (and its body, discarded). `Ok(None)` when the client closed between requests.
fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Result<Request, Refusal>>> {
    let Some(line) = read_line(reader)? else {
        return Ok(None);
    };
    let parts: Vec<&str> = line.split_whitespace().collect();
    let [method, target, version] = parts.as_slice() else {
        return Ok(Some(Err(Refusal(400))));
    };
    let (method, target, version) = (method.to_string(), target.to_string(), *version);
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Ok(Some(Err(Refusal(505))));
    }
    let mut connection = String::new();
    let mut content_length: u64 = 0;
    let mut chunked = false;
    let mut headers = 0;
    loop {
        let Some(line) = read_line(reader)? else {
            return Err(io::ErrorKind::UnexpectedEof.into());
        };
        if line.is_empty() {
            break;
        }
        headers += 1;
        if headers > MAX_HEADERS {
            return Ok(Some(Err(Refusal(431))));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Ok(Some(Err(Refusal(400))));
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "connection" => connection = value.to_ascii_lowercase(),
            "content-length" => match value.parse() {
                Ok(n) => content_length = n,
                Err(_) => return Ok(Some(Err(Refusal(400)))),
            },
            "transfer-encoding" => chunked = true,
            _ => {}
        }
    }
    // Request bodies mean nothing here; a chunked one is refused rather than parsed.
    if chunked {
        return Ok(Some(Err(Refusal(501))));
    }
    if content_length > MAX_BODY {
        return Ok(Some(Err(Refusal(413))));
    }
    let skipped = io::copy(&mut reader.by_ref().take(content_length), &mut io::sink())?;
    if skipped < content_length {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let tokens: Vec<&str> = connection.split(',').map(str::trim).collect();
    let keep_alive = match version {
        "HTTP/1.1" => !tokens.contains(&"close"),
        _ => tokens.contains(&"keep-alive"),
    };
    Ok(Some(Ok(Request {
        method,
        target,
        keep_alive,
    })))
}

/// A line without its CRLF (or bare LF); `None` at end of stream before any byte; an error for a
/// line longer than [`MAX_LINE`] or one cut off by the end of the stream.
fn read_line(reader: &mut BufReader<TcpStream>) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    reader.by_ref().take(MAX_LINE).read_until(b'\n', &mut buf)?;
    if buf.is_empty() {
        return Ok(None);
    }
    if buf.pop() != Some(b'\n') {
        return Err(io::ErrorKind::InvalidData.into());
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| io::ErrorKind::InvalidData.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(target: &str) -> (u16, Vec<u8>) {
        let site = Site {
            name: "web1".into(),
            index_body: "web1\n".into(),
            check_body: "OK web1\n".into(),
            sick_file: None,
        };
        let request = Request {
            method: "GET".into(),
            target: target.into(),
            keep_alive: true,
        };
        route(&request, &site)
    }

    #[test]
    fn bytes_answers_exactly_n_bytes_of_the_pattern() {
        let (status, body) = get("/bytes/100000");
        assert_eq!((status, body.len()), (200, 100_000));
        assert!(body.iter().enumerate().all(|(i, &b)| b == body_byte(i)));
        assert_eq!(get("/bytes/0"), (200, Vec::new()));
        assert_eq!(get(&format!("/bytes/{}", MAX_GENERATED + 1)).0, 404);
        assert_eq!(get("/bytes/x").0, 404);
        assert_eq!(get("/"), (200, b"web1\n".to_vec()));
    }

    #[test]
    fn the_pattern_does_not_repeat_at_segment_sizes() {
        // A segment delivered twice or in the wrong place must change the body.
        for period in [536, 1024, 1360, 1448, 1460, 4096, 65_536] {
            assert!(
                (0..200_000).any(|i| body_byte(i) != body_byte(i + period)),
                "period {period}"
            );
        }
    }
}
