//! The library half of `cargo xtask`: what the commands in `main.rs` and the integration tests in
//! `tests/` share (the lab, set-up, and running commands with errors that name them).
//!
//! Kept free of the workspace's BPF crates: it must build on a machine that has no bpf-linker yet.

pub mod bench;
pub mod bench_checks;
pub mod demo;
pub mod lab;
pub mod setup;

use anyhow::{Context as _, Result, bail};
use std::path::PathBuf;
use std::process::Command;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The xdirectord binary built alongside this one (the same target directory and profile, as
/// `cargo xtask` builds both), else `target/debug/xdirectord` of the workspace.
pub fn xdirectord_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("xdirectord")))
        .filter(|binary| binary.exists())
        .unwrap_or_else(|| workspace_root().join("target/debug/xdirectord"))
}

/// Runs a command, failing with its command line when it fails.
pub fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

/// Runs a command and returns its standard output.
pub fn capture(command: &mut Command) -> Result<String> {
    let out = command
        .output()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}
