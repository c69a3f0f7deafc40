//! Errors and warnings about a configuration file, worded and formatted as ldirectord's
//! `__config_log` prints them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Error or warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    Error,
    Warning,
}

/// Who says so: ldirectord prints this message too, or only xdirectord does (a quirk that
/// ldirectord passes over silently, or one of xdirectord's own directives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    Ldirectord,
    Xdirectord,
}

/// One message about one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub origin: Origin,
    /// 1-based; `None` for messages about the whole file (ldirectord's line ≤ 0), which are
    /// printed without the ` reading file ... at line N` part.
    pub line: Option<usize>,
    /// The text after the colon, exactly as ldirectord words it (odd wording included).
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn error(line: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            origin: Origin::Ldirectord,
            line: Some(line),
            message: message.into(),
        }
    }

    pub(crate) fn warning(line: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            origin: Origin::Ldirectord,
            line: Some(line),
            message: message.into(),
        }
    }

    /// Marks a message ldirectord would not print.
    pub(crate) fn ours(mut self) -> Diagnostic {
        self.origin = Origin::Xdirectord;
        self
    }

    pub(crate) fn whole_file(mut self) -> Diagnostic {
        self.line = None;
        self
    }

    /// `Error [<pid>] reading file <config> at line <n>: <message>` plus a newline, as
    /// ldirectord prints it: a trailing newline of the message is dropped first (Perl's
    /// `chomp`), so messages quoting a raw line keep that line's newline inside the quotes.
    pub fn render(&self, pid: u32, config: &Path) -> String {
        let prefix = match self.severity {
            Severity::Error => "Error",
            Severity::Warning => "Warning",
        };
        let place = match self.line {
            Some(line) if line > 0 => {
                format!(" reading file {} at line {line}", config.display())
            }
            _ => String::new(),
        };
        let message = self.message.strip_suffix('\n').unwrap_or(&self.message);
        format!("{prefix} [{pid}]{place}: {message}\n")
    }
}

/// Why a configuration could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum ConfigError {
    /// The argument named no file in `/etc/ha.d/`, `/etc/ha.d/conf/` or as a path.
    /// ldirectord prints `Config file <arg> not found` and exits 1.
    #[error("Config file {} not found", .0.display())]
    NotFound(PathBuf),
    /// ldirectord rejects the file: it prints the warnings met so far, then the error, and
    /// exits 2 (or, on reload, keeps the running configuration).
    #[error("{}", describe(.path, .error))]
    Invalid {
        path: PathBuf,
        warnings: Vec<Diagnostic>,
        error: Diagnostic,
    },
}

/// One line for logs that carry their own prefix: `reading file <path> at line <n>: <msg>`.
fn describe(path: &Path, error: &Diagnostic) -> String {
    let message = error.message.trim_end_matches('\n');
    match error.line {
        Some(line) if line > 0 => {
            format!("reading file {} at line {line}: {message}", path.display())
        }
        _ => format!("reading file {}: {message}", path.display()),
    }
}

impl ConfigError {
    /// ldirectord's exit status for this failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::NotFound(_) => 1,
            ConfigError::Invalid { .. } => 2,
        }
    }

    /// Everything ldirectord would print to standard error, in order.
    pub fn render(&self, pid: u32) -> String {
        match self {
            ConfigError::NotFound(path) => format!("Config file {} not found\n", path.display()),
            ConfigError::Invalid {
                path,
                warnings,
                error,
            } => {
                let mut out: String = warnings.iter().map(|w| w.render(pid, path)).collect();
                out.push_str(&error.render(pid, path));
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_config_log() {
        let d = Diagnostic::error(3, "quiescent must be 'yes' or 'no'");
        assert_eq!(
            d.render(42, Path::new("/etc/ha.d/ldirectord.cf")),
            "Error [42] reading file /etc/ha.d/ldirectord.cf at line 3: \
             quiescent must be 'yes' or 'no'\n"
        );
    }

    #[test]
    fn whole_file_messages_have_no_place() {
        let d = Diagnostic::warning(
            0,
            "checkinterval in virtual service fwm:1 ignored when fork=no",
        )
        .whole_file();
        assert_eq!(
            d.render(7, Path::new("x.cf")),
            "Warning [7]: checkinterval in virtual service fwm:1 ignored when fork=no\n"
        );
    }

    #[test]
    fn one_trailing_newline_is_chomped() {
        let d = Diagnostic::error(1, "Unknown command foo\n");
        assert_eq!(
            d.render(1, Path::new("c")),
            "Error [1] reading file c at line 1: Unknown command foo\n"
        );
        let d = Diagnostic::error(1, "Unknown command \"    foo\n\"");
        assert_eq!(
            d.render(1, Path::new("c")),
            "Error [1] reading file c at line 1: Unknown command \"    foo\n\"\n"
        );
    }

    #[test]
    fn exit_codes_follow_ldirectord() {
        assert_eq!(ConfigError::NotFound("x".into()).exit_code(), 1);
        let invalid = ConfigError::Invalid {
            path: "x".into(),
            warnings: vec![Diagnostic::warning(1, "w")],
            error: Diagnostic::error(2, "e"),
        };
        assert_eq!(invalid.exit_code(), 2);
        assert_eq!(
            invalid.render(9),
            "Warning [9] reading file x at line 1: w\nError [9] reading file x at line 2: e\n"
        );
        assert_eq!(invalid.to_string(), "reading file x at line 2: e");
    }
}
