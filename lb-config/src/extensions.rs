//! xdirectord's own directives (`backend`, `interface`, `xdpmode`, `metrics`, `tunnelsource`,
//! `maxflows`, `maxtemplates`, `maxvirtuals`, `maxreals`), validated with messages in
//! ldirectord's style. Unlike ldirectord's yes/no directives they forgive
//! surrounding blanks: there is no old behaviour to keep, and that trap helps nobody.

use std::net::SocketAddr;

use crate::diagnostics::Diagnostic;
use crate::model::{BackendKind, TunnelPrefix, XdpMode};
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

/// A capacity (`maxflows`, `maxtemplates`, `maxvirtuals`, `maxreals`): digits, optionally
/// followed by `k` or `M` (×1,024, ×1,048,576: `4M`), from `min` to `max`.
pub(crate) fn capacity(
    name: &str,
    value: &[u8],
    line: usize,
    min: u32,
    max: u32,
) -> Result<u32, Diagnostic> {
    let item = text(trim_space(value));
    let invalid = || {
        ours(
            line,
            format!("invalid {name} \"{item}\": a number from {min} to {max} is required"),
        )
    };
    let (digits, unit) = match item.strip_suffix(['k', 'K']) {
        Some(d) => (d, 1 << 10),
        None => match item.strip_suffix('M') {
            Some(d) => (d, 1 << 20),
            None => (item.as_str(), 1),
        },
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let n = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(invalid)?;
    if !(u64::from(min)..=u64::from(max)).contains(&n) {
        return Err(invalid());
    }
    Ok(n as u32)
}

/// `tunnelsource = PREFIX/LEN[,PREFIX/LEN]`: at most one IPv4 and one IPv6 prefix, each with
/// host bits to vary (`172.16.0.0/12`, `fd00:100::/64`).
pub(crate) fn tunnelsource(value: &[u8], line: usize) -> Result<Vec<TunnelPrefix>, Diagnostic> {
    let mut prefixes: Vec<TunnelPrefix> = Vec::new();
    for item in split_commas(trim_space(value)) {
        let item = text(item);
        let invalid = || {
            ours(
                line,
                format!(
                    "invalid tunnelsource \"{item}\": an address prefix with host bits is required (e.g. 172.16.0.0/12 or fd00:100::/64)"
                ),
            )
        };
        let (addr, len) = item.split_once('/').ok_or_else(invalid)?;
        let addr: std::net::IpAddr = addr.parse().map_err(|_| invalid())?;
        let len: u8 = len.parse().map_err(|_| invalid())?;
        let width = if addr.is_ipv4() { 32 } else { 128 };
        if len >= width {
            return Err(invalid());
        }
        if prefixes.iter().any(|p| p.addr.is_ipv4() == addr.is_ipv4()) {
            return Err(ours(
                line,
                format!("tunnelsource: more than one prefix for the family of {item}"),
            ));
        }
        prefixes.push(TunnelPrefix { addr, len });
    }
    if prefixes.is_empty() {
        return Err(ours(line, "no tunnelsource prefix specified"));
    }
    Ok(prefixes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities() {
        let flows = |v: &[u8]| capacity("maxflows", v, 3, 4, 1 << 30);
        assert_eq!(flows(b" 4194304").unwrap(), 4_194_304);
        assert_eq!(flows(b"4M").unwrap(), 4 << 20);
        assert_eq!(flows(b"64k ").unwrap(), 64 << 10);
        assert_eq!(flows(b"1024M").unwrap(), 1 << 30);
        for bad in [&b""[..], b"3", b"1025M", b"-4", b"4G", b"4 M", b"x"] {
            let e = flows(bad).unwrap_err();
            assert_eq!(
                e.message,
                format!(
                    "invalid maxflows \"{}\": a number from 4 to 1073741824 is required",
                    String::from_utf8_lossy(bad).trim()
                )
            );
        }
    }

    #[test]
    fn tunnel_source_prefixes() {
        let both = tunnelsource(b" 172.16.0.0/12, fd00:100::/64", 3).unwrap();
        assert_eq!(both.len(), 2);
        assert_eq!(both[0].flow_bits(), 20);
        assert_eq!(both[1].flow_bits(), 32);
        for bad in [
            &b"172.16.0.0"[..],
            b"172.16.0.0/32",
            b"x/8",
            b"10.0.0.0/8,10.1.0.0/16",
            b"",
        ] {
            assert!(
                tunnelsource(bad, 3).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

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
