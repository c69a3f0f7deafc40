//! The `pop` and `pops` negotiate checks, as ldirectord's Mail::POP3Client session.
//!
//! * The greeting must start with `+OK` (any case).
//! * Without `login`, ldirectord reports the real up whatever happens (Mail::POP3Client's
//!   constructor returns an object even when the connection is refused): the caller keeps that
//!   verdict (`check`); this module only runs the session for the log's reason.
//! * With `login`, Mail::POP3Client's "BEST" order: `APOP` when the greeting holds a message
//!   id (followed by `NOOP`, as the library sends it); else, or when APOP is refused, `AUTH
//!   CRAM-MD5` when `CAPA` lists it under `SASL`; else, or when that is refused, `USER` and
//!   `PASS`. Up iff one of them is accepted. `STAT` is then sent, as the library sends it, but
//!   its answer does not change the verdict: ldirectord calls `login()` a second time, which
//!   returns true as soon as the constructor's login reached the transaction state (so an
//!   empty mailbox, whose message count 0 the first login returned, is up there too). `QUIT`
//!   is sent.
//! * pops: TLS from the start, verified as IO::Socket::SSL verifies by default (the chain
//!   against the system's store, and the real's address as the name; `tls`).

use std::net::SocketAddr;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use fancy_regex::Regex;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

use crate::line::{self, Lines, MAX_REPLY_BYTES, excerpt};
use crate::outcome::Outcome;
use crate::spec::Login;

/// Runs a session: `tls` for pops, `login` when set.
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
    if !is_ok(&greeting) {
        return Ok(Outcome::bad_answer(format!(
            "greeting {}",
            excerpt(&greeting)
        )));
    }
    let Some(login) = login else {
        let _ = lines.command("QUIT").await;
        return Ok(Outcome::up(greeting));
    };
    let outcome = if log_in(&mut lines, &greeting, login).await? {
        let stat = ask(&mut lines, "STAT")
            .await
            .unwrap_or_else(|e| format!("no answer ({e})"));
        Outcome::up(format!(
            "logged in as {}; STAT: {}",
            login.user,
            excerpt(&stat)
        ))
    } else {
        Outcome::bad_answer(format!("login as {} refused", login.user))
    };
    let _ = lines.command("QUIT").await;
    Ok(outcome)
}

/// Mail::POP3Client's `Login` in "BEST" mode; whether the server accepted one of the ways.
async fn log_in<S>(lines: &mut Lines<S>, greeting: &str, login: &Login) -> Result<bool, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Some(id) = message_id(greeting) {
        let digest = Md5::digest(format!("{id}{}", login.password).as_bytes());
        let apop = ask(lines, &format!("APOP {} {}", login.user, hex(&digest))).await?;
        // Mail::POP3Client sends NOOP whatever APOP said: some servers close here.
        ask(lines, "NOOP").await?;
        if is_ok(&apop) {
            return Ok(true);
        }
    }
    if offers_cram_md5(lines).await? && cram_md5(lines, login).await? {
        return Ok(true);
    }
    let user = ask(lines, &format!("USER {}", login.user)).await?;
    if !user.starts_with('+') {
        return Ok(false);
    }
    let pass = ask(lines, &format!("PASS {}", login.password)).await?;
    Ok(pass.starts_with("+OK"))
}

/// `CAPA`: whether a `SASL` line lists CRAM-MD5.
async fn offers_cram_md5<S>(lines: &mut Lines<S>) -> Result<bool, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = ask(lines, "CAPA").await?;
    if !first.starts_with("+OK") {
        return Ok(false);
    }
    let mut offered = false;
    let mut taken = 0;
    loop {
        let capability = lines.line().await?;
        if capability.trim_end() == "." {
            return Ok(offered);
        }
        taken += capability.len();
        if taken > MAX_REPLY_BYTES {
            return Err(format!("CAPA: over {MAX_REPLY_BYTES} bytes"));
        }
        offered |= lists_cram_md5(&capability);
    }
}

/// Mail::POP3Client's `/^SASL.*?\sCRAM-MD5\b/`.
fn lists_cram_md5(capability: &str) -> bool {
    capability.starts_with("SASL")
        && capability
            .split_whitespace()
            .skip(1)
            .any(|word| word.starts_with("CRAM-MD5"))
}

/// `AUTH CRAM-MD5` (RFC 2195); whether the server accepted it.
async fn cram_md5<S>(lines: &mut Lines<S>, login: &Login) -> Result<bool, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let challenge = ask(lines, "AUTH CRAM-MD5").await?;
    let Some(encoded) = challenge.strip_prefix("+ ") else {
        return Ok(false);
    };
    let challenge = BASE64
        .decode(encoded.trim())
        .map_err(|e| format!("CRAM-MD5 challenge: {e}"))?;
    let mut mac = Hmac::<Md5>::new_from_slice(login.password.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(&challenge);
    let response = format!("{} {}", login.user, hex(&mac.finalize().into_bytes()));
    let answer = ask(lines, &BASE64.encode(response)).await?;
    Ok(answer.starts_with("+OK"))
}

async fn ask<S>(lines: &mut Lines<S>, command: &str) -> Result<String, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    lines.command(command).await?;
    lines.line().await
}

/// Mail::POP3Client's test of a positive answer: `/^\+OK/i`.
fn is_ok(line: &str) -> bool {
    line.get(..3).is_some_and(|s| s.eq_ignore_ascii_case("+OK"))
}

/// The APOP timestamp in a greeting (`<pid.clock@host>`), as Mail::POP3Client finds it.
fn message_id(greeting: &str) -> Option<&str> {
    static ID: OnceLock<Regex> = OnceLock::new();
    let id = ID.get_or_init(|| {
        let atom = r"[-_\w!#$%&'*+/=?^`{|}~]+";
        Regex::new(&format!(r"<{atom}(?:\.{atom})*@{atom}(?:\.{atom})*>")).expect("a valid pattern")
    });
    id.find(greeting).ok().flatten().map(|m| m.as_str())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_found_as_mail_pop3client_finds_them() {
        assert_eq!(
            message_id("+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>"),
            Some("<1896.697170952@dbc.mtview.ca.us>")
        );
        assert_eq!(message_id("+OK Dovecot ready."), None);
        assert_eq!(message_id("+OK <no-at-sign>"), None);
    }

    #[test]
    fn apop_digest_of_rfc_1939() {
        let digest = Md5::digest(b"<1896.697170952@dbc.mtview.ca.us>tanstaaf");
        assert_eq!(hex(&digest), "c4c9334bac560ecc979e58001b3e22fb");
    }

    #[test]
    fn cram_md5_is_found_in_sasl_lines_only() {
        assert!(lists_cram_md5("SASL PLAIN CRAM-MD5"));
        assert!(!lists_cram_md5("SASL PLAIN"));
        assert!(!lists_cram_md5("X-CRAM CRAM-MD5"));
    }

    #[test]
    fn positive_answers() {
        assert!(is_ok("+OK"));
        assert!(is_ok("+ok fine"));
        assert!(!is_ok("-ERR"));
        assert!(!is_ok("+"));
    }
}
