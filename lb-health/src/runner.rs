//! The runner: one lightweight task per distinct check, each on its own jittered schedule,
//! reporting every completed round to the agent.
//!
//! * Deduplication: the agent hands over `(key, spec)` pairs; pairs with equal specs share one
//!   task, and each completed round is reported once per key.
//! * Reload: [`HealthRunner::replace`] diffs the new set against the running one by spec.
//!   Unchanged checks keep their task, schedule and state (the combined counter), only their
//!   keys are updated; removed ones are aborted; new ones start with a random first delay.
//! * Limits: at most `max_in_flight` probes run at once so a mass outage cannot exhaust file
//!   descriptors. A check that has to wait for a slot is counted in [`RunnerStats`] and logged
//!   (at most every 10 s), never delayed silently.
//! * Results: completed rounds are queued and sent to the agent in batches by one task
//!   (`report`); a slow agent is counted, never silent.
//! * Shutdown: a [`CancellationToken`] (a child of the agent's) aborts every task, which stops
//!   at its next await; [`HealthRunner::shutdown`] waits for them on a [`TaskTracker`].

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::check::{Checker, DEFAULT_MAX_PROCESSES, Probes};
use crate::error::CheckError;
use crate::outcome::{CheckOutcome, Failure};
use crate::report::Reports;
use crate::schedule::Jitter;
use crate::spec::CheckSpec;
use crate::tls::TrustedCas;

/// A runner-assigned number for one distinct (deduplicated) check, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckId(pub u64);

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "check#{}", self.0)
    }
}

/// One completed round of one check, for one of the keys that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult<K> {
    /// The agent's key given to [`HealthRunner::replace`] (e.g. virtual + real).
    pub key: K,
    /// The distinct check that ran; equal for every key sharing it.
    pub check: CheckId,
    /// The condition held.
    pub up: bool,
    /// Forced down by a maintenance file: take the real down without counting failures.
    pub maintenance: bool,
    /// A short reason for logs.
    pub reason: Arc<str>,
    /// Why the check failed; `None` when up or in maintenance.
    pub failure: Option<Failure>,
    /// How long the round's probe took (waiting for an in-flight slot not included).
    pub duration: Duration,
}

/// How the runner schedules and limits checks.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub jitter: Jitter,
    /// Probes running at once, at most. Each holds a socket and its buffers (about 2 KiB for
    /// http, tens of KiB for https during the handshake), so this bounds the runner's memory
    /// when reals answer slowly or not at all. A round that has to wait for a slot is counted
    /// in [`RunnerStats::waited_for_slot`] and logged.
    pub max_in_flight: usize,
    /// External check commands running at once, at most.
    pub max_processes: usize,
    /// Run the checks on a thread of their own (a single-threaded tokio runtime, thread name
    /// `lb-health`) instead of the caller's runtime. On by default: a single-threaded
    /// runtime spends less CPU per check than a multi-threaded one (no work stealing, no
    /// wake-ups between workers; check-bench, docs/health-checks.md), it keeps the agent's
    /// own work and the checks from delaying each other, and one core is far more than
    /// 10,000 checks a second need. Results reach the agent in batches (`report`).
    pub own_thread: bool,
    /// The CAs https, pops and imaps checks trust: the system's store, as ldirectord on Debian.
    pub trusted_cas: TrustedCas,
}

impl Default for RunnerConfig {
    /// Jitter defaults; `max_in_flight` [`DEFAULT_MAX_IN_FLIGHT`], or less when the open-file
    /// limit in force now is low (half of it, so the rest of the agent keeps descriptors;
    /// call [`raise_nofile_limit`] first); checks on their own thread.
    fn default() -> RunnerConfig {
        RunnerConfig {
            jitter: Jitter::default(),
            max_in_flight: in_flight_for_nofile(nofile_limit()),
            max_processes: DEFAULT_MAX_PROCESSES,
            own_thread: true,
            trusted_cas: TrustedCas::System,
        }
    }
}

/// Default for [`RunnerConfig::max_in_flight`]: far more than checks need in flight when reals
/// answer (10,000 checks a second with a 10 ms answer are 100 in flight), and few enough that
/// the runner stays under 100 MiB when they all hang mid-handshake. Reals that all time out
/// (a blackholed network) then wait for slots: counted and logged, never silent.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;

fn in_flight_for_nofile(soft_limit: u64) -> usize {
    usize::try_from(soft_limit.saturating_sub(64) / 2)
        .unwrap_or(usize::MAX)
        .clamp(16, DEFAULT_MAX_IN_FLIGHT)
}

fn nofile_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    }
}

/// Raises the soft open-file limit to the hard one (often 1024 → 524288) and returns it.
/// 10,000 checks against dead reals can hold 10,000 sockets at once.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// Counters since the runner started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunnerStats {
    /// Distinct checks running now.
    pub checks: u64,
    /// Rounds completed (with or without a report).
    pub rounds: u64,
    pub up: u64,
    pub down: u64,
    /// Rounds that had to wait for an in-flight slot.
    pub waited_for_slot: u64,
    /// Rounds that started later than their planned time because the previous one ran past
    /// it (a probe slower than `checkinterval`, e.g. timing out).
    pub overran: u64,
    /// Results that found the agent's channel full: delivery waited for the agent.
    pub results_waited: u64,
    /// Rounds whose check waited before its next round because the agent had not taken the
    /// results of many earlier rounds yet (a slow agent delays checks; this counts it).
    pub rounds_held: u64,
}

#[derive(Default)]
struct Counters {
    rounds: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
    waited_for_slot: AtomicU64,
    overran: AtomicU64,
}

/// What every task of a runner shares.
struct Shared<K> {
    probes: Probes,
    in_flight: Semaphore,
    max_in_flight: usize,
    jitter: Jitter,
    reports: Reports<K>,
    counters: Counters,
    /// When the last "waited for a slot" warning was logged, and how many waits since.
    slot_warning: Mutex<(Option<Instant>, u64)>,
}

const SLOT_WARNING_EVERY: Duration = Duration::from_secs(10);

impl<K> Shared<K> {
    fn note_slot_wait(&self) {
        self.counters
            .waited_for_slot
            .fetch_add(1, Ordering::Relaxed);
        let mut warning = self.slot_warning.lock().unwrap_or_else(|e| e.into_inner());
        warning.1 += 1;
        let now = Instant::now();
        if warning
            .0
            .is_none_or(|last| now - last >= SLOT_WARNING_EVERY)
        {
            tracing::warn!(
                waits = warning.1,
                max_in_flight = self.max_in_flight,
                "health checks waited for an in-flight slot: checks run later than their interval"
            );
            *warning = (Some(now), 0);
        }
    }
}

struct Running<K> {
    id: CheckId,
    keys: Arc<Mutex<Arc<[K]>>>,
}

/// How to stop each check task: aborting a task drops it at its next await, probes included,
/// and costs nothing while it runs (a cancellation token would be polled at every wake-up).
type Tasks = Arc<Mutex<HashMap<CheckId, AbortHandle>>>;

fn abort_all(tasks: &Tasks) {
    for (_, task) in tasks.lock().unwrap_or_else(|e| e.into_inner()).drain() {
        task.abort();
    }
}

/// What [`HealthRunner::replace`] did.
#[derive(Debug)]
pub struct Reload<K> {
    /// Distinct checks left running undisturbed.
    pub kept: usize,
    pub started: usize,
    pub stopped: usize,
    /// Keys whose spec was refused; they get no results (so their reals never come up).
    pub rejected: Vec<(K, CheckError)>,
}

/// Runs the agent's checks and sends every completed round to `results`.
pub struct HealthRunner<K> {
    running: HashMap<CheckSpec, Running<K>>,
    shared: Arc<Shared<K>>,
    tasks: Tasks,
    cancel: CancellationToken,
    tracker: TaskTracker,
    runtime: Runtime,
    next_id: u64,
}

/// Where check tasks run.
struct Runtime {
    handle: tokio::runtime::Handle,
    /// Ends the runner's own thread, if it has one.
    stop: Option<CancellationToken>,
}

impl Runtime {
    fn current() -> Runtime {
        Runtime {
            handle: tokio::runtime::Handle::current(),
            stop: None,
        }
    }

    /// A single-threaded runtime on a thread named `lb-health`; falls back to the caller's
    /// runtime if the thread cannot be started.
    fn own_thread() -> Runtime {
        let stop = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let stopped = stop.clone();
        let started = std::thread::Builder::new()
            .name("lb-health".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot build the health-check runtime");
                        return;
                    }
                };
                if tx.send(runtime.handle().clone()).is_ok() {
                    // Spawned checks run while this thread blocks here.
                    runtime.block_on(stopped.cancelled());
                }
            });
        match started.ok().and_then(|_| rx.recv().ok()) {
            Some(handle) => Runtime {
                handle,
                stop: Some(stop),
            },
            None => Runtime::current(),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            stop.cancel();
        }
    }
}

impl<K> HealthRunner<K>
where
    K: Clone + Send + Sync + 'static,
{
    /// A runner with no checks. `shutdown` is the agent's token: cancelling it stops every
    /// check. Must be called within a tokio runtime (with time, I/O and process support when
    /// `own_thread` is off).
    pub fn new(
        results: mpsc::Sender<CheckResult<K>>,
        config: RunnerConfig,
        shutdown: &CancellationToken,
    ) -> HealthRunner<K> {
        let runner = HealthRunner {
            running: HashMap::new(),
            shared: Arc::new(Shared {
                probes: Probes::with_trusted_cas(config.max_processes, &config.trusted_cas),
                in_flight: Semaphore::new(config.max_in_flight.max(1)),
                max_in_flight: config.max_in_flight.max(1),
                jitter: config.jitter,
                reports: Reports::new(results),
                counters: Counters::default(),
                slot_warning: Mutex::new((None, 0)),
            }),
            tasks: Tasks::default(),
            cancel: shutdown.child_token(),
            tracker: TaskTracker::new(),
            runtime: if config.own_thread {
                Runtime::own_thread()
            } else {
                Runtime::current()
            },
            next_id: 1,
        };
        let shared = Arc::clone(&runner.shared);
        let cancel = runner.cancel.clone();
        runner.tracker.spawn_on(
            async move { cancel.run_until_cancelled(shared.reports.deliver()).await },
            &runner.runtime.handle,
        );
        // The agent's token stops every check.
        let (cancel, tasks) = (runner.cancel.clone(), Arc::clone(&runner.tasks));
        runner.tracker.spawn_on(
            async move {
                cancel.cancelled().await;
                abort_all(&tasks);
            },
            &runner.runtime.handle,
        );
        runner
    }

    /// Makes `checks` the running set: keeps unchanged checks as they are, starts new ones,
    /// stops the rest. Keys whose spec is refused are returned in [`Reload::rejected`].
    pub fn replace(&mut self, checks: impl IntoIterator<Item = (K, CheckSpec)>) -> Reload<K> {
        let mut rejected = Vec::new();
        // Grouped by spec, in first-seen order so start order follows the configuration.
        let mut order: Vec<CheckSpec> = Vec::new();
        let mut wanted: HashMap<CheckSpec, Vec<K>> = HashMap::new();
        for (key, spec) in checks {
            if let Err(e) = spec.validate() {
                rejected.push((key, e));
                continue;
            }
            match wanted.get_mut(&spec) {
                Some(keys) => keys.push(key),
                None => {
                    order.push(spec.clone());
                    wanted.insert(spec, vec![key]);
                }
            }
        }

        let before = self.running.len();
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        self.running.retain(|spec, running| {
            let keep = wanted.contains_key(spec);
            if !keep && let Some(task) = tasks.remove(&running.id) {
                task.abort();
            }
            keep
        });
        drop(tasks);
        let stopped = before - self.running.len();

        let (mut kept, mut started) = (0, 0);
        for spec in order {
            let Some(keys) = wanted.remove(&spec) else {
                continue;
            };
            if let Some(running) = self.running.get(&spec) {
                *running.keys.lock().unwrap_or_else(|e| e.into_inner()) = keys.into();
                kept += 1;
                continue;
            }
            match Checker::new(spec.clone()) {
                Ok(checker) => {
                    self.start(spec, checker, keys);
                    started += 1;
                }
                Err(e) => rejected.extend(keys.into_iter().map(|k| (k, e.clone()))),
            }
        }
        Reload {
            kept,
            started,
            stopped,
            rejected,
        }
    }

    fn start(&mut self, spec: CheckSpec, checker: Checker, keys: Vec<K>) {
        let id = CheckId(self.next_id);
        self.next_id += 1;
        let keys: Arc<Mutex<Arc<[K]>>> = Arc::new(Mutex::new(keys.into()));
        let first_delay = self
            .shared
            .jitter
            .first_delay(spec.check_interval, fastrand::f64());
        let task = CheckTask {
            id,
            checker,
            keys: Arc::clone(&keys),
            shared: Arc::clone(&self.shared),
        };
        self.running.insert(spec, Running { id, keys });
        let task = self
            .tracker
            .spawn_on(task.rounds(first_delay), &self.runtime.handle)
            .abort_handle();
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, task.clone());
        // The agent's token may have fired (and its watcher aborted every task it knew)
        // before this one was registered.
        if self.cancel.is_cancelled() {
            task.abort();
        }
    }

    /// The id of the running check for `spec`, if any.
    pub fn check_id(&self, spec: &CheckSpec) -> Option<CheckId> {
        self.running.get(spec).map(|r| r.id)
    }

    /// Distinct checks running.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    pub fn stats(&self) -> RunnerStats {
        let c = &self.shared.counters;
        RunnerStats {
            checks: self.running.len() as u64,
            rounds: c.rounds.load(Ordering::Relaxed),
            up: c.up.load(Ordering::Relaxed),
            down: c.down.load(Ordering::Relaxed),
            waited_for_slot: c.waited_for_slot.load(Ordering::Relaxed),
            overran: c.overran.load(Ordering::Relaxed),
            results_waited: self.shared.reports.channel_full.load(Ordering::Relaxed),
            rounds_held: self.shared.reports.rounds_held.load(Ordering::Relaxed),
        }
    }

    /// Stops every check and waits until their tasks have ended (probes in progress are
    /// dropped, closing their sockets; a running check command is killed).
    pub async fn shutdown(self) {
        self.cancel.cancel();
        abort_all(&self.tasks);
        self.tracker.close();
        self.tracker.wait().await;
        // Dropping `self` ends the runner's own thread.
    }
}

impl<K> Drop for HealthRunner<K> {
    /// A runner dropped without `shutdown` still stops its checks (without waiting for them).
    fn drop(&mut self) {
        self.cancel.cancel();
        abort_all(&self.tasks);
    }
}

struct CheckTask<K> {
    id: CheckId,
    checker: Checker,
    keys: Arc<Mutex<Arc<[K]>>>,
    shared: Arc<Shared<K>>,
}

impl<K> CheckTask<K>
where
    K: Clone + Send + Sync + 'static,
{
    /// Rounds until the task is aborted, which drops the round wherever it is, probes
    /// included.
    async fn rounds(mut self, first_delay: Duration) {
        let interval = self.checker.spec().check_interval;
        let mut next = Instant::now() + first_delay;
        loop {
            tokio::time::sleep_until(next).await;
            let outcome = {
                let _slot = match self.shared.in_flight.try_acquire() {
                    Ok(slot) => slot,
                    Err(_) => {
                        self.shared.note_slot_wait();
                        match self.shared.in_flight.acquire().await {
                            Ok(slot) => slot,
                            Err(_closed) => return,
                        }
                    }
                };
                let started = Instant::now();
                // Small: the probes inside are boxed (see `check::bounded`).
                let outcome = self.checker.check(&self.shared.probes).await;
                outcome.map(|o| (o, started.elapsed()))
            };
            let counters = &self.shared.counters;
            counters.rounds.fetch_add(1, Ordering::Relaxed);
            if let Some((outcome, duration)) = outcome {
                let tally = if outcome.up {
                    &counters.up
                } else {
                    &counters.down
                };
                tally.fetch_add(1, Ordering::Relaxed);
                if !self.report(outcome, duration).await {
                    return;
                }
            }
            next += self.shared.jitter.period(interval, fastrand::f64());
            let now = Instant::now();
            if next < now {
                counters.overran.fetch_add(1, Ordering::Relaxed);
                next = now;
            }
        }
    }

    /// Queues the outcome for every key; false when the agent has gone.
    async fn report(&self, outcome: CheckOutcome, duration: Duration) -> bool {
        let keys = Arc::clone(&self.keys.lock().unwrap_or_else(|e| e.into_inner()));
        self.shared
            .reports
            .queue(keys, self.id, outcome, duration)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_limit_leaves_descriptors_to_the_agent() {
        assert_eq!(in_flight_for_nofile(1024), 480);
        assert_eq!(in_flight_for_nofile(0), 16);
        assert_eq!(in_flight_for_nofile(u64::MAX), DEFAULT_MAX_IN_FLIGHT);
    }
}
