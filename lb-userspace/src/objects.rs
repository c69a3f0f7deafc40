//! The XDP programs, compiled for the BPF target by the build script and embedded in the binary.
//!
//! The agent's binary embeds the balancer only. The programs the tests and benchmarks load
//! besides (the balancer with a test clock, the benchmark's yardsticks, `xdp-pass`, the bench
//! driver) are embedded with the `test-support` feature, which the `tests` crate turns on.

/// The balancer (program `xdirectord`, and its tunnel program), as the agent runs it.
pub static BALANCER: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf"));
/// The balancer built with lb-ebpf's `test-clock` feature: its clock follows the CLOCK map while
/// that is set, for packet tests of timeouts. Otherwise the same program.
#[cfg(feature = "test-support")]
pub static BALANCER_TEST_CLOCK: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf-test-clock"));
/// The benchmark's yardstick (program `xdp_baseline`): parse, swap MACs, XDP_TX.
#[cfg(feature = "test-support")]
pub static BASELINE: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-baseline"));
/// Passes everything (program `xdp_pass`): for the far end of a veth that must receive XDP_TX.
#[cfg(feature = "test-support")]
pub static PASS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-pass"));
/// Makes every run of a repeated test frame a new flow, then tail-calls the program in its
/// `NEXT` program array (program `xdp_bench_driver`): for the new-flow benchmarks.
#[cfg(feature = "test-support")]
pub static BENCH_DRIVER: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-bench-driver"));
/// The benchmark's floor for a new flow (program `xdp_memory_floor`): one random read of a
/// 64-byte bucket from a map the size of a flow table (`MEMORY_FLOOR_BUCKETS`, its number of
/// buckets in the `.rodata` global `lb_common::maps::FLOW_BUCKETS`, both set at load).
#[cfg(feature = "test-support")]
pub static MEMORY_FLOOR: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-memory-floor"));

/// Program names inside the objects.
pub const BALANCER_PROGRAM: &str = "xdirectord";
/// The balancer's tunnel program, which it tail-calls through `TUNNEL_PROG`.
pub const TUNNEL_PROGRAM: &str = "xdirectord_tunnel";
#[cfg(feature = "test-support")]
pub const BASELINE_PROGRAM: &str = "xdp_baseline";
#[cfg(feature = "test-support")]
pub const PASS_PROGRAM: &str = "xdp_pass";
#[cfg(feature = "test-support")]
pub const BENCH_DRIVER_PROGRAM: &str = "xdp_bench_driver";
#[cfg(feature = "test-support")]
pub const BENCH_DRIVER_NEXT: &str = "NEXT";
#[cfg(feature = "test-support")]
pub const MEMORY_FLOOR_PROGRAM: &str = "xdp_memory_floor";
#[cfg(feature = "test-support")]
pub const MEMORY_FLOOR_BUCKETS: &str = "BUCKETS";
