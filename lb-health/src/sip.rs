//! The `sip` negotiate check, as ldirectord's: an `OPTIONS sip:<login>` request over the
//! virtual's protocol (UDP for `protocol = udp`, else TCP), the same headers ldirectord writes
//! (fixed branch and tags, a random Call-ID, `Content-Length: 0`). Up iff the status line of
//! the answer starts with `SIP/2.0 200 OK`: Kamailio's stock answer to a request without a
//! user part, `200 Keepalive`, is down, as in ldirectord.
//!
//! Differences: the Via header names the transport really used (ldirectord always writes
//! `SIP/2.0/UDP`, also over TCP) and brackets an IPv6 address; over UDP the request is sent
//! again after 0.5, 1, 2 s … until the deadline (RFC 3261's timer A; ldirectord sends once).

use std::net::SocketAddr;
use std::time::Duration;

use crate::line::{self, Lines, excerpt};
use crate::outcome::Outcome;
use crate::spec::bracketed;
use crate::udp::{self, Retransmit};

/// RFC 3261's T1: the first retransmission interval over UDP, doubled each time.
const T1: Duration = Duration::from_millis(500);

/// The most an interval grows to (RFC 3261's T2).
const T2: Duration = Duration::from_secs(4);

pub(crate) async fn check(addr: SocketAddr, user: &str, udp: bool) -> Outcome {
    let result = if udp {
        over_udp(addr, user).await
    } else {
        over_tcp(addr, user).await
    };
    match result {
        Ok(status) if status.starts_with("SIP/2.0 200 OK") => Outcome::up(status),
        Ok(status) => Outcome::bad_answer(excerpt(&status)),
        Err(e) => Outcome::down(e),
    }
}

/// The status line of the first answer over UDP.
async fn over_udp(addr: SocketAddr, user: &str) -> Result<String, String> {
    let socket = udp::connected(addr).await?;
    let local = socket.local_addr().map_err(|e| format!("socket: {e}"))?;
    let request = request(user, local, "UDP");
    let retransmit = Retransmit { first: T1, max: T2 };
    let datagram = udp::ask(&socket, request.as_bytes(), retransmit, |_| true).await?;
    let text = String::from_utf8_lossy(&datagram);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// The status line of the answer over TCP.
async fn over_tcp(addr: SocketAddr, user: &str) -> Result<String, String> {
    let stream = line::connect(addr).await?;
    let local = stream.local_addr().map_err(|e| format!("socket: {e}"))?;
    let mut lines = Lines::new(stream);
    lines.send(request(user, local, "TCP").as_bytes()).await?;
    lines.line().await
}

/// ldirectord's request, from `local` (the socket's own address and port).
fn request(user: &str, local: SocketAddr, transport: &str) -> String {
    let call_id: String = (0..8)
        .map(|_| format!("{:02x}", fastrand::u8(..)))
        .collect();
    format!(
        "OPTIONS sip:{user} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {}:{};branch=z9hG4bKhjhs8ass877\r\n\
         Max-Forwards: 70\r\n\
         To: <sip:{user}>\r\n\
         From: <sip:{user}>;tag=1928301774\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 63104 OPTIONS\r\n\
         Contact: <sip:{user}>\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n",
        bracketed(line::canonical(local.ip())),
        local.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_ldirectords() {
        let r = request(
            "ldirectord@vm",
            "[2001:db8::2]:5070".parse().unwrap(),
            "UDP",
        );
        assert!(r.starts_with("OPTIONS sip:ldirectord@vm SIP/2.0\r\n"));
        assert!(r.contains("Via: SIP/2.0/UDP [2001:db8::2]:5070;branch=z9hG4bKhjhs8ass877\r\n"));
        assert!(r.contains("From: <sip:ldirectord@vm>;tag=1928301774\r\n"));
        assert!(r.ends_with("Content-Length: 0\r\n\r\n"));
        let call_id = r.lines().find_map(|l| l.strip_prefix("Call-ID: ")).unwrap();
        assert_eq!(call_id.len(), 16);
    }
}
