//! xdirectord: an XDP layer-4 load balancer with an ldirectord-compatible control plane.
//!
//! # Layout
//! * [`table`]: the desired table (virtual services, reals, weights, fallback): what the
//!   director wants, what a backend applies.
//! * [`backend`]: the [`backend::Backend`] trait and its implementations: [`backend::xdp`] (the
//!   BPF maps of `lb-ebpf`) and a recording fake for director tests.
//! * [`objects`]: the compiled XDP programs, embedded.
pub mod backend;
pub mod objects;
pub mod table;
