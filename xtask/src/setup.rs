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
    "prometheus",      // promtool and the server the metrics tests scrape the agent with
    // The real servers the health-check tests start (lb-health/tests/servers/), each on
    // loopback with private data; none of their system-wide daemons is started (see
    // `debian_packages`). inn2 is installed apart (`inn2`).
    "vsftpd",
    "exim4-daemon-light",
    "dovecot-imapd",
    "dovecot-pop3d",
    "slapd",
    "ldap-utils",
    "mariadb-server",
    "postgresql",
    "kamailio",
    "freeradius",
    "freeradius-utils",
    // ldirectord's own checks, run by the tests to compare verdicts (its mysql and pgsql
    // checks need these DBI drivers; the other Perl libraries come with ldirectord).
    "libdbd-mysql-perl",
    "libdbd-pg-perl",
];

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn setup() -> Result<()> {
    rust_src()?;
    bpf_linker()?;
    debian_packages(DEBIAN_PACKAGES)?;
    inn2()?;
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
///
/// Several of them (slapd, mariadb-server, postgresql, dovecot, exim4, vsftpd, kamailio,
/// freeradius, inn2) would start a system-wide daemon on its well-known port from their
/// maintainer scripts. A policy-rc.d that forbids every start is in place while they install
/// (Debian's container images ship one; when the machine has none, one is written for the
/// install and removed after), so none runs: the tests start their own, on loopback ports.
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
    let _no_daemons = NoDaemons::forbid()?;
    run(&mut apt_install(&missing))?;
    Ok(())
}

fn apt_install(packages: &[&str]) -> Command {
    let mut command = Command::new("apt-get");
    command
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive");
    command
}

/// A policy-rc.d that forbids starting services, for as long as it lives; one the machine
/// already has is left as it is.
struct NoDaemons {
    written: bool,
}

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

impl NoDaemons {
    fn forbid() -> Result<NoDaemons> {
        if std::path::Path::new(POLICY_RC_D).exists() {
            return Ok(NoDaemons { written: false });
        }
        std::fs::write(
            POLICY_RC_D,
            "#!/bin/sh\n# xtask setup: no daemon starts while packages install\nexit 101\n",
        )
        .with_context(|| format!("writing {POLICY_RC_D}"))?;
        std::fs::set_permissions(
            POLICY_RC_D,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
        )?;
        Ok(NoDaemons { written: true })
    }
}

impl Drop for NoDaemons {
    fn drop(&mut self) {
        if self.written {
            let _ = std::fs::remove_file(POLICY_RC_D);
        }
    }
}

/// inn2, for the nntp check's tests. Its maintainer script refuses a host name without a
/// domain (`innconfval: hostname does not resolve or domain not set in inn.conf`), as on a
/// machine named `vm`: the package's own inn.conf then gets `domain: xdirectord.test` and the
/// package is configured again. nnrpd also needs an overview database, which only innd (never
/// run here) would create: `makehistory -O -x` builds an empty one.
fn inn2() -> Result<()> {
    const INN_CONF: &str = "/etc/news/inn.conf";
    if !is_installed("inn2") {
        println!("setup: installing inn2 (nnrpd answers the nntp check's tests)");
        run(Command::new("apt-get").args(["update", "-q"]))?;
        let _no_daemons = NoDaemons::forbid()?;
        if run(&mut apt_install(&["inn2"])).is_err() {
            let conf = std::fs::read_to_string(INN_CONF)
                .with_context(|| format!("inn2 failed to install and left no {INN_CONF}"))?;
            if !conf.lines().any(|l| l.starts_with("domain:")) {
                println!("setup: inn2 wants a domain; {INN_CONF} gets `domain: xdirectord.test`");
                std::fs::write(INN_CONF, format!("{conf}\ndomain: xdirectord.test\n"))?;
            }
            run(Command::new("dpkg")
                .args(["--configure", "inn2"])
                .env("DEBIAN_FRONTEND", "noninteractive"))?;
        }
    }
    if !std::path::Path::new("/var/spool/news/overview/group.index").exists() {
        println!("setup: building inn2's (empty) overview database for nnrpd");
        run(Command::new("runuser").args([
            "-u",
            "news",
            "--",
            "/usr/lib/news/bin/makehistory",
            "-O",
            "-x",
        ]))?;
    }
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
