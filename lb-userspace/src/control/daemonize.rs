//! Becoming a daemon as ldirectord's `ld_daemon` does (fork, setsid, fork, chdir /, standard
//! streams to /dev/null), plus one thing it lacks: the command that started the daemon waits
//! until the daemon has opened its data plane, and exits 1 with the daemon's error if it
//! could not, instead of exiting 0 for a daemon that died a moment later.
//!
//! Must be called before any thread is started (no tokio runtime yet).

use std::io::{Read as _, Write as _};
use std::os::fd::{FromRawFd as _, OwnedFd};

/// Which process returned from [`daemonize`].
pub enum Role {
    /// The process that was started: exit with this status.
    Parent(i32),
    /// The daemon; report how the start went through [`Ready`].
    Daemon(Ready),
}

/// The daemon's end of the start-up report.
pub struct Ready {
    fd: Option<OwnedFd>,
}

impl Ready {
    /// The start succeeded: the waiting command exits 0.
    pub fn ok(mut self) {
        self.send(b"ok\n");
    }

    /// The start failed: the waiting command prints `message` and exits 1.
    pub fn fail(mut self, message: &str) {
        self.send(format!("error {message}\n").as_bytes());
    }

    fn send(&mut self, bytes: &[u8]) {
        if let Some(fd) = self.fd.take() {
            let mut file = std::fs::File::from(fd);
            let _ = file.write_all(bytes);
        }
    }
}

fn last_error(what: &str) -> std::io::Error {
    let e = std::io::Error::last_os_error();
    std::io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Forks into the background. The original process waits for the daemon's report.
pub fn daemonize() -> std::io::Result<Role> {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(last_error("pipe2"));
    }
    // SAFETY: both descriptors are new and ours alone.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: no other thread exists yet (see the module doc).
    match unsafe { libc::fork() } {
        -1 => Err(last_error("fork")),
        0 => {
            drop(read);
            // SAFETY: plain system calls in the single-threaded child.
            unsafe {
                if libc::setsid() < 0 {
                    libc::_exit(1);
                }
                match libc::fork() {
                    -1 => libc::_exit(1),
                    0 => {}
                    // The session leader leaves, so the daemon can never regain a terminal.
                    _ => libc::_exit(0),
                }
                if libc::chdir(c"/".as_ptr()) != 0 {
                    libc::_exit(1);
                }
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null >= 0 {
                    for fd in 0..3 {
                        libc::dup2(null, fd);
                    }
                    if null > 2 {
                        libc::close(null);
                    }
                }
            }
            Ok(Role::Daemon(Ready { fd: Some(write) }))
        }
        child => {
            drop(write);
            let mut report = String::new();
            let _ = std::fs::File::from(read).read_to_string(&mut report);
            // SAFETY: reaps the intermediate child, which exits at once.
            unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
            Ok(Role::Parent(match report.lines().next() {
                Some("ok") => 0,
                Some(line) => {
                    eprintln!("{}", line.strip_prefix("error ").unwrap_or(line));
                    1
                }
                None => {
                    eprintln!("xdirectord: the daemon exited while starting (see the log)");
                    1
                }
            }))
        }
    }
}
