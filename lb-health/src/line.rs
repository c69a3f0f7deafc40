//! A line protocol over TCP or TLS: what the ftp, smtp, pop, imap, nntp, sip (over TCP) and
//! simpletcp checks share.
//!
//! [`Lines`] wraps a connected stream: commands are written whole, and what comes back is read
//! a line at a time, every line and every reply bounded, so a server that sends garbage, an
//! endless line or a huge banner costs at most [`MAX_LINE_BYTES`] (or [`MAX_REPLY_BYTES`] for
//! a multi-line reply) and ends in a verdict. Errors are reasons for a down verdict, worded for
//! logs. Deadlines are the caller's (`check::bounded`): nothing here sleeps or retries.

use std::net::{IpAddr, SocketAddr};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Longest line a protocol check accepts. Protocol lines are short (SMTP and POP3 allow 512
/// bytes); 8 KiB leaves room for long capability lists.
pub(crate) const MAX_LINE_BYTES: usize = 8 * 1024;

/// Most bytes one multi-line reply (an FTP or SMTP banner, a POP3 capability list, the
/// untagged lines before an IMAP tagged answer) may take.
pub(crate) const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Opens a TCP connection; the error names the address.
pub(crate) async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))
}

/// Opens a TLS connection to `addr`, verified by `tls` against the real's address (no SNI is
/// sent for an address, as IO::Socket::SSL sends none).
pub(crate) async fn connect_tls(
    addr: SocketAddr,
    tls: &TlsConnector,
) -> Result<TlsStream<TcpStream>, String> {
    let tcp = connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    // Boxed: a handshake in progress is kilobytes; checks waiting between rounds hold none.
    Box::pin(tls.connect(name, tcp))
        .await
        .map_err(|e| format!("tls {addr}: {e}"))
}

/// The IP address of an IPv4-mapped IPv6 address as IPv4, as the kernel reports local
/// addresses of dual-stack sockets.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A three-digit reply of FTP or SMTP: its code and its first line's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) code: u16,
    /// The first line, without its line ending: for logs.
    pub(crate) line: String,
}

impl Reply {
    /// The first digit: 1 preliminary, 2 completed, 3 more needed, 4 and 5 refused.
    pub(crate) fn class(&self) -> u16 {
        self.code / 100
    }
}

/// A connection read a line at a time.
pub(crate) struct Lines<S> {
    io: BufReader<S>,
}

impl<S> Lines<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    pub(crate) fn new(io: S) -> Lines<S> {
        Lines {
            io: BufReader::with_capacity(4096, io),
        }
    }

    /// Writes `bytes` whole (and flushes a TLS stream).
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let io = self.io.get_mut();
        io.write_all(bytes)
            .await
            .map_err(|e| format!("send: {e}"))?;
        io.flush().await.map_err(|e| format!("send: {e}"))
    }

    /// Writes `command` and CRLF.
    pub(crate) async fn command(&mut self, command: &str) -> Result<(), String> {
        let mut line = Vec::with_capacity(command.len() + 2);
        line.extend_from_slice(command.as_bytes());
        line.extend_from_slice(b"\r\n");
        self.send(&line).await
    }

    /// Shuts the write side (simpletcp: the server may read until the end of the request).
    pub(crate) async fn shutdown(&mut self) -> Result<(), String> {
        self.io
            .get_mut()
            .shutdown()
            .await
            .map_err(|e| format!("shutdown: {e}"))
    }

    /// Appends bytes up to and including the next `\n` to `out`, at most `max` bytes in all;
    /// how many were appended, 0 at the end of the stream. A line longer than `max` comes back
    /// in pieces of `max` bytes.
    pub(crate) async fn read_upto(
        &mut self,
        out: &mut Vec<u8>,
        max: usize,
    ) -> std::io::Result<usize> {
        let before = out.len();
        loop {
            let available = self.io.fill_buf().await?;
            if available.is_empty() {
                return Ok(out.len() - before);
            }
            let room = max - (out.len() - before);
            let (take, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) if i < room => (i + 1, true),
                _ if available.len() >= room => (room, true),
                _ => (available.len(), false),
            };
            out.extend_from_slice(&available[..take]);
            self.io.consume(take);
            if done {
                return Ok(out.len() - before);
            }
        }
    }

    /// The next line, without its line ending (CRLF or LF); invalid UTF-8 replaced. The end
    /// of the stream, or a line over [`MAX_LINE_BYTES`], is an error.
    pub(crate) async fn line(&mut self) -> Result<String, String> {
        let mut raw = Vec::with_capacity(128);
        let n = self
            .read_upto(&mut raw, MAX_LINE_BYTES)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed by the server".to_owned());
        }
        if raw.last() != Some(&b'\n') {
            return Err(if n == MAX_LINE_BYTES {
                format!("the server sent a line of over {MAX_LINE_BYTES} bytes")
            } else {
                "connection closed by the server inside a line".to_owned()
            });
        }
        raw.pop();
        if raw.last() == Some(&b'\r') {
            raw.pop();
        }
        Ok(String::from_utf8_lossy(&raw).into_owned())
    }

    /// One FTP or SMTP reply (RFC 959 §4.2, RFC 5321 §4.2): `xyz text`, or `xyz-text` lines
    /// up to the line that starts `xyz ` (or is `xyz` alone).
    pub(crate) async fn reply(&mut self) -> Result<Reply, String> {
        let first = self.line().await?;
        let code = reply_code(&first).ok_or_else(|| format!("not a reply: {}", excerpt(&first)))?;
        let mut taken = first.len();
        if first.as_bytes().get(3) == Some(&b'-') {
            let end = &first[..3];
            loop {
                let next = self.line().await?;
                taken += next.len();
                if taken > MAX_REPLY_BYTES {
                    return Err(format!(
                        "the server sent a reply of over {MAX_REPLY_BYTES} bytes"
                    ));
                }
                if next.starts_with(end) && matches!(next.as_bytes().get(3), None | Some(b' ')) {
                    break;
                }
            }
        }
        Ok(Reply { code, line: first })
    }

    /// Whatever the server sends first, at most `max` bytes of one read (nntp reads its
    /// greeting so, as ldirectord's `sysread`). Empty at the end of the stream.
    pub(crate) async fn first_bytes(&mut self, max: usize) -> Result<Vec<u8>, String> {
        let mut buf = vec![0u8; max];
        let n = self
            .io
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// The code of a reply line: three digits, then a space, a hyphen or nothing.
fn reply_code(line: &str) -> Option<u16> {
    let bytes = line.as_bytes();
    if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !matches!(bytes.get(3), None | Some(b' ') | Some(b'-')) {
        return None;
    }
    line[..3].parse().ok()
}

/// The start of a line the server sent, for a log message.
pub(crate) fn excerpt(line: &str) -> String {
    const MAX: usize = 80;
    if line.len() <= MAX {
        return format!("{line:?}");
    }
    let mut end = MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}…", &line[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(server: &'static [u8]) -> Lines<tokio::io::DuplexStream> {
        let (client, mut server_end) = tokio::io::duplex(256 * 1024);
        tokio::spawn(async move {
            let _ = server_end.write_all(server).await;
            // Keep the server's end open until the client is done with it.
            let mut sink = Vec::new();
            let _ = server_end.read_to_end(&mut sink).await;
        });
        Lines::new(client)
    }

    #[tokio::test]
    async fn multi_line_replies_end_at_their_code() {
        let mut l = lines_of(b"220-first\r\n220-second\r\n220 last\r\n250 next\r\n").await;
        assert_eq!(
            l.reply().await.unwrap(),
            Reply {
                code: 220,
                line: "220-first".into()
            }
        );
        assert_eq!(l.reply().await.unwrap().code, 250);
    }

    #[tokio::test]
    async fn garbage_is_not_a_reply() {
        let mut l = lines_of(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        assert!(l.reply().await.unwrap_err().starts_with("not a reply"));
    }

    #[tokio::test]
    async fn an_endless_line_is_refused_at_the_limit() {
        static ENDLESS: [u8; MAX_LINE_BYTES * 2] = [b'x'; MAX_LINE_BYTES * 2];
        let mut l = lines_of(&ENDLESS).await;
        let error = l.line().await.unwrap_err();
        assert!(error.contains("over 8192 bytes"), "{error}");
    }

    #[tokio::test]
    async fn a_huge_banner_is_refused_at_the_limit() {
        static BANNER: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
            let mut b = Vec::new();
            while b.len() <= 2 * MAX_REPLY_BYTES {
                b.extend_from_slice(b"220-Welcome to a very chatty server\r\n");
            }
            b.extend_from_slice(b"220 ok\r\n");
            b
        });
        let mut l = lines_of(BANNER.as_slice()).await;
        let error = l.reply().await.unwrap_err();
        assert!(error.contains("reply of over"), "{error}");
    }

    #[tokio::test]
    async fn lines_lose_their_endings() {
        let mut l = lines_of(b"+OK ready\r\nbare\n").await;
        assert_eq!(l.line().await.unwrap(), "+OK ready");
        assert_eq!(l.line().await.unwrap(), "bare");
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt("abc"), "\"abc\"");
        assert!(excerpt(&"é".repeat(100)).ends_with('…'));
    }
}
