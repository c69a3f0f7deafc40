//! The instance commands (`start`, `stop`, `restart`, `try-restart`, `reload`,
//! `force-reload`, `status`) with ldirectord's semantics, messages and exit codes (`ld_init`),
//! and the daemon's process life: pid file, daemonising, signals.
//!
//! | command | running | not running |
//! |---|---|---|
//! | start | 0, nothing done | start (daemon unless `-d` or `supervised`) |
//! | stop | TERM, waits until it has exited, 0 | 0 |
//! | restart, try-restart | TERM, wait for the pid file to go, start | restart: start; try-restart: 0 |
//! | reload, force-reload | HUP, 0 | logs `xdirectord is stopped for CONFIG`, 1 |
//! | status | stderr `… is running with pid: N`, 0 | stdout `xdirectord is stopped for CONFIG`, 3 (1 and stderr `ldirectord stale pid file …` with a stale pid file) |
//!
//! Every command reads the configuration first: not found is 1, invalid is 2.

pub mod daemonize;
pub mod pidfile;
pub mod signals;

use std::path::PathBuf;
use std::time::Duration;

use lb_config::{Config, ConfigError};

use self::daemonize::{Ready, Role};
use self::pidfile::{PidFile, PidState};
use self::signals::Signals;
use crate::cli::{Command, InstanceArgs, VERSION_STR};
use crate::daemon::{Agent, AgentSettings, open_backend, preflight};
use crate::hooks::{InstanceCommand, instances_blocking};
use crate::log::{LogSink, Logger, TracingBridge};

/// `xdirectord show`: the live table, from the data plane's pinned maps.
pub fn show(config: Option<&str>, view: crate::show::View, json: bool) -> i32 {
    crate::show::run(config, view, json)
}

/// ldirectord's `ld_exit`: a non-zero status (or any, with `-d`) is logged with its reason.
fn exit(logger: &Logger, debug: bool, status: i32, message: &str) -> i32 {
    if status != 0 || debug {
        logger.log(format!("Exiting with exit_status {status}: {message}"));
    }
    status
}

/// ldirectord's `init_error`: logged, printed (unless `-d`, where the log is standard error
/// already), exit 1.
fn init_error(logger: &Logger, debug: bool, message: &str) -> i32 {
    logger.log(message);
    if !debug {
        eprintln!("{message}");
    }
    exit(logger, debug, 1, "Initialisation Error")
}

/// A configuration error while starting: printed to standard error, exit 2.
fn config_error(logger: &Logger, debug: bool, error: &ConfigError) -> i32 {
    eprint!("{}", error.render(std::process::id()));
    exit(logger, debug, 2, "config_error: Configuration Error")
}

/// Runs an instance command and returns the exit status.
pub fn run(args: &InstanceArgs) -> i32 {
    let debug = args.debug;
    let name = lb_config::config_name(args.config.as_deref());
    let early = Logger::new(LogSink::before_config(debug), &name);
    let config = match lb_config::find_and_load(args.config.as_deref()) {
        Ok(config) => config,
        Err(e @ ConfigError::NotFound(_)) => return init_error(&early, debug, &e.to_string()),
        Err(e) => return config_error(&early, debug, &e),
    };
    let starts = matches!(
        args.command,
        Command::Start | Command::Restart | Command::TryRestart
    );
    let mut config = config;
    let checked = if starts {
        preflight(&mut config, &args.overrides)
    } else {
        Ok(())
    };
    let pid = std::process::id();
    for warning in &config.warnings {
        eprint!("{}", warning.render(pid, &config.path));
    }
    let logger = Logger::new(LogSink::for_config(&config, debug), &config.name);
    if let Err(e) = checked {
        return config_error(&logger, debug, &e);
    }
    let invoked: String = std::env::args_os()
        .map(|a| format!("{} ", a.to_string_lossy()))
        .collect();
    logger.log(format!("Invoking xdirectord invoked as: {invoked}"));

    let shown = config.path.display().to_string();
    let pidfile = PidFile::for_config(&config.name);
    let word = args.command.as_str();
    let done = |status: i32| {
        exit(
            &logger,
            debug,
            status,
            &format!("Exiting from xdirectord {word}"),
        )
    };
    match pidfile.read() {
        PidState::Running(running) => match args.command {
            Command::Start => return done(0),
            Command::Stop => {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(running, libc::SIGTERM) };
                // ldirectord returns at once. Pacemaker's resource agent and systemd's ExecStop
                // take the command's return for "stopped": a monitor or start right after it
                // must not find the old daemon still cleaning up.
                while pidfile::is_xdirectord(running) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return done(0);
            }
            Command::Restart | Command::TryRestart => {
                // SAFETY: as above.
                unsafe { libc::kill(running, libc::SIGTERM) };
                while pidfile.exists() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            Command::Reload | Command::ForceReload => {
                // SAFETY: as above.
                unsafe { libc::kill(running, libc::SIGHUP) };
                return done(0);
            }
            Command::Status => {
                let text = format!("xdirectord for {shown} is running with pid: {running}");
                eprintln!("{text}");
                instances_blocking(
                    &program(),
                    &config.global.execute,
                    InstanceCommand::Status,
                    &logger,
                );
                logger.log(&text);
                logger.log(format!("Exiting from xdirectord {word}"));
                return done(0);
            }
        },
        state => match args.command {
            Command::Start | Command::Restart => {}
            Command::Stop | Command::TryRestart => return done(0),
            Command::Status => {
                let status = if state == PidState::Stale {
                    // The one message that keeps ldirectord's name: Pacemaker's
                    // ocf:heartbeat:ldirectord greps the status output for "ldirectord stale
                    // pid file" to tell a dead daemon (not running, restart it) from an error.
                    let text = format!(
                        "ldirectord stale pid file {} for {shown}",
                        pidfile.path().display()
                    );
                    eprintln!("{text}");
                    logger.log(text);
                    1
                } else {
                    3
                };
                println!("xdirectord is stopped for {shown}");
                return done(status);
            }
            Command::Reload | Command::ForceReload => {
                logger.log(format!("xdirectord is stopped for {shown}"));
                return done(1);
            }
        },
    }
    start(config, args, logger)
}

/// The xdirectord binary, for `execute` instances.
fn program() -> std::path::PathBuf {
    std::env::current_exe().unwrap_or_else(|_| "/usr/sbin/xdirectord".into())
}

/// Starts the agent: in the foreground with `-d` or `supervised`, as a daemon otherwise.
fn start(config: Config, args: &InstanceArgs, logger: Logger) -> i32 {
    let debug = args.debug;
    // Before daemonising moves to `/`: reloads read the file the command line named.
    let file = std::fs::canonicalize(&config.path).ok();
    if debug || config.global.supervised {
        let starting = format!("Starting {VERSION_STR} with pid: {}", std::process::id());
        return serve(config, args, logger, Start::Foreground(starting), file);
    }
    logger.log(format!("Starting {VERSION_STR} as daemon"));
    let pidfile = PidFile::for_config(&config.name);
    let pid_out = match pidfile.create() {
        Ok(pid_out) => pid_out,
        Err(_) => {
            return init_error(
                &logger,
                debug,
                &format!("Can not open {}", pidfile.path().display()),
            );
        }
    };
    match daemonize::daemonize() {
        Err(e) => init_error(&logger, debug, &format!("Can not become a daemon: {e}")),
        Ok(Role::Parent(status)) => status,
        Ok(Role::Daemon(ready)) => {
            if let Err(e) = PidFile::write(pid_out) {
                let message = format!("Can not write {}: {e}", pidfile.path().display());
                logger.log(&message);
                ready.fail(&message);
                pidfile.remove();
                return exit(&logger, debug, 1, "Initialisation Error");
            }
            let name = config.name.clone();
            let status = serve(config, args, logger, Start::Daemon(ready), file);
            pidfile.remove();
            let _ = std::fs::remove_file(crate::show::status_file(&name));
            status
        }
    }
}

/// How the agent was started.
enum Start {
    /// Daemonised: the waiting command is told how the start went.
    Daemon(Ready),
    /// `-d` or `supervised`: this line is logged once signals are handled, so that whoever
    /// waits for it can signal the process safely.
    Foreground(String),
}

/// Runs the agent until a stop signal.
/// `file` is the configuration's absolute path, for reloads.
fn serve(
    config: Config,
    args: &InstanceArgs,
    logger: Logger,
    start: Start,
    file: Option<PathBuf>,
) -> i32 {
    let debug = args.debug;
    let (ready, starting) = match start {
        Start::Daemon(ready) => (Some(ready), None),
        Start::Foreground(line) => (None, Some(line)),
    };
    let pidfile = PidFile::for_config(&config.name);
    let fail = |ready: Option<Ready>, message: &str| {
        logger.log(message);
        if let Some(ready) = ready {
            // Gone before `start` returns, so that whoever ran it finds no pid file.
            pidfile.remove();
            ready.fail(message);
        } else if !debug {
            eprintln!("{message}");
        }
        exit(&logger, debug, 1, message)
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(ready, &format!("Can not start the runtime: {e}")),
    };
    runtime.block_on(async {
        let signals = match Signals::install() {
            Ok(signals) => signals,
            Err(e) => return fail(ready, &format!("Can not install signal handlers: {e}")),
        };
        if let Some(line) = starting {
            logger.log(line);
        }
        TracingBridge::new(logger.clone()).install();
        if let Err(e) = lb_health::raise_nofile_limit() {
            logger.log(format!("Can not raise the open file limit: {e}"));
        }
        // Before the data plane: an address in use stops the start with nothing changed.
        let metrics = match args.overrides.metrics(&config) {
            Some(addr) => match crate::metrics::server::bind(addr).await {
                Ok(listener) => Some((listener, crate::metrics::Limits::default())),
                Err(e) => return fail(ready, &format!("Can not start: {e}")),
            },
            None => None,
        };
        let opened = match open_backend(&config, &args.overrides) {
            Ok(opened) => opened,
            Err(e) => return fail(ready, &format!("Can not open the data plane: {e}")),
        };
        for line in &opened.lines {
            logger.log(line);
        }
        let mut settings = AgentSettings::new(logger.clone());
        settings.overrides = args.overrides.clone();
        settings.program = program();
        settings.config_file = file;
        settings.debug = debug;
        settings.log_follows_config = true;
        settings.status_file = Some(crate::show::status_file(&config.name));
        settings.metrics = metrics;
        let agent = Agent::start(config, opened.placement, opened.backend, settings);
        if let Some(ready) = ready {
            ready.ok();
        }
        let signal = signals.forward(agent.handle()).await;
        agent.wait().await;
        exit(
            &logger,
            debug,
            0,
            &format!("xdirectord daemon terminated on signal: {signal}"),
        )
    })
}
