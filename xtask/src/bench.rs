//! `cargo xtask bench`: the benchmarks, each measured side by side with its yardstick in one run,
//! their tables printed and their figures written under `target/bench/`.

use anyhow::Result;

use crate::run;

/// The data plane: ns per packet of the balancer against a bare XDP_TX program, and a new flow
/// against one random memory access (`tests/src/bin/dataplane-bench.rs`), written to
/// `target/bench/dataplane.json`; with `cores`, also on several CPUs at once.
pub fn dataplane(cores: bool) -> Result<()> {
    println!(
        "bench: data plane (BPF_PROG_TEST_RUN, JIT on, side by side with a bare XDP_TX program)"
    );
    // The figures are the kernel's: a debug build of the harness measures the same.
    let mut command = crate::cargo();
    command.args([
        "run",
        "--quiet",
        "--package",
        "xdirectord-tests",
        "--bin",
        "dataplane-bench",
        "--",
        "target/bench/dataplane.json",
    ]);
    if cores {
        command.arg("--cores");
    }
    run(&mut command)
}
