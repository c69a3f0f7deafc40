//! `checktype = external` and `external-perl`: run a command, exit status 0 means up.
//!
//! The command gets ldirectord's arguments `<vip-or-fwmark> <vport> <rip> <rport>` (IPv6 in
//! brackets, port 0 for a fwmark virtual). `checkcommand` is the program itself, not a shell
//! line, as ldirectord's `exec(@args)`. stdin, stdout and stderr are /dev/null, as for a
//! daemon.
//!
//! The command runs in its own process group. When `checktimeout` passes, the check is down
//! at once and the group gets SIGTERM (ldirectord's signal, so scripts can clean up), then
//! SIGKILL after a short grace, so a hung script and the children it started never pile up.
//!
//! `external-perl` runs `perl <checkcommand> <args>`. ldirectord instead evals the file into
//! a sub inside its own interpreter, once, and catches `exit(n)`. For a script that ends with
//! `exit(n)`, dies, or falls off its end the verdict is the same (0 up; die or non-zero down;
//! falling off the end up). What differs: the script runs in a fresh interpreter every time,
//! so globals do not persist between checks, it cannot see ldirectord's variables or loaded
//! modules, `$0` is the script's path, and it costs a fork+exec per check.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::outcome::Outcome;

/// After SIGTERM at the deadline, how long a check command may take to exit before its
/// process group gets SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// What to run: the program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckCommand {
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
}

impl CheckCommand {
    /// ldirectord's external check: `checkcommand <v> <vport> <rip> <rport>`.
    pub(crate) fn external(command: &str, args: [String; 4]) -> CheckCommand {
        CheckCommand {
            program: command.to_owned(),
            args: args.into(),
        }
    }

    /// external-perl: `perl <checkcommand> <v> <vport> <rip> <rport>`.
    pub(crate) fn perl(script: &str, args: [String; 4]) -> CheckCommand {
        let mut all = Vec::with_capacity(5);
        all.push(script.to_owned());
        all.extend(args);
        CheckCommand {
            program: "perl".to_owned(),
            args: all,
        }
    }
}

/// Runs the command; the result is known by `timeout` at the latest.
pub(crate) async fn run(command: &CheckCommand, timeout: Duration) -> Outcome {
    let mut cmd = Command::new(&command.program);
    cmd.args(&command.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        // If the runner is dropped mid-check, do not leave the command running.
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return Outcome::down(format!("cannot run {}: {e}", command.program)),
    };
    let mut group = GroupGuard(child.id().and_then(|pid| i32::try_from(pid).ok()));
    // A zero timeout is ldirectord's `alarm 0`: wait as long as the command runs.
    let waited = if timeout.is_zero() {
        Ok(child.wait().await)
    } else {
        tokio::time::timeout(timeout, child.wait()).await
    };
    // From here on the group is either reaped or handed to `terminate`.
    group.0 = None;
    match waited {
        Ok(Ok(status)) => judge(status),
        Ok(Err(e)) => Outcome::down(format!("wait: {e}")),
        Err(_elapsed) => {
            terminate(child);
            Outcome::down(format!(
                "timed out after {}s, killed",
                timeout.as_secs_f64()
            ))
        }
    }
}

fn judge(status: ExitStatus) -> Outcome {
    match (status.code(), status.signal()) {
        (Some(0), _) => Outcome::up("exit status 0"),
        (Some(code), _) => Outcome::bad_answer(format!("exit status {code}")),
        // ldirectord reads `$? >> 8`, which is 0 for a command killed by a signal, and calls
        // that up. A crashed check is not a healthy real, so it is down here.
        (None, Some(signal)) => Outcome::down(format!("killed by signal {signal}")),
        (None, None) => Outcome::down("ended without a status"),
    }
}

/// SIGTERM to the command's group now, SIGKILL after the grace, reaped in the background so
/// the verdict is not delayed.
fn terminate(mut child: Child) {
    let Some(pgid) = child.id().and_then(|pid| i32::try_from(pid).ok()) else {
        return;
    };
    signal_group(pgid, libc::SIGTERM);
    tokio::spawn(async move {
        if tokio::time::timeout(KILL_GRACE, child.wait())
            .await
            .is_err()
        {
            // The leader is still unreaped, so the group id cannot have been reused.
            signal_group(pgid, libc::SIGKILL);
            let _ = child.wait().await;
        }
    });
}

/// Kills the command's whole process group if the check is dropped while it runs (runner
/// shutdown, check removed on reload); `kill_on_drop` alone reaches only the direct child.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            signal_group(pgid, libc::SIGKILL);
        }
    }
}

fn signal_group(pgid: i32, signal: i32) {
    // SAFETY: killpg only sends a signal; a stale group id fails with ESRCH.
    unsafe {
        libc::killpg(pgid, signal);
    }
}
