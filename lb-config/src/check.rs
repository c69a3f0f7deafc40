//! `xdirectord -t CONFIG`: find, read and report a configuration as ldirectord would while
//! starting, and give its exit status.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;

use crate::diagnostics::{ConfigError, Diagnostic};
use crate::environment::{Environment, SystemEnvironment};
use crate::locate::{config_arg, config_name, locate};
use crate::model::Config;

/// Reads the file at `path` with the system resolver.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, &SystemEnvironment)
}

/// Reads the file at `path`. A file that cannot be read is ldirectord's
/// `can not open file <path>`, about the whole file.
pub fn load_with(path: &Path, env: &dyn Environment) -> Result<Config, ConfigError> {
    match std::fs::read(path) {
        Ok(text) => crate::parse::parse(&text, path, env),
        Err(_) => Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            warnings: Vec::new(),
            error: Diagnostic::error(0, format!("can not open file {}", path.display()))
                .whole_file(),
        }),
    }
}

/// What ldirectord does with its configuration argument before acting on a command: look it
/// up (`None` is `ldirectord.cf`), read it, and name it (`CFGNAME`).
pub fn find_and_load(arg: Option<&OsStr>) -> Result<Config, ConfigError> {
    find_and_load_with(arg, &SystemEnvironment)
}

pub fn find_and_load_with(
    arg: Option<&OsStr>,
    env: &dyn Environment,
) -> Result<Config, ConfigError> {
    let wanted = config_arg(arg);
    let path = locate(&wanted).ok_or_else(|| ConfigError::NotFound(wanted.clone().into()))?;
    let mut config = load_with(&path, env)?;
    config.name = config_name(arg);
    Ok(config)
}

/// `xdirectord -t [CONFIG]`: prints every warning and the error to standard error in
/// ldirectord's format with this process's pid, and returns the exit status: 0 valid,
/// 2 invalid, 1 not found (`Config file <arg> not found`).
pub fn check_config(arg: Option<&OsStr>) -> i32 {
    let mut stderr = std::io::stderr().lock();
    check_config_with(arg, &SystemEnvironment, &mut stderr, std::process::id())
}

/// [`check_config`] with its inputs and output given.
pub fn check_config_with(
    arg: Option<&OsStr>,
    env: &dyn Environment,
    out: &mut dyn Write,
    pid: u32,
) -> i32 {
    let (text, status) = match find_and_load_with(arg, env) {
        Ok(config) => {
            let text: String = config
                .warnings
                .iter()
                .map(|w| w.render(pid, &config.path))
                .collect();
            (text, 0)
        }
        Err(error) => (error.render(pid), error.exit_code()),
    };
    // Nothing sensible is left to do if standard error is gone; the status still tells.
    let _ = out.write_all(text.as_bytes());
    status
}
