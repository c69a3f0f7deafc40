//! `checktype = connect` and the `simpletcp` negotiate check.
//!
//! Both open a socket to `real:checkport` the way ldirectord's `ld_open_socket` does: a stream
//! socket, or a datagram socket for `protocol = udp`. Every function here is bounded by the
//! deadline its caller wraps around it; none of them sleeps or retries on its own.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};

use crate::outcome::Outcome;
use crate::receive::Receive;

/// Longest line simpletcp keeps before matching it anyway, so a server that never sends a
/// newline cannot make a check buffer without bound.
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
    let result = async {
        let socket = UdpSocket::bind(unspecified(addr)).await?;
        socket.connect(addr).await
    }
    .await;
    match result {
        Ok(()) => Outcome::up("connected (udp)"),
        Err(e) => Outcome::down(format!("connect udp {addr}: {e}")),
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
    let mut stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(e) => return Outcome::down(format!("connect {addr}: {e}")),
    };
    if let Err(e) = stream.write_all(payload).await {
        return Outcome::down(format!("send: {e}"));
    }
    // The server may read until EOF before it answers, as with `nc -q`.
    if let Err(e) = stream.shutdown().await {
        return Outcome::down(format!("shutdown: {e}"));
    }
    let mut reader = BufReader::with_capacity(4096, stream);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match read_line(&mut reader, &mut line).await {
            Ok(0) => return Outcome::down("no line matched receive"),
            Ok(_) => {
                if receive.is_match(&String::from_utf8_lossy(&line)) {
                    return Outcome::up("receive matched");
                }
            }
            Err(e) => return Outcome::down(format!("read: {e}")),
        }
    }
}

/// Reads one line (with its `\n`) of at most `MAX_LINE_BYTES`; 0 at end of stream.
async fn read_line(
    reader: &mut BufReader<TcpStream>,
    line: &mut Vec<u8>,
) -> std::io::Result<usize> {
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(line.len());
        }
        let room = MAX_LINE_BYTES - line.len();
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) if i < room => (i + 1, true),
            _ if available.len() >= room => (room, true),
            _ => (available.len(), false),
        };
        line.extend_from_slice(&available[..take]);
        reader.consume(take);
        if done {
            return Ok(line.len());
        }
    }
}

/// simpletcp over UDP: one datagram out, then every datagram's lines until one matches or
/// the caller's deadline passes.
pub(crate) async fn simpletcp_udp(addr: SocketAddr, payload: &[u8], receive: &Receive) -> Outcome {
    let socket = match UdpSocket::bind(unspecified(addr)).await {
        Ok(s) => s,
        Err(e) => return Outcome::down(format!("socket: {e}")),
    };
    if let Err(e) = socket.connect(addr).await {
        return Outcome::down(format!("connect udp {addr}: {e}"));
    }
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

fn unspecified(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
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
