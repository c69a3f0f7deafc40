//! Shared parts of xdirectord's integration tests (the tests themselves are in `tests/`).
//!
//! # Layout
//! * [`packet`]: building test frames.
//! * [`harness`]: running the real XDP program on them through BPF_PROG_TEST_RUN.
pub mod harness;
pub mod packet;
