//! `xtask lab-udp`: a UDP server for the lab's reals that answers every datagram with its own
//! name, the datagram's length and a digest of its payload ([`answer`]), so a client can tell that
//! a large datagram arrived whole (every fragment, reassembled in order) and which real got it.
//!
//! It binds the addresses it is given, not a wildcard: a real answers from the VIP it was sent to
//! only if its socket is bound to that VIP (a wildcard socket would answer from the real's own
//! address, which the client does not expect).

use anyhow::{Context as _, Result, bail};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;

/// The largest UDP payload over IPv4 (65,535 − 20 − 8), the most a datagram can hold.
const MAX_DATAGRAM: usize = 65_507;

/// FNV-1a, 64 bits: no dependency, and any lost, repeated or misplaced byte changes it.
pub fn digest(payload: &[u8]) -> u64 {
    payload.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What the server answers to `payload`: `NAME LEN DIGEST` (the digest in 16 hex digits).
pub fn answer(name: &str, payload: &[u8]) -> String {
    format!("{name} {} {:016x}", payload.len(), digest(payload))
}

/// `lab-udp --name NAME --bind ADDR:PORT [--bind ADDR:PORT…] --pid-file PATH`
pub fn main(args: &[String]) -> Result<()> {
    let (mut name, mut pid_file, mut binds) = (None, None, Vec::new());
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .with_context(|| format!("lab-udp: {flag} needs a value"))?;
        match flag.as_str() {
            "--name" => name = Some(value.clone()),
            "--pid-file" => pid_file = Some(PathBuf::from(value)),
            "--bind" => binds.push(
                value
                    .parse::<SocketAddr>()
                    .with_context(|| format!("lab-udp: --bind {value}"))?,
            ),
            other => bail!("lab-udp: unknown option {other}"),
        }
    }
    let (Some(name), Some(pid_file), false) = (name, pid_file, binds.is_empty()) else {
        bail!("usage: xtask lab-udp --name NAME --bind ADDR:PORT [--bind …] --pid-file PATH");
    };
    let sockets = binds
        .iter()
        .map(|addr| UdpSocket::bind(addr).with_context(|| format!("cannot bind {addr}")))
        .collect::<Result<Vec<_>>>()?;
    // Written only once every address is bound: whoever started it waits for this file.
    let tmp = pid_file.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .and_then(|()| std::fs::rename(&tmp, &pid_file))
        .with_context(|| format!("cannot write {}", pid_file.display()))?;
    eprintln!("lab-udp {name}: listening on {binds:?}");
    std::thread::scope(|scope| {
        for socket in &sockets {
            let name = name.as_str();
            scope.spawn(move || serve(socket, name));
        }
    });
    Ok(())
}

fn serve(socket: &UdpSocket, name: &str) {
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        // A lost answer is the client's to notice; the server keeps serving.
        let _ = socket.send_to(answer(name, &buf[..n]).as_bytes(), from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_fnv1a_64() {
        // The published FNV-1a test vectors.
        assert_eq!(digest(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(digest(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(digest(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(answer("web1", b"a"), "web1 1 af63dc4c8601ec8c");
    }
}
