//! xdirectord's own directives (`backend`, `interface`, `xdpmode`, `metrics`), validated with
//! messages in ldirectord's style. Unlike ldirectord's yes/no directives they forgive
//! surrounding blanks: there is no old behaviour to keep, and that trap helps nobody.

use std::net::SocketAddr;

use crate::diagnostics::Diagnostic;
use crate::model::{BackendKind, XdpMode};
use crate::validate::split_commas;
use crate::value::{is_space, text, trim_space};

fn ours(line: usize, message: impl Into<String>) -> Diagnostic {
    Diagnostic::error(line, message).ours()
}

/// `backend = auto|xdp|ipvs`.
pub(crate) fn backend(value: &[u8], line: usize) -> Result<BackendKind, Diagnostic> {
    match trim_space(value) {
        b"auto" => Ok(BackendKind::Auto),
        b"xdp" => Ok(BackendKind::Xdp),
        b"ipvs" => Ok(BackendKind::Ipvs),
        _ => Err(ours(line, "backend must be 'auto', 'xdp' or 'ipvs'")),
    }
}

/// `xdpmode = native|generic`.
pub(crate) fn xdpmode(value: &[u8], line: usize) -> Result<XdpMode, Diagnostic> {
    match trim_space(value) {
        b"native" => Ok(XdpMode::Native),
        b"generic" => Ok(XdpMode::Generic),
        _ => Err(ours(line, "xdpmode must be 'native' or 'generic'")),
    }
}

/// `interface = IF[,IF…]`: names the kernel would accept (`dev_valid_name`), duplicates
/// dropped, order kept.
pub(crate) fn interfaces(value: &[u8], line: usize) -> Result<Vec<String>, Diagnostic> {
    let value = trim_space(value);
    if value.is_empty() {
        return Err(ours(line, "no interface specified"));
    }
    let mut names: Vec<String> = Vec::new();
    for name in split_commas(value) {
        let valid = !name.is_empty()
            && name.len() < 16
            && name != b"."
            && name != b".."
            && !name
                .iter()
                .any(|&c| c == b'/' || c == b':' || c == 0 || is_space(c));
        if !valid {
            return Err(ours(
                line,
                format!("invalid interface name: \"{}\"", text(name)),
            ));
        }
        let name = text(name);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// `metrics = ADDR:PORT` (`127.0.0.1:9100`, `[::1]:9100`).
pub(crate) fn metrics(value: &[u8], line: usize) -> Result<SocketAddr, Diagnostic> {
    text(trim_space(value)).parse().map_err(|_| {
        ours(
            line,
            "invalid metrics address: an address and a port are required (e.g. 127.0.0.1:9100 or [::1]:9100)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_and_mode_words() {
        assert_eq!(backend(b"xdp ", 1), Ok(BackendKind::Xdp));
        assert_eq!(backend(b"ipvs", 1), Ok(BackendKind::Ipvs));
        assert_eq!(
            backend(b"XDP", 3).unwrap_err().message,
            "backend must be 'auto', 'xdp' or 'ipvs'"
        );
        assert_eq!(xdpmode(b"generic\r", 1), Ok(XdpMode::Generic));
        assert!(xdpmode(b"skb", 1).is_err());
    }

    #[test]
    fn interface_lists() {
        assert_eq!(
            interfaces(b"eth0, eth1,eth0", 1).unwrap(),
            vec!["eth0", "eth1"]
        );
        assert_eq!(
            interfaces(b"eth0,a/b", 2).unwrap_err().message,
            "invalid interface name: \"a/b\""
        );
        assert!(interfaces(b"averyveryverylongname", 1).is_err());
        assert!(interfaces(b",eth0", 1).is_err());
        assert_eq!(
            interfaces(b"  ", 1).unwrap_err().message,
            "no interface specified"
        );
    }

    #[test]
    fn metrics_addresses() {
        assert_eq!(
            metrics(b"127.0.0.1:9100", 1).unwrap(),
            "127.0.0.1:9100".parse().unwrap()
        );
        assert_eq!(
            metrics(b"[::1]:9100 ", 1).unwrap(),
            "[::1]:9100".parse().unwrap()
        );
        assert!(metrics(b"localhost:9100", 1).is_err());
        assert!(metrics(b"127.0.0.1", 1).is_err());
    }
}
