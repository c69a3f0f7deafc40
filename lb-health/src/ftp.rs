//! The `ftp` negotiate check, as ldirectord's Net::FTP session.
//!
//! * The banner must be a 2xx reply (Net::FTP's constructor fails otherwise).
//! * `USER login`, then `PASS passwd` when the server asks for it (3xx). ldirectord ignores the
//!   answers of login, `CWD /` and `TYPE I`; so does this check: a refused login shows as a
//!   refused `RETR`.
//! * `CWD /`, `TYPE I`, then `PASV` (`EPSV` over IPv6) and `RETR <request>` (the request with
//!   its leading `/`, as ldirectord passes it). The data connection goes to the real's address
//!   and the port the server names.
//! * The file is read to its end (at most [`MAX_FILE_BYTES`] kept) and matched against
//!   `receive`: up iff it matches. ldirectord's verdict depends on the content alone, so the
//!   transfer's final reply is not waited for; `QUIT` is sent and the connection closed.
//!
//! Differences: the PASV reply's address is not used (the data connection goes to the real,
//! which is also what keeps a hostile server from pointing the director elsewhere). On Debian,
//! ldirectord's `pasv()` is undone by Net::FTP's `get()`, which (libnet.cfg: `ftp_int_passive
//! => 0`) then transfers in active mode (`PORT`/`EPRT`, the real connecting back to the
//! director); here the transfer is passive. An empty `receive` is up when the file was
//! retrieved (ldirectord's empty pattern reuses Perl's last match).

use std::net::SocketAddr;

use tokio::io::AsyncReadExt;

use crate::line::{self, Lines, Reply, excerpt};
use crate::outcome::Outcome;
use crate::receive::Receive;
use crate::spec::Login;

/// Bytes of the file kept for matching; the rest is read and dropped.
pub(crate) const MAX_FILE_BYTES: usize = 1024 * 1024;

/// A prepared ftp check.
#[derive(Debug)]
pub(crate) struct FtpCheck {
    pub(crate) login: Login,
    pub(crate) request: String,
    /// `None`: an empty receive.
    pub(crate) receive: Option<Receive>,
}

impl FtpCheck {
    pub(crate) async fn run(&self, addr: SocketAddr) -> Outcome {
        match self.session(addr).await {
            Ok(outcome) => outcome,
            Err(reason) => Outcome::down(reason),
        }
    }

    async fn session(&self, addr: SocketAddr) -> Result<Outcome, String> {
        let mut control = Lines::new(line::connect(addr).await?);
        let banner = control.reply().await?;
        if banner.class() != 2 {
            return Err(format!("banner {}", excerpt(&banner.line)));
        }
        let user = ask(&mut control, &format!("USER {}", self.login.user)).await?;
        if user.class() == 3 {
            ask(&mut control, &format!("PASS {}", self.login.password)).await?;
        }
        ask(&mut control, "CWD /").await?;
        ask(&mut control, "TYPE I").await?;
        let data_port = if addr.is_ipv6() {
            let reply = ask(&mut control, "EPSV").await?;
            epsv_port(&reply).ok_or_else(|| format!("EPSV: {}", excerpt(&reply.line)))?
        } else {
            let reply = ask(&mut control, "PASV").await?;
            pasv_port(&reply).ok_or_else(|| format!("PASV: {}", excerpt(&reply.line)))?
        };
        let mut data = line::connect(SocketAddr::new(addr.ip(), data_port)).await?;
        let retr = ask(&mut control, &format!("RETR {}", self.request)).await?;
        if retr.class() != 1 {
            return Err(format!("RETR {}: {}", self.request, excerpt(&retr.line)));
        }
        let file = read_file(&mut data).await?;
        drop(data);
        // Courtesy only: the verdict is the file's, whatever the server says next.
        let _ = control.command("QUIT").await;
        let text = String::from_utf8_lossy(&file);
        Ok(match &self.receive {
            None => Outcome::up(format!("retrieved {}", self.request)),
            Some(receive) if receive.is_match(&text) => {
                Outcome::up(format!("{} matched receive", self.request))
            }
            Some(_) => Outcome::bad_answer(format!("{} did not match receive", self.request)),
        })
    }
}

/// Sends a command and reads its reply.
async fn ask<S>(control: &mut Lines<S>, command: &str) -> Result<Reply, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    control.command(command).await?;
    control.reply().await
}

/// Reads the data connection to its end, keeping at most [`MAX_FILE_BYTES`].
async fn read_file(data: &mut tokio::net::TcpStream) -> Result<Vec<u8>, String> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = data
            .read(&mut buf)
            .await
            .map_err(|e| format!("data connection: {e}"))?;
        if n == 0 {
            return Ok(kept);
        }
        let room = MAX_FILE_BYTES - kept.len();
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// The port of a `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` reply: the last two of the
/// six numbers, wherever they stand, as Net::FTP finds them.
fn pasv_port(reply: &Reply) -> Option<u16> {
    if reply.code != 227 {
        return None;
    }
    let line = &reply.line[3..];
    let start = line.find(|c: char| c.is_ascii_digit())?;
    let numbers: Vec<u16> = line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(6)
        .map(|n| n.parse().ok())
        .collect::<Option<_>>()?;
    match numbers[..] {
        [_, _, _, _, high, low] if high < 256 && low < 256 => Some(high * 256 + low),
        _ => None,
    }
}

/// The port of a `229 Entering Extended Passive Mode (|||port|)` reply.
fn epsv_port(reply: &Reply) -> Option<u16> {
    if reply.code != 229 {
        return None;
    }
    let open = reply.line.find('(')?;
    let inner = &reply.line[open + 1..];
    let delimiter = inner.chars().next()?;
    let rest = inner.strip_prefix(&format!("{delimiter}{delimiter}{delimiter}"))?;
    let end = rest.find(delimiter)?;
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, line: &str) -> Reply {
        Reply {
            code,
            line: line.to_owned(),
        }
    }

    #[test]
    fn passive_ports() {
        assert_eq!(
            pasv_port(&reply(227, "227 Entering Passive Mode (127,0,0,1,195,80).")),
            Some(195 * 256 + 80)
        );
        assert_eq!(
            pasv_port(&reply(227, "227 =127,0,0,1,4,1")),
            Some(1025),
            "no parentheses, as some servers write it"
        );
        assert_eq!(pasv_port(&reply(227, "227 (1,2,3,4,5)")), None);
        assert_eq!(pasv_port(&reply(227, "227 (1,2,3,4,999,1)")), None);
        assert_eq!(pasv_port(&reply(500, "500 no")), None);
        assert_eq!(
            epsv_port(&reply(
                229,
                "229 Entering Extended Passive Mode (|||50123|)"
            )),
            Some(50123)
        );
        assert_eq!(epsv_port(&reply(229, "229 (|||x|)")), None);
    }
}
