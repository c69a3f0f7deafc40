//! Global directives: ldirectord's chain of patterns for lines outside virtual blocks, on
//! the raw line (no comment stripping, trailing blanks kept).

use crate::diagnostics::Diagnostic;
use crate::environment::path_from_bytes;
use crate::extensions;
use crate::fallback;
use crate::model::{Family, GlobalFallback, LogTarget};
use crate::parse::{Line, Reader};
use crate::validate::{checkcount_deprecated, parse_emailalertstatus, read_emailalert, yes_no};
use crate::value::{
    digits_value, directive, first_digits, perl_true, quoted_directive, text, trim_space,
};
use lb_common::maps::{MAX_FLOWS, REALS_LIMIT, TEMPLATES_LIMIT, VIRTUALS_LIMIT};

impl Reader<'_> {
    pub(crate) fn global_directive(&mut self, line: Line<'_>) -> Result<(), Diagnostic> {
        let body = line.body;
        let n = line.number;
        let err = |msg: &str| Diagnostic::error(n, msg);

        if let Some(value) = directive(body, "checktimeout") {
            // Unlike the others, `$1 > 0` is tested too, so `00` fails here.
            let v =
                self.positive_number(n, "checktimeout", value, "invalid check timeout value")?;
            self.global.checktimeout = Some(v);
        } else if directive(body, "connecttimeout").is_some() {
            return Err(err(
                "connecttimeout directive deprecated in favour of negotiatetimeout",
            ));
        } else if let Some(value) = directive(body, "negotiatetimeout") {
            let v = self.positive_number(
                n,
                "negotiatetimeout",
                value,
                "invalid negotiate timeout value",
            )?;
            self.global.negotiatetimeout = Some(v);
        } else if let Some(value) = directive(body, "checkinterval") {
            self.global.checkinterval =
                self.truthy_number(n, "checkinterval", value, "invalid check interval value")?;
        } else if let Some(value) = directive(body, "checkcount") {
            self.global.checkcount =
                self.truthy_number(n, "checkcount", value, "invalid check count value")?;
            self.warn(checkcount_deprecated(n));
        } else if let Some(value) = directive(body, "failurecount") {
            self.global.failurecount =
                self.truthy_number(n, "failurecount", value, "invalid failure count value")?;
        } else if let Some((value, family)) = directive(body, "fallback6")
            .map(|v| (v, Family::Inet6))
            .or_else(|| directive(body, "fallback").map(|v| (v, Family::Inet)))
        {
            // Parsed for each protocol, then resolved for each, as ldirectord does.
            let tcp = fallback::parse(self, n, value, None)?;
            let udp = tcp.clone();
            let (tcp_fallback, tcp_port) = fallback::resolve(self, &tcp, "tcp", family)?;
            // The same host again: its warnings were given for tcp already.
            let mark = self.warnings.len();
            let udp = fallback::resolve(self, &udp, "udp", family);
            self.warnings.truncate(mark);
            let (_, udp_port) = udp?;
            let global = GlobalFallback {
                line: n,
                address: tcp_fallback.address,
                tcp_port,
                udp_port,
                forwarding: tcp_fallback.forwarding,
            };
            match family {
                Family::Inet => self.global.fallback = Some(global),
                Family::Inet6 => self.global.fallback6 = Some(global),
            }
        } else if let Some(value) = directive(body, "fallbackcommand") {
            if value.is_empty() {
                return Err(err("invalid fallback command"));
            }
            self.global.fallbackcommand = Some(text(value));
        } else if let Some(value) = directive(body, "autoreload") {
            self.global.autoreload =
                yes_no(value).ok_or_else(|| err("autoreload must be 'yes' or 'no'"))?;
        } else if let Some(q) = quoted_directive(body, "callback") {
            self.note_after_quote(n, q.after);
            self.global.callback = Some(text(q.inner));
        } else if let Some(q) = quoted_directive(body, "logfile") {
            self.note_after_quote(n, q.after);
            self.global.logfile = self.logfile(q.inner, n)?;
        } else if let Some(value) = directive(body, "execute") {
            let instance = text(value);
            if !self.global.execute.contains(&instance) {
                self.global.execute.push(instance);
            }
        } else if let Some(value) = directive(body, "fork") {
            self.global.fork = yes_no(value).ok_or_else(|| err("fork must be 'yes' or 'no'"))?;
        } else if let Some(rest) = body.strip_prefix(b"supervised") {
            // `^supervised` alone selects this branch, so `supervisedx` lands here too.
            if let Some(flag) = directive(body, "supervised").and_then(yes_no) {
                self.global.supervised = flag;
            } else if trim_space(rest).is_empty() {
                self.global.supervised = true;
                self.warn(Diagnostic::warning(
                    n,
                    "please update your config not to use a bare supervised directive",
                ));
            } else {
                return Err(err("supervised must be 'yes' or 'no'"));
            }
        } else if let Some(value) = directive(body, "quiescent") {
            self.global.quiescent =
                yes_no(value).ok_or_else(|| err("quiescent must be 'yes' or 'no'"))?;
        } else if let Some(value) = directive(body, "readdquiescent") {
            self.global.readdquiescent =
                yes_no(value).ok_or_else(|| err("readdquiescent must be 'yes' or 'no'"))?;
        } else if let Some(value) = directive(body, "emailalert") {
            self.global.emailalert = Some(read_emailalert(value, n)?);
        } else if let Some(value) = directive(body, "emailalertfreq") {
            self.global.emailalertfreq = self.emailalertfreq(value, n)?;
        } else if let Some(value) = directive(body, "emailalertstatus") {
            self.global.emailalertstatus = parse_emailalertstatus(value, n)?;
        } else if let Some(value) = directive(body, "emailalertfrom") {
            if value.is_empty() {
                return Err(err("no email from address specified"));
            }
            self.global.emailalertfrom = Some(text(value));
        } else if let Some(value) = directive(body, "cleanstop") {
            self.global.cleanstop =
                yes_no(value).ok_or_else(|| err("cleanstop must be 'yes' or 'no'"))?;
        } else if let Some(value) = directive(body, "smtp") {
            self.global.smtp = Some(self.smtp(value, n)?);
        } else if let Some(value) = directive(body, "maintenancedir") {
            if value.is_empty() {
                return Err(err("maintenance directory not specified"));
            }
            let dir = path_from_bytes(value);
            if !self.env.is_dir(dir) {
                self.warn(Diagnostic::warning(
                    n,
                    "maintenance directory does not exist",
                ));
            }
            self.global.maintenancedir = Some(dir.to_path_buf());
        } else if let Some(value) = directive(body, "backend") {
            self.global.backend = Some(extensions::backend(value, n)?);
        } else if let Some(value) = directive(body, "interface") {
            self.global.interfaces = extensions::interfaces(value, n)?;
        } else if let Some(value) = directive(body, "xdpmode") {
            self.global.xdpmode = Some(extensions::xdpmode(value, n)?);
        } else if let Some(value) = directive(body, "metrics") {
            self.global.metrics = Some(extensions::metrics(value, n)?);
        } else if let Some(value) = directive(body, "tunnelsource") {
            self.global.tunnelsource = extensions::tunnelsource(value, n)?;
        } else if let Some(value) = directive(body, "maxflows") {
            self.global.maxflows = extensions::capacity("maxflows", value, n, 4, MAX_FLOWS)?;
        } else if let Some(value) = directive(body, "maxtemplates") {
            self.global.maxtemplates =
                extensions::capacity("maxtemplates", value, n, 1, TEMPLATES_LIMIT)?;
        } else if let Some(value) = directive(body, "maxvirtuals") {
            self.global.maxvirtuals =
                extensions::capacity("maxvirtuals", value, n, 1, VIRTUALS_LIMIT)?;
        } else if let Some(value) = directive(body, "maxreals") {
            self.global.maxreals = extensions::capacity("maxreals", value, n, 2, REALS_LIMIT)?;
        } else if directive(body, "timeout").is_some() {
            return Err(err(
                "timeout directive deprecated in favour of checktimeout and negotiatetimeout",
            ));
        } else {
            // The raw line, newline included, then a space: ldirectord's exact text.
            return Err(err(&format!("Unknown command {} ", text(line.raw))));
        }
        Ok(())
    }

    /// `($1 =~ /(\d+)/ && $1 && $1 > 0)`.
    fn positive_number(
        &mut self,
        line: usize,
        name: &str,
        value: &[u8],
        error: &str,
    ) -> Result<u32, Diagnostic> {
        let digits = first_digits(value)
            .filter(|d| perl_true(d) && digits_value(d) > 0)
            .ok_or_else(|| Diagnostic::error(line, error))?;
        self.note_partial(line, name, value, digits);
        Ok(self.number_u32(line, name, digits))
    }

    /// `logfile = "..."`: a path is opened for append right away (unless supervised, which
    /// logs to stdout); anything else names a syslog facility.
    fn logfile(&mut self, value: &[u8], line: usize) -> Result<LogTarget, Diagnostic> {
        if !value.starts_with(b"/") {
            return Ok(LogTarget::Syslog(text(value)));
        }
        // Perl's two-argument open ignores surrounding whitespace.
        let path = path_from_bytes(trim_space(value));
        if !self.global.supervised && self.env.open_append(path).is_err() {
            return Err(Diagnostic::error(
                line,
                format!("unable to open logfile: {}", text(value)),
            ));
        }
        Ok(LogTarget::File(path.to_path_buf()))
    }
}
