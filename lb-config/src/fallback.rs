//! `fallback`/`fallback6`: ldirectord's `parse_fallback` and
//! `_ld_read_config_fallback_resolve`.

use std::sync::LazyLock;

use regex::bytes::Regex;

use crate::diagnostics::Diagnostic;
use crate::lookup::{self, split_host_port};
use crate::model::{Fallback, Family, Forwarding};
use crate::parse::Reader;
use crate::quirk;
use crate::value::{has_text, perl_true, text};

/// A fallback as written, before resolution.
#[derive(Debug, Clone)]
pub(crate) struct ParsedFallback {
    pub line: usize,
    pub server: Vec<u8>,
    /// The port text; an in-block fallback without one takes the virtual's port as written.
    pub port: Option<Vec<u8>>,
    pub forwarding: Forwarding,
}

/// `(\S+)(\s+(\S+))?\s*$`, unanchored at the start.
static SERVER_METHOD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?-u)(\S+)(\s+(\S+))?\s*$").expect("valid pattern"));

/// `parse_fallback`. `virtual_port` is the enclosing virtual's port text, `None` for the
/// global directive.
pub(crate) fn parse(
    reader: &mut Reader<'_>,
    line: usize,
    value: &[u8],
    virtual_port: Option<&[u8]>,
) -> Result<ParsedFallback, Diagnostic> {
    let (host_port, method) = match SERVER_METHOD.captures(value) {
        Some(c) => {
            let whole = c.get(0).expect("group 0 always participates");
            if has_text(&value[..whole.start()]) {
                reader.warn(quirk::ignored_before(
                    line,
                    "the fallback server",
                    &value[..whole.start()],
                ));
            }
            (
                c.get(1).map_or(&b""[..], |m| m.as_bytes()),
                c.get(3).map(|m| m.as_bytes()),
            )
        }
        None => (value, None),
    };
    // ldirectord's "invalid fallback server" cannot happen: the host pattern always matches.
    let (server, port) = split_host_port(host_port);
    let port = port
        .map(<[u8]>::to_vec)
        .or_else(|| virtual_port.map(<[u8]>::to_vec));
    let forwarding = match method {
        // `if ($fwd)`: Perl truth, so a method of "0" is skipped.
        Some(m) if perl_true(m) => forwarding(m)
            .ok_or_else(|| Diagnostic::error(line, "forward method must be gate, masq or ipip"))?,
        Some(_) => {
            reader.warn(quirk::fallback_forward_zero(line));
            Forwarding::Gate
        }
        None => Forwarding::Gate,
    };
    Ok(ParsedFallback {
        line,
        server: server.to_vec(),
        port,
        forwarding,
    })
}

pub(crate) fn forwarding(word: &[u8]) -> Option<Forwarding> {
    match word {
        b"gate" => Some(Forwarding::Gate),
        b"masq" => Some(Forwarding::Masq),
        b"ipip" => Some(Forwarding::Ipip),
        _ => None,
    }
}

/// `_ld_read_config_fallback_resolve`: the server for the family, then the port for the
/// protocol. A missing port, or `0`, is left alone. Returns the port as `None` when missing.
pub(crate) fn resolve(
    reader: &mut Reader<'_>,
    parsed: &ParsedFallback,
    protocol: &str,
    family: Family,
) -> Result<(Fallback, Option<u16>), Diagnostic> {
    let line = parsed.line;
    let host = reader
        .resolve_host(&parsed.server, family, line)
        .ok_or_else(|| {
            let version = match family {
                Family::Inet => "IPv4",
                Family::Inet6 => "IPv6",
            };
            Diagnostic::error(
                line,
                format!(
                    "invalid {version} address or could not resolve for fallback server: {}",
                    text(&parsed.server)
                ),
            )
        })?;
    let port = match &parsed.port {
        Some(p) if perl_true(p) => {
            let port = lookup::port(reader.env, p, protocol)
                .ok_or_else(|| Diagnostic::error(line, "invalid port for fallback server"))?;
            Some(port.number)
        }
        Some(_) => Some(0),
        None => None,
    };
    let fallback = Fallback {
        line,
        address: host.address,
        port: port.unwrap_or(0),
        forwarding: parsed.forwarding,
    };
    Ok((fallback, port))
}
