//! One question over UDP, asked again until answered: what the dns, sip (over UDP) and radius
//! checks share. The caller's deadline ends it (`check::bounded`).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

/// Largest datagram kept: a UDP payload cannot be larger.
const MAX_DATAGRAM: usize = 65_536;

/// A socket connected to `server` from the right family's wildcard address, so only the
/// server's datagrams reach it and the kernel picks the source address.
pub(crate) async fn connected(server: SocketAddr) -> Result<UdpSocket, String> {
    let local = match server {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("socket: {e}"))?;
    socket
        .connect(server)
        .await
        .map_err(|e| format!("connect udp {server}: {e}"))?;
    Ok(socket)
}

/// When to send a question again: after `first`, then after twice as long each time, up to
/// `max`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retransmit {
    pub(crate) first: Duration,
    pub(crate) max: Duration,
}

impl Retransmit {
    /// The same interval every time.
    pub(crate) const fn every(interval: Duration) -> Retransmit {
        Retransmit {
            first: interval,
            max: interval,
        }
    }
}

/// Sends `request` on `socket`, again as `retransmit` says, until a datagram `is_answer`
/// accepts arrives (others are ignored); that datagram. An ICMP port unreachable ends it with
/// "connection refused".
pub(crate) async fn ask(
    socket: &UdpSocket,
    request: &[u8],
    retransmit: Retransmit,
    is_answer: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut interval = retransmit.first;
    loop {
        socket
            .send(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let wait = tokio::time::sleep(interval);
        interval = (interval * 2).min(retransmit.max);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                received = socket.recv(&mut buf) => {
                    let n = received.map_err(|e| format!("recv: {e}"))?;
                    if is_answer(&buf[..n]) {
                        buf.truncate(n);
                        return Ok(buf);
                    }
                }
                () = &mut wait => break,
            }
        }
    }
}
