//! Compiles the XDP programs of `lb-ebpf` for the BPF target (nightly + bpf-linker) and leaves
//! them in OUT_DIR, where `src/objects.rs` embeds them; the lab loads `xdp-pass` and
//! `xdp-ipip-decap` (the reals' decapsulation, never embedded) from there.
//!
//! Every build has all of lb-ebpf's binaries (the small test programs cost little, and the lab
//! finds them here whatever the features), but the binary embeds only the balancer unless the
//! `test-support` feature is on. With it, the balancer is also built a second time with lb-ebpf's
//! `test-clock` feature (`lb-ebpf-test-clock`): the packet tests' program, whose clock they set.
//!
//! This does what `aya_build::build_ebpf` does, with two more code-generation flags it has no
//! way to pass: BPF ISA v3 (32-bit ALU and jumps, which the kernel has had since 5.1) and
//! misaligned memory access (x86's verifier allows unaligned packet reads; without the flag LLVM
//! reads a 4-byte address as four single bytes).
//!
//! With `AYA_BUILD_SKIP=1` (clippy or docs on a machine without bpf-linker) empty placeholders are
//! written instead; loading them fails at run time with a clear error.
use anyhow::{Context as _, anyhow, bail};
use std::{path::PathBuf, process::Command};

/// The programs (binaries of lb-ebpf) to build.
const PROGRAMS: [&str; 6] = [
    "lb-ebpf",
    "xdp-baseline",
    "xdp-pass",
    "xdp-bench-driver",
    "xdp-memory-floor",
    "xdp-ipip-decap",
];

const RUSTFLAGS: [&str; 4] = [
    "-Cdebuginfo=2",
    // bpf-linker emits BTF: map layouts for bpftool, line info for verifier logs.
    "-Clink-arg=--btf",
    "-Ctarget-cpu=v3",
    "-Ctarget-feature=+allows-misaligned-mem-access",
];

/// The packet tests' build of the balancer (lb-ebpf's `test-clock` feature), with `test-support`.
const TEST_CLOCK_BALANCER: &str = "lb-ebpf-test-clock";

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let skip = std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v == "true");
    let test_support = std::env::var_os("CARGO_FEATURE_TEST_SUPPORT").is_some();
    if skip {
        for program in PROGRAMS.iter().chain(&[TEST_CLOCK_BALANCER]) {
            std::fs::write(out_dir.join(program), [])?;
        }
        return Ok(());
    }
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest_dir
        .parent()
        .ok_or_else(|| anyhow!("lb-userspace has no parent directory"))?
        .join("lb-ebpf");
    println!("cargo:rerun-if-changed={}", ebpf_dir.display());
    println!(
        "cargo:rerun-if-changed={}",
        ebpf_dir.with_file_name("lb-common").display()
    );

    let target_dir = out_dir.join("ebpf-target");
    let built = target_dir.join("bpfel-unknown-none").join("release");
    build_ebpf(&ebpf_dir, &target_dir, &["--bins"])?;
    for program in PROGRAMS {
        std::fs::copy(built.join(program), out_dir.join(program))
            .with_context(|| format!("copying the XDP program {program}"))?;
    }
    if test_support {
        // Built after the others (it replaces `lb-ebpf` in the target directory) and copied
        // under its own name.
        build_ebpf(
            &ebpf_dir,
            &target_dir,
            &["--bin", "lb-ebpf", "--features", "test-clock"],
        )?;
        std::fs::copy(built.join("lb-ebpf"), out_dir.join(TEST_CLOCK_BALANCER))
            .context("copying the test-clock balancer")?;
    }
    Ok(())
}

/// `cargo build` of lb-ebpf for the BPF target, with `what` (which binaries, which features).
fn build_ebpf(
    ebpf_dir: &std::path::Path,
    target_dir: &std::path::Path,
    what: &[&str],
) -> anyhow::Result<()> {
    // aya-ebpf reads the host architecture from this cfg (as aya-build sets it).
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH")?;
    let mut rustflags: Vec<String> = RUSTFLAGS.iter().map(|f| f.to_string()).collect();
    rustflags.push(format!("--cfg=bpf_target_arch=\"{arch}\""));
    let output = Command::new("rustup")
        .args(["run", "nightly", "cargo", "build", "--package", "lb-ebpf"])
        .args(what)
        .args([
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(ebpf_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags.join("\x1f"))
        // The outer cargo's compiler is stable; the inner one must be nightly's.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS")
        .output()
        .context("cannot run `rustup run nightly cargo build` for lb-ebpf")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        for line in stderr.lines() {
            println!("cargo:warning={line}");
        }
        bail!("building the XDP programs failed (bpf-linker missing? run `cargo xtask setup`)");
    }
    // Compiler warnings of the XDP crate would otherwise go unseen; rustc's note that
    // `allows-misaligned-mem-access` is unstable (on the nightly we must use anyway) is not one.
    let known = ["allows-misaligned-mem-access", "generated 1 warning"];
    for line in stderr.lines().filter(|l| l.starts_with("warning")) {
        if !known.iter().any(|k| line.contains(k)) {
            println!("cargo:warning={line}");
        }
    }
    Ok(())
}
