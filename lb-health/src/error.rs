//! Why a check specification was refused before any probe ran.
//!
//! A probe that runs and fails is not an error: it is a result with `up = false` and a reason.
//! These errors are about specifications the runner will not start, so the agent can refuse the
//! virtual service with a clear message instead of letting a real sit down forever.

/// A check specification the runner refuses to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// `receive` is not a regular expression the matcher understands.
    #[error("invalid receive pattern {pattern:?}: {message}")]
    InvalidReceive { pattern: String, message: String },
    /// The request cannot be turned into a URL to fetch.
    #[error("invalid request {request:?}: {message}")]
    InvalidRequest { request: String, message: String },
    /// `http_proxy` fetches a URL through the real, so it needs the whole URL.
    #[error("service http_proxy needs request to be an absolute URL (http://host/path), not {0:?}")]
    ProxyRequestNotAbsolute(String),
    /// external checks need a command to run.
    #[error("checkcommand is empty")]
    EmptyCommand,
    /// A zero duration would make the check spin or fail at once.
    #[error("{what} must be greater than zero")]
    ZeroDuration { what: &'static str },
    /// ping needs at least one attempt.
    #[error("checkcount must be at least 1")]
    ZeroCheckCount,
}
