//! How ldirectord reads one directive and its value: Perl idioms spelled out, so the parsers
//! read like the Perl they reproduce.

/// Perl's `\s` on a byte string (no Unicode rules apply to ldirectord's input).
pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

pub(crate) fn skip_space(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| is_space(b)).count();
    &s[n..]
}

pub(crate) fn trim_space(s: &[u8]) -> &[u8] {
    let s = skip_space(s);
    let n = s.iter().rev().take_while(|&&b| is_space(b)).count();
    &s[..s.len() - n]
}

/// `^name\s*=\s*(.*)`: the value of a directive, or `None` when the line is another one.
pub(crate) fn directive<'a>(line: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let rest = line.strip_prefix(name.as_bytes())?;
    let rest = skip_space(rest);
    let rest = rest.strip_prefix(b"=")?;
    Some(skip_space(rest))
}

/// A `"(.*)"` value: the text between the first and the *last* double quote (Perl's greedy
/// match), and whatever follows the last quote, which ldirectord ignores.
pub(crate) struct Quoted<'a> {
    pub inner: &'a [u8],
    pub after: &'a [u8],
}

/// `^name\s*=\s*"(.*)"`.
pub(crate) fn quoted_directive<'a>(line: &'a [u8], name: &str) -> Option<Quoted<'a>> {
    let value = directive(line, name)?;
    quoted(value)
}

/// `"(.*)"` anchored at the start of `value`.
pub(crate) fn quoted(value: &[u8]) -> Option<Quoted<'_>> {
    let body = value.strip_prefix(b"\"")?;
    let last = body.iter().rposition(|&b| b == b'"')?;
    Some(Quoted {
        inner: &body[..last],
        after: &body[last + 1..],
    })
}

/// `$x =~ /(\d+)/`: the first run of ASCII digits anywhere in the value.
pub(crate) fn first_digits(value: &[u8]) -> Option<&[u8]> {
    let start = value.iter().position(u8::is_ascii_digit)?;
    let len = value[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    Some(&value[start..start + len])
}

/// The first run of bytes in `class` (`/([a-z]+)/`, `/(\w+)/`, `/(\S+)/`, ...).
pub(crate) fn first_run(value: &[u8], class: impl Fn(u8) -> bool) -> Option<&[u8]> {
    let start = value.iter().position(|&b| class(b))?;
    let len = value[start..].iter().take_while(|&&b| class(b)).count();
    Some(&value[start..start + len])
}

/// Perl's `\w` on bytes.
pub(crate) fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Perl truth of a string: false for `""` and `"0"` only (so `"00"` is true).
pub(crate) fn perl_true(s: &[u8]) -> bool {
    !(s.is_empty() || s == b"0")
}

/// The numeric value of a run of digits, saturating (Perl would go to floating point; every
/// comparison ldirectord makes gives the same answer).
pub(crate) fn digits_value(digits: &[u8]) -> u64 {
    debug_assert!(digits.iter().all(u8::is_ascii_digit), "digits only");
    digits.iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    })
}

/// The text of a byte value, for the model and for messages.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether anything but whitespace is left.
pub(crate) fn has_text(s: &[u8]) -> bool {
    s.iter().any(|&b| !is_space(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_matches_name_then_equals() {
        assert_eq!(
            directive(b"checktimeout = 5 ", "checktimeout"),
            Some(&b"5 "[..])
        );
        assert_eq!(
            directive(b"checktimeout\t=5", "checktimeout"),
            Some(&b"5"[..])
        );
        assert_eq!(directive(b"checktimeouts=5", "checktimeout"), None);
        assert_eq!(directive(b" checktimeout=5", "checktimeout"), None);
        assert_eq!(directive(b"checktimeout=", "checktimeout"), Some(&b""[..]));
    }

    #[test]
    fn quoted_is_greedy_to_the_last_quote() {
        let q = quoted(b"\"a\" \"b\" x").unwrap();
        assert_eq!(q.inner, b"a\" \"b");
        assert_eq!(q.after, b" x");
        assert!(quoted(b"\"a").is_none());
        assert!(quoted(b"a\"b\"").is_none());
        assert_eq!(quoted(b"\"\"").unwrap().inner, b"");
    }

    #[test]
    fn perl_truth_and_digits() {
        assert!(!perl_true(b"0"));
        assert!(!perl_true(b""));
        assert!(perl_true(b"00"));
        assert_eq!(first_digits(b"abc12d34"), Some(&b"12"[..]));
        assert_eq!(first_digits(b"abc"), None);
        assert_eq!(digits_value(b"0042"), 42);
        assert_eq!(digits_value(b"99999999999999999999999"), u64::MAX);
    }
}
