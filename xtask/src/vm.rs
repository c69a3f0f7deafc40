//! The IPVS test guest: Debian's 6.1 kernel under QEMU (TCG), running this machine's own userland.
//!
//! This machine's kernel has no IPVS and cannot load modules, so the IPVS tests run in a guest
//! (docs/ipvs-vm.md). The guest is two files, built once per machine and kernel version and
//! cached in `<target>/vm/<package>_<version>/` (`<target>` is the cargo target directory, see
//! [`cache_root`]):
//!
//! * `vmlinuz`: the kernel of the `linux-image-6.1.0-*-amd64` package that bookworm's
//!   `linux-image-amd64` depends on (`apt-get download`, then `dpkg-deb -x`);
//! * `initramfs.cpio.gz`: busybox-static, the modules of [`MODULES`] with their dependencies, and
//!   `/init` ([`INIT`], `vm/init.sh`).
//!
//! The package ships no `modules.dep` and the initramfs has no modprobe: the modules are stored as
//! `/lib/modules/NN-name.ko`, numbered in insertion order, which comes from each module's own
//! `depends=` field (its ELF `.modinfo` section, read here). `crc32c_generic` comes first:
//! libcrc32c needs it without declaring it. A change to the init script, the module list or
//! busybox rebuilds the cache (`inputs` holds a hash of them); a new kernel package replaces it.
//!
//! At boot `/init` mounts the host's `/` read-only over virtio-9p (tag `hostroot`), puts an
//! overlay with a tmpfs upper over it, mounts proc, sys, dev, devpts, bpffs and fresh tmpfs on
//! `/run`, `/tmp` and `/dev/shm`, mounts the writable exchange share (tag `exchange`, no cache) on
//! `/exchange`, and serves jobs from it (a shell command line each, run with `/bin/sh -c` in the
//! chroot; woken by a line on its second serial port; the protocol is in `init.sh` and the host's
//! side in the tests crate's `vm` module).
//! With `xdvm.shell` on the kernel command line it gives an interactive shell instead
//! (`cargo xtask vm shell`).

use anyhow::{Context as _, Result, bail, ensure};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{capture, run, workspace_root};

/// The guest's `/init` (busybox sh).
pub const INIT: &str = include_str!("vm/init.sh");

/// The modules the guest loads, with their dependencies (added from each module's `depends=`).
/// Built-in ones are skipped.
pub const MODULES: &[&str] = &[
    // First: libcrc32c (nf_conntrack, ip_vs) needs it without declaring it.
    "crc32c_generic",
    // The host's root and the exchange share: virtio-pci, 9p over virtio, the overlay.
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "overlay",
    "virtio_rng",
    // IPVS and every scheduler.
    "nf_conntrack",
    "ip_vs",
    "ip_vs_rr",
    "ip_vs_wrr",
    "ip_vs_lc",
    "ip_vs_wlc",
    "ip_vs_lblc",
    "ip_vs_lblcr",
    "ip_vs_dh",
    "ip_vs_sh",
    "ip_vs_sed",
    "ip_vs_nq",
    "ip_vs_fo",
    "ip_vs_ovf",
    "ip_vs_mh",
    // Networks inside the guest: namespaces joined by veths or a bridge, tunnels, tc programs.
    "veth",
    "dummy",
    "bridge",
    "macvlan",
    // VLAN devices (this machine's kernel has none): the 802.1Q trunk test.
    "8021q",
    "ipip",
    "ip6_tunnel",
    "sch_ingress",
    "cls_bpf",
];

/// The host's busybox; `busybox-static` installs a static one here.
const BUSYBOX: &str = "/bin/busybox";
/// Bumped when the initramfs's layout changes in a way the other inputs do not show.
const FORMAT: &str = "xdvm-1";
/// The guest's memory.
pub const MEMORY_MIB: u32 = 2048;
/// The guest's vCPUs. Multi-threaded TCG works, but on two host cores a second vCPU made the
/// guest slower (boot, single jobs and four concurrent ones alike): it competes with QEMU's main
/// thread, which serves the 9p shares.
pub const CPUS: u32 = 1;

/// A built guest.
#[derive(Debug, Clone)]
pub struct Guest {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// The kernel package and version, e.g. `linux-image-6.1.0-57-amd64_6.1.192-3`.
    pub package: String,
    /// The modules in the initramfs, in insertion order.
    pub modules: Vec<String>,
}

/// Where guests are cached: `vm/` in the target directory: `$CARGO_TARGET_DIR`, else the one
/// this program was built in (the ancestor of its executable that holds cargo's `CACHEDIR.TAG`),
/// else the workspace's `target/`.
pub fn cache_root() -> PathBuf {
    let from_env = std::env::var_os("CARGO_TARGET_DIR").map(|dir| workspace_root().join(dir));
    let from_exe = || {
        let exe = std::env::current_exe().ok()?;
        exe.ancestors()
            .skip(1)
            .find(|dir| dir.join("CACHEDIR.TAG").exists())
            .map(Path::to_path_buf)
    };
    from_env
        .or_else(from_exe)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("vm")
}

/// The guest, built first if the cache lacks it or holds one built from other inputs. Several
/// processes may call this at once: one builds, the others wait for it.
pub fn guest() -> Result<Guest> {
    let root = cache_root();
    fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let (name, version) = kernel_package()?;
    let package = format!("{name}_{version}");
    let dir = root.join(&package);
    let busybox = fs::read(BUSYBOX).with_context(|| {
        format!("cannot read {BUSYBOX}: install busybox-static (`cargo xtask setup`)")
    })?;
    ensure!(
        !has_interpreter(&busybox)?,
        "{BUSYBOX} is dynamically linked: the guest needs busybox-static (`cargo xtask setup`)"
    );
    let inputs = format!(
        "{:016x}\n",
        fnv1a([
            FORMAT.as_bytes(),
            INIT.as_bytes(),
            MODULES.join(",").as_bytes(),
            &busybox
        ])
    );

    let lock = fs::File::create(root.join("lock"))?;
    // SAFETY: flock on a file we hold open; released when it closes.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        bail!(
            "flock {}: {}",
            root.display(),
            std::io::Error::last_os_error()
        );
    }
    let guest = Guest {
        kernel: dir.join("vmlinuz"),
        initramfs: dir.join("initramfs.cpio.gz"),
        package: package.clone(),
        modules: Vec::new(),
    };
    let stamp = dir.join("inputs");
    if fs::read_to_string(&stamp).is_ok_and(|s| s == inputs)
        && guest.kernel.exists()
        && guest.initramfs.exists()
    {
        let modules = fs::read_to_string(dir.join("modules"))?
            .lines()
            .map(str::to_owned)
            .collect();
        return Ok(Guest { modules, ..guest });
    }

    let work = root.join(format!("build-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    let built = build_guest(&work, &dir, &name, &version, &busybox);
    let _ = fs::remove_dir_all(&work);
    let modules = built?;
    fs::write(dir.join("modules"), modules.join("\n") + "\n")?;
    fs::write(&stamp, inputs)?;
    // Guests of older kernel packages are not used again.
    for entry in fs::read_dir(&root)?.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if file_name.starts_with("linux-image-") && *file_name != *package {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    out!(
        "vm: guest ready in {} ({} modules)",
        dir.display(),
        modules.len()
    );
    Ok(Guest { modules, ..guest })
}

/// Downloads and unpacks the kernel package in `work`, then writes `vmlinuz` and the initramfs
/// into `dir`. Returns the modules in insertion order.
fn build_guest(
    work: &Path,
    dir: &Path,
    name: &str,
    version: &str,
    busybox: &[u8],
) -> Result<Vec<String>> {
    fs::create_dir_all(work)?;
    fs::create_dir_all(dir)?;
    out!(
        "vm: building the IPVS test guest in {} (once per machine and kernel version)",
        dir.display()
    );
    out!("vm: downloading Debian's {name} {version}");
    let deb = download(work, name, version)?;
    out!("vm: unpacking {}", deb.display());
    let unpacked = work.join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    fs::remove_file(&deb)?;

    let release = name
        .strip_prefix("linux-image-")
        .context("not a linux-image package")?;
    let vmlinuz = unpacked.join(format!("boot/vmlinuz-{release}"));
    let module_dir = unpacked.join(format!("lib/modules/{release}"));
    let modules = ModuleTree::read(&module_dir)?;
    let order = modules.insertion_order(MODULES)?;
    out!(
        "vm: writing the initramfs: busybox, /init and {} modules",
        order.len()
    );

    let mut cpio = Cpio::default();
    for d in [
        "bin",
        "dev",
        "proc",
        "sys",
        "lower",
        "rw",
        "newroot",
        "lib",
        "lib/modules",
    ] {
        cpio.dir(d);
    }
    cpio.char_device("dev/console", 5, 1);
    cpio.file("bin/busybox", 0o755, busybox);
    cpio.file("init", 0o755, INIT.as_bytes());
    for (i, module) in order.iter().enumerate() {
        let data = fs::read(&modules.files[module])?;
        cpio.file(&format!("lib/modules/{i:02}-{module}.ko"), 0o644, &data);
    }
    let raw = work.join("initramfs.cpio");
    fs::write(&raw, cpio.finish())?;
    run(Command::new("gzip").args(["-n", "-6", "-f"]).arg(&raw))?;
    // Into place by rename: a reader never sees half a file.
    fs::rename(
        work.join("initramfs.cpio.gz"),
        dir.join("initramfs.cpio.gz"),
    )?;
    let kernel_tmp = work.join("vmlinuz");
    fs::copy(&vmlinuz, &kernel_tmp)
        .with_context(|| format!("the package has no {}", vmlinuz.display()))?;
    fs::rename(&kernel_tmp, dir.join("vmlinuz"))?;
    Ok(order)
}

/// The kernel package bookworm's `linux-image-amd64` depends on, and its version.
fn kernel_package() -> Result<(String, String)> {
    let show = || {
        capture(Command::new("apt-cache").args(["show", "--no-all-versions", "linux-image-amd64"]))
    };
    let text = match show() {
        Ok(text) => text,
        Err(_) if crate::lab::is_root() => {
            out!("vm: apt-cache does not know linux-image-amd64; running apt-get update");
            run(Command::new("apt-get").args(["update", "-q"]))?;
            show()?
        }
        Err(e) => return Err(e.context("run `apt-get update` as root")),
    };
    parse_kernel_dependency(&text)
        .context("linux-image-amd64 depends on no linux-image-*-amd64 package")
}

/// `Depends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)` → the name and the version.
fn parse_kernel_dependency(apt_cache_show: &str) -> Option<(String, String)> {
    let depends = apt_cache_show
        .lines()
        .find_map(|l| l.strip_prefix("Depends:"))?;
    depends.split([',', '|']).find_map(|dep| {
        let dep = dep.trim();
        let (name, rest) = dep.split_once(' ').unwrap_or((dep, ""));
        let version = rest
            .trim()
            .strip_prefix("(=")?
            .trim()
            .strip_suffix(')')?
            .trim();
        (name.starts_with("linux-image-") && name.ends_with("-amd64"))
            .then(|| (name.to_owned(), version.to_owned()))
    })
}

/// `apt-get download NAME=VERSION` into `dir`, once more after `apt-get update` if the lists are
/// stale.
fn download(dir: &Path, name: &str, version: &str) -> Result<PathBuf> {
    let get = || {
        let mut command = Command::new("apt-get");
        command.current_dir(dir).arg("-q");
        if crate::lab::is_root() {
            // As root apt drops to the _apt user, which cannot write here: a warning, no more.
            command.args(["-o", "APT::Sandbox::User=root"]);
        }
        run(command.args(["download", &format!("{name}={version}")]))
    };
    if let Err(e) = get() {
        ensure!(crate::lab::is_root(), "{e:#}");
        out!("vm: download failed ({e:#}); running apt-get update and trying once more");
        run(Command::new("apt-get").args(["update", "-q"]))?;
        get()?;
    }
    fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download left no .deb in {}", dir.display()))
}

/// The modules of an unpacked kernel package.
struct ModuleTree {
    /// Module name (`-` as `_`) → its file.
    files: HashMap<String, PathBuf>,
    builtin: HashSet<String>,
}

impl ModuleTree {
    fn read(dir: &Path) -> Result<ModuleTree> {
        let mut files = HashMap::new();
        let mut pending = vec![dir.join("kernel")];
        while let Some(d) = pending.pop() {
            for entry in fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
                let path = entry?.path();
                if path.is_dir() {
                    pending.push(path);
                } else if let Some(stem) = path.file_name().and_then(|n| n.to_str())
                    && let Some(stem) = stem.strip_suffix(".ko")
                {
                    files.insert(module_name(stem), path);
                }
            }
        }
        let builtin = fs::read_to_string(dir.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit('/').next()?.strip_suffix(".ko").map(module_name))
            .collect();
        ensure!(!files.is_empty(), "no modules in {}", dir.display());
        Ok(ModuleTree { files, builtin })
    }

    /// `wanted` and their dependencies, each after the modules it depends on.
    fn insertion_order(&self, wanted: &[&str]) -> Result<Vec<String>> {
        let mut order = Vec::new();
        for module in wanted {
            self.visit(&module_name(module), &mut order, &mut Vec::new())?;
        }
        Ok(order)
    }

    fn visit(&self, module: &str, order: &mut Vec<String>, path: &mut Vec<String>) -> Result<()> {
        if order.iter().any(|m| m == module) || self.builtin.contains(module) {
            return Ok(());
        }
        ensure!(
            !path.iter().any(|m| m == module),
            "modules depend on each other in a circle: {path:?}"
        );
        let file = self
            .files
            .get(module)
            .with_context(|| format!("the kernel package has no module {module}"))?;
        path.push(module.to_owned());
        for dependency in modinfo_depends(&fs::read(file)?)
            .with_context(|| format!("reading {}", file.display()))?
        {
            self.visit(&module_name(&dependency), order, path)?;
        }
        path.pop();
        order.push(module.to_owned());
        Ok(())
    }
}

/// Module names use `_` where file names may use `-`.
fn module_name(name: &str) -> String {
    name.replace('-', "_")
}

/// A little-endian field of an ELF file.
fn le(data: &[u8], at: usize, len: usize) -> Result<u64> {
    let bytes = data.get(at..at + len).context("truncated ELF file")?;
    Ok(bytes
        .iter()
        .rev()
        .fold(0u64, |value, &b| (value << 8) | u64::from(b)))
}

fn check_elf64(data: &[u8]) -> Result<()> {
    ensure!(
        data.starts_with(b"\x7fELF") && data.get(4) == Some(&2) && data.get(5) == Some(&1),
        "not a 64-bit little-endian ELF file"
    );
    Ok(())
}

/// The modules named by the `depends=` field of a kernel module's `.modinfo` section.
fn modinfo_depends(module: &[u8]) -> Result<Vec<String>> {
    check_elf64(module)?;
    let shoff = le(module, 0x28, 8)? as usize;
    let shentsize = le(module, 0x3a, 2)? as usize;
    let shnum = le(module, 0x3c, 2)? as usize;
    let shstrndx = le(module, 0x3e, 2)? as usize;
    let section = |i: usize| -> Result<(u64, usize, usize)> {
        let at = shoff + i * shentsize;
        Ok((
            le(module, at, 4)?,
            le(module, at + 24, 8)? as usize,
            le(module, at + 32, 8)? as usize,
        ))
    };
    let (_, names_at, names_len) = section(shstrndx)?;
    let names = module
        .get(names_at..names_at + names_len)
        .context("bad section name table")?;
    for i in 0..shnum {
        let (name, at, len) = section(i)?;
        let name = names
            .get(name as usize..)
            .and_then(|n| n.split(|&b| b == 0).next())
            .unwrap_or_default();
        if name != b".modinfo" {
            continue;
        }
        let info = module.get(at..at + len).context("bad .modinfo section")?;
        return Ok(info
            .split(|&b| b == 0)
            .filter_map(|field| field.strip_prefix(b"depends="))
            .flat_map(|list| list.split(|&b| b == b','))
            .filter(|m| !m.is_empty())
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect());
    }
    bail!("no .modinfo section")
}

/// Whether an ELF executable names a program interpreter (is dynamically linked).
fn has_interpreter(executable: &[u8]) -> Result<bool> {
    check_elf64(executable)?;
    let phoff = le(executable, 0x20, 8)? as usize;
    let phentsize = le(executable, 0x36, 2)? as usize;
    let phnum = le(executable, 0x38, 2)? as usize;
    const PT_INTERP: u64 = 3;
    for i in 0..phnum {
        if le(executable, phoff + i * phentsize, 4)? == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A cpio archive in the "newc" format the kernel unpacks as an initramfs.
#[derive(Default)]
struct Cpio {
    data: Vec<u8>,
    inode: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), content: &[u8]) {
        self.inode += 1;
        let name_size = name.len() + 1;
        let header = format!(
            "070701{:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{name_size:08x}{:08x}",
            self.inode,
            0,
            0,
            1,
            0,
            content.len(),
            0,
            0,
            rdev.0,
            rdev.1,
            0,
        );
        self.data.extend_from_slice(header.as_bytes());
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(content);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.data.len().is_multiple_of(4) {
            self.data.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, permissions: u32, content: &[u8]) {
        self.entry(name, 0o100_000 | permissions, (0, 0), content);
    }

    fn char_device(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, 0o020_600, (major, minor), &[]);
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.data
    }
}

/// FNV-1a over several byte strings, each followed by its length (so no two splits collide).
fn fnv1a<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for part in parts {
        for &b in part.iter().chain(&(part.len() as u64).to_le_bytes()) {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// What the guest does after boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Serve jobs from the exchange share; the serial console is the command's standard output.
    /// The guest's second serial port is the Unix socket `port` (QEMU listens on it): the host
    /// writes a line there after submitting a job, and `poweroff` to stop the guest.
    Jobs { port: PathBuf },
    /// An interactive shell on the serial console, which is the terminal (`-nographic`).
    Shell,
}

/// The QEMU command line for `guest`, sharing the host's `/` read-only and `exchange` writable.
/// The caller chooses the command's standard input and output (the serial console).
pub fn qemu(guest: &Guest, exchange: &Path, mode: &Mode) -> Command {
    let mut append = "console=ttyS0 quiet panic=-1".to_owned();
    if *mode == Mode::Shell {
        append.push_str(" xdvm.shell");
    }
    let mut command = Command::new("qemu-system-x86_64");
    command
        // KVM did not boot Debian's kernel here (shared/ENVIRONMENT.md); TCG does. `max`: every
        // instruction set extension TCG has, for binaries built for newer CPUs.
        .args(["-accel", "tcg", "-cpu", "max"])
        .args(["-smp", &CPUS.to_string(), "-m", &MEMORY_MIB.to_string()])
        .args(["-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(&guest.kernel)
        .arg("-initrd")
        .arg(&guest.initramfs)
        .args(["-append", &append])
        .args([
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
        ])
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=exchange,security_model=none",
            exchange.display()
        ))
        .args(["-device", "virtio-rng-pci"]);
    match mode {
        Mode::Jobs { port } => command
            .args([
                "-display", "none", "-vga", "none", "-monitor", "none", "-serial", "stdio",
            ])
            .arg("-chardev")
            .arg(format!(
                "socket,id=jobs,path={},server=on,wait=off",
                port.display()
            ))
            .args(["-serial", "chardev:jobs"]),
        Mode::Shell => command.arg("-nographic"),
    };
    command
}

/// Checks that QEMU is installed.
pub fn check_qemu() -> Result<()> {
    let found = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ensure!(
        found,
        "qemu-system-x86_64 is not installed: run `cargo xtask setup`"
    );
    Ok(())
}

/// `cargo xtask vm build`: builds the guest unless cached, and says where it is.
pub fn build() -> Result<()> {
    let guest = guest()?;
    out!("kernel:    {}", guest.kernel.display());
    out!("initramfs: {}", guest.initramfs.display());
    out!("modules:   {}", guest.modules.join(" "));
    Ok(())
}

/// `cargo xtask vm shell`: boots the guest with a shell on this terminal. The exchange share is a
/// fresh directory under the cache, shown in the guest as `/exchange`.
pub fn shell() -> Result<()> {
    check_qemu()?;
    let guest = guest()?;
    let exchange = cache_root().join(format!("shell-{}", std::process::id()));
    fs::create_dir_all(&exchange)?;
    fs::set_permissions(&exchange, fs::Permissions::from_mode(0o755))?;
    out!(
        "vm: booting {} (TCG: takes a while); the exchange share is {} (/exchange in the guest); \
         `exit` powers it off, Ctrl-A x kills it",
        guest.package,
        exchange.display()
    );
    let _ = std::io::stdout().flush();
    let status = qemu(&guest, &exchange, &Mode::Shell).status();
    let _ = fs::remove_dir_all(&exchange);
    let status = status.context("cannot start qemu-system-x86_64")?;
    ensure!(status.success(), "qemu-system-x86_64 failed: {status}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_dependency() {
        let show = "Package: linux-image-amd64\nVersion: 6.1.192-3\n\
                    Depends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)\nSection: kernel\n";
        assert_eq!(
            parse_kernel_dependency(show),
            Some((
                "linux-image-6.1.0-57-amd64".to_owned(),
                "6.1.192-3".to_owned()
            ))
        );
        assert_eq!(parse_kernel_dependency("Depends: kmod\n"), None);
    }

    #[test]
    fn cpio_layout() {
        let mut cpio = Cpio::default();
        cpio.file("init", 0o755, b"abc");
        let data = cpio.finish();
        assert!(data.starts_with(b"070701"));
        assert_eq!(data.len() % 4, 0);
        // Header, "init\0" padded to 4, "abc" padded to 4, then the trailer.
        assert_eq!(&data[110..115], b"init\0");
        assert_eq!(&data[116..119], b"abc");
        assert_eq!(&data[120..126], b"070701");
    }

    #[test]
    fn busybox_and_modules_are_read_from_their_elf_headers() {
        // This test binary is dynamically linked.
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(has_interpreter(&me).unwrap());
        assert!(modinfo_depends(&me).is_err());
    }
}
