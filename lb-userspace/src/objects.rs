//! The XDP programs, compiled for the BPF target by the build script and embedded in the binary.

/// The balancer (program `xdirectord`).
pub static BALANCER: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf"));
/// The benchmark's yardstick (program `xdp_baseline`): parse, swap MACs, XDP_TX.
pub static BASELINE: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-baseline"));
/// Passes everything (program `xdp_pass`): for the far end of a veth that must receive XDP_TX.
pub static PASS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-pass"));
/// Makes every run of a repeated test frame a new flow, then tail-calls the program in its
/// `NEXT` program array (program `xdp_bench_driver`): for the new-flow benchmarks.
pub static BENCH_DRIVER: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-bench-driver"));

/// Program names inside the objects.
pub const BALANCER_PROGRAM: &str = "xdirectord";
/// The balancer's tunnel program, which it tail-calls through `TUNNEL_PROG`.
pub const TUNNEL_PROGRAM: &str = "xdirectord_tunnel";
pub const BASELINE_PROGRAM: &str = "xdp_baseline";
pub const PASS_PROGRAM: &str = "xdp_pass";
pub const BENCH_DRIVER_PROGRAM: &str = "xdp_bench_driver";
pub const BENCH_DRIVER_NEXT: &str = "NEXT";
