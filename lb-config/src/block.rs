//! A virtual block as written: the `virtual`/`virtual6` line, ldirectord's per-virtual
//! defaults, and each indented directive with ldirectord's validation and messages.

use std::path::PathBuf;
use std::sync::LazyLock;

use regex::bytes::Regex;

use crate::diagnostics::Diagnostic;
use crate::extensions;
use crate::fallback::{self, ParsedFallback};
use crate::model::{
    BackendKind, CheckType, EmailAlertStatus, Family, HttpMethod, Netmask, XdpMode,
};
use crate::parse::Reader;
use crate::quirk;
use crate::service::Service;
use crate::validate::{checkcount_deprecated, parse_emailalertstatus, read_emailalert, yes_no};
use crate::value::{
    digits_value, directive, first_digits, first_run, has_text, is_space, is_word,
    quoted_directive, text, trim_space,
};

/// The text after `virtual =` / `virtual6 =`.
pub(crate) struct Header<'a> {
    pub family: Family,
    pub value: &'a [u8],
}

/// `^virtual(6)?\s*=\s*(.*)` on a line in the global state.
pub(crate) fn header(body: &[u8]) -> Option<Header<'_>> {
    if let Some(value) = directive(body, "virtual6") {
        return Some(Header {
            family: Family::Inet6,
            value,
        });
    }
    directive(body, "virtual").map(|value| Header {
        family: Family::Inet,
        value,
    })
}

/// What the virtual line names, before resolution.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// `host:port` as ldirectord rebuilds it (`$ip_port`), trailing text dropped.
    Socket { ip_port: Vec<u8> },
    /// The digits of the mark, as written.
    Fwmark { digits: Vec<u8> },
}

/// The protocol as ldirectord keeps it in `$vsrv{protocol}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockProtocol {
    Tcp,
    Udp,
    Fwm,
}

impl BlockProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockProtocol::Tcp => "tcp",
            BlockProtocol::Udp => "udp",
            BlockProtocol::Fwm => "fwm",
        }
    }
}

/// Everything a block sets, with ldirectord's defaults; `None` where ldirectord leaves the
/// key undefined so that the global value applies later.
#[derive(Debug, Clone)]
pub(crate) struct VirtualBlock {
    pub line: usize,
    pub family: Family,
    pub target: Target,
    pub protocol: BlockProtocol,
    /// `$vsrv{port}` before resolution: the port as written, `0` for a firewall mark. An
    /// in-block fallback without a port takes this text.
    pub port_text: Vec<u8>,
    pub checktype: CheckType,
    pub service: Option<Service>,
    pub request: String,
    pub receive: String,
    pub login: String,
    pub passwd: String,
    pub database: String,
    pub secret: String,
    pub checkcommand: String,
    pub load: Option<String>,
    pub checktimeout: Option<u32>,
    pub negotiatetimeout: Option<u32>,
    pub checkcount: Option<u32>,
    pub failurecount: Option<u32>,
    pub checkinterval: Option<u32>,
    pub checkport: Option<u16>,
    pub scheduler: String,
    pub persistent: Option<u32>,
    pub schedflags: Option<String>,
    pub netmask: Option<Netmask>,
    pub ops: bool,
    pub httpmethod: HttpMethod,
    pub virtualhost: Option<String>,
    pub fallback: Option<ParsedFallback>,
    pub fallbackcommand: Option<String>,
    pub quiescent: Option<bool>,
    pub cleanstop: Option<bool>,
    pub emailalert: Option<String>,
    pub emailalertfreq: Option<u32>,
    pub emailalertstatus: Option<EmailAlertStatus>,
    pub smtp: Option<String>,
    pub monitorfile: Option<PathBuf>,
    pub servicename: Option<String>,
    pub comment: Option<String>,
    pub backend: Option<BackendKind>,
    pub interfaces: Option<Vec<String>>,
    pub xdpmode: Option<XdpMode>,
    /// `real`/`real6` values with their line numbers, resolved once the block has ended
    /// (the protocol must be known first).
    pub reals: Vec<(Vec<u8>, usize)>,
}

static HOST_PORT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u)^([0-9A-Za-z._+\-]+):([0-9A-Za-z_\-]+)").expect("valid pattern")
});
static BRACKETED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u)^\[([0-9A-Fa-f:]+)\]:([0-9A-Za-z_\-]+)").expect("valid pattern")
});

impl VirtualBlock {
    /// The `virtual` line: ldirectord's patterns in its order (its dotted-quad pattern is
    /// left out: whenever it matches, the host-name pattern after it gives the same text).
    pub fn start(
        header: Header<'_>,
        line: usize,
        reader: &mut Reader<'_>,
    ) -> Result<Self, Diagnostic> {
        let value = header.value;
        let leading_digits = value.iter().take_while(|c| c.is_ascii_digit()).count();
        let (target, port_text, matched_len) = if let Some(c) = HOST_PORT.captures(value) {
            let (host, port) = (&c[1], &c[2]);
            let ip_port = [host, b":", port].concat();
            (Target::Socket { ip_port }, port.to_vec(), c[0].len())
        } else if leading_digits > 0 {
            let digits = &value[..leading_digits];
            (
                Target::Fwmark {
                    digits: digits.to_vec(),
                },
                b"0".to_vec(),
                leading_digits,
            )
        } else if let Some(c) = BRACKETED.captures(value) {
            if header.family == Family::Inet {
                return Err(Diagnostic::error(
                    line,
                    "cannot specify an IPv6 address here. please use \"virtual6\" instead.",
                ));
            }
            let address = &c[1];
            if text(address).parse::<std::net::Ipv6Addr>().is_err() {
                return Err(Diagnostic::error(
                    line,
                    "invalid ipv6 address for virtual server",
                ));
            }
            let ip_port = [b"[", address, b"]:", &c[2]].concat();
            (Target::Socket { ip_port }, c[2].to_vec(), c[0].len())
        } else {
            return Err(Diagnostic::error(
                line,
                "invalid address for virtual server",
            ));
        };
        let rest = &value[matched_len..];
        if matches!(target, Target::Fwmark { .. }) && rest.first() == Some(&b'.') {
            reader.warn(quirk::fwmark_from_address(
                line,
                value,
                &value[..matched_len],
            ));
        } else if has_text(rest) {
            reader.warn(quirk::ignored_after(line, "the virtual address", rest));
        }
        let protocol = match &target {
            Target::Fwmark { .. } => BlockProtocol::Fwm,
            // Decided on the unresolved text: `:domain` is UDP, `:53` too, `:053` is not.
            Target::Socket { ip_port }
                if ip_port.ends_with(b":53") || ip_port.ends_with(b":domain") =>
            {
                BlockProtocol::Udp
            }
            Target::Socket { .. } => BlockProtocol::Tcp,
        };
        let service = matches!(target, Target::Fwmark { .. }).then_some(Service::None);
        Ok(VirtualBlock {
            line,
            family: header.family,
            target,
            protocol,
            port_text,
            checktype: CheckType::Negotiate,
            service,
            request: "/".into(),
            receive: String::new(),
            login: String::new(),
            passwd: String::new(),
            database: String::new(),
            secret: String::new(),
            checkcommand: "/bin/true".into(),
            load: None,
            checktimeout: None,
            negotiatetimeout: None,
            checkcount: None,
            failurecount: None,
            checkinterval: None,
            checkport: None,
            scheduler: "wrr".into(),
            persistent: None,
            schedflags: None,
            netmask: None,
            ops: false,
            httpmethod: HttpMethod::Get,
            virtualhost: None,
            fallback: None,
            fallbackcommand: None,
            quiescent: None,
            cleanstop: None,
            emailalert: None,
            emailalertfreq: None,
            emailalertstatus: None,
            smtp: None,
            monitorfile: None,
            servicename: None,
            comment: None,
            backend: None,
            interfaces: None,
            xdpmode: None,
            reals: Vec::new(),
        })
    }
}

const SERVICE_ERROR: &str = "service must be dns, ftp, http, https, http_proxy, imap, imaps, \
                             ldap, ldaps, mysql, nntp, none, oracle, pop, pops, radius, pgsql, \
                             simpletcp, sip, smtp or submission";

impl Reader<'_> {
    /// One indented line of a block (`command` is the line after ldirectord's comment and tab
    /// handling; `raw` the line as read, for `Unknown command`).
    pub(crate) fn block_directive(
        &mut self,
        b: &mut VirtualBlock,
        command: &[u8],
        raw: &[u8],
        line: usize,
    ) -> Result<(), Diagnostic> {
        let err = |msg: &str| Diagnostic::error(line, msg);

        if let Some((value, six)) = directive(command, "real6")
            .map(|v| (v, true))
            .or_else(|| directive(command, "real").map(|v| (v, false)))
        {
            family_matches(b.family, six, "real", line)?;
            b.reals.push((value.to_vec(), line));
        } else if let Some(q) = quoted_directive(command, "request") {
            if q.inner.is_empty() {
                return Err(err("no request string specified"));
            }
            self.note_after_quote(line, q.after);
            b.request = with_leading_slash(q.inner);
        } else if let Some(q) = quoted_directive(command, "receive") {
            if q.inner.is_empty() {
                return Err(err("invalid receive string"));
            }
            self.note_after_quote(line, q.after);
            b.receive = text(q.inner);
        } else if let Some(value) = directive(command, "checktype") {
            b.checktype = self.checktype(value, line)?;
        } else if let Some(value) = quoted_directive(command, "checkcommand")
            .map(|q| q.inner)
            .or_else(|| directive(command, "checkcommand"))
        {
            if value.is_empty() {
                return Err(err("invalid check command"));
            }
            b.checkcommand = text(value);
        } else if let Some(value) = directive(command, "checktimeout") {
            b.checktimeout =
                Some(self.truthy_number(line, "checktimeout", value, "invalid check timeout")?);
        } else if directive(command, "connecttimeout").is_some() {
            return Err(err(
                "connecttimeout directive deprecated in favour of negotiatetimeout",
            ));
        } else if let Some(value) = directive(command, "negotiatetimeout") {
            b.negotiatetimeout = Some(self.truthy_number(
                line,
                "negotiatetimeout",
                value,
                "invalid negotiate timeout",
            )?);
        } else if let Some(value) = directive(command, "checkcount") {
            b.checkcount =
                Some(self.truthy_number(line, "checkcount", value, "invalid check count")?);
            self.warn(checkcount_deprecated(line));
        } else if let Some(value) = directive(command, "failurecount") {
            b.failurecount =
                Some(self.truthy_number(line, "failurecount", value, "invalid failure count")?);
        } else if let Some(value) = directive(command, "checkinterval") {
            b.checkinterval =
                Some(self.truthy_number(line, "checkinterval", value, "invalid checkinterval")?);
        } else if let Some(value) = directive(command, "checkport") {
            let digits = first_digits(value).ok_or_else(|| err("invalid port"))?;
            let port = digits_value(digits);
            if !(1..65536).contains(&port) {
                return Err(err("checkport must be in range 1..65536"));
            }
            self.note_partial(line, "checkport", value, digits);
            b.checkport = Some(port as u16);
        } else if let Some(q) = quoted_directive(command, "login") {
            b.login = self.quoted_text(line, q.inner, q.after, "invalid login string")?;
        } else if let Some(q) = quoted_directive(command, "passwd") {
            b.passwd = self.quoted_text(line, q.inner, q.after, "invalid password")?;
        } else if let Some(q) = quoted_directive(command, "database") {
            b.database = self.quoted_text(line, q.inner, q.after, "invalid database")?;
        } else if let Some(q) = quoted_directive(command, "secret") {
            b.secret = self.quoted_text(line, q.inner, q.after, "invalid secret")?;
        } else if let Some(q) = quoted_directive(command, "load") {
            let word = first_run(q.inner, is_word)
                .ok_or_else(|| err("invalid string for load testing"))?;
            b.load = Some(text(word));
        } else if let Some(value) = directive(command, "scheduler") {
            // ldirectord takes any run of lowercase letters, on purpose (new schedulers appear
            // in the kernel); the agent rejects names it cannot serve.
            let name = first_run(value, |c| c.is_ascii_lowercase())
                .ok_or_else(|| err("invalid scheduler, should be only lowercase letters (a-z)"))?;
            self.note_partial(line, "scheduler", value, name);
            b.scheduler = text(name);
        } else if let Some(value) = directive(command, "persistent") {
            let digits = first_digits(value).ok_or_else(|| err("invalid persistent timeout"))?;
            self.note_partial(line, "persistent", value, digits);
            b.persistent = Some(self.number_u32(line, "persistent", digits));
        } else if let Some(value) = directive(command, "schedflags") {
            let flags =
                first_run(value, |c| !is_space(c)).ok_or_else(|| err("invalid sched-flags"))?;
            self.note_partial(line, "schedflags", value, flags);
            b.schedflags = Some(text(flags));
        } else if let Some(value) = directive(command, "netmask") {
            b.netmask = self.netmask(b.family, value, line)?;
        } else if let Some(value) = directive(command, "protocol") {
            let word = first_run(value, is_word).ok_or_else(|| err("invalid protocol"))?;
            if b.protocol == BlockProtocol::Fwm {
                if word != b"fwm" {
                    return Err(err(
                        "protocol must be fwm if the virtual service is a fwmark (a number)",
                    ));
                }
            } else {
                b.protocol = match word {
                    b"tcp" => BlockProtocol::Tcp,
                    b"udp" => BlockProtocol::Udp,
                    _ => {
                        return Err(err(
                            "protocol must be tcp or udp if the virtual service is an address and port",
                        ));
                    }
                };
            }
            self.note_partial(line, "protocol", value, word);
        } else if let Some(value) = directive(command, "ops") {
            b.ops = yes_no(value).ok_or_else(|| err("ops must be 'yes' or 'no'"))?;
        } else if let Some(value) = directive(command, "service") {
            let service = first_run(value, is_word)
                .and_then(|w| Service::from_name(w).map(|s| (w, s)))
                .map(|(w, s)| {
                    self.note_partial(line, "service", value, w);
                    s
                })
                .ok_or_else(|| err(SERVICE_ERROR))?;
            b.service = Some(service);
            // Side effects at this point of the file: a login or passwd given before stays,
            // one given after overrides; a later `service` keeps what this one set.
            if service == Service::Ftp && b.login.is_empty() {
                b.login = "anonymous".into();
            } else if service == Service::Sip && b.login.is_empty() {
                b.login = format!("ldirectord@{}", self.hostname());
            }
            if service == Service::Ftp && b.passwd.is_empty() {
                b.passwd = format!("ldirectord@{}", self.hostname());
            }
        } else if let Some(value) = directive(command, "httpmethod") {
            let method = first_run(value, is_word)
                .and_then(|w| match w.to_ascii_uppercase().as_slice() {
                    b"GET" => Some((w, HttpMethod::Get)),
                    b"HEAD" => Some((w, HttpMethod::Head)),
                    _ => None,
                })
                .ok_or_else(|| err("httpmethod must be GET or HEAD"))?;
            self.note_partial(line, "httpmethod", value, method.0);
            b.httpmethod = method.1;
        } else if let Some(value) = directive(command, "virtualhost") {
            // `"?([^"]*)"?` always matches, so ldirectord's "invalid virtualhost" never shows.
            let body = value.strip_prefix(b"\"").unwrap_or(value);
            let end = body.iter().position(|&c| c == b'"').unwrap_or(body.len());
            let after = body.get(end + 1..).unwrap_or_default();
            if has_text(after) {
                self.warn(quirk::ignored_after(line, "the virtual host", after));
            }
            b.virtualhost = Some(text(&body[..end]));
        } else if let Some((value, six)) = directive(command, "fallback6")
            .map(|v| (v, true))
            .or_else(|| directive(command, "fallback").map(|v| (v, false)))
        {
            family_matches(b.family, six, "fallback", line)?;
            let parsed = fallback::parse(self, line, value, Some(&b.port_text))?;
            b.fallback = Some(parsed);
        } else if let Some(value) = quoted_directive(command, "fallbackcommand")
            .map(|q| q.inner)
            .or_else(|| directive(command, "fallbackcommand"))
        {
            if value.is_empty() {
                return Err(err("invalid fallback command"));
            }
            b.fallbackcommand = Some(text(value));
        } else if let Some(value) = directive(command, "quiescent") {
            b.quiescent =
                Some(yes_no(value).ok_or_else(|| err("quiescent must be 'yes' or 'no'"))?);
        } else if let Some(value) = directive(command, "emailalert") {
            b.emailalert = Some(read_emailalert(value, line)?);
        } else if let Some(value) = directive(command, "emailalertfreq") {
            b.emailalertfreq = Some(self.emailalertfreq(value, line)?);
        } else if let Some(value) = directive(command, "emailalertstatus") {
            b.emailalertstatus = Some(parse_emailalertstatus(value, line)?);
        } else if let Some(value) = quoted_directive(command, "monitorfile")
            .map(|q| q.inner)
            .or_else(|| directive(command, "monitorfile"))
        {
            b.monitorfile = Some(self.monitorfile(value, line)?);
        } else if let Some(value) = directive(command, "cleanstop") {
            b.cleanstop =
                Some(yes_no(value).ok_or_else(|| err("cleanstop must be 'yes' or 'no'"))?);
        } else if let Some(value) = directive(command, "smtp") {
            b.smtp = Some(self.smtp(value, line)?);
        } else if let Some(value) = directive(command, "servicename") {
            b.servicename = Some(text(value));
        } else if let Some(value) = directive(command, "comment") {
            b.comment = Some(text(value));
        } else if let Some(value) = directive(command, "backend") {
            b.backend = Some(extensions::backend(value, line)?);
        } else if let Some(value) = directive(command, "interface") {
            b.interfaces = Some(extensions::interfaces(value, line)?);
        } else if let Some(value) = directive(command, "xdpmode") {
            b.xdpmode = Some(extensions::xdpmode(value, line)?);
        } else {
            return Err(err(&format!("Unknown command \"{}\"", text(raw))));
        }
        Ok(())
    }

    /// `checktype`: any value with digits is "combined"; otherwise the first `[\w-]+` run.
    fn checktype(&mut self, value: &[u8], line: usize) -> Result<CheckType, Diagnostic> {
        if let Some(digits) = first_digits(value) {
            self.note_partial(line, "checktype", value, digits);
            return Ok(CheckType::Combined(self.number_u32(
                line,
                "checktype",
                digits,
            )));
        }
        let word = first_run(value, |c| is_word(c) || c == b'-');
        let kind = match word.unwrap_or_default() {
            b"connect" => CheckType::Connect,
            b"negotiate" => CheckType::Negotiate,
            b"ping" => CheckType::Ping,
            b"off" => CheckType::Off,
            b"on" => CheckType::On,
            b"external" => CheckType::External,
            b"external-perl" => CheckType::ExternalPerl,
            _ => {
                return Err(Diagnostic::error(
                    line,
                    "checktype must be \"connect\", \"negotiate\", \"on\", \"off\", \"ping\", \
                     \"external\", \"external-perl\" or a positive number",
                ));
            }
        };
        self.note_partial(line, "checktype", value, word.unwrap_or_default());
        Ok(kind)
    }

    fn netmask(
        &mut self,
        family: Family,
        value: &[u8],
        line: usize,
    ) -> Result<Option<Netmask>, Diagnostic> {
        match family {
            Family::Inet6 => {
                let digits = !value.is_empty() && value.iter().all(u8::is_ascii_digit);
                let n = if digits { digits_value(value) } else { 0 };
                if !(1..=128).contains(&n) {
                    return Err(Diagnostic::error(
                        line,
                        "invalid netmask: a prefix length between 1 and 128 is required",
                    ));
                }
                Ok(Some(Netmask::V6(n as u8)))
            }
            Family::Inet => {
                let parts: Vec<&[u8]> = value.split(|&c| c == b'.').collect();
                let dotted = parts.len() == 4
                    && parts
                        .iter()
                        .all(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit));
                if !dotted {
                    return Err(Diagnostic::error(
                        line,
                        "invalid netmask: dotted quad notation is required",
                    ));
                }
                let octets: Vec<u64> = parts.iter().map(|p| digits_value(p)).collect();
                if octets.iter().any(|&o| o > 255) {
                    self.warn(quirk::netmask_octets(line, value));
                    return Ok(None);
                }
                Ok(Some(Netmask::V4(std::net::Ipv4Addr::new(
                    octets[0] as u8,
                    octets[1] as u8,
                    octets[2] as u8,
                    octets[3] as u8,
                ))))
            }
        }
    }

    fn quoted_text(
        &mut self,
        line: usize,
        inner: &[u8],
        after: &[u8],
        error: &str,
    ) -> Result<String, Diagnostic> {
        if inner.is_empty() {
            return Err(Diagnostic::error(line, error));
        }
        self.note_after_quote(line, after);
        Ok(text(inner))
    }

    /// `monitorfile`: opened for append while parsing. Perl's two-argument open ignores
    /// surrounding whitespace; the message quotes the value as written.
    fn monitorfile(&mut self, value: &[u8], line: usize) -> Result<PathBuf, Diagnostic> {
        let path = crate::environment::path_from_bytes(trim_space(value));
        self.env.open_append(path).map_err(|e| {
            Diagnostic::error(
                line,
                format!("unable to open monitorfile {}: {e}", text(value)),
            )
        })?;
        Ok(path.to_path_buf())
    }
}

/// `real6` in a `virtual` block and the like.
fn family_matches(family: Family, six: bool, what: &str, line: usize) -> Result<(), Diagnostic> {
    match (family, six) {
        (Family::Inet, true) => Err(Diagnostic::error(
            line,
            format!("cannot specify \"{what}6\" here.  please use \"{what}\" instead"),
        )),
        (Family::Inet6, false) => Err(Diagnostic::error(
            line,
            format!("cannot specify \"{what}\" here.  please use \"{what}6\" instead"),
        )),
        _ => Ok(()),
    }
}

pub(crate) fn with_leading_slash(request: &[u8]) -> String {
    if request.starts_with(b"/") {
        text(request)
    } else {
        format!("/{}", text(request))
    }
}
