//! xdirectord: an XDP layer-4 load balancer with an ldirectord-compatible control plane.
//!
//! # Layout
//! * [`table`]: the desired table (virtual services, reals, weights, fallback): what the
//!   director wants, what a backend applies.
//! * [`table`]'s `diff`: the one diff, `(held, desired) → ops`, that the director reports and
//!   every backend executes.
//! * [`backend`]: the [`backend::Backend`] trait and its implementations: [`backend::xdp`] (the
//!   BPF maps of `lb-ebpf`), [`backend::ipvs`] (the kernel's IPVS over generic netlink),
//!   [`backend::hybrid`] (both, each virtual where [`backend::placement`] put it) and a
//!   recording fake for director tests.
//! * [`live`]: what a data plane holds now, with counters, read back from it.
//! * [`objects`]: the compiled XDP programs, embedded.
//! * [`cli`]: the command line, read as ldirectord reads its own; the binary's entry.
//! * [`usage`]: the command line's documentation, the one source of `--help`, the man page and
//!   the bash completion.
//! * [`control`]: the instance commands (start, stop, status, …) with ldirectord's exit codes
//!   and messages; pid file, daemonising, signals.
//! * [`daemon`]: the running agent (director, alert and hook queues, `execute` instances,
//!   reload, `autoreload`, `callback`), for any backend; where the backends are opened.
//! * [`director`]: check verdicts and configurations in, the desired table out:
//!   `state` (one real's flip logic), `desired` (configuration + health → table), `changes`
//!   (ops in ldirectord's words), `checks` (configuration → lb-health specs), `core` (every
//!   decision, pure) and the event loop around them.
//! * [`log`]: ldirectord's log formats (file, syslog, supervised, `-d`) and `monitorfile`.
//! * [`alert`]: e-mail alerts over SMTP or sendmail.
//! * [`hooks`]: `fallbackcommand`, `callback` and `execute` commands, run in order.
//! * [`show`]: `xdirectord show`, the live table read from the pinned maps and from IPVS.
//! * [`metrics`]: the Prometheus endpoint (`metrics = ADDR:PORT`): the same live tables, the
//!   director's view of each real, the checks' timings, read at scrape time.
pub mod alert;
pub mod backend;
pub mod cli;
pub mod control;
pub mod daemon;
pub mod director;
pub mod hooks;
pub mod live;
pub mod log;
pub mod metrics;
pub mod objects;
pub mod show;
pub mod table;
pub mod usage;
