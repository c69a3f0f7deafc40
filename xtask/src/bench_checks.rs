//! Health checks at scale (issue 4): `bench_checks()` runs the `bench-checks` example of
//! lb-userspace, which drives the real director with HTTP negotiate checks of 100, 1,000 and
//! 10,000 reals on loopback (`checkinterval = 1`) and writes `target/bench/checks.json`:
//! checks per second achieved against intended, the agent's CPU share and peak RSS, and the
//! time from a real's server stopping to the table without it reaching the backend. Then one
//! row per protocol service (issue 10: ftp, smtp, … radius): 1,000 reals checked against
//! that service's real server, as lb-health's tests start it.

use anyhow::Result;

use crate::{run, workspace_root};

/// Runs the benchmark and writes `target/bench/checks.json` (about seven minutes).
pub fn bench_checks() -> Result<()> {
    let out = workspace_root().join("target/bench/checks.json");
    run(crate::cargo()
        .current_dir(workspace_root())
        .args([
            "run",
            "--release",
            "--quiet",
            "-p",
            "lb-userspace",
            "--example",
            "bench-checks",
            "--",
        ])
        .arg("--out")
        .arg(&out))?;
    println!("bench: wrote {}", out.display());
    Ok(())
}
