//! The `smtp` and `submission` negotiate checks, as ldirectord's Net::SMTP constructor.
//!
//! The banner must be a 2xx reply; then `EHLO localhost.localdomain` (Net::SMTP's default
//! domain), and `HELO localhost.localdomain` when EHLO is refused with a 5xx (a 4xx is final).
//! Up iff EHLO or HELO is answered 2xx; `QUIT` is then sent and the connection closed without
//! waiting for its answer (ldirectord's verdict is already made). No STARTTLS, as ldirectord.

use std::net::SocketAddr;

use crate::line::{self, Lines, excerpt};
use crate::outcome::Outcome;

/// Net::SMTP's `hello` domain when none is given.
const HELLO_DOMAIN: &str = "localhost.localdomain";

pub(crate) async fn check(addr: SocketAddr) -> Outcome {
    match session(addr).await {
        Ok(outcome) => outcome,
        Err(reason) => Outcome::down(reason),
    }
}

async fn session(addr: SocketAddr) -> Result<Outcome, String> {
    let mut lines = Lines::new(line::connect(addr).await?);
    let banner = lines.reply().await?;
    if banner.class() != 2 {
        return Ok(Outcome::bad_answer(format!(
            "banner {}",
            excerpt(&banner.line)
        )));
    }
    lines.command(&format!("EHLO {HELLO_DOMAIN}")).await?;
    let mut hello = lines.reply().await?;
    if hello.class() == 5 {
        lines.command(&format!("HELO {HELLO_DOMAIN}")).await?;
        hello = lines.reply().await?;
    }
    if hello.class() != 2 {
        return Ok(Outcome::bad_answer(format!(
            "hello: {}",
            excerpt(&hello.line)
        )));
    }
    let _ = lines.command("QUIT").await;
    Ok(Outcome::up(banner.line))
}
