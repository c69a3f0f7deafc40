//! `cargo xtask package`: the Debian package, `target/package/xdirectord_<version>_<arch>.deb`.
//!
//! Built by hand with dpkg-deb rather than cargo-deb: dpkg-deb and dpkg-shlibdeps are Debian's own
//! tools (dpkg and dpkg-dev), while cargo-deb is a crates.io program a fresh machine would first
//! have to compile; and half of the package is generated here anyway (the man page and the bash
//! completion, from `lb-userspace/src/usage.rs`). What it holds:
//!
//! | path | what |
//! |---|---|
//! | `/usr/sbin/xdirectord` | the binary, stripped |
//! | `/usr/share/man/man8/xdirectord.8.gz` | the man page, from the same source as `--help` |
//! | `/lib/systemd/system/xdirectord@.service` | one instance per configuration (`packaging/`) |
//! | `/usr/share/bash-completion/completions/xdirectord` | generated with the man page |
//! | `/etc/ha.d/resource.d/xdirectord` | heartbeat's resource script: a link to the binary |
//! | `/usr/share/doc/xdirectord/` | copyright, README, operations guide, example configuration |
//!
//! Nothing in `/etc` is a regular file, so there are no conffiles (dpkg keeps none for links);
//! no file is also in ldirectord's package, so the two install side by side. The maintainer
//! scripts only tell a running systemd to reload its units.

// The man page and the completion come from the same tables as `--help`; xtask cannot depend on
// lb-userspace (it must build before the BPF tool chain is installed), so it compiles that one
// dependency-free file itself.
#[path = "../../lb-userspace/src/usage.rs"]
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "--help's rendering is the binary's, not the package's"
    )
)]
mod usage;

use anyhow::{Context as _, Result, bail};
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{capture, cargo, run, workspace_root};

/// The package's name, and the binary's.
pub const NAME: &str = "xdirectord";

/// Where the package installs the systemd unit (bookworm's units live in /lib).
pub const UNIT_PATH: &str = "/lib/systemd/system/xdirectord@.service";
pub const BINARY_PATH: &str = "/usr/sbin/xdirectord";
pub const MAN_PATH: &str = "/usr/share/man/man8/xdirectord.8.gz";
pub const COMPLETION_PATH: &str = "/usr/share/bash-completion/completions/xdirectord";
pub const HA_RESOURCE_PATH: &str = "/etc/ha.d/resource.d/xdirectord";
pub const EXAMPLE_PATH: &str = "/usr/share/doc/xdirectord/examples/ldirectord.cf";

/// `cargo xtask package`: a release build, then the package in `<target>/package/`.
pub fn package() -> Result<()> {
    run(cargo().args([
        "build",
        "--release",
        "--package",
        "lb-userspace",
        "--bin",
        "xdirectord",
    ]))?;
    let target = target_dir();
    let deb = build_deb(
        &target.join("release/xdirectord"),
        &target.join("package"),
        Compression::Xz,
    )?;
    let size = fs::metadata(&deb)?.len();
    println!(
        "package: {} ({:.1} MiB)",
        deb.display(),
        size as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

/// The target directory this xtask was built in (`cargo xtask` builds it with the workspace's
/// settings, `CARGO_TARGET_DIR` included).
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .filter(|dir| dir.join("release").exists() || dir.join("debug").exists())
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// lb-userspace's version, the package's.
pub fn version() -> Result<String> {
    let manifest = fs::read_to_string(workspace_root().join("lb-userspace/Cargo.toml"))?;
    manifest
        .lines()
        .find_map(|l| {
            let value = l.strip_prefix("version")?.trim_start().strip_prefix('=')?;
            Some(value.trim().trim_matches('"').to_owned())
        })
        .context("lb-userspace/Cargo.toml has no version")
}

/// How dpkg-deb compresses the package's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// dpkg-deb's default, for a package people install.
    Xz,
    /// None, for a package a test installs at once (xz takes longer than the rest together).
    None,
}

/// Builds the package around `binary` (release for `cargo xtask package`; the tests pass their
/// debug build, which the package strips the same way) into `out_dir`; returns its path.
pub fn build_deb(binary: &Path, out_dir: &Path, compression: Compression) -> Result<PathBuf> {
    let root = workspace_root();
    let version = version()?;
    let arch = capture(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_owned();
    // dpkg-shlibdeps wants the Debian source layout: debian/control, debian/<package>/.
    let work = out_dir.join(format!("{NAME}-{version}"));
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    let tree = work.join("debian").join(NAME);
    fs::create_dir_all(&tree)?;

    let sbin = place(&tree, BINARY_PATH)?;
    run(Command::new("strip")
        .args(["--strip-unneeded", "-o"])
        .arg(&sbin)
        .arg(binary))
    .context("strip the binary (binutils)")?;
    fs::set_permissions(&sbin, fs::Permissions::from_mode(0o755))?;

    let man = gzip(usage::man_page(&version).as_bytes())?;
    write(&tree, MAN_PATH, &man)?;
    write(&tree, COMPLETION_PATH, usage::bash_completion().as_bytes())?;
    write(
        &tree,
        UNIT_PATH,
        &fs::read(root.join("packaging/xdirectord@.service"))?,
    )?;
    let doc = "/usr/share/doc/xdirectord";
    write(
        &tree,
        &format!("{doc}/copyright"),
        &fs::read(root.join("packaging/copyright"))?,
    )?;
    write(
        &tree,
        &format!("{doc}/README.md"),
        &fs::read(root.join("README.md"))?,
    )?;
    write(
        &tree,
        &format!("{doc}/operations.md"),
        &fs::read(root.join("docs/operations.md"))?,
    )?;
    write(
        &tree,
        EXAMPLE_PATH,
        &fs::read(root.join("examples/ldirectord.cf"))?,
    )?;
    let resource = place(&tree, HA_RESOURCE_PATH)?;
    std::os::unix::fs::symlink(BINARY_PATH, &resource)?;

    let control_dir = tree.join("DEBIAN");
    fs::create_dir_all(&control_dir)?;
    for script in ["postinst", "postrm"] {
        let path = control_dir.join(script);
        fs::copy(root.join("packaging").join(script), &path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
    }
    fs::write(control_dir.join("md5sums"), md5sums(&tree)?)?;
    let control = format!(
        "Package: {NAME}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: xdirectord maintainers <maintainers@xdirectord.invalid>\n\
         Installed-Size: {size}\n\
         Depends: {depends}\n\
         Suggests: resource-agents, heartbeat\n\
         Section: net\n\
         Priority: optional\n\
         Description: XDP layer-4 load balancer with ldirectord's control plane\n \
         xdirectord reads ldirectord's configuration files, runs the same health\n \
         checks and answers the same commands, with the same messages and exit\n \
         codes; packets are balanced by an XDP program in the network driver.\n \
         Comes with a systemd unit per configuration, a man page, and a heartbeat\n \
         resource script; Pacemaker drives it through ocf:heartbeat:ldirectord.\n",
        size = installed_size_kib(&tree)?,
        depends = depends(&work, &sbin)?,
    );
    fs::write(control_dir.join("control"), control)?;

    let deb = out_dir.join(format!("{NAME}_{version}_{arch}.deb"));
    run(Command::new("dpkg-deb")
        .arg(match compression {
            Compression::Xz => "-Zxz",
            Compression::None => "-Znone",
        })
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(&deb)
        .stdout(Stdio::null()))?;
    fs::remove_dir_all(&work)?;
    Ok(deb)
}

/// The path of `absolute` inside the package tree, its directory made (0755).
fn place(tree: &Path, absolute: &str) -> Result<PathBuf> {
    let path = tree.join(absolute.trim_start_matches('/'));
    let dir = path.parent().context("a file in a directory")?;
    fs::create_dir_all(dir)?;
    // Directories as Debian wants them whatever the umask.
    let mut d = dir;
    while d != tree {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755))?;
        d = d.parent().context("inside the tree")?;
    }
    Ok(path)
}

/// Writes a file (0644) at `absolute` inside the package tree.
fn write(tree: &Path, absolute: &str, bytes: &[u8]) -> Result<()> {
    let path = place(tree, absolute)?;
    fs::write(&path, bytes)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// `gzip -9n`, as Debian compresses man pages (no name or time stamp: reproducible).
fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write as _;
    let mut child = Command::new("gzip")
        .args(["-9n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("gzip")?;
    child
        .stdin
        .take()
        .context("gzip's input")?
        .write_all(bytes)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("gzip failed: {}", out.status);
    }
    Ok(out.stdout)
}

/// Every regular file outside DEBIAN, relative to the tree, in order.
fn files(tree: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut dirs = vec![tree.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() && path != tree.join("DEBIAN") {
                dirs.push(path);
            } else if kind.is_file() {
                found.push(path.strip_prefix(tree)?.to_path_buf());
            }
        }
    }
    found.sort();
    Ok(found)
}

/// DEBIAN/md5sums, as dh_md5sums writes it.
fn md5sums(tree: &Path) -> Result<String> {
    capture(Command::new("md5sum").args(files(tree)?).current_dir(tree))
}

/// Installed-Size: the files' sizes in KiB, rounded up per file as dpkg-gencontrol does.
fn installed_size_kib(tree: &Path) -> Result<u64> {
    let mut kib = 0;
    for file in files(tree)? {
        kib += fs::metadata(tree.join(file))?.len().div_ceil(1024);
    }
    Ok(kib)
}

/// The libraries' packages, from dpkg-shlibdeps (e.g. `libc6 (>= 2.34), libgcc-s1 (>= 4.2)`).
fn depends(work: &Path, binary: &Path) -> Result<String> {
    fs::write(
        work.join("debian/control"),
        format!("Source: {NAME}\n\nPackage: {NAME}\nArchitecture: any\n"),
    )?;
    let out = capture(
        Command::new("dpkg-shlibdeps")
            .arg("-O")
            .arg(format!(
                "-e{}",
                binary.strip_prefix(work)?.to_string_lossy()
            ))
            .current_dir(work),
    )
    .context("dpkg-shlibdeps (dpkg-dev)")?;
    out.lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_owned)
        .context("dpkg-shlibdeps printed no shlibs:Depends")
}
