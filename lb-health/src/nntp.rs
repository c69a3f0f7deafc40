//! The `nntp` negotiate check, as ldirectord's: connect, read what the server sends first (at
//! most 64 bytes, one read), up iff it starts with `2` (`200` or `201`, posting allowed or
//! not). Nothing is sent, not even `QUIT`, as in ldirectord.

use std::net::SocketAddr;

use crate::line::{self, Lines};
use crate::outcome::Outcome;

/// ldirectord's `sysread($sock, $buf, 64)`.
const GREETING_BYTES: usize = 64;

pub(crate) async fn check(addr: SocketAddr) -> Outcome {
    let stream = match line::connect(addr).await {
        Ok(stream) => stream,
        Err(e) => return Outcome::down(e),
    };
    let greeting = match Lines::new(stream).first_bytes(GREETING_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => return Outcome::down(e),
    };
    let text = String::from_utf8_lossy(&greeting);
    let text = text.trim_end();
    match greeting.first() {
        Some(b'2') => Outcome::up(text.to_owned()),
        Some(_) => Outcome::bad_answer(format!("greeting {}", line::excerpt(text))),
        None => Outcome::down("connection closed before a greeting"),
    }
}
