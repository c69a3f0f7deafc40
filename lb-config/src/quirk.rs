//! Warnings ldirectord never prints: places where it silently reads a file differently from
//! how it looks. xdirectord reads them the same way and says so, with the line number.
//! docs/ldirectord-compat.md lists each one with an example.

use crate::diagnostics::Diagnostic;
use crate::value::{has_text, text};

fn warn(line: usize, message: String) -> Diagnostic {
    Diagnostic::warning(line, message).ours()
}

/// A pattern matched only the start of the value (`virtual = 1.2.3.4:80 x`, `smtp = host:25`,
/// `request = "/x" junk`).
pub(crate) fn ignored_after(line: usize, what: &str, rest: &[u8]) -> Diagnostic {
    warn(
        line,
        format!("text after {what} ignored: \"{}\"", text(rest).trim_end()),
    )
}

/// An unanchored pattern matched further in (`real = x 1.2.3.4:80 gate`, `gate foo 5`).
pub(crate) fn ignored_before(line: usize, what: &str, skipped: &[u8]) -> Diagnostic {
    warn(
        line,
        format!("text before {what} ignored: \"{}\"", text(skipped).trim()),
    )
}

/// Numeric and one-word directives take the first run that fits (`checkinterval = 1m` is 1,
/// `scheduler = Wrr` is `rr`).
pub(crate) fn partial_value(line: usize, name: &str, value: &[u8], taken: &[u8]) -> Diagnostic {
    warn(
        line,
        format!(
            "{name} = {} read as {}",
            text(value).trim_end(),
            text(taken)
        ),
    )
}

/// `00` passes ldirectord's truth test where `0` fails.
pub(crate) fn zero_value(line: usize, name: &str, digits: &[u8]) -> Diagnostic {
    warn(
        line,
        format!(
            "{name} {} is read as 0 (ldirectord rejects 0 but accepts this)",
            text(digits)
        ),
    )
}

/// A value beyond what the field can hold is clamped.
pub(crate) fn too_large(line: usize, name: &str, digits: &[u8], max: u64) -> Diagnostic {
    warn(
        line,
        format!("{name} {} is too large, {max} used", text(digits)),
    )
}

/// `virtual = 192.168.1.1` (no port) is taken as a firewall mark.
pub(crate) fn fwmark_from_address(line: usize, value: &[u8], mark: &[u8]) -> Diagnostic {
    warn(
        line,
        format!(
            "virtual \"{}\" read as firewall mark {}",
            text(value).trim_end(),
            text(mark)
        ),
    )
}

/// ldirectord keeps numbers as written: `080` is not `80` to its duplicate check and maps to
/// no service.
pub(crate) fn leading_zeros(line: usize, what: &str, digits: &str) -> Diagnostic {
    warn(
        line,
        format!(
            "{what} {digits} has leading zeros: ldirectord treats it as different from {} and derives no service from it",
            digits.trim_start_matches('0').parse::<u64>().unwrap_or(0)
        ),
    )
}

/// `fwm:0`: IPVS has no service for mark 0.
pub(crate) fn zero_fwmark(line: usize) -> Diagnostic {
    warn(line, "firewall mark 0 matches no packets".to_string())
}

/// Digits inside a quoted per-real request taken as the weight.
pub(crate) fn weight_from_quotes(line: usize, weight: &[u8]) -> Diagnostic {
    warn(
        line,
        format!("weight {} read from inside a quoted string", text(weight)),
    )
}

/// `[...]` in a real line accepts `A-Z [\]^_`` as well as hex digits (`A-f` in ldirectord's
/// pattern), so a bracketed host name can resolve.
pub(crate) fn bracketed_name(line: usize, host: &[u8]) -> Diagnostic {
    warn(
        line,
        format!(
            "\"{}\" is not an IPv6 address but ldirectord's pattern accepts it",
            text(host)
        ),
    )
}

/// `#` cuts a block line even inside quotes.
pub(crate) fn comment_in_quotes(line: usize) -> Diagnostic {
    warn(
        line,
        "'#' inside quotes starts a comment: the rest of the line is ignored".to_string(),
    )
}

/// A CRLF file: the CR stays in values.
pub(crate) fn carriage_return(line: usize) -> Diagnostic {
    warn(
        line,
        "line ends with a carriage return, which ldirectord keeps in values".to_string(),
    )
}

/// `a->b` runs while the address as a decimal string sorts before the end's.
pub(crate) fn range_count(line: usize, first: &str, last: &str, got: u64, span: u64) -> Diagnostic {
    warn(
        line,
        format!(
            "range {first}->{last} gives {got} real servers, not {span}: ldirectord compares the addresses as decimal strings"
        ),
    )
}

/// ldirectord would apply the global fallback to a firewall-mark virtual with an empty
/// address, which ipvsadm rejects; xdirectord does not apply it.
pub(crate) fn global_fallback_fwmark(line: usize, id: &str) -> Diagnostic {
    warn(
        line,
        format!("global fallback not applied to virtual service {id} (a firewall mark)"),
    )
}

/// A dotted quad with an octet above 255 passes ldirectord's pattern; IPVS cannot use it.
pub(crate) fn netmask_octets(line: usize, value: &[u8]) -> Diagnostic {
    warn(
        line,
        format!(
            "netmask {} is not an IPv4 netmask and is ignored",
            text(value)
        ),
    )
}

/// `fallback = host 0`: Perl's truth test skips the method, so `gate` is used.
pub(crate) fn fallback_forward_zero(line: usize) -> Diagnostic {
    warn(line, "forward method \"0\" ignored, gate used".to_string())
}

/// A per-real request starting with `/` loses its receive string and the rest of the line.
pub(crate) fn receive_lost(line: usize, receive: &[u8], rest: &[u8]) -> Diagnostic {
    let rest = if has_text(rest) {
        format!(" and the text after it (\"{}\")", text(rest).trim())
    } else {
        String::new()
    };
    warn(
        line,
        format!(
            "receive string \"{}\"{rest} ignored: ldirectord loses them when the request starts with '/'",
            text(receive)
        ),
    )
}

/// The man page writes thresholds in quotes; quoted, they are a request and a receive string.
pub(crate) fn quoted_thresholds(line: usize, lower: &[u8], upper: &[u8]) -> Diagnostic {
    warn(
        line,
        format!(
            "\"{0}\" \"{1}\" read as a request and a receive string; thresholds are written unquoted: {0} {1}",
            text(lower),
            text(upper)
        ),
    )
}

/// getaddrinfo reads numbers the way inet_aton does: `1` is 0.0.0.1, `010.1.1.1` is 8.1.1.1.
pub(crate) fn numeric_address(line: usize, written: &[u8], resolved: &str) -> Diagnostic {
    warn(
        line,
        format!("address {} read as {resolved}", text(written)),
    )
}

/// No host at all is no node to getaddrinfo, which answers with the loopback address.
pub(crate) fn empty_host(line: usize, resolved: &str) -> Diagnostic {
    warn(line, format!("no host given: {resolved} used"))
}
