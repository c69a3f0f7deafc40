//! `cargo xtask setup`: everything a fresh Debian machine lacks to build and test xdirectord.
//! Idempotent: each step checks first and says what it installs.

use anyhow::{Context as _, Result, bail};
use std::path::PathBuf;
use std::process::Command;

use crate::{capture, run};

/// Debian packages the build, the tests, the lab and the benchmarks use.
pub const DEBIAN_PACKAGES: &[&str] = &[
    "bpftool",         // map and program inspection in tests and docs
    "iproute2",        // ip netns / link / neigh for the namespace tests and the lab
    "ethtool",         // checksum offload off on test veths
    "curl",            // the demo's client
    "ldirectord",      // the reference implementation the configuration tests compare against
    "ipvsadm",         // `ipvsadm -L -n` layout reference
    "tcpdump",         // debugging the lab
    "python3",         // the lab's web servers
    "ca-certificates", // the CA store https health checks verify against, as ldirectord's
    "qemu-system-x86", // the IPVS test guest (this kernel has no IPVS): xtask/src/vm.rs
    "busybox-static",  // the guest's initramfs
    "iputils-ping",    // ping: the test guest's smoke test, debugging
    "dpkg-dev",        // dpkg-shlibdeps: the package's library dependencies (`cargo xtask package`)
    "systemd",         // systemd-analyze verify for the package's unit (no systemd as PID 1 needed)
    "man-db",          // `man` for the package's man page (systemd-analyze checks Documentation=)
    "procps",          // pgrep, which the Pacemaker resource agent falls back to
    "resource-agents", // Pacemaker's ocf:heartbeat:ldirectord and ocf-tester, run against xdirectord
    "heartbeat",       // heartbeat's ResourceManager, which runs /etc/ha.d/resource.d scripts
];

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn setup() -> Result<()> {
    rust_src()?;
    bpf_linker()?;
    debian_packages(DEBIAN_PACKAGES)?;
    bpffs()?;
    Ok(())
}

/// `-Z build-std=core` needs the nightly toolchain's sources.
fn rust_src() -> Result<()> {
    let installed = capture(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        println!(
            "setup: installing rust-src for the nightly toolchain (needed to build the XDP program)"
        );
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

/// bpf-linker, built against the nightly toolchain's own libLLVM (no system LLVM matches it).
fn bpf_linker() -> Result<()> {
    let current = Command::new("bpf-linker").arg("--version").output();
    if let Ok(out) = &current
        && String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION)
    {
        return Ok(());
    }
    let verbose = capture(Command::new("rustc").args(["+nightly", "-vV"]))?;
    let llvm_major = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("rustc +nightly -vV does not name its LLVM version")?
        .to_owned();
    let sysroot = PathBuf::from(
        capture(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?.trim(),
    );
    let lib = std::fs::read_dir(sysroot.join("lib"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| name.starts_with("libLLVM.so.") || name.starts_with("libLLVM-"))
        .context("the nightly toolchain has no libLLVM")?;
    let home = std::env::var("HOME").context("HOME is not set")?;
    let prefix = PathBuf::from(home).join(".local/share/bpf-linker-llvm");
    std::fs::create_dir_all(prefix.join("lib"))?;
    for link in [lib.as_str(), "libLLVM.so"] {
        let path = prefix.join("lib").join(link);
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(sysroot.join("lib").join(&lib), &path)?;
    }
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against nightly's LLVM {llvm_major} \
         ({lib}); this takes a few minutes"
    );
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
        ])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{llvm_major}"),
        ])
        .env("LLVM_PREFIX", &prefix))?;
    Ok(())
}

fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Installs the Debian packages that are missing (one `apt-get update` first).
pub fn debian_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("setup: installing Debian packages: {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(())
}

/// The agent pins under /sys/fs/bpf; mount bpffs when the machine has not.
fn bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf"))
    {
        return Ok(());
    }
    println!("setup: mounting bpffs on /sys/fs/bpf");
    std::fs::create_dir_all("/sys/fs/bpf")?;
    let status = Command::new("mount")
        .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
        .status()?;
    if !status.success() {
        bail!("mount -t bpf bpf /sys/fs/bpf failed (are you root?)");
    }
    Ok(())
}
