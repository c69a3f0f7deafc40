//! `fallback`/`fallback6`: ldirectord's `parse_fallback` and
//! `_ld_read_config_fallback_resolve`.

use crate::diagnostics::Diagnostic;
use crate::lookup::{self, split_host_port};
use crate::model::{Fallback, Family, Forwarding};
use crate::parse::Reader;
use crate::quirk;
use crate::value::{has_text, is_space, perl_true, text};

/// A fallback as written, before resolution.
#[derive(Debug, Clone)]
pub(crate) struct ParsedFallback {
    pub line: usize,
    pub server: Vec<u8>,
    /// The port text; an in-block fallback without one takes the virtual's port as written.
    pub port: Option<Vec<u8>>,
    pub forwarding: Forwarding,
}

/// The words of a fallback value.
#[derive(Debug, PartialEq, Eq)]
struct Words<'a> {
    server: &'a [u8],
    method: Option<&'a [u8]>,
    /// Text before them, which ldirectord ignores.
    skipped: &'a [u8],
}

/// `(\S+)(\s+(\S+))?\s*$`, unanchored at the start: the leftmost place from which at most
/// two words remain, i.e. the last two words (or the only one).
fn last_two_words(value: &[u8]) -> Option<Words<'_>> {
    let mut words: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < value.len() {
        if is_space(value[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < value.len() && !is_space(value[i]) {
            i += 1;
        }
        words.push((start, i));
    }
    let (first, second) = match words.as_slice() {
        [] => return None,
        [only] => (*only, None),
        [.., a, b] => (*a, Some(*b)),
    };
    Some(Words {
        server: &value[first.0..first.1],
        method: second.map(|(s, e)| &value[s..e]),
        skipped: &value[..first.0],
    })
}

/// `parse_fallback`. `virtual_port` is the enclosing virtual's port text, `None` for the
/// global directive.
pub(crate) fn parse(
    reader: &mut Reader<'_>,
    line: usize,
    value: &[u8],
    virtual_port: Option<&[u8]>,
) -> Result<ParsedFallback, Diagnostic> {
    let (host_port, method) = match last_two_words(value) {
        Some(words) => {
            if has_text(words.skipped) {
                reader.warn(quirk::ignored_before(
                    line,
                    "the fallback server",
                    words.skipped,
                ));
            }
            (words.server, words.method)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_two_words_are_server_and_method() {
        let words = |server: &'static str, method: Option<&'static str>, skipped: &'static str| {
            Some(Words {
                server: server.as_bytes(),
                method: method.map(str::as_bytes),
                skipped: skipped.as_bytes(),
            })
        };
        assert_eq!(
            last_two_words(b"127.0.0.1:80 gate"),
            words("127.0.0.1:80", Some("gate"), "")
        );
        assert_eq!(
            last_two_words(b" 127.0.0.1 "),
            words("127.0.0.1", None, " ")
        );
        assert_eq!(
            last_two_words(b"x 127.0.0.1:80 gate"),
            words("127.0.0.1:80", Some("gate"), "x ")
        );
        assert_eq!(
            last_two_words(b"a:80 gate extra"),
            words("gate", Some("extra"), "a:80 ")
        );
        assert_eq!(last_two_words(b"  "), None);
        assert_eq!(last_two_words(b""), None);
    }
}
