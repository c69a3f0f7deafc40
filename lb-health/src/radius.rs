//! The `radius` negotiate check, as ldirectord's Authen::Radius `check_pwd`, by hand (RFC 2865).
//!
//! An Access-Request with User-Name (`login`), User-Password (`passwd`, hidden with `secret`)
//! and NAS-IP-Address (the address the request leaves from; NAS-IPv6-Address over IPv6), plus
//! a Message-Authenticator (RFC 3579), first, which FreeRADIUS 3.2.5 and later require since
//! BlastRADIUS. Up iff the answer is an Access-Accept whose response authenticator (and
//! Message-Authenticator, when it carries one) proves it was made with the same secret;
//! Access-Reject, Access-Challenge or a forged answer is down. The request is sent again every
//! second until the deadline, with the same identifier and authenticator (a retransmission
//! the server recognises as such).
//!
//! Differences: ldirectord sends no Message-Authenticator (a server that requires one drops
//! its requests, so it is always down there), sends the request once, and over IPv6 puts no
//! usable NAS address in it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

use crate::line::canonical;
use crate::outcome::Outcome;
use crate::spec::Login;
use crate::udp::{self, Retransmit};

const ACCESS_REQUEST: u8 = 1;
const ACCESS_ACCEPT: u8 = 2;
const ACCESS_REJECT: u8 = 3;
const ACCESS_CHALLENGE: u8 = 11;

const USER_NAME: u8 = 1;
const USER_PASSWORD: u8 = 2;
const NAS_IP_ADDRESS: u8 = 4;
const MESSAGE_AUTHENTICATOR: u8 = 80;
const NAS_IPV6_ADDRESS: u8 = 95;

/// Code, identifier, length and authenticator.
const HEADER_BYTES: usize = 20;

/// RFC 2865 §5.2: a password is hidden in 16-byte blocks, at most 128 bytes.
const MAX_PASSWORD_BYTES: usize = 128;

/// How often the request is sent again.
const RETRANSMIT: Duration = Duration::from_secs(1);

pub(crate) async fn check(addr: SocketAddr, login: &Login, secret: &str) -> Outcome {
    match exchange(addr, login, secret.as_bytes()).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::down(e),
    }
}

async fn exchange(addr: SocketAddr, login: &Login, secret: &[u8]) -> Result<Outcome, String> {
    let socket = udp::connected(addr).await?;
    let local = socket.local_addr().map_err(|e| format!("socket: {e}"))?;
    let identifier = fastrand::u8(..);
    let mut authenticator = [0u8; 16];
    authenticator.fill_with(|| fastrand::u8(..));
    let request = access_request(identifier, authenticator, login, secret, local.ip())?;
    let answer = udp::ask(&socket, &request, Retransmit::every(RETRANSMIT), |answer| {
        answer.len() >= HEADER_BYTES && answer[1] == identifier
    })
    .await?;
    Ok(judge(&answer, &authenticator, secret))
}

/// The Access-Request packet.
fn access_request(
    identifier: u8,
    authenticator: [u8; 16],
    login: &Login,
    secret: &[u8],
    local: IpAddr,
) -> Result<Vec<u8>, String> {
    let password = hide_password(login.password.as_bytes(), &authenticator, secret)?;
    let mut packet = Vec::with_capacity(HEADER_BYTES + 64 + login.user.len() + password.len());
    packet.extend_from_slice(&[ACCESS_REQUEST, identifier, 0, 0]);
    packet.extend_from_slice(&authenticator);
    // Filled in once the packet is complete; the HMAC is computed over zeros here.
    push_attribute(&mut packet, MESSAGE_AUTHENTICATOR, &[0u8; 16])?;
    push_attribute(&mut packet, USER_NAME, login.user.as_bytes())?;
    push_attribute(&mut packet, USER_PASSWORD, &password)?;
    match canonical(local) {
        IpAddr::V4(v4) => push_attribute(&mut packet, NAS_IP_ADDRESS, &v4.octets())?,
        IpAddr::V6(v6) => push_attribute(&mut packet, NAS_IPV6_ADDRESS, &v6.octets())?,
    }
    let length = u16::try_from(packet.len()).map_err(|_| "request too long".to_owned())?;
    packet[2..4].copy_from_slice(&length.to_be_bytes());
    let mac = hmac_md5(secret, &packet);
    // The Message-Authenticator's value follows its type and length bytes.
    packet[HEADER_BYTES + 2..HEADER_BYTES + 18].copy_from_slice(&mac);
    Ok(packet)
}

fn push_attribute(packet: &mut Vec<u8>, kind: u8, value: &[u8]) -> Result<(), String> {
    let length = u8::try_from(value.len() + 2)
        .map_err(|_| format!("RADIUS attribute {kind} longer than 253 bytes"))?;
    packet.extend_from_slice(&[kind, length]);
    packet.extend_from_slice(value);
    Ok(())
}

/// RFC 2865 §5.2: the password padded with zeros to a multiple of 16 bytes, each block XORed
/// with MD5(secret + the previous block of the result), the first with the authenticator.
fn hide_password(
    password: &[u8],
    authenticator: &[u8; 16],
    secret: &[u8],
) -> Result<Vec<u8>, String> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("passwd longer than {MAX_PASSWORD_BYTES} bytes"));
    }
    let padded = password.len().div_ceil(16).max(1) * 16;
    let mut out = password.to_vec();
    out.resize(padded, 0);
    let mut previous: [u8; 16] = *authenticator;
    for block in out.chunks_mut(16) {
        let key = Md5::new()
            .chain_update(secret)
            .chain_update(previous)
            .finalize();
        for (byte, k) in block.iter_mut().zip(key) {
            *byte ^= k;
        }
        previous.copy_from_slice(block);
    }
    Ok(out)
}

/// The verdict on an answer to our request (identifier already matched).
fn judge(answer: &[u8], request_authenticator: &[u8; 16], secret: &[u8]) -> Outcome {
    let length = usize::from(u16::from_be_bytes([answer[2], answer[3]]));
    if length < HEADER_BYTES || length > answer.len() {
        return Outcome::bad_answer("malformed RADIUS answer: bad length");
    }
    let answer = &answer[..length];
    let expected = Md5::new()
        .chain_update(&answer[..4])
        .chain_update(request_authenticator)
        .chain_update(&answer[HEADER_BYTES..])
        .chain_update(secret)
        .finalize();
    if expected[..] != answer[4..HEADER_BYTES] {
        return Outcome::bad_answer("the answer's authenticator does not match: wrong secret?");
    }
    match message_authenticator(answer) {
        Err(e) => return Outcome::down(e),
        Ok(Some(offset)) => {
            let mut copy = answer.to_vec();
            copy[4..HEADER_BYTES].copy_from_slice(request_authenticator);
            copy[offset..offset + 16].fill(0);
            if hmac_md5(secret, &copy)[..] != answer[offset..offset + 16] {
                return Outcome::bad_answer("the answer's Message-Authenticator does not match");
            }
        }
        Ok(None) => {}
    }
    match answer[0] {
        ACCESS_ACCEPT => Outcome::up("Access-Accept"),
        ACCESS_REJECT => Outcome::bad_answer("Access-Reject"),
        ACCESS_CHALLENGE => Outcome::bad_answer("Access-Challenge"),
        code => Outcome::bad_answer(format!("RADIUS answer code {code}")),
    }
}

/// Where the value of the answer's Message-Authenticator starts, if it has one.
fn message_authenticator(packet: &[u8]) -> Result<Option<usize>, String> {
    let mut at = HEADER_BYTES;
    while at < packet.len() {
        let (Some(&kind), Some(&length)) = (packet.get(at), packet.get(at + 1)) else {
            return Err("malformed RADIUS answer: truncated attribute".to_owned());
        };
        let length = usize::from(length);
        if length < 2 || at + length > packet.len() {
            return Err("malformed RADIUS answer: bad attribute length".to_owned());
        }
        if kind == MESSAGE_AUTHENTICATOR {
            if length != 18 {
                return Err("malformed RADIUS answer: bad Message-Authenticator".to_owned());
            }
            return Ok(Some(at + 2));
        }
        at += length;
    }
    Ok(None)
}

fn hmac_md5(key: &[u8], data: &[u8]) -> [u8; 16] {
    let mut mac = Hmac::<Md5>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login() -> Login {
        Login {
            user: "probe".into(),
            password: "s3cret-pass".into(),
        }
    }

    /// The server's side of RFC 2865 §5.2: recover the password.
    fn reveal(hidden: &[u8], authenticator: &[u8; 16], secret: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut previous = authenticator.to_vec();
        for block in hidden.chunks(16) {
            let key = Md5::new()
                .chain_update(secret)
                .chain_update(&previous)
                .finalize();
            out.extend(block.iter().zip(key).map(|(b, k)| b ^ k));
            previous = block.to_vec();
        }
        while out.last() == Some(&0) {
            out.pop();
        }
        out
    }

    #[test]
    fn passwords_are_hidden_and_recoverable() {
        let auth = [7u8; 16];
        for password in [
            "",
            "short",
            "exactly-16-bytes",
            "a password longer than one block",
        ] {
            let hidden = hide_password(password.as_bytes(), &auth, b"secret").unwrap();
            assert_eq!(hidden.len() % 16, 0);
            assert!(!hidden.is_empty());
            assert_eq!(reveal(&hidden, &auth, b"secret"), password.as_bytes());
        }
        assert!(hide_password(&[b'x'; 129], &auth, b"s").is_err());
    }

    #[test]
    fn request_layout_and_message_authenticator() {
        let auth = [1u8; 16];
        let packet = access_request(
            9,
            auth,
            &login(),
            b"testing123",
            "127.0.0.1".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(packet[..2], [ACCESS_REQUEST, 9]);
        assert_eq!(
            usize::from(u16::from_be_bytes([packet[2], packet[3]])),
            packet.len()
        );
        let offset = message_authenticator(&packet).unwrap().unwrap();
        let mut zeroed = packet.clone();
        zeroed[offset..offset + 16].fill(0);
        assert_eq!(
            hmac_md5(b"testing123", &zeroed)[..],
            packet[offset..offset + 16]
        );
        assert!(
            packet
                .windows(6)
                .any(|w| w == [NAS_IP_ADDRESS, 6, 127, 0, 0, 1])
        );
    }

    /// A server's answer to `request_auth`, signed with `secret`.
    fn answer(code: u8, request_auth: &[u8; 16], secret: &[u8]) -> Vec<u8> {
        let mut packet = vec![code, 9, 0, HEADER_BYTES as u8];
        packet.extend_from_slice(request_auth);
        let signature = Md5::new()
            .chain_update(&packet)
            .chain_update(secret)
            .finalize();
        packet[4..20].copy_from_slice(&signature);
        packet
    }

    #[test]
    fn answers_are_verified() {
        let auth = [3u8; 16];
        assert!(judge(&answer(ACCESS_ACCEPT, &auth, b"s"), &auth, b"s").up);
        let reject = judge(&answer(ACCESS_REJECT, &auth, b"s"), &auth, b"s");
        assert_eq!(
            (reject.up, reject.reason.as_ref()),
            (false, "Access-Reject")
        );
        let forged = judge(&answer(ACCESS_ACCEPT, &auth, b"other"), &auth, b"s");
        assert!(
            !forged.up && forged.reason.contains("wrong secret"),
            "{forged:?}"
        );
        let mut short = answer(ACCESS_ACCEPT, &auth, b"s");
        short[3] = 200;
        assert!(!judge(&short, &auth, b"s").up);
    }
}
