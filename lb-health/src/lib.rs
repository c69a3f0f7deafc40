//! Health checks of real servers, as ldirectord runs them, for an agent to drive.
//!
//! The agent maps its configuration to [`CheckSpec`]s (one per virtual × real, with
//! ldirectord's resolved values), hands them to a [`HealthRunner`] with a key of its own, and
//! receives a [`CheckResult`] for every completed round on a tokio channel. What to do with a
//! result (failurecount, quiescent, fallback) is the agent's business; this crate knows nothing
//! of the data plane and imports no other crate of the workspace.
//!
//! ```no_run
//! use lb_health::{CheckSpec, CheckType, HealthRunner, RunnerConfig, Service, VirtualServer};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn agent() {
//! let shutdown = CancellationToken::new();
//! let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
//! let _ = lb_health::raise_nofile_limit();
//! let mut runner = HealthRunner::new(tx, RunnerConfig::default(), &shutdown);
//!
//! let mut spec = CheckSpec::new(
//!     VirtualServer::Addr("192.0.2.10:80".parse().unwrap()),
//!     "10.0.0.1:80".parse().unwrap(),
//!     Service::Http,
//! );
//! spec.check_type = CheckType::Negotiate;
//! spec.receive = "OK".into();
//! let reload = runner.replace([("vs1/real1", spec)]);
//! assert!(reload.rejected.is_empty());
//!
//! while let Some(result) = rx.recv().await {
//!     println!("{} {} {}", result.key, result.up, result.reason);
//! }
//! runner.shutdown().await;
//! # }
//! ```
//!
//! # Layout
//!
//! * `spec`: [`CheckSpec`] and its parts: what to check, as ldirectord's settings say it.
//! * `error`: [`CheckError`], why a spec is refused.
//! * `check`: [`Checker`], one real's check, ldirectord's `_check_real` (maintenance first,
//!   dispatch by checktype and service, timeouts); [`Probes`], what all checks share.
//! * `runner`: [`HealthRunner`], one task per distinct check, jittered schedule, dedup,
//!   reload, limits, shutdown.
//! * `report`: delivery of results to the agent, batched and bounded.
//! * `schedule`: [`Jitter`], the pure timing rules.
//! * `combined`: the `checktype = N` sequencing (pure).
//! * `maintenance`: `maintenancedir` file names and lookup.
//! * Probes, one module per kind: `tcp` (connect, simpletcp), `http` (http, https,
//!   http_proxy; HTTP/1.1 on the wire in `http1`; TLS settings and the trusted CAs,
//!   [`TrustedCas`], in `tls`), `dns`, `ping`, `external` (external, external-perl).
//! * `url` (check URLs, redirects) and `receive` (Perl-compatible `receive` patterns): pure
//!   helpers of the probes.
//! * `outcome`: [`CheckOutcome`], one round's verdict and reason.
//!
//! docs/health-checks.md describes each check and every difference from ldirectord.

mod check;
mod combined;
mod dns;
mod error;
mod external;
mod http;
mod http1;
mod maintenance;
mod outcome;
mod ping;
mod receive;
mod report;
mod runner;
mod schedule;
mod spec;
mod tcp;
mod tls;
mod url;

pub use check::{Checker, DEFAULT_MAX_PROCESSES, Probes};
pub use error::CheckError;
pub use outcome::CheckOutcome;
pub use runner::{
    CheckId, CheckResult, DEFAULT_MAX_IN_FLIGHT, HealthRunner, Reload, RunnerConfig, RunnerStats,
    raise_nofile_limit,
};
pub use schedule::Jitter;
pub use spec::{CheckSpec, CheckType, HttpMethod, Protocol, Service, VirtualServer, check_port};
pub use tls::TrustedCas;
