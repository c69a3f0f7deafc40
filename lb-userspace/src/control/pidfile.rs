//! The pid file, `/var/run/xdirectord.<config name>.pid`, read and judged as ldirectord does
//! its own: it names a running instance only if `/proc/<pid>/cmdline` mentions xdirectord.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Where pid files go. Created when missing, so that a fresh mount namespace (a container,
/// `ip netns exec` on a system without /var/run) works too.
pub const RUN_DIR: &str = "/var/run";

/// What a pid file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidState {
    /// No pid file (or an empty one).
    Absent,
    /// A running xdirectord.
    Running(i32),
    /// The file names no running xdirectord (ldirectord's "stale pid file").
    Stale,
}

/// One configuration's pid file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// `/var/run/xdirectord.<name>.pid`.
    pub fn for_config(name: &str) -> PidFile {
        PidFile::at(Path::new(RUN_DIR).join(format!("xdirectord.{name}.pid")))
    }

    pub fn at(path: impl Into<PathBuf>) -> PidFile {
        PidFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn read(&self) -> PidState {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return PidState::Absent;
        };
        let first = text.lines().next().unwrap_or("");
        if first.is_empty() {
            return PidState::Absent;
        }
        match first.trim().parse::<i32>() {
            Ok(pid) if pid > 0 && is_xdirectord(pid) => PidState::Running(pid),
            _ => PidState::Stale,
        }
    }

    /// Opens the file for writing (creating its directory), before daemonising, so that a
    /// failure is reported on the terminal.
    pub fn create(&self) -> std::io::Result<std::fs::File> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::File::create(&self.path)
    }

    /// Writes this process's pid into a file from [`PidFile::create`].
    pub fn write(mut file: std::fs::File) -> std::io::Result<()> {
        writeln!(file, "{}", std::process::id())?;
        file.sync_all()
    }

    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// ldirectord's test: the process's command line contains the program's name.
pub fn is_xdirectord(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        cmdline
            .windows(b"xdirectord".len())
            .any(|w| w == b"xdirectord")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_follows_the_config_name() {
        assert_eq!(
            PidFile::for_config("web.cf").path(),
            Path::new("/var/run/xdirectord.web.cf.pid")
        );
    }

    #[test]
    fn states() {
        let dir = tempfile::tempdir().unwrap();
        let file = PidFile::at(dir.path().join("sub/x.pid"));
        assert_eq!(file.read(), PidState::Absent);
        PidFile::write(file.create().unwrap()).unwrap();
        // This test binary is xdirectord's library: its command line names xdirectord.
        assert_eq!(file.read(), PidState::Running(std::process::id() as i32));
        let mut sleep = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::fs::write(file.path(), format!("{}\n", sleep.id())).unwrap();
        let state = file.read();
        let _ = sleep.kill();
        let _ = sleep.wait();
        assert_eq!(
            state,
            PidState::Stale,
            "a live process that is not xdirectord"
        );
        std::fs::write(file.path(), "not a pid\n").unwrap();
        assert_eq!(file.read(), PidState::Stale);
        std::fs::write(file.path(), "").unwrap();
        assert_eq!(file.read(), PidState::Absent);
        file.remove();
        assert!(!file.exists());
    }
}
