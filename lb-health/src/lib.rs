//! Health checks of real servers, as ldirectord runs them, for an agent to drive.
//!
//! The agent turns its configuration into [`CheckSpec`]s (one per virtual × real, with
//! ldirectord's resolved values: [`CheckSpec::from_config`]), hands them to a
//! [`HealthRunner`] with a key of its own, and receives a [`CheckResult`] for every completed
//! round on a tokio channel. What to do with a result (failurecount, quiescent, fallback) is
//! the agent's business; this crate knows nothing of the data plane. It speaks lb-config's
//! vocabulary (`Service`, `Protocol`, `CheckType`, …) and imports no other crate of the
//! workspace.
//!
//! ```no_run
//! use lb_health::{CheckSpec, CheckType, HealthRunner, Negotiate, Protocol, RunnerConfig};
//! use lb_health::{Service, VirtualAddress};
//! use tokio_util::sync::CancellationToken;
//!
//! # async fn agent() {
//! let shutdown = CancellationToken::new();
//! let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
//! let _ = lb_health::raise_nofile_limit();
//! let mut runner = HealthRunner::new(tx, RunnerConfig::default(), &shutdown);
//!
//! let mut http = Negotiate::defaults(Service::Http);
//! if let Negotiate::Http(h) = &mut http {
//!     h.receive = "OK".into();
//! }
//! let mut spec = CheckSpec::new(
//!     VirtualAddress::Socket { protocol: Protocol::Tcp, address: "192.0.2.10:80".parse().unwrap() },
//!     "10.0.0.1:80".parse().unwrap(),
//!     http,
//! );
//! spec.check_type = CheckType::Negotiate;
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
//! * `spec`: [`CheckSpec`] and [`Negotiate`], one variant per service with the settings its
//!   check reads: what to check, as ldirectord's settings say it.
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
//!   http_proxy; HTTP/1.1 on the wire in `http1`), `dns`, `ping`, `external` (external,
//!   external-perl), `ftp`, `smtp` (smtp, submission), `pop` (pop, pops), `imap` (imap,
//!   imaps), `nntp`, `ldap` (ldap, ldaps), `sql` (mysql, pgsql), `oracle`, `sip`, `radius`.
//! * What probes share: `line` (a line protocol over TCP or TLS, bounded), `udp` (a question
//!   asked again until answered), `tls` (the TLS settings and the trusted CAs,
//!   [`TrustedCas`]), `url` (check URLs, redirects) and `receive` (Perl-compatible `receive`
//!   patterns).
//! * `outcome`: [`CheckOutcome`], one round's verdict and reason, and [`Failure`], the kind
//!   of a failure (timeout, refused, bad answer, other) that metrics count.
//!
//! docs/health-checks.md describes each check and every difference from ldirectord.

mod check;
mod combined;
mod dns;
mod error;
mod external;
mod ftp;
mod http;
mod http1;
mod imap;
mod ldap;
mod line;
mod maintenance;
mod nntp;
mod oracle;
mod outcome;
mod ping;
mod pop;
mod radius;
mod receive;
mod report;
mod runner;
mod schedule;
mod sip;
mod smtp;
mod spec;
mod sql;
mod tcp;
mod tls;
mod udp;
mod url;

pub use check::{Checker, DEFAULT_MAX_PROCESSES, Probes};
pub use error::CheckError;
pub use outcome::{CheckOutcome, Failure};
pub use runner::{
    CheckId, CheckResult, DEFAULT_MAX_IN_FLIGHT, HealthRunner, Reload, RunnerConfig, RunnerStats,
    raise_nofile_limit,
};
pub use schedule::Jitter;
pub use spec::{
    CheckSpec, CheckType, Exchange, Family, Ftp, Http, HttpKind, HttpMethod, Ldap, Login, Mailbox,
    Negotiate, Protocol, Radius, Service, Sip, Sql, SqlEngine, VirtualAddress,
};
pub use tls::TrustedCas;
