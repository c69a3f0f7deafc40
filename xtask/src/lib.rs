//! The library half of `cargo xtask`: what the commands in `main.rs` and the integration tests in
//! `tests/` share (the lab, set-up, the IPVS test guest, and running commands with errors that
//! name them).
//!
//! Kept free of the workspace's BPF crates: it must build on a machine that has no bpf-linker yet.

/// `println!` that ignores a closed standard output (`cargo xtask demo | head`) instead of
/// panicking: the lab and the demo print while cleaning up, and a second panic there would abort
/// before the lab is down.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` likewise.
macro_rules! eout {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod bench;
pub mod bench_checks;
pub mod demo;
pub mod lab;
pub mod package;
pub mod setup;
pub mod vm;

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

/// `cargo`, as a person runs it from a shell: without the variables cargo sets for a process it
/// runs (`cargo run`, `cargo test`). Some build scripts watch them (ring's watches
/// `CARGO_MANIFEST_DIR`): a nested build that inherited them would rebuild ring, rustls and
/// everything above them (lb-health, lb-userspace: a minute on two cores), and the next plain
/// `cargo build` would rebuild them back.
pub fn cargo() -> Command {
    const SET_BY_CARGO: &[&str] = &[
        "CARGO",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "OUT_DIR",
    ];
    let mut command = Command::new("cargo");
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if SET_BY_CARGO.contains(&text.as_ref()) || text.starts_with("CARGO_PKG_") {
            command.env_remove(&name);
        }
    }
    command
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn note_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// From now on SIGINT and SIGTERM only set [`interrupted`], so a command that must clean up
/// (the demo takes its lab down) stops at its next wait and cleans up instead of dying.
pub fn catch_interrupts() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, note_interrupt as *const () as libc::sighandler_t) };
    }
}

/// Whether SIGINT or SIGTERM arrived since [`catch_interrupts`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::Relaxed)
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
