//! Prometheus metrics (`metrics = ADDR:PORT`, `--metrics`): the data planes' counters read at
//! scrape time, the director's view of each real, the health checks' durations and failures,
//! and the agent's own counters. docs/operations.md lists every series.
//!
//! * `record`: [`Recorder`], what the director and the agent record as they run.
//! * `collect`: one scrape, read from the data planes and the recorder, as Prometheus text.
//! * `labels`: the label sets, named as node_exporter's IPVS collector names them.
//! * `server`: the HTTP endpoint and its limits.

pub mod collect;
pub mod labels;
pub mod record;
pub mod server;

pub use record::Recorder;
pub use server::{BindError, Limits};
