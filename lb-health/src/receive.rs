//! `receive` patterns: Perl regular expressions as people write them in ldirectord.cf.
//!
//! fancy-regex covers what people write (classes, alternation, anchors, look-around,
//! back-references). One Perl difference matters for health checks and is translated here:
//! Perl's `$` (and `\Z`) match at the end *or before a final newline*, so `^OK$` matches the
//! line `"OK\n"` that simpletcp reads and the body `"OK\n"` a web server sends. Rust engines
//! match `$` only at the very end, so `$` becomes `(?=\n?\z)` unless the pattern turns on
//! multi-line mode itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use fancy_regex::Regex;

use crate::error::CheckError;

/// A compiled `receive` pattern.
#[derive(Debug, Clone)]
pub(crate) struct Receive {
    regex: Arc<Regex>,
}

/// Compiled patterns by source text. Every real of a virtual usually shares one pattern, and a
/// compiled regex with its match caches costs kilobytes: 10,000 checks share one copy.
fn compiled() -> &'static Mutex<HashMap<String, Weak<Regex>>> {
    static COMPILED: OnceLock<Mutex<HashMap<String, Weak<Regex>>>> = OnceLock::new();
    COMPILED.get_or_init(Mutex::default)
}

impl Receive {
    pub(crate) fn new(pattern: &str) -> Result<Receive, CheckError> {
        let mut cache = compiled().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(regex) = cache.get(pattern).and_then(Weak::upgrade) {
            return Ok(Receive { regex });
        }
        let regex = Regex::new(&translate(pattern)).map_err(|e| CheckError::InvalidReceive {
            pattern: pattern.to_owned(),
            message: e.to_string(),
        })?;
        let regex = Arc::new(regex);
        // Forget patterns no check uses any more, so reloads do not grow the cache.
        cache.retain(|_, weak| weak.strong_count() > 0);
        cache.insert(pattern.to_owned(), Arc::downgrade(&regex));
        Ok(Receive { regex })
    }

    /// Whether the pattern matches anywhere in `text`. A pattern that exhausts the
    /// backtracking limit does not match: a check must not hang on a pathological pattern.
    pub(crate) fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text).unwrap_or(false)
    }
}

/// HTTP's test for "no receive string": `!($recstr =~ /.+/)`, i.e. nothing but newlines.
pub(crate) fn is_blank(receive: &str) -> bool {
    receive.chars().all(|c| c == '\n')
}

/// Rewrites Perl's end-of-string anchors into their exact meaning (see the module doc).
fn translate(pattern: &str) -> String {
    if enables_multi_line(pattern) {
        return pattern.to_owned();
    }
    const PERL_END: &str = r"(?=\n?\z)";
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('Z') if !in_class => out.push_str(PERL_END),
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // A `]` (after an optional `^`) right after `[` is a literal, not the end.
                if chars.peek() == Some(&'^') {
                    out.push(chars.next().unwrap_or('^'));
                }
                if chars.peek() == Some(&']') {
                    out.push(chars.next().unwrap_or(']'));
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '$' if !in_class => out.push_str(PERL_END),
            _ => out.push(c),
        }
    }
    out
}

/// Whether an inline flag group such as `(?m)` or `(?im:` turns on multi-line mode, in which
/// `$` already means "before any newline" in both dialects.
fn enables_multi_line(pattern: &str) -> bool {
    pattern.match_indices("(?").any(|(i, _)| {
        pattern[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .any(|c| c == 'm')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        Receive::new(pattern).unwrap().is_match(text)
    }

    #[test]
    fn dollar_matches_before_a_final_newline_as_in_perl() {
        assert!(m("^OK$", "OK\n"));
        assert!(m("^OK$", "OK"));
        assert!(!m("^OK$", "OK\n\n"));
        assert!(m(r"OK\Z", "OK\n"));
        assert!(!m(r"OK\z", "OK\n"));
    }

    #[test]
    fn dollar_in_a_class_or_escaped_is_literal() {
        assert!(m(r"cost \$5", "cost $5"));
        assert!(m("[$]5", "$5"));
        assert!(m("[]$]5", "$5"));
        assert!(m("[^]$]5", "a5"));
    }

    #[test]
    fn perl_constructs_people_write() {
        assert!(m("Test Page|It works", "<h1>It works!</h1>"));
        assert!(m(r"^HTTP/1\.[01] 2\d\d", "HTTP/1.1 200 OK"));
        assert!(m(r"(?i)healthy", "HEALTHY"));
        assert!(m(r"status:\s*(?!down)\w+", "status: up"));
        assert!(!m(r"status:\s*(?!down)\w+$", "status: down"));
        assert!(m(r"(a)\1", "aa"));
    }

    #[test]
    fn multi_line_patterns_are_left_alone() {
        assert!(m("(?m)^OK$", "x\nOK\ny"));
    }

    #[test]
    fn invalid_patterns_are_errors() {
        assert!(matches!(
            Receive::new("(unclosed"),
            Err(CheckError::InvalidReceive { .. })
        ));
    }

    #[test]
    fn blank_is_empty_or_newlines() {
        assert!(is_blank(""));
        assert!(is_blank("\n"));
        assert!(!is_blank(" "));
    }
}
