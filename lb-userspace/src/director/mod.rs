//! The director: check verdicts and configurations in, the desired table out to the backend.
//!
//! ```text
//! HealthRunner --CheckResult--> Director --DesiredTable--> Backend::apply
//! Agent --reload(Config) / stop-->
//! ```
//!
//! The decisions are in [`core`] (pure, unit-tested); this module is the event loop around it:
//! it feeds check results in, applies the table the moment it changes (a burst of results that
//! is already waiting is applied as one table, nothing is delayed on purpose), and hands log
//! lines, alerts, hook commands and monitor lines to their writers.

pub mod changes;
pub mod checks;
pub mod core;
pub mod desired;
pub mod state;
#[cfg(test)]
mod tests;

use std::time::Duration;

use lb_config::Config;
use lb_health::{CheckResult, HealthRunner, RunnerConfig, RunnerStats};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use self::core::{Core, DaemonStatus, Effects, Mail, MonitorRecord, fallback_command_line};
pub use self::desired::{Placement, RealKey};
pub use self::state::{Health, RealState, Verdict};
use crate::alert::Alerts;
use crate::backend::{Backend, Notes};
use crate::hooks::Hooks;
use crate::log::{Logger, append_monitor, localtime_now, monitor_line};
use crate::table::{DesiredTable, diff::Op};

/// How many check results are taken in one go before the table is applied: enough for a
/// mass failure of 10,000 reals to cost a handful of applies, few enough that the loop stays
/// responsive to reloads and stops.
const RESULT_BATCH: usize = 4096;

/// After a failed apply, the next attempt: one second, doubling to a minute while the same
/// error repeats (a real the kernel refuses would otherwise be retried, and logged, every
/// second).
const APPLY_RETRY: Duration = Duration::from_secs(1);
const APPLY_RETRY_MAX: Duration = Duration::from_secs(60);

/// What the director needs besides the configuration and the backend.
pub struct DirectorSettings {
    pub logger: Logger,
    /// Where to record the time of each successful apply, for `show`; `None` in tests.
    pub status_file: Option<std::path::PathBuf>,
    pub runner: RunnerConfig,
    pub alerts: Alerts,
    pub hooks: Hooks,
    /// Where each real's health, its checks' timings and failed applies are recorded for
    /// the metrics.
    pub recorder: std::sync::Arc<crate::metrics::Recorder>,
}

/// Counters since the director started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectorStats {
    /// Check results received.
    pub results: u64,
    /// Tables applied successfully.
    pub applies: u64,
    /// Applies that failed (each is retried).
    pub apply_errors: u64,
    /// lb-health checks left running, started and stopped by configurations put in force
    /// (the first one included).
    pub checks_kept: u64,
    pub checks_started: u64,
    pub checks_stopped: u64,
    /// The longest time, in microseconds, from a check result's arrival to the apply of the
    /// table it changed: the director's share of a failed real's time to leave the data
    /// plane (the rest is the check itself).
    pub result_to_apply_max_us: u64,
    /// The same for the latest apply caused by check results.
    pub result_to_apply_last_us: u64,
}

/// The director's state, for tests and diagnostics.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub table: DesiredTable,
    pub reals: Vec<(RealKey, RealState)>,
    pub started: bool,
    pub stats: DirectorStats,
    /// Distinct checks lb-health runs.
    pub checks: usize,
    /// lb-health's counters (rounds, late rounds, waits for an in-flight slot).
    pub runner: RunnerStats,
}

/// A data plane a reload needs that cannot be opened, and why.
pub type Unavailable = (crate::table::BackendKind, crate::backend::BackendError);

enum Request {
    Prepare(Placement, oneshot::Sender<Result<(), Unavailable>>),
    Reload(Box<Config>, Placement, oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
    Snapshot(oneshot::Sender<Snapshot>),
}

/// Talks to a running [`Director`]; cheap to clone.
#[derive(Clone)]
pub struct DirectorHandle {
    tx: mpsc::Sender<Request>,
}

impl DirectorHandle {
    /// Opens the data planes `placement` puts virtuals on, before a reload that needs them;
    /// `Err` names one that cannot be opened.
    pub async fn prepare(&self, placement: Placement) -> Result<(), Unavailable> {
        let (done, wait) = oneshot::channel();
        if self
            .tx
            .send(Request::Prepare(placement, done))
            .await
            .is_err()
        {
            return Ok(());
        }
        wait.await.unwrap_or(Ok(()))
    }

    /// Replaces the configuration (already read and checked, its virtuals placed) and waits
    /// until it is in force.
    pub async fn reload(&self, config: Config, placement: Placement) {
        let (done, wait) = oneshot::channel();
        if self
            .tx
            .send(Request::Reload(Box::new(config), placement, done))
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
    }

    /// Stops the director (cleanstop applied) and waits until it has.
    pub async fn stop(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Request::Stop(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// `None` once the director has stopped.
    pub async fn snapshot(&self) -> Option<Snapshot> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Request::Snapshot(tx)).await.ok()?;
        rx.await.ok()
    }
}

/// The event loop. Create with [`Director::new`], run with [`Director::run`].
pub struct Director {
    core: Core,
    backend: Box<dyn Backend>,
    runner: HealthRunner<RealKey>,
    results: mpsc::Receiver<CheckResult<RealKey>>,
    requests: mpsc::Receiver<Request>,
    settings: DirectorSettings,
    stats: DirectorStats,
    start_deadline: Duration,
    /// After a failed apply: when to try again, and how long to wait after that.
    retry: Option<(Instant, Duration)>,
    /// The last apply error logged, so a repeat of it is not logged again.
    last_error: Option<String>,
    shutdown: CancellationToken,
}

impl Director {
    /// A director for `config` that drives `backend`. Must be called within a tokio runtime.
    /// Cancelling `shutdown` ends the loop without touching the data plane; a clean stop is
    /// [`DirectorHandle::stop`].
    pub fn new(
        config: Config,
        placement: Placement,
        backend: Box<dyn Backend>,
        settings: DirectorSettings,
        shutdown: &CancellationToken,
    ) -> (Director, DirectorHandle) {
        let checks = config.virtuals.iter().map(|v| v.reals.len()).sum::<usize>();
        // Room for one round of every check, so the runner rarely waits on us.
        let (results_tx, results) = mpsc::channel(checks.clamp(1024, 65536));
        let (tx, requests) = mpsc::channel(16);
        let runner = HealthRunner::new(results_tx, settings.runner.clone(), shutdown);
        let start_deadline = core::start_deadline(&config, settings.runner.jitter.first_spread_max);
        let mut core = Core::new(config, placement);
        settings.recorder.configure(core.config(), |_| false);
        match backend.held() {
            Ok(held) => core.set_held(held),
            Err(e) => settings
                .logger
                .log(format!("Failed to read the data plane back: {e}")),
        }
        let director = Director {
            core,
            backend,
            runner,
            results,
            requests,
            settings,
            stats: DirectorStats::default(),
            start_deadline,
            retry: None,
            last_error: None,
            shutdown: shutdown.clone(),
        };
        (director, DirectorHandle { tx })
    }

    /// Runs until stopped (through a handle, or when every handle is gone) or cancelled.
    pub async fn run(mut self) {
        self.replace_checks();
        let fx = self.core.commit(std::time::Instant::now());
        self.perform(fx);
        let start_deadline = Instant::now() + self.start_deadline;
        let mut resend = tokio::time::interval(Duration::from_secs(1));
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let retry_at = self.retry.map_or_else(Instant::now, |(at, _)| at);
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                request = self.requests.recv() => match request {
                    Some(Request::Prepare(placement, done)) => {
                        let kinds = placement.values().copied().collect();
                        let _ = done.send(self.backend.prepare(&kinds));
                    }
                    Some(Request::Reload(config, placement, done)) => {
                        self.reload(*config, placement);
                        let _ = done.send(());
                    }
                    Some(Request::Snapshot(tx)) => {
                        let _ = tx.send(self.snapshot());
                    }
                    Some(Request::Stop(done)) => {
                        self.stop();
                        self.runner.shutdown().await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.stop();
                        break;
                    }
                },
                Some(result) = self.results.recv() => {
                    let arrived = Instant::now();
                    let applies = self.stats.applies;
                    self.observe(result);
                    // Whatever else is already waiting goes into the same table.
                    for _ in 1..RESULT_BATCH {
                        match self.results.try_recv() {
                            Ok(result) => self.observe(result),
                            Err(_) => break,
                        }
                    }
                    let fx = self.core.commit(std::time::Instant::now());
                    self.perform(fx);
                    if self.stats.applies != applies {
                        let took = u64::try_from(arrived.elapsed().as_micros()).unwrap_or(u64::MAX);
                        self.stats.result_to_apply_max_us = self.stats.result_to_apply_max_us.max(took);
                        self.stats.result_to_apply_last_us = took;
                    }
                }
                () = tokio::time::sleep_until(start_deadline), if !self.core.started() => {
                    let fx = self.core.finish_start(std::time::Instant::now());
                    self.perform(fx);
                }
                () = tokio::time::sleep_until(retry_at), if self.retry.is_some() => {
                    for line in self.resync() {
                        self.settings.logger.log(line);
                    }
                }
                _ = resend.tick() => {
                    let fx = self.core.resend(std::time::Instant::now());
                    self.perform(fx);
                    self.refresh();
                }
            }
        }
        self.runner.shutdown().await;
    }

    fn observe(&mut self, result: CheckResult<RealKey>) {
        self.stats.results += 1;
        let verdict = match (result.up, result.maintenance) {
            (_, true) => Verdict::Maintenance,
            (true, false) => Verdict::Up,
            (false, false) => Verdict::Down,
        };
        let before = self.health(&result.key);
        let fx = self.core.observe(&result.key, verdict, &result.reason);
        let after = self.health(&result.key);
        self.settings.recorder.check(
            &result.key,
            result.duration,
            result.failure,
            after == Some(Health::Up),
            before != after,
        );
        self.perform(fx);
    }

    fn health(&self, key: &RealKey) -> Option<Health> {
        self.core.reals().get(key).map(|s| s.health)
    }

    fn replace_checks(&mut self) {
        let reload = self.runner.replace(checks::specs(self.core.config()));
        self.stats.checks_kept += reload.kept as u64;
        self.stats.checks_started += reload.started as u64;
        self.stats.checks_stopped += reload.stopped as u64;
        for (key, error) in reload.rejected {
            let fx = self.core.refuse(&key, &error.to_string());
            self.settings.recorder.health_changed(&key, false);
            self.perform(fx);
        }
    }

    fn reload(&mut self, config: Config, placement: Placement) {
        let fx = self
            .core
            .reload(config, placement, std::time::Instant::now());
        let reals = self.core.reals();
        self.settings.recorder.configure(self.core.config(), |k| {
            reals.get(k).is_some_and(|s| s.is_up())
        });
        self.perform(fx);
        self.replace_checks();
        let fx = self.core.commit(std::time::Instant::now());
        self.perform(fx);
    }

    fn stop(&mut self) {
        let fx = self.core.stop(std::time::Instant::now());
        self.perform(fx);
        if let Err(e) = self.backend.shutdown() {
            self.settings
                .logger
                .log(format!("Failed to close the data plane on stop: {e}"));
        }
    }

    /// Carries out what the core decided: the ops first, so that a real that failed is out
    /// of the data plane before anything is written about it.
    fn perform(&mut self, fx: Effects) {
        let notes = if fx.ops.is_empty() {
            Vec::new()
        } else {
            self.execute(&fx.ops)
        };
        for line in fx.lines.iter().chain(&notes) {
            self.settings.logger.log(line);
        }
        for mail in fx.mails {
            self.settings.alerts.send(mail);
        }
        for command in fx.commands {
            self.settings.hooks.shell(command);
        }
        if !fx.monitor.is_empty() {
            let (now, pid) = (localtime_now(), std::process::id());
            for record in fx.monitor {
                let line = monitor_line(&now, pid, &record.real_id, record.up, &record.reason);
                if let Err(e) = append_monitor(&record.path, &line) {
                    self.settings.logger.log(format!(
                        "Error writing to monitorfile '{}': {e}",
                        record.path.display()
                    ));
                }
            }
        }
    }

    /// Hands `ops` to the backend. While an earlier apply is to be retried, the backend may not
    /// hold what the core thinks it holds: then the retry puts the whole table right instead.
    fn execute(&mut self, ops: &[Op]) -> Notes {
        if self.retry.is_some() {
            return self.resync();
        }
        let result = self.backend.apply(ops);
        self.applied(result)
    }

    /// After a failed apply: makes the backend hold the core's table, from what it reads back.
    fn resync(&mut self) -> Notes {
        let result = self.backend.held().and_then(|held| {
            let ops = crate::table::diff::diff(&held, self.core.table());
            self.backend.apply(&ops)
        });
        self.applied(result)
    }

    fn applied(&mut self, result: Result<Notes, crate::backend::BackendError>) -> Notes {
        match result {
            Ok(notes) => {
                self.stats.applies += 1;
                self.retry = None;
                self.last_error = None;
                if let Some(path) = &self.settings.status_file {
                    // Only `show` reads it; failing to write it is not worth a log line a change.
                    let _ = std::fs::write(path, format!("{}\n", crate::log::localtime_now()));
                }
                notes
            }
            Err(e) => {
                self.stats.apply_errors += 1;
                self.settings.recorder.apply_failed();
                let message = format!("Failed to apply the table to the data plane: {e}");
                if self.last_error.as_ref() != Some(&message) {
                    self.settings.logger.log(&message);
                }
                self.last_error = Some(message);
                let wait = self
                    .retry
                    .map_or(APPLY_RETRY, |(_, wait)| (wait * 2).min(APPLY_RETRY_MAX));
                self.retry = Some((Instant::now() + wait, wait));
                Notes::new()
            }
        }
    }

    /// About once a second: the backend follows what it watches (paths to reals, idle flows)
    /// and puts right what changed behind its back; what it put right is logged.
    fn refresh(&mut self) {
        let desired = self.core.started().then(|| self.core.table());
        match self.backend.refresh(desired) {
            Ok(report) => {
                for line in report {
                    self.settings.logger.log(line);
                }
            }
            Err(e) => self
                .settings
                .logger
                .log(format!("Failed to refresh the data plane: {e}")),
        }
    }

    fn snapshot(&self) -> Snapshot {
        let mut reals: Vec<(RealKey, RealState)> =
            self.core.reals().iter().map(|(k, s)| (*k, *s)).collect();
        reals.sort_by_key(|(k, _)| *k);
        Snapshot {
            table: self.core.table().clone(),
            reals,
            started: self.core.started(),
            stats: self.stats,
            checks: self.runner.len(),
            runner: self.runner.stats(),
        }
    }
}
