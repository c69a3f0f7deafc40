//! The checks ldirectord applies to values, shared by the global and the block directives:
//! yes/no, numbers (first digits, Perl truth), e-mail settings, the SMTP server, and the
//! warnings xdirectord adds when one of these reads less than the whole value.

use crate::diagnostics::Diagnostic;
use crate::model::EmailAlertStatus;
use crate::parse::Reader;
use crate::quirk;
use crate::value::{digits_value, first_digits, has_text, is_space, perl_true, text, trim_space};

impl Reader<'_> {
    pub(crate) fn note_after_quote(&mut self, line: usize, after: &[u8]) {
        if has_text(after) {
            self.warn(quirk::ignored_after(line, "the closing quote", after));
        }
    }

    /// Warns when a first-run pattern took less than the whole (trimmed) value.
    pub(crate) fn note_partial(&mut self, line: usize, name: &str, value: &[u8], taken: &[u8]) {
        if trim_space(value) != taken {
            self.warn(quirk::partial_value(line, name, value, taken));
        }
    }

    /// `$1 =~ /(\d+)/ && $1 or error`: the first digits, which must be Perl-true.
    pub(crate) fn truthy_number(
        &mut self,
        line: usize,
        name: &str,
        value: &[u8],
        error: &str,
    ) -> Result<u32, Diagnostic> {
        let digits = first_digits(value)
            .filter(|d| perl_true(d))
            .ok_or_else(|| Diagnostic::error(line, error))?;
        self.note_partial(line, name, value, digits);
        if digits_value(digits) == 0 {
            self.warn(quirk::zero_value(line, name, digits));
        }
        Ok(self.number_u32(line, name, digits))
    }

    /// Digits as a `u32`, clamped with a warning.
    pub(crate) fn number_u32(&mut self, line: usize, name: &str, digits: &[u8]) -> u32 {
        let value = digits_value(digits);
        u32::try_from(value).unwrap_or_else(|_| {
            self.warn(quirk::too_large(line, name, digits, u64::from(u32::MAX)));
            u32::MAX
        })
    }

    /// `emailalertfreq\s*=\s*(\d*)` then `(\d+)`: digits must start the value.
    pub(crate) fn emailalertfreq(&mut self, value: &[u8], line: usize) -> Result<u32, Diagnostic> {
        let len = value.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return Err(Diagnostic::error(line, "invalid email alert frequency"));
        }
        self.note_partial(line, "emailalertfreq", value, &value[..len]);
        Ok(self.number_u32(line, "emailalertfreq", &value[..len]))
    }

    /// `smtp`: the leading run of host-name characters.
    pub(crate) fn smtp(&mut self, value: &[u8], line: usize) -> Result<String, Diagnostic> {
        let len = value
            .iter()
            .take_while(|&&c| c.is_ascii_alphanumeric() || b"._+-".contains(&c))
            .count();
        if len == 0 {
            return Err(Diagnostic::error(line, "invalid SMTP server address"));
        }
        if has_text(&value[len..]) {
            self.warn(quirk::ignored_after(line, "the SMTP server", &value[len..]));
        }
        Ok(text(&value[..len]))
    }
}

pub(crate) fn checkcount_deprecated(line: usize) -> Diagnostic {
    Diagnostic::warning(
        line,
        "checkcount option is deprecated and slated for removal.  please see 'failurecount'",
    )
}

/// `($1 eq "yes" || $1 eq "no")`: exact, so trailing blanks fail.
pub(crate) fn yes_no(value: &[u8]) -> Option<bool> {
    match value {
        b"yes" => Some(true),
        b"no" => Some(false),
        _ => None,
    }
}

/// `read_emailalert`: one pair of enclosing quotes stripped, then non-empty.
pub(crate) fn read_emailalert(value: &[u8], line: usize) -> Result<String, Diagnostic> {
    let unquoted = value
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .filter(|inner| !inner.contains(&b'"'))
        .unwrap_or(value);
    if unquoted.is_empty() {
        return Err(Diagnostic::error(line, "no email address specified"));
    }
    Ok(text(unquoted))
}

/// `parse_emailalertstatus`: `split /\s*,\s*/`, then each word; "none" with anything else is
/// an error reported at the other word.
pub(crate) fn parse_emailalertstatus(
    value: &[u8],
    line: usize,
) -> Result<EmailAlertStatus, Diagnostic> {
    let words = split_commas(value);
    let none = words.iter().any(|w| *w == b"none");
    let mut status = EmailAlertStatus::NONE;
    for word in words {
        match word {
            b"none" => continue,
            b"all" => status = EmailAlertStatus::ALL,
            b"starting" => status.starting = true,
            b"stopping" => status.stopping = true,
            b"running" => status.running = true,
            b"reloading" => status.reloading = true,
            other => {
                return Err(Diagnostic::error(
                    line,
                    format!("invalid email alert status at: \"{}\"", text(other)),
                ));
            }
        }
        if none {
            return Err(Diagnostic::error(
                line,
                format!(
                    "invalid email alert status: \"{}\" specified with \"none\"",
                    text(word)
                ),
            ));
        }
    }
    Ok(status)
}

/// Perl's `split /\s*,\s*/, $value`: whitespace around each comma belongs to the separator,
/// trailing empty fields are dropped, leading ones kept.
pub(crate) fn split_commas(value: &[u8]) -> Vec<&[u8]> {
    if value.is_empty() {
        return Vec::new();
    }
    let pieces: Vec<&[u8]> = value.split(|&c| c == b',').collect();
    let last = pieces.len() - 1;
    let mut fields: Vec<&[u8]> = pieces
        .into_iter()
        .enumerate()
        .map(|(i, mut field)| {
            if i > 0 {
                field = crate::value::skip_space(field);
            }
            if i < last {
                let n = field.iter().rev().take_while(|&&c| is_space(c)).count();
                field = &field[..field.len() - n];
            }
            field
        })
        .collect();
    while fields.last().is_some_and(|f| f.is_empty()) {
        fields.pop();
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_split_like_perl() {
        assert_eq!(split_commas(b"all"), vec![&b"all"[..]]);
        assert_eq!(split_commas(b"a , b,c"), vec![&b"a"[..], b"b", b"c"]);
        assert_eq!(split_commas(b",a"), vec![&b""[..], b"a"]);
        assert_eq!(split_commas(b"a,,"), vec![&b"a"[..]]);
        assert_eq!(split_commas(b"a, ,b"), vec![&b"a"[..], b"", b"b"]);
        assert_eq!(split_commas(b" a "), vec![&b" a "[..]]);
        assert!(split_commas(b"").is_empty());
    }

    #[test]
    fn emailalertstatus_words() {
        assert_eq!(
            parse_emailalertstatus(b"all", 1).unwrap(),
            EmailAlertStatus::ALL
        );
        assert_eq!(
            parse_emailalertstatus(b"none", 1).unwrap(),
            EmailAlertStatus::NONE
        );
        assert_eq!(
            parse_emailalertstatus(b"", 1).unwrap(),
            EmailAlertStatus::NONE
        );
        let s = parse_emailalertstatus(b"starting, reloading", 1).unwrap();
        assert!(s.starting && s.reloading && !s.running && !s.stopping);
        assert_eq!(
            parse_emailalertstatus(b"none,all", 4).unwrap_err().message,
            "invalid email alert status: \"all\" specified with \"none\""
        );
        assert_eq!(
            parse_emailalertstatus(b"bogus,none", 4)
                .unwrap_err()
                .message,
            "invalid email alert status at: \"bogus\""
        );
    }

    #[test]
    fn emailalert_strips_one_pair_of_quotes() {
        assert_eq!(read_emailalert(b"\"a@b\"", 1).unwrap(), "a@b");
        assert_eq!(read_emailalert(b"a@b", 1).unwrap(), "a@b");
        assert_eq!(read_emailalert(b"\"a\"b\"", 1).unwrap(), "\"a\"b\"");
        assert!(read_emailalert(b"\"\"", 1).is_err());
        assert!(read_emailalert(b"", 1).is_err());
    }
}
