//! ldirectord's name-lookup wrappers (`ld_gethostbyname`, `ld_getservbyname`,
//! `ld_gethostservbyname`), with their string handling, over an [`Environment`].

use std::net::IpAddr;

use crate::environment::Environment;
use crate::model::Family;

/// A resolved address with the text ldirectord keeps for it (in ids and messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Host {
    pub address: IpAddr,
    /// `1.2.3.4` or `[2001:db8::1]`, as getnameinfo printed it.
    pub text: String,
}

/// `ld_gethostbyname`: the part inside the first `[` and the last `]` if any, then the first
/// address getaddrinfo gives for the family.
pub(crate) fn host(env: &dyn Environment, name: &[u8], family: Family) -> Option<Host> {
    let name = strip_brackets(name);
    let numeric = env.resolve_host(name, family)?;
    // A scope (`fe80::1%eth0`) has no place in IpAddr; the text keeps it.
    let bare = numeric.split('%').next().unwrap_or(&numeric);
    let address: IpAddr = bare.parse().ok()?;
    let text = match address {
        IpAddr::V4(_) => numeric,
        IpAddr::V6(_) => format!("[{numeric}]"),
    };
    Some(Host { address, text })
}

impl crate::parse::Reader<'_> {
    /// [`host`], with a warning when a numeric address reads as something else
    /// (`010.1.1.1` is 8.1.1.1, `1` is 0.0.0.1: getaddrinfo reads numbers as inet_aton does).
    pub(crate) fn resolve_host(
        &mut self,
        name: &[u8],
        family: Family,
        line: usize,
    ) -> Option<Host> {
        let resolved = host(self.env, name, family)?;
        let bare = strip_brackets(name);
        let numeric = !bare.is_empty()
            && (bare.iter().all(|c| c.is_ascii_digit() || *c == b'.')
                || bare.starts_with(b"0x")
                || bare.starts_with(b"0X"));
        if numeric && bare != resolved.text.as_bytes() {
            self.warn(crate::quirk::numeric_address(line, bare, &resolved.text));
        }
        if bare.is_empty() {
            self.warn(crate::quirk::empty_host(line, &resolved.text));
        }
        Some(resolved)
    }
}

/// `$name =~ /\[(.*)\]/`: greedy, unanchored.
fn strip_brackets(name: &[u8]) -> &[u8] {
    if let Some(open) = name.iter().position(|&b| b == b'[')
        && let Some(close) = name.iter().rposition(|&b| b == b']')
        && close > open
    {
        return &name[open + 1..close];
    }
    name
}

/// A port as ldirectord keeps it: the number, and the text (a number is kept as written, so
/// `080` stays `080`; a service name becomes the number getservbyname gives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Port {
    pub number: u16,
    pub text: String,
}

/// `ld_getservbyname`: digits are a port when below 65536, anything else is a service name
/// looked up for `protocol` ("" = any).
pub(crate) fn port(env: &dyn Environment, name: &[u8], protocol: &str) -> Option<Port> {
    if !name.is_empty() && name.iter().all(u8::is_ascii_digit) {
        let value = crate::value::digits_value(name);
        let number = u16::try_from(value).ok()?;
        return Some(Port {
            number,
            text: crate::value::text(name),
        });
    }
    let number = env.resolve_service(name, protocol)?;
    Some(Port {
        number,
        text: number.to_string(),
    })
}

/// ldirectord's `s/(:(\d+|[A-Za-z0-9-_]+))?$//`: the port is the text after the last colon
/// when it is made only of port characters (letters, digits, `-`, `_`).
pub(crate) fn split_host_port(text: &[u8]) -> (&[u8], Option<&[u8]>) {
    if let Some(colon) = text.iter().rposition(|&b| b == b':') {
        let port = &text[colon + 1..];
        if !port.is_empty()
            && port
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return (&text[..colon], Some(port));
        }
    }
    (text, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_are_stripped_greedily() {
        assert_eq!(strip_brackets(b"[::1]"), b"::1");
        assert_eq!(strip_brackets(b"x[a]y]"), b"a]y");
        assert_eq!(strip_brackets(b"]["), b"][");
        assert_eq!(strip_brackets(b"host"), b"host");
    }

    #[test]
    fn host_port_split_takes_the_last_port_like_suffix() {
        assert_eq!(
            split_host_port(b"1.2.3.4:80"),
            (&b"1.2.3.4"[..], Some(&b"80"[..]))
        );
        assert_eq!(
            split_host_port(b"[2001:db8::5]:119"),
            (&b"[2001:db8::5]"[..], Some(&b"119"[..]))
        );
        assert_eq!(split_host_port(b"host"), (&b"host"[..], None));
        assert_eq!(split_host_port(b"a:b:c"), (&b"a:b"[..], Some(&b"c"[..])));
        assert_eq!(split_host_port(b"[::1]"), (&b"[::1]"[..], None));
        assert_eq!(split_host_port(b""), (&b""[..], None));
    }
}
