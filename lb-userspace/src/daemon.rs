//! The running agent: the director, its alert and hook queues, the `execute` instances, and
//! the configuration file (reload on request, `autoreload`, `callback`). Signals and the
//! process itself (pid file, daemonising) are `control`'s; this module runs inside any tokio
//! runtime with any backend, which is how the tests drive it.
//!
//! Also where the backends are opened ([`open_backend`]) and a configuration is checked against
//! them ([`preflight`]).

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lb_config::{BackendKind, Config, ConfigError, Diagnostic};
use lb_health::RunnerConfig;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alert::{Alerts, Mailer};
use crate::backend::{
    Backend, BackendError,
    hybrid::Hybrid,
    ipvs::IpvsBackend,
    placement,
    xdp::{self, XdpBackend, XdpMode, XdpOptions},
};
use crate::director::desired::service_key;
use crate::director::{
    Director, DirectorHandle, DirectorSettings, Placement, Snapshot, checks, desired,
};
use crate::hooks::{Hooks, InstanceCommand};
use crate::log::{LogSink, Logger};
use crate::metrics::Recorder;
use crate::table::ServiceKey;
use std::collections::BTreeSet;

pub use crate::backend::placement::BackendOverrides;

/// The data planes of an agent, opened.
pub struct Opened {
    pub backend: Box<dyn Backend>,
    /// Where each virtual runs.
    pub placement: Placement,
    /// A line per virtual saying where it runs and why, for the log.
    pub lines: Vec<String>,
}

/// Opens the data planes the configuration's virtuals are placed on. THE place the backends
/// are constructed.
pub fn open_backend(config: &Config, overrides: &BackendOverrides) -> Result<Opened, BackendError> {
    let choices =
        placement::place(config, overrides).map_err(|(_, m)| BackendError::Unsupported(m))?;
    let placement = placement::placement(&choices);
    let interfaces = overrides.interfaces(config);
    let needs = |kind| choices.iter().any(|c| c.backend == kind);
    // An XDP data plane a previous agent left for this configuration is opened too, so that
    // what it holds is taken over (moved, purged) rather than left forwarding unseen.
    let pinned = xdp::pin_dir(&config.name).is_ok_and(|dir| dir.exists());
    let xdp_options = (!interfaces.is_empty()).then(|| XdpOptions {
        config_name: config.name.clone(),
        interfaces,
        mode: match config.global.xdpmode {
            Some(lb_config::XdpMode::Generic) => XdpMode::Generic,
            _ => XdpMode::Native,
        },
        tunnel_source: config.global.tunnelsource.clone(),
        capacity: xdp::Capacity {
            flows: config.global.maxflows,
            templates: config.global.maxtemplates,
            virtuals: config.global.maxvirtuals,
            reals: config.global.maxreals,
        },
    });
    let xdp = match &xdp_options {
        Some(options) if needs(BackendKind::Xdp) || pinned => Some(XdpBackend::open(options)?),
        _ => None,
    };
    let scope: BTreeSet<ServiceKey> = choices.iter().map(|c| c.key).collect();
    let ipvs = if needs(BackendKind::Ipvs) {
        match IpvsBackend::open(scope) {
            Ok(ipvs) => Some(ipvs),
            Err(e) => {
                return Err(BackendError::Unsupported(unavailable_text(
                    config,
                    &choices,
                    BackendKind::Ipvs,
                    &e,
                )));
            }
        }
    } else {
        // Only where the kernel already has IPVS: a pure XDP director does not load ip_vs.
        IpvsBackend::open_if_loaded(scope)
    };
    Ok(Opened {
        backend: Box::new(Hybrid::new(xdp, ipvs, xdp_options)?),
        placement,
        lines: placement::lines(config, &choices),
    })
}

/// `virtual service V needs IPVS (why), but <why not>`: the first virtual placed on a data
/// plane that cannot be opened.
fn unavailable_text(
    config: &Config,
    choices: &[placement::Choice],
    kind: BackendKind,
    e: &BackendError,
) -> String {
    let name = match kind {
        BackendKind::Ipvs => "IPVS",
        _ => "XDP",
    };
    choices
        .iter()
        .zip(&config.virtuals)
        .find(|(c, _)| c.backend == kind)
        .map_or_else(
            || format!("{name}: {e}"),
            |(c, vs)| {
                format!(
                    "virtual service {} needs {name} ({}), but {e}",
                    vs.id, c.why
                )
            },
        )
}

/// The same, as an error in the file at the virtual's line (a reload that needs it is refused).
fn unavailable(
    config: &Config,
    choices: &[placement::Choice],
    kind: BackendKind,
    e: &BackendError,
) -> ConfigError {
    let line = choices
        .iter()
        .zip(&config.virtuals)
        .find(|(c, _)| c.backend == kind)
        .map_or(0, |(_, vs)| vs.line);
    ConfigError::Invalid {
        path: config.path.clone(),
        warnings: config.warnings.clone(),
        error: checks::error(line, unavailable_text(config, choices, kind, e)),
    }
}

/// The checks xdirectord makes before it uses a configuration, beyond lb-config's: every
/// check must be one lb-health runs, every scheduler flag one ipvsadm takes, and every virtual
/// must have a data plane (`backend = xdp` on a virtual XDP cannot serve is an error). What
/// ipvsadm would then refuse in the kernel is added to the warnings. Errors read as lb-config's
/// do (`Error [pid] reading file … at line N: …`).
pub fn preflight(config: &mut Config, overrides: &BackendOverrides) -> Result<(), ConfigError> {
    let invalid = |config: &Config, error: Diagnostic| ConfigError::Invalid {
        path: config.path.clone(),
        warnings: config.warnings.clone(),
        error,
    };
    if let Some(error) = checks::refusal(config) {
        return Err(invalid(config, error));
    }
    for vs in &config.virtuals {
        if let Err(message) = desired::schedflags(vs) {
            return Err(invalid(
                config,
                checks::error(vs.line, format!("virtual service {}: {message}", vs.id)),
            ));
        }
    }
    let choices = placement::place(config, overrides)
        .map_err(|(line, message)| invalid(config, checks::error(line, message)))?;
    for (line, message) in placement::ipvs_warnings(config, &choices) {
        config.warnings.push(Diagnostic {
            severity: lb_config::Severity::Warning,
            origin: lb_config::Origin::Xdirectord,
            line: Some(line),
            message,
        });
    }
    Ok(())
}

/// Reads the configuration again, as a reload does: the same file, the same name.
/// `file` is where to read it (the daemon's working directory is `/`, so a path given relative
/// on the command line is made absolute before); messages keep the path as it was given.
pub fn reread(
    current: &Config,
    file: &Path,
    overrides: &BackendOverrides,
) -> Result<Config, ConfigError> {
    let mut config = lb_config::load(file).map_err(|e| match e {
        ConfigError::Invalid {
            warnings, error, ..
        } => ConfigError::Invalid {
            path: current.path.clone(),
            warnings,
            error,
        },
        other => other,
    })?;
    config.path = current.path.clone();
    config.name = current.name.clone();
    preflight(&mut config, overrides)?;
    Ok(config)
}

/// Everything the agent needs besides the configuration and the backend.
pub struct AgentSettings {
    pub logger: Logger,
    pub runner: RunnerConfig,
    pub mailer: Mailer,
    /// The xdirectord binary `execute` instances run.
    pub program: PathBuf,
    pub overrides: BackendOverrides,
    /// Where the configuration file is read on reload and watched: an absolute path when the
    /// process changes directory (daemonising does); `None` = the configuration's own path.
    pub config_file: Option<PathBuf>,
    /// How often the configuration file is looked at (`autoreload`, `callback`).
    pub file_poll: Duration,
    /// Whether a reload moves the log to where the new file's `logfile` (or `supervised`)
    /// says, as the binary does; a caller that gave its own logger keeps it.
    pub log_follows_config: bool,
    /// `-d`: kept across reloads when the log sink is chosen again.
    pub debug: bool,
    /// Where the director records its last apply (for `show`); `None` = nowhere.
    pub status_file: Option<PathBuf>,
    /// Where to serve metrics (bound already, so that an address in use stops the start),
    /// and the limits on scrapers.
    pub metrics: Option<(tokio::net::TcpListener, crate::metrics::Limits)>,
}

impl AgentSettings {
    pub fn new(logger: Logger) -> AgentSettings {
        AgentSettings {
            logger,
            runner: RunnerConfig::default(),
            mailer: Mailer::new(),
            program: std::env::current_exe()
                .unwrap_or_else(|_| PathBuf::from("/usr/sbin/xdirectord")),
            overrides: BackendOverrides::default(),
            config_file: None,
            file_poll: Duration::from_secs(1),
            log_follows_config: false,
            debug: false,
            status_file: None,
            metrics: None,
        }
    }
}

enum AgentRequest {
    Reload(oneshot::Sender<bool>),
    Stop(String, oneshot::Sender<()>),
}

/// Talks to a running [`Agent`].
#[derive(Clone)]
pub struct AgentHandle {
    tx: mpsc::Sender<AgentRequest>,
    director: DirectorHandle,
}

impl AgentHandle {
    /// Reads the configuration file again and puts it in force (SIGHUP, `xdirectord reload`).
    /// False when the file is bad: the error is logged and the running configuration stays.
    pub async fn reload(&self) -> bool {
        let (done, wait) = oneshot::channel();
        if self.tx.send(AgentRequest::Reload(done)).await.is_err() {
            return false;
        }
        wait.await.unwrap_or(false)
    }

    /// Stops the agent as a signal named `signal` (`TERM`, …) does, and waits until it has.
    pub async fn stop(&self, signal: &str) {
        let (done, wait) = oneshot::channel();
        if self
            .tx
            .send(AgentRequest::Stop(signal.to_string(), done))
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
    }

    pub async fn snapshot(&self) -> Option<Snapshot> {
        self.director.snapshot().await
    }
}

/// The agent running on the current tokio runtime.
pub struct Agent {
    handle: AgentHandle,
    task: JoinHandle<()>,
}

impl Agent {
    /// Starts the agent for `config` on `backend`. Must be called within a tokio runtime.
    /// Starts the agent for `config`, its virtuals placed by `placement`, on `backend`. Must be
    /// called within a tokio runtime.
    pub fn start(
        config: Config,
        placement: Placement,
        backend: Box<dyn Backend>,
        mut settings: AgentSettings,
    ) -> Agent {
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let recorder = Arc::new(Recorder::default());
        if let Some((listener, limits)) = settings.metrics.take() {
            tracker.spawn(crate::metrics::server::serve(
                listener,
                config.name.clone(),
                Arc::clone(&recorder),
                limits,
                shutdown.clone(),
            ));
        }
        let alerts = Alerts::spawn(settings.mailer.clone(), settings.logger.clone(), &tracker);
        let hooks = Hooks::spawn(settings.logger.clone(), settings.program.clone(), &tracker);
        let (director, director_handle) = Director::new(
            config.clone(),
            placement,
            backend,
            DirectorSettings {
                logger: settings.logger.clone(),
                status_file: settings.status_file.clone(),
                runner: settings.runner.clone(),
                alerts: alerts.clone(),
                hooks: hooks.clone(),
                recorder: Arc::clone(&recorder),
            },
            &shutdown,
        );
        let director_task = tracker.spawn(director.run());
        hooks.instances(&config.global.execute, InstanceCommand::Start);
        let (tx, rx) = mpsc::channel(8);
        let handle = AgentHandle {
            tx,
            director: director_handle.clone(),
        };
        let file = settings
            .config_file
            .clone()
            .unwrap_or_else(|| config.path.clone());
        let watch = FileWatch::new(&file);
        let state = AgentLoop {
            config,
            settings,
            director: director_handle,
            hooks,
            alerts,
            watch,
            recorder,
        };
        let task = tokio::spawn(state.run(rx, shutdown, tracker, director_task));
        Agent { handle, task }
    }

    pub fn handle(&self) -> AgentHandle {
        self.handle.clone()
    }

    /// Waits until the agent has stopped.
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

struct AgentLoop {
    config: Config,
    settings: AgentSettings,
    director: DirectorHandle,
    hooks: Hooks,
    alerts: Alerts,
    watch: FileWatch,
    recorder: Arc<Recorder>,
}

impl AgentLoop {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<AgentRequest>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
        director_task: JoinHandle<()>,
    ) {
        let mut poll = tokio::time::interval(self.settings.file_poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        let stopped_by: Option<(String, oneshot::Sender<()>)> = loop {
            tokio::select! {
                request = rx.recv() => match request {
                    Some(AgentRequest::Reload(done)) => {
                        self.settings.logger.log("Reloading xdirectord daemon config on signal");
                        let ok = self.reload().await;
                        let _ = done.send(ok);
                    }
                    Some(AgentRequest::Stop(signal, done)) => break Some((signal, done)),
                    None => break None,
                },
                _ = poll.tick() => self.check_file().await,
            }
        };
        // ldirectord's ld_process_term: the instances first, then the data plane.
        self.hooks
            .instances(&self.config.global.execute, InstanceCommand::Stop);
        self.hooks.flush().await;
        self.director.stop().await;
        let _ = director_task.await;
        self.alerts.flush().await;
        self.hooks.flush().await;
        if let Some((signal, _)) = &stopped_by {
            self.settings
                .logger
                .log(format!("xdirectord daemon terminated on signal: {signal}"));
        }
        shutdown.cancel();
        drop(self);
        tracker.close();
        tracker.wait().await;
        if let Some((_, done)) = stopped_by {
            let _ = done.send(());
        }
    }

    /// A reload: the file again, and if it is good, the new configuration in force.
    async fn reload(&mut self) -> bool {
        let ok = self.try_reload().await;
        self.recorder.reloaded(ok);
        ok
    }

    async fn try_reload(&mut self) -> bool {
        let refuse = |logger: &Logger, e: ConfigError| {
            // ldirectord logs the error and keeps the configuration it runs.
            for line in e.render(std::process::id()).lines() {
                logger.log(line);
            }
            false
        };
        let config = match reread(&self.config, &self.watch.path, &self.settings.overrides) {
            Ok(config) => config,
            Err(e) => return refuse(&self.settings.logger, e),
        };
        // Preflight placed every virtual already; a data plane the new file needs must open
        // (IPVS on a kernel without it does not): otherwise the reload is refused too.
        let choices = placement::place(&config, &self.settings.overrides).unwrap_or_default();
        let placement = placement::placement(&choices);
        if let Err((kind, e)) = self.director.prepare(placement.clone()).await {
            let error = unavailable(&config, &choices, kind, &e);
            return refuse(&self.settings.logger, error);
        }
        for warning in &config.warnings {
            self.settings
                .logger
                .log(warning.render(std::process::id(), &config.path));
        }
        self.note_restart_only_changes(&config);
        let (old, new) = (&self.config.global.execute, &config.global.execute);
        let stop: Vec<String> = old.iter().filter(|c| !new.contains(c)).cloned().collect();
        let keep: Vec<String> = new.iter().filter(|c| old.contains(c)).cloned().collect();
        let start: Vec<String> = new.iter().filter(|c| !old.contains(c)).cloned().collect();
        self.hooks.instances(&stop, InstanceCommand::Stop);
        self.hooks.instances(&keep, InstanceCommand::ReloadOrStart);
        self.hooks.instances(&start, InstanceCommand::Start);
        if self.settings.log_follows_config {
            let sink = LogSink::for_config(&config, self.settings.debug);
            self.settings.logger.set_sink(sink);
        }
        for line in placement::lines(&config, &choices) {
            self.settings.logger.log(line);
        }
        // A virtual whose data plane changed moves.
        self.director.reload(config.clone(), placement).await;
        self.config = config;
        true
    }

    /// The data plane is opened once, at start: say so when a reload asks for another.
    fn note_restart_only_changes(&self, new: &Config) {
        let o = &self.settings.overrides;
        let (old, logger) = (&self.config, &self.settings.logger);
        if o.interfaces(old) != o.interfaces(new) {
            logger.log("interface changed: the change takes effect when xdirectord is restarted");
        }
        if o.metrics(old) != o.metrics(new) {
            logger.log("metrics changed: the change takes effect when xdirectord is restarted");
        }
        if old.global.xdpmode != new.global.xdpmode {
            logger.log("xdpmode changed: the change takes effect when xdirectord is restarted");
        }
        if old.global.tunnelsource != new.global.tunnelsource {
            logger
                .log("tunnelsource changed: the change takes effect when xdirectord is restarted");
        }
        let capacity = |c: &Config| {
            let g = &c.global;
            [
                ("maxflows", g.maxflows),
                ("maxtemplates", g.maxtemplates),
                ("maxvirtuals", g.maxvirtuals),
                ("maxreals", g.maxreals),
            ]
        };
        for ((name, old), (_, new)) in capacity(old).into_iter().zip(capacity(new)) {
            if old != new {
                logger.log(format!(
                    "{name} changed: the change takes effect when xdirectord is stopped and \
                     started again (a restart keeps the data plane's maps and what they hold)"
                ));
            }
        }
        let keys = |c: &Config| {
            c.virtuals
                .iter()
                .map(|v| (service_key(v), v.interfaces.clone()))
                .collect::<Vec<_>>()
        };
        if keys(old)
            .iter()
            .any(|(k, i)| keys(new).iter().any(|(k2, i2)| k == k2 && i != i2))
        {
            logger.log("interface of a virtual service changed: the change takes effect when xdirectord is restarted");
        }
    }

    /// ldirectord's `check_cfgfile`: when the file's mtime changes and its content with it,
    /// reload (`autoreload = yes`) or say it is ignored, then run `callback`.
    async fn check_file(&mut self) {
        // As shown in messages; the callback gets the file it can open (`watch.path`).
        let path = self.config.path.clone();
        let changed = match self.watch.changed() {
            Ok(changed) => changed,
            Err(()) => {
                self.settings.logger.log(format!(
                    "Warning [{}]: can not open file {} for checking",
                    std::process::id(),
                    path.display()
                ));
                return;
            }
        };
        if !changed {
            return;
        }
        let logger = self.settings.logger.clone();
        logger.log(format!(
            "Configuration file '{}' has changed on disk",
            path.display()
        ));
        if self.config.global.autoreload {
            logger.log(" - reread new configuration");
            self.reload().await;
        } else {
            logger.log(" - ignore new configuration");
        }
        if let Some(callback) = &self.config.global.callback
            && is_executable(Path::new(callback))
        {
            self.hooks
                .shell(format!("{callback} {}", self.watch.path.display()));
        }
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The configuration file as last seen: its mtime, and its content once the mtime moves.
struct FileWatch {
    path: PathBuf,
    mtime: Option<SystemTime>,
    content: Option<Vec<u8>>,
}

impl FileWatch {
    fn new(path: &Path) -> FileWatch {
        FileWatch {
            path: path.to_path_buf(),
            mtime: std::fs::metadata(path).and_then(|m| m.modified()).ok(),
            content: std::fs::read(path).ok(),
        }
    }

    /// True when the mtime and the content both changed since the last look; `Err` when the
    /// file cannot be read.
    fn changed(&mut self) -> Result<bool, ()> {
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if mtime == self.mtime {
            return Ok(false);
        }
        self.mtime = mtime;
        let content = std::fs::read(&self.path).map_err(|_| ())?;
        let changed = self.content.as_ref().is_some_and(|c| *c != content);
        self.content = Some(content);
        Ok(changed)
    }
}

/// The `-t` check: lb-config's, then [`preflight`]; prints to `out` as lb-config does and
/// returns the exit status (0 valid, 2 invalid, 1 not found).
pub fn check_config(
    arg: Option<&OsStr>,
    overrides: &BackendOverrides,
    out: &mut dyn std::io::Write,
) -> i32 {
    let pid = std::process::id();
    let (text, status) = match lb_config::find_and_load(arg) {
        Ok(mut config) => match preflight(&mut config, overrides) {
            Ok(()) => (
                config
                    .warnings
                    .iter()
                    .map(|w| w.render(pid, &config.path))
                    .collect(),
                0,
            ),
            Err(e) => (e.render(pid), e.exit_code()),
        },
        Err(e) => (e.render(pid), e.exit_code()),
    };
    // Nothing sensible is left to do if the output is gone; the status still tells.
    let _ = out.write_all(String::as_bytes(&text));
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_config::testing::config;

    #[test]
    fn interfaces_are_the_command_line_s_or_every_one_the_file_names() {
        let config = config(
            "interface=eth0\n\
             virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate\n\tchecktype=on\n\
             virtual=192.0.2.2:80\n\treal=192.0.2.12:80 gate\n\tchecktype=on\n\tinterface=eth1\n",
        );
        assert_eq!(
            BackendOverrides::default().interfaces(&config),
            ["eth0", "eth1"]
        );
        let cli = BackendOverrides {
            interfaces: vec!["bond0".into()],
            ..Default::default()
        };
        assert_eq!(cli.interfaces(&config), ["bond0"]);
    }
}
