//! `checktype = connect` and the `simpletcp` negotiate check.
//!
//! Both open a socket to `real:checkport` the way ldirectord's `ld_open_socket` does: a stream
//! socket, or a datagram socket for `protocol = udp`. Every function here is bounded by the
//! deadline its caller wraps around it; none of them sleeps or retries on its own.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use crate::line::{self, Lines};
use crate::outcome::Outcome;
use crate::receive::Receive;
use crate::udp;

/// Longest line simpletcp keeps before matching it anyway (and reading on), so a server that
/// never sends a newline cannot make a check buffer without bound.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// TCP connect, then close.
pub(crate) async fn connect(addr: SocketAddr) -> Outcome {
    match TcpStream::connect(addr).await {
        Ok(stream) => {
            drop(stream);
            Outcome::up("connected")
        }
        Err(e) => Outcome::down(format!("connect {addr}: {e}")),
    }
}

/// The connect of a combined check over UDP: ldirectord's `check_connect` "connects" a
/// datagram socket, which only fails when there is no route.
pub(crate) async fn connect_udp(addr: SocketAddr) -> Outcome {
    match udp::connected(addr).await {
        Ok(_) => Outcome::up("connected (udp)"),
        Err(e) => Outcome::down(e),
    }
}

/// The bytes simpletcp sends: the request without ldirectord's leading `/`, with each
/// two-character sequence `\n` turned into a line feed.
pub(crate) fn simpletcp_payload(request: &str) -> Vec<u8> {
    let request = request.strip_prefix('/').unwrap_or(request);
    request.replace("\\n", "\n").into_bytes()
}

/// simpletcp over TCP: send, shut the write side, read lines until one matches.
pub(crate) async fn simpletcp(addr: SocketAddr, payload: &[u8], receive: &Receive) -> Outcome {
    let mut lines = match line::connect(addr).await {
        Ok(stream) => Lines::new(stream),
        Err(e) => return Outcome::down(e),
    };
    if let Err(e) = lines.send(payload).await {
        return Outcome::down(e);
    }
    // The server may read until EOF before it answers, as with `nc -q`.
    if let Err(e) = lines.shutdown().await {
        return Outcome::down(e);
    }
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match lines.read_upto(&mut line, MAX_LINE_BYTES).await {
            Ok(0) => return Outcome::bad_answer("no line matched receive"),
            Ok(_) => {
                if receive.is_match(&String::from_utf8_lossy(&line)) {
                    return Outcome::up("receive matched");
                }
            }
            Err(e) => return Outcome::down(format!("read: {e}")),
        }
    }
}

/// simpletcp over UDP: one datagram out, then every datagram's lines until one matches or
/// the caller's deadline passes.
pub(crate) async fn simpletcp_udp(addr: SocketAddr, payload: &[u8], receive: &Receive) -> Outcome {
    let socket = match udp::connected(addr).await {
        Ok(s) => s,
        Err(e) => return Outcome::down(e),
    };
    if let Err(e) = socket.send(payload).await {
        return Outcome::down(format!("send: {e}"));
    }
    let mut buf = vec![0u8; 65_536];
    loop {
        match socket.recv(&mut buf).await {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                if text.split_inclusive('\n').any(|l| receive.is_match(l)) {
                    return Outcome::up("receive matched");
                }
            }
            // An ICMP port unreachable surfaces here as "connection refused".
            Err(e) => return Outcome::down(format!("recv: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_drops_leading_slash_and_expands_newlines() {
        assert_eq!(simpletcp_payload("/PING\\n"), b"PING\n");
        assert_eq!(simpletcp_payload("/a\\nb"), b"a\nb");
        assert_eq!(simpletcp_payload("/"), b"");
        assert_eq!(simpletcp_payload("x"), b"x");
    }
}
