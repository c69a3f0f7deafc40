//! What one completed check says.

use std::borrow::Cow;
use std::sync::Arc;

/// The result of one probe inside the crate: static reasons cost no allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) up: bool,
    pub(crate) reason: Cow<'static, str>,
}

impl Outcome {
    pub(crate) fn up(reason: impl Into<Cow<'static, str>>) -> Outcome {
        Outcome {
            up: true,
            reason: reason.into(),
        }
    }

    pub(crate) fn down(reason: impl Into<Cow<'static, str>>) -> Outcome {
        Outcome {
            up: false,
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
}

impl From<Outcome> for CheckOutcome {
    fn from(o: Outcome) -> CheckOutcome {
        CheckOutcome {
            up: o.up,
            maintenance: false,
            reason: Arc::from(o.reason.as_ref()),
        }
    }
}
