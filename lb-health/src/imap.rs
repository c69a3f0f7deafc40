//! The `imap` and `imaps` negotiate checks, as ldirectord's Net::IMAP::Simple session.
//!
//! * The greeting must be `* OK` or `* PREAUTH` (any case; `* NO`, `* BAD`, anything else or
//!   nothing is down).
//! * With `login`: `a1 LOGIN user "passwd"`; up iff the tagged answer is `OK` (untagged lines
//!   before it are skipped, at most [`MAX_REPLY_BYTES`] of them). Without `login` the greeting
//!   decides.
//! * `a2 LOGOUT` is sent and the connection closed without waiting for the answer.
//! * imaps: TLS from the start, verified as IO::Socket::SSL verifies by default (the chain
//!   against the system's store, and the real's address as the name; `tls`).
//!
//! Differences: the user name is sent as a quoted string like the password (Net::IMAP::Simple
//! sends it bare, which breaks on a name with a space); `EXPUNGE` before `LOGOUT` is not sent
//! (no mailbox is selected, so it does nothing); the connection is not retried after 5 s when
//! it fails (Net::IMAP::Simple's `retry`), so a closed port is down at once.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

use crate::line::{self, Lines, MAX_REPLY_BYTES, excerpt};
use crate::outcome::Outcome;
use crate::spec::Login;

pub(crate) async fn check(
    addr: SocketAddr,
    tls: Option<&TlsConnector>,
    login: Option<&Login>,
) -> Outcome {
    let result = match tls {
        Some(tls) => match line::connect_tls(addr, tls).await {
            Ok(stream) => Box::pin(session(Lines::new(stream), login)).await,
            Err(e) => Err(e),
        },
        None => match line::connect(addr).await {
            Ok(stream) => session(Lines::new(stream), login).await,
            Err(e) => Err(e),
        },
    };
    result.unwrap_or_else(Outcome::down)
}

async fn session<S>(mut lines: Lines<S>, login: Option<&Login>) -> Result<Outcome, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let greeting = lines.line().await?;
    if !is_greeting(&greeting) {
        return Ok(Outcome::bad_answer(format!(
            "greeting {}",
            excerpt(&greeting)
        )));
    }
    let outcome = match login {
        None => Outcome::up(greeting),
        Some(login) => {
            lines
                .command(&format!(
                    "a1 LOGIN {} {}",
                    quoted(&login.user),
                    quoted(&login.password)
                ))
                .await?;
            let answer = tagged(&mut lines, "a1").await?;
            let status = answer.split_whitespace().nth(1).unwrap_or_default();
            if status.eq_ignore_ascii_case("OK") {
                Outcome::up(format!("logged in as {}", login.user))
            } else {
                Outcome::bad_answer(format!("LOGIN as {}: {}", login.user, excerpt(&answer)))
            }
        }
    };
    let _ = lines.command("a2 LOGOUT").await;
    Ok(outcome)
}

/// Net::IMAP::Simple's `/^\*\s+(?:OK|PREAUTH)/i`.
fn is_greeting(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('*') else {
        return false;
    };
    let word = rest.trim_start_matches(char::is_whitespace);
    if word.len() == rest.len() {
        return false;
    }
    let starts = |w: &str| {
        word.get(..w.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(w))
    };
    starts("OK") || starts("PREAUTH")
}

/// Reads until the answer tagged `tag`, skipping untagged and continuation lines.
async fn tagged<S>(lines: &mut Lines<S>, tag: &str) -> Result<String, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut taken = 0;
    loop {
        let line = lines.line().await?;
        if line
            .strip_prefix(tag)
            .is_some_and(|rest| rest.starts_with(' '))
        {
            return Ok(line);
        }
        taken += line.len();
        if taken > MAX_REPLY_BYTES {
            return Err(format!(
                "over {MAX_REPLY_BYTES} bytes before the answer to {tag}"
            ));
        }
    }
}

/// An IMAP quoted string (RFC 3501 §4.3): `\` and `"` escaped.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings() {
        assert!(is_greeting("* OK [CAPABILITY IMAP4rev1] Dovecot ready."));
        assert!(is_greeting("*  preauth welcome"));
        assert!(!is_greeting("* BYE go away"));
        assert!(!is_greeting("* NO no"));
        assert!(!is_greeting("*OK"));
        assert!(!is_greeting("+OK"));
    }

    #[test]
    fn quoting() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
