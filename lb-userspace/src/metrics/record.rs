//! What the agent records as it runs, for the metrics: each real's health as the director
//! decided it and when it last changed, its configured weight, its checks' durations and
//! failures, and the agent's reloads and failed applies. The director and the agent write it
//! (a lock held for a few map operations); a scrape copies it ([`Recorder::snapshot`]) and
//! builds the response from the copy, so a scrape never holds the lock while it works.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use lb_config::{CheckType, Config};
use lb_health::Failure;

use crate::director::desired::{RealKey, service_key};
use crate::table::ServiceKey;

/// Upper bounds of the check-duration histogram's buckets, in seconds: from a loopback connect
/// to ldirectord's default negotiatetimeout (30 s) and beyond.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One real of one virtual, as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct RealRecord {
    /// The real's port in the data plane (a direct-routing real takes the virtual's).
    pub port: u16,
    pub weight: u32,
    /// The check's name: the service for a negotiate check (`http`, `dns`, …), else the
    /// check type (`connect`, `ping`, `external`, `combined`, `on`).
    pub check: &'static str,
    pub up: bool,
    /// When the director last decided the real up or down, in Unix seconds; `None` before
    /// its first verdict.
    pub changed: Option<f64>,
    pub durations: Durations,
    /// Failed checks by [`Failure`], in [`Failure::ALL`]'s order.
    pub failures: [u64; 4],
}

/// A histogram of check durations: counts per bucket of [`DURATION_BUCKETS`] (not
/// cumulative; the last is the overflow), their sum and count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Durations {
    pub buckets: [u64; DURATION_BUCKETS.len() + 1],
    pub sum: f64,
    pub count: u64,
}

impl Durations {
    fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = DURATION_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += secs;
        self.count += 1;
    }
}

/// A virtual: up while one of its reals is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VirtualRecord {
    pub reals_up: usize,
    pub changed: Option<f64>,
}

/// A copy of what is recorded, taken at a scrape.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    pub reals: Vec<(RealKey, RealRecord)>,
    pub virtuals: Vec<(ServiceKey, VirtualRecord)>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Unix seconds when the configuration in force was read (start or reload).
    pub last_reload: Option<f64>,
    pub apply_errors: u64,
}

#[derive(Default)]
struct Health {
    reals: HashMap<RealKey, RealRecord>,
    virtuals: HashMap<ServiceKey, VirtualRecord>,
}

/// Shared by the director, the agent and the metrics server.
#[derive(Default)]
pub struct Recorder {
    health: Mutex<Health>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// Unix milliseconds, 0 = none yet.
    last_reload_ms: AtomicU64,
    apply_errors: AtomicU64,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The check's name for a virtual (see [`RealRecord::check`]).
pub fn check_name(vs: &lb_config::VirtualService) -> &'static str {
    match vs.check.checktype {
        CheckType::Negotiate => vs.check.service.as_str(),
        CheckType::Connect => "connect",
        CheckType::Combined(_) => "combined",
        CheckType::Ping => "ping",
        CheckType::External => "external",
        CheckType::ExternalPerl => "external-perl",
        CheckType::Off => "off",
        CheckType::On => "on",
    }
}

impl Recorder {
    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A configuration is in force: its reals are recorded with their configured weights;
    /// those that stay keep their health and counts, the others are dropped. `up` says
    /// which reals the director holds up.
    pub fn configure(&self, config: &Config, up: impl Fn(&RealKey) -> bool) {
        let ms = (unix_now() * 1000.0) as u64;
        self.last_reload_ms.store(ms, Ordering::Relaxed);
        let mut health = self.health();
        let mut reals = HashMap::new();
        for vs in &config.virtuals {
            let service = service_key(vs);
            for real in &vs.reals {
                let key = RealKey::new(service, real);
                let old = health.reals.remove(&key);
                let is_up = up(&key);
                let record = RealRecord {
                    port: service.dest_port(real.forwarding, real.port),
                    weight: real.weight,
                    check: check_name(vs),
                    up: is_up,
                    changed: old.as_ref().and_then(|o| o.changed),
                    durations: old
                        .as_ref()
                        .map(|o| o.durations.clone())
                        .unwrap_or_default(),
                    failures: old.as_ref().map_or([0; 4], |o| o.failures),
                };
                reals.entry(key).or_insert(record);
            }
        }
        let mut virtuals: HashMap<ServiceKey, VirtualRecord> = HashMap::new();
        for (key, record) in &reals {
            let v = virtuals.entry(key.service).or_insert_with(|| {
                health
                    .virtuals
                    .get(&key.service)
                    .map(|o| VirtualRecord {
                        reals_up: 0,
                        changed: o.changed,
                    })
                    .unwrap_or_default()
            });
            v.reals_up += usize::from(record.up);
        }
        health.reals = reals;
        health.virtuals = virtuals;
    }

    /// One check result: its duration, its failure if any, and the real's health after the
    /// director took it in (`changed` when that differs from before).
    pub fn check(
        &self,
        key: &RealKey,
        duration: Duration,
        failure: Option<Failure>,
        up: bool,
        changed: bool,
    ) {
        let mut health = self.health();
        let Some(record) = health.reals.get_mut(key) else {
            return;
        };
        record.durations.observe(duration);
        if let Some(f) = failure {
            let i = Failure::ALL.iter().position(|x| *x == f).unwrap_or(3);
            record.failures[i] += 1;
        }
        if changed {
            self.set_health(&mut health, key, up);
        }
    }

    /// The director decided a real's health without a check result (a check lb-health
    /// refused takes it down).
    pub fn health_changed(&self, key: &RealKey, up: bool) {
        let mut health = self.health();
        self.set_health(&mut health, key, up);
    }

    fn set_health(&self, health: &mut Health, key: &RealKey, up: bool) {
        let now = unix_now();
        let Some(record) = health.reals.get_mut(key) else {
            return;
        };
        let was = record.up;
        record.up = up;
        record.changed = Some(now);
        if was == up {
            return;
        }
        let v = health.virtuals.entry(key.service).or_default();
        let before = v.reals_up > 0;
        if up {
            v.reals_up += 1;
        } else {
            v.reals_up = v.reals_up.saturating_sub(1);
        }
        if before != (v.reals_up > 0) || v.changed.is_none() {
            v.changed = Some(now);
        }
    }

    /// A reload: `ok` when the new configuration is in force (and [`Recorder::configure`]d),
    /// else it was refused.
    pub fn reloaded(&self, ok: bool) {
        if ok {
            self.reloads_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A table the backend failed to apply.
    pub fn apply_failed(&self) {
        self.apply_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of everything, sorted; the lock is held only for the copy.
    pub fn snapshot(&self) -> Recorded {
        let (mut reals, mut virtuals) = {
            let health = self.health();
            (
                health
                    .reals
                    .iter()
                    .map(|(k, r)| (*k, r.clone()))
                    .collect::<Vec<_>>(),
                health
                    .virtuals
                    .iter()
                    .map(|(k, v)| (*k, v.clone()))
                    .collect::<Vec<_>>(),
            )
        };
        reals.sort_by_key(|(k, _)| *k);
        virtuals.sort_by_key(|(k, _)| *k);
        let ms = self.last_reload_ms.load(Ordering::Relaxed);
        Recorded {
            reals,
            virtuals,
            reloads_ok: self.reloads_ok.load(Ordering::Relaxed),
            reloads_failed: self.reloads_failed.load(Ordering::Relaxed),
            last_reload: (ms != 0).then(|| ms as f64 / 1000.0),
            apply_errors: self.apply_errors.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_config::testing::config;

    const TWO: &str = "virtual=192.0.2.1:80\n\treal=192.0.2.11 gate 3\n\treal=192.0.2.12:8080 masq 5\n\tchecktype=negotiate\n\tservice=http\n";

    #[test]
    fn a_virtual_is_up_while_one_real_is_and_changes_are_stamped() {
        let recorder = Recorder::default();
        let config = config(TWO);
        recorder.configure(&config, |_| false);
        let snap = recorder.snapshot();
        assert_eq!(snap.reals.len(), 2);
        let (k1, r1) = &snap.reals[0];
        assert_eq!(
            (r1.port, r1.weight, r1.check, r1.up),
            (80, 3, "http", false)
        );
        assert_eq!(snap.reals[1].1.port, 8080, "masq keeps the real's port");
        assert_eq!(snap.virtuals[0].1, VirtualRecord::default());

        recorder.check(k1, Duration::from_millis(3), None, true, true);
        let snap = recorder.snapshot();
        assert!(snap.reals[0].1.up && snap.reals[0].1.changed.is_some());
        assert_eq!(snap.virtuals[0].1.reals_up, 1);
        let since = snap.virtuals[0].1.changed.expect("the virtual came up");

        let k2 = snap.reals[1].0;
        recorder.check(
            &k2,
            Duration::from_secs(40),
            Some(Failure::Refused),
            false,
            true,
        );
        recorder.check(
            &k2,
            Duration::from_secs(1),
            Some(Failure::Timeout),
            false,
            false,
        );
        let snap = recorder.snapshot();
        assert_eq!(snap.virtuals[0].1.changed, Some(since), "still up");
        let r2 = &snap.reals[1].1;
        assert_eq!(r2.failures, [1, 1, 0, 0]);
        assert_eq!(r2.durations.count, 2);
        assert_eq!(
            r2.durations.buckets[DURATION_BUCKETS.len()],
            1,
            "40 s overflows"
        );
        assert_eq!(r2.durations.buckets[9], 1, "1 s is in the 1 s bucket");

        recorder.check(k1, Duration::ZERO, Some(Failure::BadAnswer), false, true);
        let snap = recorder.snapshot();
        assert_eq!(snap.virtuals[0].1.reals_up, 0);
        assert!(snap.virtuals[0].1.changed >= Some(since));
    }

    #[test]
    fn a_reload_keeps_what_stays_and_drops_what_goes() {
        let recorder = Recorder::default();
        recorder.configure(&config(TWO), |_| true);
        let key = recorder.snapshot().reals[0].0;
        recorder.check(&key, Duration::from_millis(1), None, true, false);
        recorder.configure(
            &config("virtual=192.0.2.1:80\n\treal=192.0.2.11 gate 7\n\tchecktype=connect\n"),
            |_| true,
        );
        let snap = recorder.snapshot();
        assert_eq!(snap.reals.len(), 1);
        let r = &snap.reals[0].1;
        assert_eq!((r.weight, r.check, r.durations.count), (7, "connect", 1));
        assert_eq!(snap.virtuals[0].1.reals_up, 1);
        recorder.reloaded(true);
        recorder.reloaded(false);
        recorder.apply_failed();
        let snap = recorder.snapshot();
        assert_eq!(
            (snap.reloads_ok, snap.reloads_failed, snap.apply_errors),
            (1, 1, 1)
        );
        assert!(snap.last_reload.is_some());
    }
}
