//! Where the agent's log lines go, formatted as ldirectord formats them (`ld_log`), so log
//! watchers written for ldirectord keep working:
//!
//! * `-d`: standard error, the bare message;
//! * `supervised = yes`: standard output, `[<localtime>] msg`;
//! * `logfile = "/path"`: appended, `[<localtime>|<CFGNAME>|<pid>] msg`, the file opened and
//!   closed for every line so that log rotation needs no signal;
//! * `logfile = "facility"`: syslog, ident `xdirectord`, option pid, priority info.
//!
//! Also the `monitorfile` line format, and a bridge that sends lb-health's `tracing` events
//! to the same place.

use std::ffi::CString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use lb_config::{Config, LogTarget};

/// Where lines go.
#[derive(Debug, Clone)]
pub enum LogSink {
    /// `-d`: the message alone on standard error.
    Stderr,
    /// `supervised = yes`: `[<localtime>] msg` on standard output.
    Stdout,
    /// `[<localtime>|<CFGNAME>|<pid>] msg` appended to the file.
    File(PathBuf),
    /// A syslog facility name (`daemon`, `local0`, …).
    Syslog(String),
    /// Kept in memory, for tests and for callers that show the lines themselves.
    Capture(Arc<Mutex<Vec<String>>>),
}

impl LogSink {
    /// ldirectord's choice: `-d` wins, then `supervised`, then `logfile`.
    pub fn for_config(config: &Config, debug: bool) -> LogSink {
        if debug {
            LogSink::Stderr
        } else if config.global.supervised {
            LogSink::Stdout
        } else {
            match &config.global.logfile {
                LogTarget::File(path) => LogSink::File(path.clone()),
                LogTarget::Syslog(facility) => LogSink::Syslog(facility.clone()),
            }
        }
    }

    /// Where ldirectord logs before it has read a configuration (`Config file … not found`):
    /// its default log file, or standard error with `-d`.
    pub fn before_config(debug: bool) -> LogSink {
        if debug {
            LogSink::Stderr
        } else {
            LogSink::File(PathBuf::from("/var/log/ldirectord.log"))
        }
    }
}

/// A cheap handle on the agent's log; clones write to the same place.
#[derive(Clone)]
pub struct Logger {
    inner: Arc<Mutex<State>>,
}

struct State {
    sink: LogSink,
    /// `CFGNAME`, in file lines.
    name: String,
    /// The facility syslog was opened with, so a reload that changes it reopens.
    syslog_open: Option<libc::c_int>,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Logger")
            .field("sink", &state.sink)
            .field("name", &state.name)
            .finish()
    }
}

impl Logger {
    pub fn new(sink: LogSink, name: impl Into<String>) -> Logger {
        Logger {
            inner: Arc::new(Mutex::new(State {
                sink,
                name: name.into(),
                syslog_open: None,
            })),
        }
    }

    /// A logger that keeps its lines; the second value is where they are.
    pub fn capture() -> (Logger, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        (
            Logger::new(LogSink::Capture(Arc::clone(&lines)), "test"),
            lines,
        )
    }

    /// Sends later lines elsewhere (a reload may change `logfile`).
    pub fn set_sink(&self, sink: LogSink) {
        self.lock().sink = sink;
    }

    pub fn sink(&self) -> LogSink {
        self.lock().sink.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while logging leaves nothing half-written that matters: keep logging.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs one message (a trailing newline is dropped, as Perl's `chomp` does).
    pub fn log(&self, message: impl AsRef<str>) {
        let message = message.as_ref();
        let message = message.strip_suffix('\n').unwrap_or(message);
        let mut state = self.lock();
        match &state.sink {
            LogSink::Stderr => {
                let _ = writeln!(std::io::stderr().lock(), "{message}");
            }
            LogSink::Stdout => {
                let _ = writeln!(std::io::stdout().lock(), "[{}] {message}", localtime_now());
            }
            LogSink::File(path) => {
                let line = format!(
                    "[{}|{}|{}] {message}\n",
                    localtime_now(),
                    state.name,
                    std::process::id()
                );
                if append(path, &line).is_err() {
                    // ldirectord's fallback when the file cannot be written.
                    let _ = writeln!(std::io::stderr().lock(), "{message}");
                }
            }
            LogSink::Syslog(facility) => {
                let facility = syslog_facility(facility).unwrap_or(libc::LOG_DAEMON);
                if state.syslog_open != Some(facility) {
                    // SAFETY: the ident is a 'static C string; openlog keeps the pointer.
                    unsafe { libc::openlog(c"xdirectord".as_ptr(), libc::LOG_PID, facility) };
                    state.syslog_open = Some(facility);
                }
                let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
                // SAFETY: a constant format with one C-string argument.
                unsafe { libc::syslog(libc::LOG_INFO, c"%s".as_ptr(), text.as_ptr()) };
            }
            LogSink::Capture(lines) => {
                lines
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(message.to_string());
            }
        }
    }
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// Appends one `monitorfile` line; the file is opened for every line, as ldirectord does.
pub fn append_monitor(path: &Path, line: &str) -> std::io::Result<()> {
    append(path, line)
}

/// ldirectord's `monitorfile` line: `[<localtime>] [<pid>] <real id> [up|down] <message>`,
/// where the real id has every run of `:` turned into one space and its backslashes removed,
/// and `%`, `|`, CR and LF in the message are %-escaped.
pub fn monitor_line(localtime: &str, pid: u32, real_id: &str, up: bool, message: &str) -> String {
    let mut id = String::with_capacity(real_id.len());
    let mut last_colon = false;
    for c in real_id.chars() {
        match c {
            ':' if last_colon => {}
            ':' => {
                id.push(' ');
                last_colon = true;
            }
            '\\' => {}
            c => {
                id.push(c);
                last_colon = false;
            }
        }
    }
    let mut escaped = String::with_capacity(message.len());
    for c in if message.is_empty() { "-" } else { message }.chars() {
        if matches!(c, '%' | '|' | '\r' | '\n') {
            let _ = write!(escaped, "%{:02x}", c as u32);
        } else {
            escaped.push(c);
        }
    }
    let state = if up { "up" } else { "down" };
    format!("[{localtime}] [{pid}] {id} [{state}] {escaped}\n")
}

/// The local time as Perl's scalar `localtime` prints it: `Sat Nov  1 23:05:09 2026`.
pub fn localtime_now() -> String {
    // SAFETY: time(NULL) has no preconditions.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    localtime(now)
}

unsafe extern "C" {
    /// POSIX; the libc crate does not declare it.
    fn tzset();
}

/// `t` (seconds since the epoch) in ldirectord's local-time format.
pub fn localtime(t: libc::time_t) -> String {
    // SAFETY: localtime_r writes into the tm we own; strftime writes at most buf.len() bytes
    // and returns how many. tzset makes localtime_r follow TZ as localtime would.
    unsafe {
        tzset();
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return t.to_string();
        }
        let mut buf = [0u8; 64];
        let n = libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c"%a %b %e %H:%M:%S %Y".as_ptr(),
            &tm,
        );
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// A syslog facility by the names Perl's Sys::Syslog accepts (`local0`, `daemon`, …, with or
/// without `LOG_`, any case).
pub fn syslog_facility(name: &str) -> Option<libc::c_int> {
    let lower = name.trim().to_ascii_lowercase();
    let name = lower.strip_prefix("log_").unwrap_or(&lower);
    Some(match name {
        "auth" => libc::LOG_AUTH,
        "authpriv" => libc::LOG_AUTHPRIV,
        "cron" => libc::LOG_CRON,
        "daemon" => libc::LOG_DAEMON,
        "ftp" => libc::LOG_FTP,
        "kern" => libc::LOG_KERN,
        "lpr" => libc::LOG_LPR,
        "mail" => libc::LOG_MAIL,
        "news" => libc::LOG_NEWS,
        "syslog" => libc::LOG_SYSLOG,
        "user" => libc::LOG_USER,
        "uucp" => libc::LOG_UUCP,
        "local0" => libc::LOG_LOCAL0,
        "local1" => libc::LOG_LOCAL1,
        "local2" => libc::LOG_LOCAL2,
        "local3" => libc::LOG_LOCAL3,
        "local4" => libc::LOG_LOCAL4,
        "local5" => libc::LOG_LOCAL5,
        "local6" => libc::LOG_LOCAL6,
        "local7" => libc::LOG_LOCAL7,
        _ => return None,
    })
}

/// Sends `tracing` events at INFO and above (lb-health warns through `tracing`, e.g. when
/// checks wait for an in-flight slot) to a [`Logger`], message first, then its fields.
pub struct TracingBridge {
    logger: Logger,
}

impl TracingBridge {
    pub fn new(logger: Logger) -> TracingBridge {
        TracingBridge { logger }
    }

    /// Installs the bridge as the process's subscriber; false if one was already installed.
    pub fn install(self) -> bool {
        use tracing_subscriber::layer::SubscriberExt as _;
        let subscriber = tracing_subscriber::registry().with(self);
        tracing::subscriber::set_global_default(subscriber).is_ok()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TracingBridge {
    fn enabled(
        &self,
        metadata: &tracing::Metadata<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        *metadata.level() <= tracing::Level::INFO
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut visitor = EventText::default();
        event.record(&mut visitor);
        let mut line = visitor.message;
        if !visitor.fields.is_empty() {
            line.push_str(" (");
            line.push_str(&visitor.fields);
            line.push(')');
        }
        self.logger.log(line);
    }
}

#[derive(Default)]
struct EventText {
    message: String,
    fields: String,
}

impl tracing::field::Visit for EventText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.fields.is_empty() {
                self.fields.push_str(", ");
            }
            let _ = write!(self.fields, "{}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_lines_squeeze_colons_and_escape_the_message() {
        let id = r"negotiate:http:tcp:10.0.0.1:80:::1:gate:\/index\.html:ok";
        assert_eq!(
            monitor_line("Sat Nov 21 23:23:43 2026", 7, id, true, "200 OK"),
            "[Sat Nov 21 23:23:43 2026] [7] negotiate http tcp 10.0.0.1 80 1 gate /index.html ok [up] 200 OK\n"
        );
        assert_eq!(
            monitor_line("t", 1, "connect", false, "a|b%c\nd"),
            "[t] [1] connect [down] a%7cb%25c%0ad\n"
        );
        assert_eq!(monitor_line("t", 1, "on", true, ""), "[t] [1] on [up] -\n");
    }

    #[test]
    fn localtime_looks_like_perls() {
        // Day of month padded with a space, as Perl's scalar localtime does.
        let text = localtime(0);
        assert_eq!(text.len(), "Thu Jan  1 00:00:00 1970".len(), "{text}");
        assert!(text.ends_with("1970") || text.ends_with("1969"), "{text}");
    }

    #[test]
    fn facilities_by_perl_names() {
        assert_eq!(syslog_facility("local0"), Some(libc::LOG_LOCAL0));
        assert_eq!(syslog_facility("LOG_DAEMON"), Some(libc::LOG_DAEMON));
        assert_eq!(syslog_facility("nope"), None);
    }

    #[test]
    fn file_lines_carry_time_name_and_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let logger = Logger::new(LogSink::File(path.clone()), "web.cf");
        logger.log("Added real server: 10.0.0.1:80 (192.0.2.1:80) (Weight set to 1)\n");
        let text = std::fs::read_to_string(&path).unwrap();
        let pid = std::process::id();
        assert!(text.starts_with('['), "{text}");
        assert!(
            text.ends_with(&format!(
                "|web.cf|{pid}] Added real server: 10.0.0.1:80 (192.0.2.1:80) (Weight set to 1)\n"
            )),
            "{text}"
        );
    }

    #[test]
    fn capture_keeps_lines() {
        let (logger, lines) = Logger::capture();
        logger.log("one");
        logger.clone().log("two\n");
        assert_eq!(*lines.lock().unwrap(), ["one", "two"]);
    }
}
