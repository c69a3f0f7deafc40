//! The `oracle` negotiate check: a probe of the TNS listener, not a login.
//!
//! ldirectord logs in through DBI and DBD::Oracle (`dbi:Oracle:sid=<database>;host=…;port=…`,
//! `login`, `passwd`) and runs `request`, which needs Oracle's proprietary client: no Debian
//! package and no free crate speaks Oracle's authentication. This check sends the TNS CONNECT
//! packet that client would send first, with a connect descriptor naming the SID from
//! `database`, and reads the listener's answer:
//!
//! * ACCEPT (the listener hands the connection to the instance) or REDIRECT (to a dispatcher
//!   or another address): up;
//! * REFUSE (unknown SID, instance down or blocked, `ERR=12505`, `12514`, `12528` …): down,
//!   with the listener's error number;
//! * RESEND: the CONNECT is sent again (at most twice more), as the client does;
//! * anything else, or nothing: down.
//!
//! So a real is up when its listener accepts connections for the database. Unlike ldirectord,
//! the check does not authenticate (wrong credentials, a locked account are not seen) and does
//! not run `request` (a failing query is not seen). It still refuses, as ldirectord does, to
//! run without `login` and `request`. The connection is closed right after the answer.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::line;
use crate::outcome::Outcome;
use crate::spec::bracketed;

/// TNS packet types.
const CONNECT: u8 = 1;
const ACCEPT: u8 = 2;
const REFUSE: u8 = 4;
const REDIRECT: u8 = 5;
const RESEND: u8 = 11;

/// Where the connect data starts in our CONNECT packet (as Oracle's clients send it).
const CONNECT_DATA_OFFSET: usize = 58;

/// An answer is at most this large here (a REFUSE or REDIRECT carries a short descriptor).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How many times a RESEND is honoured.
const MAX_RESENDS: usize = 2;

pub(crate) async fn check(addr: SocketAddr, sid: &str) -> Outcome {
    match exchange(addr, sid).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::down(e),
    }
}

async fn exchange(addr: SocketAddr, sid: &str) -> Result<Outcome, String> {
    let mut stream = line::connect(addr).await?;
    let packet = connect_packet(&descriptor(addr, sid))?;
    for _ in 0..=MAX_RESENDS {
        stream
            .write_all(&packet)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let (kind, body) = read_packet(&mut stream).await?;
        match kind {
            ACCEPT => return Ok(Outcome::up("TNS ACCEPT")),
            REDIRECT => return Ok(Outcome::up("TNS REDIRECT")),
            REFUSE => {
                return Ok(Outcome::bad_answer(match listener_error(&body) {
                    Some(code) => format!("TNS REFUSE (ORA-{code:05})"),
                    None => "TNS REFUSE".to_owned(),
                }));
            }
            RESEND => continue,
            other => return Ok(Outcome::bad_answer(format!("TNS packet type {other}"))),
        }
    }
    Ok(Outcome::bad_answer("TNS RESEND, again and again"))
}

/// The connect descriptor DBD::Oracle builds from `sid=…;host=…;port=…`.
fn descriptor(addr: SocketAddr, sid: &str) -> String {
    format!(
        "(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST={})(PORT={}))\
         (CONNECT_DATA=(SID={sid})(CID=(PROGRAM=xdirectord)(HOST=xdirectord)(USER=xdirectord))))",
        bracketed(addr.ip()),
        addr.port()
    )
}

/// A TNS CONNECT packet (version 314, compatible with 300) carrying `descriptor`.
pub(crate) fn connect_packet(descriptor: &str) -> Result<Vec<u8>, String> {
    let data = descriptor.as_bytes();
    let total = u16::try_from(CONNECT_DATA_OFFSET + data.len())
        .map_err(|_| "connect descriptor too long".to_owned())?;
    let data_length = u16::try_from(data.len()).map_err(|_| "connect descriptor too long")?;
    let mut p = Vec::with_capacity(usize::from(total));
    // Header: length, packet checksum, type, reserved, header checksum.
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, CONNECT, 0, 0, 0]);
    p.extend_from_slice(&314u16.to_be_bytes()); // version
    p.extend_from_slice(&300u16.to_be_bytes()); // lowest version compatible
    p.extend_from_slice(&0u16.to_be_bytes()); // service options
    p.extend_from_slice(&8192u16.to_be_bytes()); // session data unit
    p.extend_from_slice(&32767u16.to_be_bytes()); // maximum transmission data unit
    p.extend_from_slice(&0x7f08u16.to_be_bytes()); // protocol characteristics
    p.extend_from_slice(&0u16.to_be_bytes()); // line turnaround
    p.extend_from_slice(&1u16.to_be_bytes()); // 1 in the sender's byte order
    p.extend_from_slice(&data_length.to_be_bytes());
    p.extend_from_slice(&(CONNECT_DATA_OFFSET as u16).to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes()); // maximum receivable connect data
    p.extend_from_slice(&[0x41, 0x41]); // connect flags
    p.resize(CONNECT_DATA_OFFSET, 0); // trace facilities and connection id: none
    p.extend_from_slice(data);
    Ok(p)
}

/// One TNS packet: its type and what follows the 8-byte header.
async fn read_packet(stream: &mut tokio::net::TcpStream) -> Result<(u8, Vec<u8>), String> {
    let mut header = [0u8; 8];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|e| format!("read a TNS packet: {e}"))?;
    let length = usize::from(u16::from_be_bytes([header[0], header[1]]));
    if !(8..=MAX_ANSWER_BYTES).contains(&length) {
        return Err(format!("not a TNS packet (length {length})"));
    }
    let mut body = vec![0u8; length - 8];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| format!("read a TNS packet: {e}"))?;
    Ok((header[4], body))
}

/// The `(ERR=n)` of a REFUSE's descriptor.
fn listener_error(body: &[u8]) -> Option<u32> {
    let text = String::from_utf8_lossy(body);
    let start = text.find("(ERR=")? + 5;
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_packet_layout() {
        let d = descriptor("192.0.2.5:1521".parse().unwrap(), "ORCL");
        assert!(d.contains("(HOST=192.0.2.5)(PORT=1521)"));
        assert!(d.contains("(CONNECT_DATA=(SID=ORCL)"));
        let p = connect_packet(&d).unwrap();
        assert_eq!(usize::from(u16::from_be_bytes([p[0], p[1]])), p.len());
        assert_eq!(p[4], CONNECT);
        assert_eq!(u16::from_be_bytes([p[24], p[25]]) as usize, d.len());
        assert_eq!(u16::from_be_bytes([p[26], p[27]]), 58);
        assert_eq!(&p[58..], d.as_bytes());
        let v6 = descriptor("[2001:db8::5]:1521".parse().unwrap(), "X");
        assert!(v6.contains("(HOST=[2001:db8::5])"));
    }

    #[test]
    fn refusal_codes() {
        assert_eq!(
            listener_error(b"\x00\x00\x00\x00(DESCRIPTION=(TMP=)(VSNNUM=0)(ERR=12505)(ERROR_STACK=(ERROR=(CODE=12505)(EMFI=4))))"),
            Some(12505)
        );
        assert_eq!(listener_error(b"nothing"), None);
    }
}
