//! Shared parts of xdirectord's integration tests (the tests themselves are in `tests/`).
//!
//! # Layout
//! * [`packet`]: building test frames.
//! * [`harness`]: running the real XDP program on them through BPF_PROG_TEST_RUN.
//! * [`netns`]: named network namespaces, per-thread setns, raw packet sockets.
//! * [`table`]: desired tables in a line each.
//! * [`e2e`]: end-to-end runs on the lab (`cargo xtask lab`): xdirectord, real servers, clients.
//! * [`topology`]: topologies of their own for end-to-end tests the lab cannot host (a router
//!   with a small-MTU link, two NICs, routed reals), in `xd12-*` namespaces.
//! * [`vm`]: the IPVS test guest (Debian's 6.1 kernel under QEMU): jobs run in it.
//! * [`director`]: a one-real director in namespaces of its own, for the operations tests (the
//!   package and its systemd unit, Pacemaker, heartbeat).
pub mod director;
pub mod e2e;
pub mod harness;
pub mod netns;
pub mod packet;
pub mod table;
pub mod topology;
pub mod vm;
