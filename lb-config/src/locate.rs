//! Finding the configuration file and naming it, as ldirectord's `ld_init` does.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The configuration ldirectord reads when given only a command.
pub const DEFAULT_CONFIG: &str = "ldirectord.cf";

/// ldirectord's `CFGNAME` for [`DEFAULT_CONFIG`] (not its basename: `ldirectord`, so the pid
/// file is `/var/run/ldirectord.ldirectord.pid`, which the systemd unit expects).
pub const DEFAULT_CONFIG_NAME: &str = "ldirectord";

/// `/etc/ha.d/<arg>`, then `/etc/ha.d/conf/<arg>`, then `<arg>` itself: the first that is a
/// regular file (symbolic links followed). The directory is prefixed as text, as ldirectord
/// does, so an absolute argument is found only as itself.
pub fn locate(arg: &OsStr) -> Option<PathBuf> {
    ["/etc/ha.d/", "/etc/ha.d/conf/"]
        .iter()
        .map(|dir| {
            let mut joined = OsString::from(dir);
            joined.push(arg);
            PathBuf::from(joined)
        })
        .chain(std::iter::once(PathBuf::from(arg)))
        .find(|candidate| candidate.is_file())
}

/// ldirectord's `CFGNAME` for a command-line argument: the text after its last `/` (empty
/// when it ends with `/`), or [`DEFAULT_CONFIG_NAME`] when no configuration was given.
pub fn config_name(arg: Option<&OsStr>) -> String {
    match arg {
        None => DEFAULT_CONFIG_NAME.to_string(),
        Some(arg) => {
            let bytes = arg.as_bytes();
            let start = bytes.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
    }
}

pub(crate) fn config_name_of(path: &Path) -> String {
    config_name(Some(path.as_os_str()))
}

/// The argument as ldirectord defaults it.
pub(crate) fn config_arg(arg: Option<&OsStr>) -> OsString {
    arg.map_or_else(|| OsString::from(DEFAULT_CONFIG), OsStr::to_os_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_basenames_of_the_argument() {
        assert_eq!(config_name(None), "ldirectord");
        assert_eq!(
            config_name(Some(OsStr::new("ldirectord.cf"))),
            "ldirectord.cf"
        );
        assert_eq!(config_name(Some(OsStr::new("/etc/ha.d/web.cf"))), "web.cf");
        assert_eq!(config_name(Some(OsStr::new("dir/"))), "");
    }

    #[test]
    fn lookup_falls_back_on_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("xdirectord-locate-test.cf");
        std::fs::write(&file, "").unwrap();
        assert_eq!(locate(file.as_os_str()), Some(file.clone()));
        assert_eq!(
            locate(dir.path().as_os_str()),
            None,
            "a directory is not a config"
        );
        assert_eq!(locate(OsStr::new("/nonexistent/xdirectord.cf")), None);
    }
}
