//! What one completed check says.

use std::borrow::Cow;
use std::sync::Arc;

/// Why a check failed, in the few words a dashboard counts failures by. The reason text says
/// the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// The check's time ran out (`checktimeout`, `negotiatetimeout`).
    Timeout,
    /// The real refused the connection (a TCP reset to the SYN).
    Refused,
    /// The real answered, but not what the check wants (a status, a `receive` mismatch, an
    /// error reply, a non-zero exit of an external check).
    BadAnswer,
    /// Anything else: unreachable, reset mid-exchange, a local error, a bad setting.
    Other,
}

impl Failure {
    /// Every failure, in a fixed order.
    pub const ALL: [Failure; 4] = [
        Failure::Timeout,
        Failure::Refused,
        Failure::BadAnswer,
        Failure::Other,
    ];

    /// The metric label's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Refused => "refused",
            Failure::BadAnswer => "bad_answer",
            Failure::Other => "other",
        }
    }

    /// The failure a probe's error text tells: every connect error in this crate is reported
    /// as `connect ADDR: <the io::Error>`, whose text for ECONNREFUSED is the C library's.
    fn of_error(reason: &str) -> Failure {
        if reason.contains("Connection refused") {
            Failure::Refused
        } else {
            Failure::Other
        }
    }
}

/// The result of one probe inside the crate: static reasons cost no allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) up: bool,
    /// Meaningful only when down.
    pub(crate) failure: Failure,
    pub(crate) reason: Cow<'static, str>,
}

impl Outcome {
    pub(crate) fn up(reason: impl Into<Cow<'static, str>>) -> Outcome {
        Outcome {
            up: true,
            failure: Failure::Other,
            reason: reason.into(),
        }
    }

    /// Down because something failed: refused when the error says so, other otherwise.
    pub(crate) fn down(reason: impl Into<Cow<'static, str>>) -> Outcome {
        let reason = reason.into();
        Outcome {
            up: false,
            failure: Failure::of_error(&reason),
            reason,
        }
    }

    /// Down because the real answered wrongly.
    pub(crate) fn bad_answer(reason: impl Into<Cow<'static, str>>) -> Outcome {
        Outcome {
            up: false,
            failure: Failure::BadAnswer,
            reason: reason.into(),
        }
    }

    /// Down because the time ran out.
    pub(crate) fn timeout(reason: impl Into<Cow<'static, str>>) -> Outcome {
        Outcome {
            up: false,
            failure: Failure::Timeout,
            reason: reason.into(),
        }
    }
}

/// One completed check of one real.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// The condition held (ldirectord's `service_set(up)`).
    pub up: bool,
    /// The real is down because a maintenance file names it. ldirectord forces this state
    /// (`force => 1`): the director must take the real down at once, without counting
    /// `failurecount` failures. Implies `up == false`.
    pub maintenance: bool,
    /// A short reason for logs, like ldirectord's monitor-file messages (`200 OK`,
    /// `connect 10.0.0.1:80: Connection refused`, `timed out after 5s`).
    pub reason: Arc<str>,
    /// Why it is down; `None` when up or in maintenance.
    pub failure: Option<Failure>,
}

impl From<Outcome> for CheckOutcome {
    fn from(o: Outcome) -> CheckOutcome {
        CheckOutcome {
            up: o.up,
            maintenance: false,
            reason: Arc::from(o.reason.as_ref()),
            failure: (!o.up).then_some(o.failure),
        }
    }
}
