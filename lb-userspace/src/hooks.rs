//! Commands the configuration asks the agent to run: `fallbackcommand` and `callback` lines
//! (through the shell, as ldirectord's `system` does), and the further instances of `execute`
//! (`xdirectord <config> <command>`).
//!
//! They run one after the other on their own task ([`Hooks`]), in the order they were asked
//! for: a `fallbackcommand start` is never overtaken by the `stop` that follows it, and the
//! director never waits for a slow script.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::log::Logger;

/// What `execute` instances are told, as ldirectord's `ld_cmd_children` tells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceCommand {
    Start,
    Stop,
    Status,
    /// `reload`, and `start` if that fails (the instance was not running).
    ReloadOrStart,
}

impl InstanceCommand {
    fn word(self) -> &'static str {
        match self {
            InstanceCommand::Start => "start",
            InstanceCommand::Stop => "stop",
            InstanceCommand::Status => "status",
            InstanceCommand::ReloadOrStart => "reload",
        }
    }
}

/// The shell line that runs `program <config> <command>`; the config is given raw, as
/// ldirectord gives it (quotes in the file reach the shell).
pub fn instance_line(program: &Path, config: &str, command: &str) -> String {
    format!(
        "{} {config} {command}",
        shell_quote(&program.to_string_lossy())
    )
}

/// `'text'`, safe for sh.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Runs one shell line and logs a failure as ldirectord's `system_wrapper` does; returns
/// whether it exited 0.
pub async fn run_shell(line: &str, logger: &Logger) -> bool {
    let status = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(line)
        .stdin(Stdio::null())
        .status()
        .await;
    report(line, status, logger)
}

/// [`run_shell`] for callers without a runtime (the command line).
pub fn run_shell_blocking(line: &str, logger: &Logger) -> bool {
    let status = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(line)
        .stdin(Stdio::null())
        .status();
    report(line, status, logger)
}

fn report(line: &str, status: std::io::Result<std::process::ExitStatus>, logger: &Logger) -> bool {
    match status {
        Ok(s) if s.success() => true,
        Ok(s) => {
            logger.log(format!("system({line}) failed: {s}"));
            false
        }
        Err(e) => {
            logger.log(format!("system({line}) failed: {e}"));
            false
        }
    }
}

/// Tells each `execute` instance `command`, one after the other, without a runtime.
pub fn instances_blocking(
    program: &Path,
    configs: &[String],
    command: InstanceCommand,
    logger: &Logger,
) {
    for config in configs {
        let ok = run_shell_blocking(&instance_line(program, config, command.word()), logger);
        if !ok && command == InstanceCommand::ReloadOrStart {
            run_shell_blocking(&instance_line(program, config, "start"), logger);
        }
    }
}

enum Job {
    Shell(String),
    Instances(Vec<String>, InstanceCommand),
    Flush(oneshot::Sender<()>),
}

/// The hook queue.
#[derive(Clone)]
pub struct Hooks {
    tx: mpsc::UnboundedSender<Job>,
}

impl Hooks {
    /// Starts the task that runs hooks on `tracker`; `program` is the xdirectord binary that
    /// `execute` instances run. The task ends when every [`Hooks`] is dropped.
    pub fn spawn(logger: Logger, program: PathBuf, tracker: &TaskTracker) -> Hooks {
        let (tx, mut rx) = mpsc::unbounded_channel();
        tracker.spawn(async move {
            while let Some(job) = rx.recv().await {
                match job {
                    Job::Shell(line) => {
                        run_shell(&line, &logger).await;
                    }
                    Job::Instances(configs, command) => {
                        for config in configs {
                            let ok = run_shell(
                                &instance_line(&program, &config, command.word()),
                                &logger,
                            )
                            .await;
                            if !ok && command == InstanceCommand::ReloadOrStart {
                                run_shell(&instance_line(&program, &config, "start"), &logger)
                                    .await;
                            }
                        }
                    }
                    Job::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Hooks { tx }
    }

    /// Runs a shell line (a `fallbackcommand` or `callback` invocation).
    pub fn shell(&self, line: String) {
        let _ = self.tx.send(Job::Shell(line));
    }

    /// Tells `execute` instances `command`.
    pub fn instances(&self, configs: &[String], command: InstanceCommand) {
        if !configs.is_empty() {
            let _ = self.tx.send(Job::Instances(configs.to_vec(), command));
        }
    }

    /// Waits until every hook queued before has finished.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Job::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_lines_quote_the_program_only() {
        assert_eq!(
            instance_line(Path::new("/usr/sbin/xdirectord"), "other.cf", "start"),
            "'/usr/sbin/xdirectord' other.cf start"
        );
        assert_eq!(
            instance_line(Path::new("/o'd"), "\"a b\"", "stop"),
            r#"'/o'\''d' "a b" stop"#
        );
    }

    #[tokio::test]
    async fn hooks_run_in_order_and_failures_are_logged() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let (logger, lines) = Logger::capture();
        let tracker = TaskTracker::new();
        let hooks = Hooks::spawn(logger, PathBuf::from("/bin/echo"), &tracker);
        for word in ["one", "two", "three"] {
            hooks.shell(format!("echo {word} >> {}", out.display()));
        }
        hooks.shell("exit 3".into());
        hooks.flush().await;
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "one\ntwo\nthree\n");
        assert_eq!(
            *lines.lock().unwrap(),
            ["system(exit 3) failed: exit status: 3"]
        );
    }

    #[tokio::test]
    async fn reload_or_start_starts_when_reload_fails() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("fake-xdirectord");
        let log = dir.path().join("calls");
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\necho \"$@\" >> {}\n[ \"$2\" = reload ] && exit 1\nexit 0\n",
                log.display()
            ),
        )
        .unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&program)
            .status()
            .unwrap();
        let (logger, _) = Logger::capture();
        let tracker = TaskTracker::new();
        let hooks = Hooks::spawn(logger.clone(), program.clone(), &tracker);
        hooks.instances(&["a.cf".into()], InstanceCommand::ReloadOrStart);
        hooks.flush().await;
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "a.cf reload\na.cf start\n"
        );
        instances_blocking(&program, &["b.cf".into()], InstanceCommand::Status, &logger);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "a.cf reload\na.cf start\nb.cf status\n"
        );
    }
}
