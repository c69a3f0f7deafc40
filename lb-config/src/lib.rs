//! ldirectord configuration files: parser, typed model and the `-t` check.
//!
//! xdirectord reads the `ldirectord.cf` operators already run. Every file ldirectord 4.x
//! accepts means the same here, and every file it rejects is rejected at the same line with
//! the same message; where ldirectord silently reads a file differently from how it looks,
//! xdirectord reads it the same way and adds a warning (docs/ldirectord-compat.md).
//!
//! ```
//! use lb_config::{parse, testing::StaticEnvironment, CheckType};
//! let text = b"virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate 2\n\tchecktype=connect\n";
//! let config = parse(text, "ldirectord.cf".as_ref(), &StaticEnvironment::default()).unwrap();
//! let vs = &config.virtuals[0];
//! assert_eq!(vs.id, "tcp:192.0.2.1:80");
//! assert_eq!(vs.check.checktype, CheckType::Connect);
//! assert_eq!(vs.reals[0].weight, 2);
//! ```
//!
//! # Layout
//! * `model`: the result: [`Config`], [`VirtualService`], [`Real`] and their parts.
//! * `service`: ldirectord's `service` names and well-known ports.
//! * `diagnostics`: [`Diagnostic`] and [`ConfigError`], rendered as ldirectord prints them.
//! * `environment`: [`Environment`], what parsing asks of the machine; [`SystemEnvironment`].
//! * `testing`: [`testing::StaticEnvironment`], a table-driven machine for tests.
//! * `locate`: the config file lookup and its name ([`locate`], [`config_name`]).
//! * `check`: [`load`], [`find_and_load`] and `-t` ([`check_config`]).
//! * `parse`: the line reader and its two states (global, virtual block).
//! * `global`, `block`, `real`, `fallback`, `extensions`: the directives.
//! * `lookup`, `resolve`: ldirectord's name lookups and what happens when a block ends.
//! * `derive`: effective values (`ld_setup`), once the whole file is read.
//! * `value`: Perl idioms for reading values; `validate`: ldirectord's checks of values.
//! * `quirk`: warnings ldirectord never prints.

mod block;
mod check;
mod derive;
mod diagnostics;
mod environment;
mod extensions;
mod fallback;
mod global;
mod locate;
mod lookup;
mod model;
mod parse;
mod quirk;
mod real;
mod resolve;
mod service;
pub mod testing;
mod validate;
mod value;

pub use check::{
    check_config, check_config_with, find_and_load, find_and_load_with, load, load_with,
};
pub use derive::check_port;
pub use diagnostics::{ConfigError, Diagnostic, Origin, Severity};
pub use environment::{Environment, SystemEnvironment};
pub use locate::{DEFAULT_CONFIG, DEFAULT_CONFIG_NAME, config_name, locate};
pub use model::{
    BackendKind, CheckSettings, CheckType, Config, EmailAlertStatus, Fallback, Family, Forwarding,
    GlobalFallback, GlobalSettings, HttpMethod, LogTarget, Netmask, Protocol, Real, RealCheck,
    TunnelPrefix, VirtualAddress, VirtualService, XdpMode,
};
pub use parse::parse;
pub use real::{MAX_FILE_REALS, MAX_RANGE_REALS};
pub use service::Service;
