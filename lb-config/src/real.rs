//! `real`/`real6` lines: ldirectord's `_ld_read_config_real_resolve`,
//! `add_real_server_range` and `add_real_server`, unanchored patterns and all.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;

use regex::bytes::Regex;

use crate::block::with_leading_slash;
use crate::diagnostics::Diagnostic;
use crate::fallback::forwarding;
use crate::lookup::{self, Host};
use crate::model::{Family, Forwarding};
use crate::parse::Reader;
use crate::quirk;
use crate::value::{has_text, text};

/// A real as ldirectord stores it before `ld_setup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedReal {
    pub line: usize,
    pub address: IpAddr,
    pub port: u16,
    pub forwarding: Forwarding,
    pub weight: u32,
    pub request: Option<String>,
    pub receive: Option<String>,
    pub lower_threshold: Option<u32>,
    pub upper_threshold: Option<u32>,
}

/// The most reals one range line may give. ldirectord has no limit, but it takes hours over
/// a few ten thousand (each real is compared with every other) and holds the file's whole
/// expansion in memory; IPVS tables of this size are not what a range line is for.
pub const MAX_RANGE_REALS: u64 = 65_536;

/// The most reals a whole file may give, so that no file can make the parser run out of
/// memory. ldirectord would still be expanding such a file hours later.
pub const MAX_FILE_REALS: usize = 1 << 20;

/// ldirectord's real pattern, unanchored. Note `A-f` (it allows `A-Z [\]^_`` inside the
/// brackets) and that nothing stops it matching further in. ldirectord's patterns end in
/// `(.*)` for "the rest of the line"; here the rest is taken from the end of the match
/// instead, which is the same text and keeps the capture engine off long lines.
static REAL: LazyLock<Regex> = LazyLock::new(|| {
    let host = r"(\d+\.\d+\.\d+\.\d+|[A-Za-z0-9.\-]+|\[[0-9A-fa-f:]+\])";
    let ip2 = r"(\d+\.\d+\.\d+\.\d+|[A-Za-z0-9.\-]+|\[[0-9A-fa-f:]+\])";
    Regex::new(&format!(
        r"(?-u){host}(->{ip2})?(:(\d+|[A-Za-z0-9_\-]+))?\s+"
    ))
    .expect("valid pattern")
});
static METHOD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?-u)\w+").expect("valid pattern"));
static WEIGHT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?-u)\s+(\d+)").expect("valid pattern"));
static REQUEST_RECEIVE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?-u)\s+"(.*)"[, ]\s*"(.*)""#).expect("valid pattern"));
static LOWER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?-u)\s+l:(\d+)").expect("valid pattern"));
static UPPER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?-u)\s+u:(\d+)").expect("valid pattern"));

/// Resolves the collected real lines of one virtual, in order.
pub(crate) fn resolve_all(
    reader: &mut Reader<'_>,
    lines: &[(Vec<u8>, usize)],
    family: Family,
) -> Result<Vec<ParsedReal>, Diagnostic> {
    let mut reals = Vec::new();
    for (value, line) in lines {
        resolve_one(reader, value, *line, family, &mut reals)?;
        if reader.real_count + reals.len() > MAX_FILE_REALS {
            return Err(Diagnostic::error(
                *line,
                format!("more than {MAX_FILE_REALS} real servers in the file"),
            )
            .ours());
        }
    }
    reader.real_count += reals.len();
    Ok(reals)
}

fn resolve_one(
    reader: &mut Reader<'_>,
    value: &[u8],
    line: usize,
    family: Family,
    reals: &mut Vec<ParsedReal>,
) -> Result<(), Diagnostic> {
    let caps = REAL
        .captures(value)
        .ok_or_else(|| Diagnostic::error(line, "invalid address for real server (wrong format)"))?;
    let whole = caps.get(0).expect("group 0 always participates");
    if has_text(&value[..whole.start()]) {
        reader.warn(quirk::ignored_before(
            line,
            "the real server address",
            &value[..whole.start()],
        ));
    }
    let ip1 = &caps[1];
    let ip2 = caps.get(3).map(|m| m.as_bytes());
    let port_text = caps.get(5).map_or(&b"0"[..], |m| m.as_bytes());
    let flags = &value[whole.end()..];
    for host in std::iter::once(ip1).chain(ip2) {
        if host.starts_with(b"[")
            && host[1..host.len() - 1]
                .iter()
                .any(|&c| !(c.is_ascii_hexdigit() || c == b':'))
        {
            reader.warn(quirk::bracketed_name(line, host));
        }
    }

    let first = reader.resolve_host(ip1, family, line).ok_or_else(|| {
        Diagnostic::error(
            line,
            format!(
                "invalid address ({}) for real server (could not resolve host)",
                text(ip1)
            ),
        )
    })?;
    let port = lookup::port(reader.env, port_text, "").ok_or_else(|| {
        Diagnostic::error(
            line,
            format!(
                "invalid port ({}) for real server (could not resolve port)",
                text(port_text)
            ),
        )
    })?;
    let Some(ip2) = ip2 else {
        let flags = parse_flags(reader, flags, line)?;
        reals.push(flags.real(line, first.address, port.number));
        return Ok(());
    };
    let last = reader.resolve_host(ip2, family, line).ok_or_else(|| {
        Diagnostic::error(
            line,
            format!(
                "invalid address ({}) for real server (could not resolve end host)",
                text(ip2)
            ),
        )
    })?;
    if family == Family::Inet6 {
        return Err(Diagnostic::error(
            line,
            "Address range for IPv6 is not supported yet",
        ));
    }
    let addresses = range(reader, &first, &last, line)?;
    // ldirectord checks the flags once per address, so an empty range never checks them.
    if !addresses.is_empty() {
        let flags = parse_flags(reader, flags, line)?;
        reals.extend(
            addresses
                .into_iter()
                .map(|a| flags.real(line, IpAddr::V4(a), port.number)),
        );
    }
    Ok(())
}

/// `add_real_server_range` for IPv4: the loop runs `while ($i le $last_i)`, a *string*
/// comparison of the decimal numbers, so it matches the numeric span only while both ends
/// have the same number of digits.
fn range(
    reader: &mut Reader<'_>,
    first: &Host,
    last: &Host,
    line: usize,
) -> Result<Vec<Ipv4Addr>, Diagnostic> {
    let as_v4 = |h: &Host| match h.address {
        IpAddr::V4(a) => Ok(u64::from(u32::from(a))),
        IpAddr::V6(_) => Err(Diagnostic::error(
            line,
            format!("Invalid IP address: {}", h.text),
        )),
    };
    let (first_i, last_i) = (as_v4(first)?, as_v4(last)?);
    if first_i > last_i {
        return Err(Diagnostic::error(
            line,
            format!(
                "Invalid Range: {}-{}: First value must be greater than or equal to the second value",
                first.text, last.text
            ),
        ));
    }
    let last_s = last_i.to_string();
    let mut addresses = Vec::new();
    let mut i = first_i;
    while i.to_string().as_bytes() <= last_s.as_bytes() {
        if addresses.len() as u64 >= MAX_RANGE_REALS {
            return Err(Diagnostic::error(
                line,
                format!(
                    "range {}->{} gives more than {MAX_RANGE_REALS} real servers",
                    first.text, last.text
                ),
            )
            .ours());
        }
        // `int_to_ip` keeps the low 32 bits.
        addresses.push(Ipv4Addr::from((i & 0xffff_ffff) as u32));
        i += 1;
    }
    let span = last_i - first_i + 1;
    if addresses.len() as u64 != span {
        reader.warn(quirk::range_count(
            line,
            &first.text,
            &last.text,
            addresses.len() as u64,
            span,
        ));
    }
    Ok(addresses)
}

/// `l:5`, `u:10`: what the man page shows in quotes.
fn is_threshold(s: &[u8]) -> bool {
    s.len() > 2
        && (s.starts_with(b"l:") || s.starts_with(b"u:"))
        && s[2..].iter().all(u8::is_ascii_digit)
}

/// The flags after the address, read in ldirectord's order.
struct Flags {
    forwarding: Forwarding,
    weight: u32,
    request: Option<String>,
    receive: Option<String>,
    lower: Option<u32>,
    upper: Option<u32>,
}

impl Flags {
    fn real(&self, line: usize, address: IpAddr, port: u16) -> ParsedReal {
        ParsedReal {
            line,
            address,
            port,
            forwarding: self.forwarding,
            weight: self.weight,
            request: self.request.clone(),
            receive: self.receive.clone(),
            lower_threshold: self.lower,
            upper_threshold: self.upper,
        }
    }
}

/// `add_real_server`'s flag parsing. Each pattern is unanchored and the text before its match
/// is dropped, which xdirectord warns about.
fn parse_flags(reader: &mut Reader<'_>, flags: &[u8], line: usize) -> Result<Flags, Diagnostic> {
    let method_error = || Diagnostic::error(line, "forward method must be gate, masq or ipip");
    let word = METHOD.find(flags).ok_or_else(method_error)?;
    let method = forwarding(word.as_bytes()).ok_or_else(method_error)?;
    if has_text(&flags[..word.start()]) {
        reader.warn(quirk::ignored_before(
            line,
            "the forward method",
            &flags[..word.start()],
        ));
    }
    let mut rest: Vec<u8> = flags[word.end()..].to_vec();

    let mut weight = 1;
    if let Some(c) = WEIGHT.captures(&rest) {
        let start = c.get(0).expect("group 0 always participates").start();
        let digits = c.get(1).expect("group 1 always participates");
        if rest[..digits.start()]
            .iter()
            .filter(|&&b| b == b'"')
            .count()
            % 2
            == 1
        {
            reader.warn(quirk::weight_from_quotes(line, digits.as_bytes()));
        } else if has_text(&rest[..start]) {
            reader.warn(quirk::ignored_before(line, "the weight", &rest[..start]));
        }
        weight = reader.number_u32(line, "weight", digits.as_bytes());
        rest = rest[c.get(0).expect("group 0 always participates").end()..].to_vec();
    }

    let (mut request, mut receive) = (None, None);
    if let Some(c) = REQUEST_RECEIVE.captures(&rest) {
        let whole = c.get(0).expect("group 0 always participates");
        let (start, after) = (whole.start(), &rest[whole.end()..]);
        if has_text(&rest[..start]) {
            reader.warn(quirk::ignored_before(line, "the request", &rest[..start]));
        }
        if c[1].starts_with(b"/") {
            // ldirectord tests the request with `=~ /^\//` before it reads `$2` and `$3`;
            // that match succeeds and clears them, so the receive string and everything after
            // it are lost (thresholds and trailing text included, which is then not checked).
            reader.warn(quirk::receive_lost(line, &c[2], after));
            return Ok(Flags {
                forwarding: method,
                weight,
                request: Some(text(&c[1])),
                receive: None,
                lower: None,
                upper: None,
            });
        }
        if is_threshold(&c[1]) && is_threshold(&c[2]) {
            reader.warn(quirk::quoted_thresholds(line, &c[1], &c[2]));
        }
        request = Some(with_leading_slash(&c[1]));
        receive = Some(text(&c[2]));
        rest = after.to_vec();
    }

    let mut thresholds = [None, None];
    for (slot, (pattern, name)) in thresholds
        .iter_mut()
        .zip([(&*LOWER, "lower threshold"), (&*UPPER, "upper threshold")])
    {
        if let Some(c) = pattern.captures(&rest) {
            let start = c.get(0).expect("group 0 always participates").start();
            if has_text(&rest[..start]) {
                reader.warn(quirk::ignored_before(
                    line,
                    &format!("the {name}"),
                    &rest[..start],
                ));
            }
            *slot = Some(reader.number_u32(line, name, &c[1]));
            rest = rest[c.get(0).expect("group 0 always participates").end()..].to_vec();
        }
    }

    if has_text(&rest) {
        return Err(Diagnostic::error(
            line,
            format!("Invalid real server line, around \"{}\"", text(&rest)),
        ));
    }
    Ok(Flags {
        forwarding: method,
        weight,
        request,
        receive,
        lower: thresholds[0],
        upper: thresholds[1],
    })
}
