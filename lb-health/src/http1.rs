//! HTTP/1.1 on the wire, as much of it as a check needs: one request written in one piece,
//! one response read (status line, `Location`, and a 2xx body to its end).
//!
//! Written by hand on purpose: a check is one request on a new connection, and hyper's
//! per-connection machinery (dispatcher, channels, header map) cost more CPU than the
//! exchange itself at 10,000 checks a second (docs/health-checks.md, check-bench).
//! httparse (hyper's own parser) parses the head and chunk sizes; this module frames.
//!
//! Framing, as RFC 9112 §6.3 says a client reads it: no body for HEAD, 1xx, 204 and 304;
//! else `Transfer-Encoding: chunked`, else `Content-Length`, else to the end of the
//! connection. Interim 1xx responses (other than 101) are skipped. Only a 2xx body is read
//! (it may be matched against `receive`); for any other status the check is already down.

use std::borrow::Cow;

use http::StatusCode;
use http::header::HeaderValue;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::spec::HttpMethod;

/// Body bytes kept for `receive` matching; the rest is read and dropped.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A response head larger than this is refused (hyper's default limit is 400 KiB; a health
/// check page has no business sending more than a few KiB of headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Headers parsed at most; more is an error, as in hyper (100).
const MAX_HEADERS: usize = 100;

/// The response buffer's first size: a check's response usually arrives whole in one read of
/// a few hundred bytes. It grows by `READ_CHUNK` when more is needed. Small, because every
/// probe waiting for its response holds one.
const FIRST_READ: usize = 1024;

/// How much more room to make when the buffer is full.
const READ_CHUNK: usize = 4096;

const AGENT: &str = "xdirectord health check (ldirectord compatible)";

/// The bytes of a check request: `METHOD target HTTP/1.1`, `Host`, `User-Agent` and
/// `Connection: close`. `target` and `host` were validated by the caller (no spaces or
/// control characters), so nothing can be smuggled into the request.
pub(crate) fn request(method: HttpMethod, target: &str, host: &HeaderValue) -> Box<[u8]> {
    let method = match method {
        HttpMethod::Get => "GET",
        HttpMethod::Head => "HEAD",
    };
    let mut out = Vec::with_capacity(80 + target.len() + host.len() + AGENT.len());
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\nUser-Agent: ");
    out.extend_from_slice(AGENT.as_bytes());
    out.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    out.into_boxed_slice()
}

/// What a check needs of a response.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    /// LWP's `status_line`: the code and the server's reason phrase (the standard one when
    /// the server sent none).
    pub(crate) line: Cow<'static, str>,
    pub(crate) location: Option<String>,
    /// A 2xx body, at most [`MAX_BODY_BYTES`] of it; empty otherwise.
    pub(crate) body: Vec<u8>,
}

/// Sends `request` on `io` and reads the response. An error is a reason for the check to be
/// down, worded for logs.
pub(crate) async fn exchange<T>(io: &mut T, request: &[u8], head: bool) -> Result<Response, String>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    send(io, request)
        .await
        .map_err(|e| format!("http request: {e}"))?;
    receive(io, head).await
}

/// Writes the whole request.
pub(crate) async fn send<T>(io: &mut T, request: &[u8]) -> std::io::Result<()>
where
    T: AsyncWrite + Unpin,
{
    io.write_all(request).await?;
    // A TLS stream holds written data until flushed; a TCP stream does nothing here.
    io.flush().await
}

/// Reads the response to a request sent; `head`: it was a HEAD request.
pub(crate) async fn receive<T>(io: &mut T, head: bool) -> Result<Response, String>
where
    T: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(FIRST_READ);
    loop {
        let (head_len, parsed) = loop {
            if let Some(parsed) = parse_head(&buf)? {
                break parsed;
            }
            if buf.len() >= MAX_HEAD_BYTES {
                return Err(format!("http: response head over {MAX_HEAD_BYTES} bytes"));
            }
            if read_more(io, &mut buf).await.map_err(read_error)? == 0 {
                return Err(if buf.is_empty() {
                    "http: connection closed before a response".to_owned()
                } else {
                    "http: connection closed in the response head".to_owned()
                });
            }
        };
        let status = parsed.status;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            buf.drain(..head_len);
            continue;
        }
        let mut response = Response {
            status,
            line: parsed.line,
            location: parsed.location,
            body: Vec::new(),
        };
        let bodiless = head || status.is_informational() || matches!(status.as_u16(), 204 | 304);
        if status.is_success() && !bodiless {
            buf.drain(..head_len);
            response.body = read_body(io, buf, parsed.framing).await?;
        }
        return Ok(response);
    }
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Chunked,
    Length(u64),
    UntilClose,
}

#[derive(Debug)]
struct Head {
    status: StatusCode,
    line: Cow<'static, str>,
    location: Option<String>,
    framing: Framing,
}

/// The response head at the start of `buf`, with its length; `None` while incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, Head)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("http: bad response: {e}")),
    };
    let code = response.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| format!("http: bad status code {code}"))?;
    let line = status_line(status, response.reason.unwrap_or_default());
    let mut location = None;
    let mut chunked = false;
    let mut length: Option<u64> = None;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("location") {
            location = std::str::from_utf8(header.value).ok().map(str::to_owned);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked is the last coding when present (RFC 9112 §6.1); with another coding
            // last, the body runs to the end of the connection.
            chunked = header
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| "http: bad Content-Length".to_owned())?;
            if length.is_some_and(|l| l != value) {
                return Err("http: conflicting Content-Length headers".to_owned());
            }
            length = Some(value);
        }
    }
    // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3).
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::UntilClose,
    };
    Ok(Some((
        head_len,
        Head {
            status,
            line,
            location,
            framing,
        },
    )))
}

/// LWP's `status_line`. The usual lines cost no allocation.
fn status_line(status: StatusCode, reason: &str) -> Cow<'static, str> {
    let standard = status.canonical_reason();
    if reason.is_empty() || Some(reason) == standard {
        return match status.as_u16() {
            200 => "200 OK".into(),
            204 => "204 No Content".into(),
            301 => "301 Moved Permanently".into(),
            302 => "302 Found".into(),
            404 => "404 Not Found".into(),
            500 => "500 Internal Server Error".into(),
            503 => "503 Service Unavailable".into(),
            code => match standard {
                Some(reason) => format!("{code} {reason}").into(),
                None => code.to_string().into(),
            },
        };
    }
    format!("{} {reason}", status.as_u16()).into()
}

/// Reads the body that starts with `buf` (what followed the head) to its end.
async fn read_body<T>(io: &mut T, mut buf: Vec<u8>, framing: Framing) -> Result<Vec<u8>, String>
where
    T: AsyncRead + Unpin,
{
    match framing {
        Framing::Length(length) => {
            let mut body = Body::new(length);
            let mut seen = 0u64;
            loop {
                let wanted = usize::try_from(length - seen).unwrap_or(usize::MAX);
                let take = buf.len().min(wanted);
                body.push(&buf[..take]);
                seen += take as u64;
                if seen == length {
                    return Ok(body.kept);
                }
                buf.clear();
                if read_more(io, &mut buf).await.map_err(read_error)? == 0 {
                    return Err(format!(
                        "http body: connection closed after {seen} of {length} bytes"
                    ));
                }
            }
        }
        Framing::UntilClose => {
            let mut body = Body::new(0);
            loop {
                body.push(&buf);
                buf.clear();
                // A TLS server that closes without close_notify ends the body all the same,
                // as it does for LWP.
                match read_more(io, &mut buf).await {
                    Ok(0) => return Ok(body.kept),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        return Ok(body.kept);
                    }
                    Err(e) => return Err(read_error(e)),
                }
            }
        }
        Framing::Chunked => {
            let mut body = Body::new(0);
            let mut chunks = Chunks::Size;
            loop {
                let used = chunks.decode(&buf, &mut body)?;
                if chunks == Chunks::Done {
                    return Ok(body.kept);
                }
                buf.drain(..used);
                if buf.len() > MAX_HEAD_BYTES {
                    return Err("http body: chunk size line too long".to_owned());
                }
                if read_more(io, &mut buf).await.map_err(read_error)? == 0 {
                    return Err("http body: connection closed inside a chunked body".to_owned());
                }
            }
        }
    }
}

/// Appends one read to `buf`; the number of bytes read, 0 at the end of the stream.
async fn read_more<T>(io: &mut T, buf: &mut Vec<u8>) -> std::io::Result<usize>
where
    T: AsyncRead + Unpin,
{
    if buf.capacity() - buf.len() < FIRST_READ / 4 {
        buf.reserve(READ_CHUNK);
    }
    io.read_buf(buf).await
}

fn read_error(e: std::io::Error) -> String {
    format!("http: {e}")
}

/// The kept part of a body.
struct Body {
    kept: Vec<u8>,
}

impl Body {
    /// `expected`: the announced length, to allocate once (0 when unknown).
    fn new(expected: u64) -> Body {
        let capacity = usize::try_from(expected)
            .unwrap_or(MAX_BODY_BYTES)
            .min(MAX_BODY_BYTES);
        Body {
            kept: Vec::with_capacity(capacity),
        }
    }

    fn push(&mut self, data: &[u8]) {
        let room = MAX_BODY_BYTES - self.kept.len();
        self.kept.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// Where a chunked body decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunks {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes to go.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// The last chunk was read. Trailers are not read: the body is complete.
    Done,
}

impl Chunks {
    /// Decodes what it can of `buf` into `body` and returns how many bytes it used.
    fn decode(&mut self, buf: &[u8], body: &mut Body) -> Result<usize, String> {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            match *self {
                Chunks::Done => return Ok(at),
                Chunks::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, 0))) => {
                        at += used;
                        *self = Chunks::Done;
                    }
                    Ok(httparse::Status::Complete((used, size))) => {
                        at += used;
                        *self = Chunks::Data(size);
                    }
                    Ok(httparse::Status::Partial) => return Ok(at),
                    Err(_) => return Err("http body: bad chunk size".to_owned()),
                },
                Chunks::Data(left) => {
                    let take = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    if take == 0 {
                        return Ok(at);
                    }
                    body.push(&rest[..take]);
                    at += take;
                    let left = left - take as u64;
                    *self = if left == 0 {
                        Chunks::DataEnd
                    } else {
                        Chunks::Data(left)
                    };
                }
                Chunks::DataEnd => {
                    if rest.starts_with(b"\r\n") {
                        at += 2;
                    } else if rest.starts_with(b"\n") {
                        at += 1;
                    } else if rest.is_empty() || rest == b"\r" {
                        return Ok(at);
                    } else {
                        return Err("http body: chunk not followed by CRLF".to_owned());
                    }
                    *self = Chunks::Size;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs an exchange against canned server bytes, delivered in pieces of `piece` bytes.
    async fn exchange_with(server: &[u8], piece: usize, head: bool) -> Result<Response, String> {
        let (mut client, mut server_end) = tokio::io::duplex(64 * 1024);
        let server = server.to_vec();
        let serve = tokio::spawn(async move {
            let mut request = vec![0u8; 1024];
            let _ = server_end.read(&mut request).await;
            for part in server.chunks(piece.max(1)) {
                if server_end.write_all(part).await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        });
        let host = HeaderValue::from_static("example.test");
        let request = request(HttpMethod::Get, "/", &host);
        let result = exchange(&mut client, &request, head).await;
        serve.abort();
        result
    }

    async fn every_split(server: &[u8]) -> Response {
        let whole = exchange_with(server, server.len(), false).await.unwrap();
        for piece in [1, 2, 3, 7] {
            let split = exchange_with(server, piece, false).await.unwrap();
            assert_eq!(split.status, whole.status);
            assert_eq!(split.body, whole.body, "split into {piece}-byte pieces");
        }
        whole
    }

    #[test]
    fn request_bytes() {
        let host = HeaderValue::from_static("www.example.test");
        assert_eq!(
            std::str::from_utf8(&request(HttpMethod::Head, "/a?b=1", &host)).unwrap(),
            "HEAD /a?b=1 HTTP/1.1\r\nHost: www.example.test\r\n\
             User-Agent: xdirectord health check (ldirectord compatible)\r\n\
             Connection: close\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn content_length_body() {
        let r = every_split(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA").await;
        assert_eq!(r.line, "200 OK");
        assert_eq!(r.body, b"hello");
    }

    #[tokio::test]
    async fn chunked_body_with_extensions_and_trailers() {
        let r = every_split(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 99\r\n\r\n\
              5;ext=1\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: 1\r\n\r\n",
        )
        .await;
        assert_eq!(r.body, b"hello world!");
    }

    #[tokio::test]
    async fn body_until_close() {
        let r = every_split(b"HTTP/1.0 200 OK\r\n\r\nall of it").await;
        assert_eq!(r.body, b"all of it");
    }

    #[tokio::test]
    async fn interim_responses_are_skipped() {
        let r = every_split(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert_eq!(r.line, "204 No Content");
    }

    #[tokio::test]
    async fn server_reason_phrase_and_location() {
        let r = every_split(b"HTTP/1.1 302 Elsewhere\r\nLocation: /x\r\n\r\nignored").await;
        assert_eq!(r.line, "302 Elsewhere");
        assert_eq!(r.location.as_deref(), Some("/x"));
        assert!(r.body.is_empty(), "only a 2xx body is read");
        let r = every_split(b"HTTP/1.1 599 \r\n\r\n").await;
        assert_eq!(r.line, "599");
    }

    #[tokio::test]
    async fn head_has_no_body() {
        let r = exchange_with(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", 64, true)
            .await
            .unwrap();
        assert!(r.body.is_empty());
    }

    #[tokio::test]
    async fn large_bodies_are_read_to_the_end_and_kept_in_part() {
        let mut server = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 10
        )
        .into_bytes();
        server.resize(server.len() + MAX_BODY_BYTES + 10, b'x');
        let r = exchange_with(&server, 60_000, false).await.unwrap();
        assert_eq!(r.body.len(), MAX_BODY_BYTES);
    }

    #[tokio::test]
    async fn truncated_and_malformed_responses_are_errors() {
        for bad in [
            &b""[..],
            b"HTTP/1.1 200 OK\r\nContent-Le",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"SSH-2.0-OpenSSH_9.2\r\n",
        ] {
            let result = exchange_with(bad, 1024, false).await;
            assert!(
                result.is_err(),
                "{:?}: {result:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
