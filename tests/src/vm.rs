//! The IPVS test guest: Debian's 6.1 kernel (IPVS, every scheduler, ipip, veth, bridge… as
//! modules) under QEMU, running this machine's own userland, for tests that need a kernel this
//! machine lacks. See docs/ipvs-vm.md.
//!
//! ```no_run
//! let vm = xdirectord_tests::vm::Vm::shared();
//! vm.run_ok("ipvsadm -A -t 10.0.0.1:80 -s wrr");
//! let out = vm.run("ipvsadm -L -n");
//! assert!(out.success(), "{out:?}");
//! ```
//!
//! # Layout
//! * The guest (kernel and initramfs) is built and cached by [`xtask::vm::guest`], in
//!   `<target>/vm/`, once per machine and kernel package; a fresh machine builds it on the first
//!   boot (it says so on standard output; about half a minute).
//! * The guest's root is the host's `/`, read-only over virtio-9p, under an overlay whose upper
//!   layer is a tmpfs: every binary of this machine runs there (bash, perl, ldirectord, ipvsadm,
//!   curl, python3, this workspace's `target/…/xdirectord`) by its host path, and the guest may
//!   write anywhere, in memory, without touching the host. Files that change on the host after
//!   the boot may look stale in the guest (the share is cached): build before booting, and pass
//!   files through [`Vm::write_file`] instead.
//! * Each VM has a directory of its own, `$TMPDIR/xdirectord-vm-<pid>-<n>/`: `console.log` (the
//!   serial console and QEMU's messages) and `exchange/`, shared writable and uncached with the
//!   guest as `/exchange`: `jobs/` (the host submits a job by renaming a complete directory
//!   holding `cmd` and `timeout` into it), `run/` (the guest claims a job by moving it here and
//!   writes `stdout`, `stderr` and, last, by rename, `status`), `files/` ([`Vm::write_file`]),
//!   `ready` (the guest is up) and `poweroff` (the host asks it to stop); and `port`, a Unix
//!   socket that is the guest's second serial port, where the host writes a line after each job
//!   it submits, so that the guest's job loop sleeps until there is work.
//! * A job is `/bin/sh -c CMD` in the guest's root, as root, in the guest's initial network
//!   namespace (only `lo`; no network to the host), under coreutils `timeout`. Jobs run
//!   concurrently, so [`Vm`] may be used from several threads at once; what they change in the
//!   guest (IPVS tables, namespaces, files) is shared by all of them.
//! * Dropping a [`Vm`] (also while a test panics) powers the guest off, kills QEMU if it does not
//!   stop and removes the directory. [`Vm::shared`]'s guest, never dropped, is taken down when
//!   the test binary exits. QEMU also dies with the test process itself (`PR_SET_PDEATHSIG`), and
//!   the directories of test processes that died are removed at the next boot.

use std::fs;
use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// Where the guest sees the exchange share.
pub const GUEST_EXCHANGE: &str = "/exchange";
/// A job's time limit unless the caller gives one ([`Vm::run_timeout`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a boot may take: TCG on a loaded two-core machine is slow.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long after a job's own time limit the guest may take to report it.
const ANSWER_GRACE: Duration = Duration::from_secs(60);
/// How long the guest may take to power off before QEMU is killed.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(20);
const DIR_PREFIX: &str = "xdirectord-vm-";

/// What a job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The exit status of `/bin/sh -c CMD`: 124 if it ran past its time limit (coreutils
    /// `timeout`), 137 if it then had to be killed, 128+N if signal N ended it.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// A running guest.
pub struct Vm {
    /// `$TMPDIR/xdirectord-vm-<pid>-<n>`.
    dir: PathBuf,
    exchange: PathBuf,
    qemu: Arc<Qemu>,
    waiter: Mutex<Option<JoinHandle<()>>>,
    /// The guest's second serial port: a line wakes its job loop.
    port: Mutex<Option<UnixStream>>,
    next_job: AtomicU64,
    down: AtomicBool,
    /// The guest that was booted.
    pub guest: xtask::vm::Guest,
    /// From starting QEMU to the guest serving jobs.
    pub boot_time: Duration,
}

/// QEMU's process, waited for by a thread of its own.
struct Qemu {
    pid: libc::pid_t,
    exit: Mutex<Option<ExitStatus>>,
    exited: Condvar,
}

impl Qemu {
    fn status(&self) -> Option<ExitStatus> {
        *self.exit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits up to `wait` for QEMU to exit; whether it has.
    fn wait(&self, wait: Duration) -> bool {
        let exit = self.exit.lock().unwrap_or_else(|p| p.into_inner());
        let (exit, _) = self
            .exited
            .wait_timeout_while(exit, wait, |e| e.is_none())
            .unwrap_or_else(|p| p.into_inner());
        exit.is_some()
    }

    fn kill(&self) {
        // Under the lock: once the waiter has reaped QEMU its pid may belong to another process.
        let exit = self.exit.lock().unwrap_or_else(|p| p.into_inner());
        if exit.is_none() {
            // SAFETY: plain kill(2) of our own, not yet reaped, child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }
}

impl Vm {
    /// Builds the guest unless cached, boots it and waits until it serves jobs. Panics (with the
    /// console's output) if it cannot.
    pub fn boot() -> Vm {
        Vm::try_boot().unwrap_or_else(|e| panic!("the test VM did not boot: {e:#}"))
    }

    /// One guest for the whole test binary, booted by the first call and taken down when the
    /// binary exits. Tests that share it must not undo each other's work: use names of their own.
    pub fn shared() -> &'static Vm {
        static SHARED: OnceLock<Vm> = OnceLock::new();
        extern "C" fn take_down() {
            if let Some(vm) = SHARED.get() {
                vm.shut_down();
            }
        }
        SHARED.get_or_init(|| {
            let vm = Vm::boot();
            // SAFETY: registers a plain function; libtest leaves through exit(3), which runs it.
            unsafe { libc::atexit(take_down) };
            vm
        })
    }

    pub fn try_boot() -> Result<Vm> {
        xtask::vm::check_qemu()?;
        let guest = xtask::vm::guest()?;
        remove_dead_dirs();
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let exchange = dir.join("exchange");
        let _ = fs::remove_dir_all(&dir);
        for sub in ["jobs", "run", "files"] {
            fs::create_dir_all(exchange.join(sub))
                .with_context(|| format!("cannot create {}", exchange.display()))?;
        }
        let console = fs::File::create(dir.join("console.log"))?;
        let port = dir.join("port");
        let mode = xtask::vm::Mode::Jobs { port: port.clone() };
        let mut command = xtask::vm::qemu(&guest, &exchange, &mode);
        command
            .stdin(Stdio::null())
            .stdout(console.try_clone()?)
            .stderr(console);

        let started = Instant::now();
        let (qemu, waiter) = spawn_qemu(command)?;
        let mut vm = Vm {
            dir,
            exchange,
            qemu,
            waiter: Mutex::new(Some(waiter)),
            port: Mutex::new(None),
            next_job: AtomicU64::new(0),
            down: AtomicBool::new(false),
            guest,
            boot_time: Duration::ZERO,
        };
        // From here on, dropping `vm` takes the guest down.
        let ready = vm.exchange.join("ready");
        loop {
            let mut connection = vm.port.lock().unwrap_or_else(|p| p.into_inner());
            if connection.is_none() {
                // QEMU listens once it has started.
                *connection = UnixStream::connect(&port).ok();
                if let Some(stream) = connection.as_ref() {
                    // A guest that stops reading must not hang the tests: it also polls.
                    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
                }
            }
            if connection.is_some() && ready.exists() {
                break;
            }
            drop(connection);
            if let Some(status) = vm.qemu.status() {
                bail!(
                    "QEMU exited ({status}) before the guest was ready; console:\n{}",
                    vm.console_tail()
                );
            }
            if started.elapsed() > BOOT_TIMEOUT {
                bail!(
                    "the guest was not ready after {BOOT_TIMEOUT:?}; console:\n{}",
                    vm.console_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        vm.boot_time = started.elapsed();
        Ok(vm)
    }

    /// Runs `cmd` with `/bin/sh -c` in the guest, within [`DEFAULT_TIMEOUT`].
    #[track_caller]
    pub fn run(&self, cmd: &str) -> Output {
        self.run_timeout(cmd, DEFAULT_TIMEOUT)
    }

    /// Runs `cmd` with `/bin/sh -c` in the guest; past `timeout` it is stopped (status 124).
    /// Panics if the guest does not answer (it died, or hangs).
    #[track_caller]
    pub fn run_timeout(&self, cmd: &str, timeout: Duration) -> Output {
        match self.try_run(cmd, timeout) {
            Ok(output) => output,
            Err(e) => panic!("VM job {cmd:?}: {e:#}"),
        }
    }

    /// [`Vm::run`], panicking with the command, its status and output unless it succeeds; its
    /// standard output.
    #[track_caller]
    pub fn run_ok(&self, cmd: &str) -> String {
        let out = self.run(cmd);
        assert!(
            out.success(),
            "VM job {cmd:?} failed with status {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            out.stdout,
            out.stderr
        );
        out.stdout
    }

    fn try_run(&self, cmd: &str, timeout: Duration) -> Result<Output> {
        anyhow::ensure!(!self.down.load(Ordering::Relaxed), "the VM is shut down");
        let id = self.next_job.fetch_add(1, Ordering::Relaxed);
        // Written under a name the guest ignores, then renamed: it never sees half a job.
        let pending = self.exchange.join(format!("jobs/.{id}"));
        fs::create_dir(&pending)?;
        fs::write(pending.join("cmd"), cmd)?;
        fs::write(
            pending.join("timeout"),
            timeout.as_secs_f64().ceil().max(1.0).to_string(),
        )?;
        fs::rename(&pending, self.exchange.join(format!("jobs/{id}")))?;
        // Had the line been lost, the guest would still find the job within 5 s.
        self.tell_guest("job");

        let done = self.exchange.join(format!("run/{id}"));
        let status = done.join("status");
        let deadline = Instant::now() + timeout + ANSWER_GRACE;
        let mut pause = Duration::from_millis(1);
        while !status.exists() {
            if let Some(exit) = self.qemu.status() {
                bail!(
                    "QEMU exited ({exit}) while the job ran; console:\n{}",
                    self.console_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "no answer from the guest {ANSWER_GRACE:?} after the job's time limit \
                     ({timeout:?}); console:\n{}",
                    self.console_tail()
                );
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
        let read = |name: &str| -> Result<String> {
            let bytes = fs::read(done.join(name))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        let output = Output {
            status: read("status")?
                .trim()
                .parse()
                .context("the guest wrote a bad status")?,
            stdout: read("stdout")?,
            stderr: read("stderr")?,
        };
        let _ = fs::remove_dir_all(&done);
        Ok(output)
    }

    /// Writes `contents` to `/exchange/files/NAME` for the guest (atomically: the guest sees the
    /// old file or the new one); the guest's path of it.
    pub fn write_file(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        let path = self.exchange.join("files").join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create the exchange's files directory");
        }
        let id = self.next_job.fetch_add(1, Ordering::Relaxed);
        let tmp = self.exchange.join(format!("files/.tmp-{id}"));
        fs::write(&tmp, contents).expect("write into the exchange");
        fs::rename(&tmp, &path).expect("rename into the exchange");
        format!("{GUEST_EXCHANGE}/files/{name}")
    }

    /// The exchange directory on the host (the guest's [`GUEST_EXCHANGE`]).
    pub fn exchange(&self) -> &Path {
        &self.exchange
    }

    /// The serial console's output so far (the kernel's messages, `/init`'s, QEMU's).
    pub fn console(&self) -> String {
        fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// Writes a line to the guest's job port.
    fn tell_guest(&self, line: &str) {
        if let Some(port) = self.port.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            let _ = port.write_all(format!("{line}\n").as_bytes());
        }
    }

    fn console_tail(&self) -> String {
        let console = self.console();
        let lines: Vec<&str> = console.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Powers the guest off (kills QEMU if it does not stop) and removes the VM's directory.
    /// Idempotent; later jobs fail.
    pub fn shut_down(&self) {
        if self.down.swap(true, Ordering::Relaxed) {
            return;
        }
        if self.qemu.status().is_none() {
            let _ = fs::File::create(self.exchange.join("poweroff"));
            self.tell_guest("poweroff");
            if !self.qemu.wait(POWEROFF_TIMEOUT) {
                let _ = writeln!(
                    std::io::stderr(),
                    "vm: the guest did not power off within {POWEROFF_TIMEOUT:?}; killing QEMU"
                );
                self.qemu.kill();
                self.qemu.wait(POWEROFF_TIMEOUT);
            }
        }
        if let Some(waiter) = self.waiter.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = waiter.join();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Starts QEMU from a thread that lives as long as QEMU does and waits for it. QEMU gets SIGKILL
/// when that thread ends (`PR_SET_PDEATHSIG` follows the thread that forked), which happens only
/// after QEMU exited or when the whole test process ends, however it ends.
fn spawn_qemu(mut command: Command) -> Result<(Arc<Qemu>, JoinHandle<()>)> {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: prctl is async-signal-safe and touches only the new process.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (sender, receiver) = std::sync::mpsc::channel();
    let waiter = std::thread::Builder::new()
        .name("vm-qemu".into())
        .spawn(move || {
            let mut child = match command.spawn() {
                Ok(child) => child,
                Err(e) => {
                    let _ = sender.send(Err(e));
                    return;
                }
            };
            let qemu = Arc::new(Qemu {
                pid: child.id() as libc::pid_t,
                exit: Mutex::new(None),
                exited: Condvar::new(),
            });
            let _ = sender.send(Ok(qemu.clone()));
            let status = child.wait().expect("wait for QEMU");
            *qemu.exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
            qemu.exited.notify_all();
        })?;
    let qemu = receiver
        .recv()
        .context("the QEMU thread died")?
        .context("cannot start qemu-system-x86_64")?;
    Ok((qemu, waiter))
}

/// Removes the directories of VMs whose test process is gone (killed before it could clean up).
fn remove_dead_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
