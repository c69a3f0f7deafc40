//! The director's decisions without I/O: check verdicts, reloads, stop and the e-mail repeat
//! timer in; log lines, e-mails, `fallbackcommand` lines, `monitorfile` records and a new
//! desired table out ([`Effects`]). The event loop in `mod.rs` does the I/O, so every decision
//! is unit-tested here with plain values.
//!
//! Start: nothing is applied until every real has had its first verdict (or the start
//! deadline passed), so a data plane left running by a previous agent keeps forwarding
//! undisturbed meanwhile instead of losing every real for the first round of checks. After
//! that every health change is applied at once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lb_config::{CheckType, Config, EmailAlertStatus, VirtualAddress, VirtualService};

use super::changes::{self, Change, Wording, real_text, virtual_text};
use super::checks::ldirectord_real_id;
use super::desired::{self, Placement, RealKey, service_key};
use super::state::{Health, RealState, Verdict};
use crate::table::{
    DesiredTable, Real, ServiceKey,
    diff::{self, Op},
};

/// ldirectord's `$DAEMON_STATUS`: e-mails say it, and `emailalertstatus` filters on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DaemonStatus {
    Starting,
    Running,
    Stopping,
    Reloading,
}

impl DaemonStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DaemonStatus::Starting => "starting",
            DaemonStatus::Running => "running",
            DaemonStatus::Stopping => "stopping",
            DaemonStatus::Reloading => "reloading",
        }
    }

    fn mails_for(self, filter: &EmailAlertStatus) -> bool {
        match self {
            DaemonStatus::Starting => filter.starting,
            DaemonStatus::Running => filter.running,
            DaemonStatus::Stopping => filter.stopping,
            DaemonStatus::Reloading => filter.reloading,
        }
    }
}

/// One e-mail alert, as ldirectord's `ld_emailalert_send` composes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    /// `emailalert`: comma-separated addresses.
    pub to: String,
    /// The global `emailalertfrom`.
    pub from: Option<String>,
    /// `smtp`; `None` = the local mailer.
    pub smtp: Option<String>,
    /// The log message, prefixed with `[servicename] ` when the virtual has one.
    pub subject: String,
    /// `Service name: …` / `Comment: …` lines, if any.
    pub details: Option<String>,
    pub status: DaemonStatus,
}

/// One check result for a virtual's `monitorfile`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorRecord {
    pub path: PathBuf,
    /// ldirectord's real id string (formatted by `log::monitor_line`).
    pub real_id: String,
    pub up: bool,
    pub reason: Arc<str>,
}

/// What a decision asks the event loop to do, in order.
#[derive(Debug, Default)]
pub struct Effects {
    /// What the data plane must do, first: the ops that take it from the table it held to
    /// [`Core::table`]. The lines below report them.
    pub ops: Vec<Op>,
    pub lines: Vec<String>,
    pub mails: Vec<Mail>,
    /// `fallbackcommand` invocations, shell command lines.
    pub commands: Vec<String>,
    pub monitor: Vec<MonitorRecord>,
}

/// `fallbackcommand` state of a virtual, so each transition runs the command once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FallbackStatus {
    Start,
    Stop,
}

/// An `Inaccessible real server` alert to repeat every `emailalertfreq` seconds.
#[derive(Clone, Debug)]
struct Repeat {
    real: RealKey,
    since: Instant,
}

type Indexes = (
    HashMap<ServiceKey, usize>,
    HashMap<RealKey, (usize, usize)>,
    HashMap<RealKey, RealState>,
);

/// Indexes `config`, keeping the state of the reals in `old` that it still has.
fn install(config: &Config, mut old: HashMap<RealKey, RealState>) -> Indexes {
    let (mut index, mut real_index, mut reals) = (HashMap::new(), HashMap::new(), HashMap::new());
    for (v, vs) in config.virtuals.iter().enumerate() {
        let service = service_key(vs);
        index.insert(service, v);
        for (r, real) in vs.reals.iter().enumerate() {
            let key = RealKey::new(service, real);
            if real_index.contains_key(&key) {
                continue;
            }
            real_index.insert(key, (v, r));
            let mut state = old.remove(&key).unwrap_or_default();
            // `off` never activates a real, whatever it was before.
            if vs.check.checktype == CheckType::Off {
                state.health = Health::Down;
            }
            reals.insert(key, state);
        }
    }
    (index, real_index, reals)
}

/// The director's state.
pub struct Core {
    config: Config,
    /// Which data plane each virtual runs on.
    placement: Placement,
    index: HashMap<ServiceKey, usize>,
    /// Each real key's virtual and its first line in that virtual.
    real_index: HashMap<RealKey, (usize, usize)>,
    reals: HashMap<RealKey, RealState>,
    /// What the data plane holds once applied (empty until the start is over).
    table: DesiredTable,
    /// What the data plane held at start, read back from it (a previous agent's), until the
    /// start is over.
    held: Option<DesiredTable>,
    started: bool,
    /// Reals still waiting for their first verdict, while starting.
    pending: HashSet<RealKey>,
    /// Virtuals whose reals changed health since the last commit.
    dirty: BTreeSet<ServiceKey>,
    fallback_status: HashMap<ServiceKey, FallbackStatus>,
    status: DaemonStatus,
    /// ldirectord's `EMAILSTATUS`, keyed `R (V)`.
    repeats: BTreeMap<String, Repeat>,
}

impl Core {
    /// A director for `config`, its virtuals placed on data planes by `placement`, that has
    /// not applied anything yet.
    pub fn new(config: Config, placement: Placement) -> Core {
        let (index, real_index, reals) = install(&config, HashMap::new());
        let pending = reals
            .iter()
            .filter(|(_, s)| s.health == Health::Unknown)
            .map(|(k, _)| *k)
            .collect();
        Core {
            config,
            placement,
            index,
            real_index,
            reals,
            table: DesiredTable::default(),
            held: None,
            started: false,
            pending,
            dirty: BTreeSet::new(),
            fallback_status: HashMap::new(),
            status: DaemonStatus::Starting,
            repeats: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What the data plane should hold (what it holds, once the start is over).
    pub fn table(&self) -> &DesiredTable {
        &self.table
    }

    pub fn started(&self) -> bool {
        self.started
    }

    /// What the data plane holds before the first apply (a previous agent left it). As
    /// ldirectord at start with IPVS entries in place: what is already there as configured is
    /// not reported again (no `Added …` line or mail), what differs is; virtuals there and no
    /// longer configured are reported purged.
    pub fn set_held(&mut self, table: DesiredTable) {
        if !self.started {
            self.held = Some(table);
        }
    }

    pub fn status(&self) -> DaemonStatus {
        self.status
    }

    /// Each real's state, for tests and diagnostics.
    pub fn reals(&self) -> &HashMap<RealKey, RealState> {
        &self.reals
    }

    fn virtual_of(&self, key: &RealKey) -> Option<(&VirtualService, &lb_config::Real)> {
        let (v, r) = *self.real_index.get(key)?;
        let vs = &self.config.virtuals[v];
        Some((vs, &vs.reals[r]))
    }

    fn health(&self) -> impl Fn(&RealKey) -> Health + '_ {
        |k| self.reals.get(k).map(|s| s.health).unwrap_or_default()
    }

    /// Whether `real` of the virtual `key` is up (its configured address and port).
    fn is_up(&self, key: &ServiceKey, real: &Real) -> bool {
        let rk = RealKey {
            service: *key,
            real: SocketAddr::new(real.addr, real.port),
        };
        self.reals.get(&rk).is_some_and(RealState::is_up)
    }

    /// Whether the configuration lists `real` in the virtual `key`, known by the data plane's
    /// name for it (a table read back holds direct-routing reals on the virtual's port).
    fn is_configured(&self, key: &ServiceKey, real: &Real) -> bool {
        self.index.get(key).is_some_and(|&v| {
            self.config.virtuals[v]
                .reals
                .iter()
                .any(|r| (r.address, key.dest_port(r.forwarding, r.port)) == real.dest(key))
        })
    }

    /// Reports `ops` in ldirectord's words, then hands them to the data plane.
    fn carry_out(&mut self, ops: Vec<Op>, tag: &'static str, now: Instant, fx: &mut Effects) {
        let readdquiescent = self.config.global.readdquiescent;
        let reported = changes::changes(
            &ops,
            &Wording {
                up: &|k, r| self.is_up(k, r),
                configured: &|k, r| self.is_configured(k, r),
                readdquiescent,
                tag,
            },
        );
        for (key, change) in reported {
            self.report(&key, &[change], now, fx);
        }
        fx.ops.extend(ops);
    }

    /// One check round of one real. Health changes take effect at the next [`Core::commit`],
    /// so a burst of results is applied as one table.
    pub fn observe(&mut self, key: &RealKey, verdict: Verdict, reason: &Arc<str>) -> Effects {
        let mut fx = Effects::default();
        let Some((vs, real)) = self.virtual_of(key) else {
            // A result from before a reload, for a real that is gone.
            return fx;
        };
        if let Some(path) = &vs.monitorfile
            && vs.check.checktype != CheckType::On
        {
            fx.monitor.push(MonitorRecord {
                path: path.clone(),
                real_id: ldirectord_real_id(vs, real),
                up: verdict == Verdict::Up,
                reason: Arc::clone(reason),
            });
        }
        // `off` is never checked: only a maintenance file (forced down) may say anything.
        if vs.check.checktype == CheckType::Off && verdict != Verdict::Maintenance {
            return fx;
        }
        let failurecount = vs.check.failurecount.max(1);
        let (real_str, vid) = (real_text(real.address, real.port), vs.id.clone());
        let Some(state) = self.reals.get_mut(key) else {
            return fx;
        };
        let seen = state.observe(verdict, failurecount);
        if seen.reset {
            fx.lines
                .push(format!("Resetting soft failure count: {real_str} ({vid})"));
        }
        if let Some((n, of)) = seen.soft_failure {
            fx.lines.push(format!(
                "Soft failure real server: {real_str} ({vid}) failure {n}/{of}"
            ));
        }
        if self.started {
            if seen.changed {
                self.dirty.insert(key.service);
            }
        } else {
            self.pending.remove(key);
        }
        fx
    }

    /// lb-health refused this real's check (it never reports on it): it stays down.
    pub fn refuse(&mut self, key: &RealKey, error: &str) -> Effects {
        let mut fx = Effects::default();
        let Some((vs, real)) = self.virtual_of(key) else {
            return fx;
        };
        fx.lines.push(format!(
            "virtual service {}: real server {}: {error}",
            vs.id,
            real_text(real.address, real.port)
        ));
        if let Some(state) = self.reals.get_mut(key)
            && state.health != Health::Down
        {
            state.health = Health::Down;
            self.dirty.insert(key.service);
        }
        self.pending.remove(key);
        fx
    }

    /// Applies the health changes observed since the last commit; during the start, ends it
    /// once every real has a verdict.
    pub fn commit(&mut self, now: Instant) -> Effects {
        if !self.started {
            return if self.pending.is_empty() {
                self.finish_start(now)
            } else {
                Effects::default()
            };
        }
        let mut fx = Effects::default();
        let dirty = std::mem::take(&mut self.dirty);
        for key in dirty {
            let Some(&v) = self.index.get(&key) else {
                continue;
            };
            let backend = desired::backend_of(&self.placement, &key);
            let new = desired::service(&self.config.virtuals[v], backend, self.health());
            let ops = diff::diff_service(&key, self.table.services.get(&key), Some(&new));
            self.table.services.insert(key, new);
            self.carry_out(ops, "start", now, &mut fx);
            self.fallback_command(v, &mut fx);
        }
        fx
    }

    /// Ends the start even though some reals have no verdict yet (they count as down).
    pub fn finish_start(&mut self, now: Instant) -> Effects {
        let mut fx = Effects::default();
        if self.started {
            return fx;
        }
        self.started = true;
        self.pending.clear();
        self.dirty.clear();
        let table = desired::table(&self.config, &self.placement, self.health());
        let mut held = self.held.take().unwrap_or_default();
        // A data plane that holds the fallback among the reals (IPVS) gives it back as such, as
        // ldirectord's start sets the fallback apart before it looks at the reals.
        for vs in &self.config.virtuals {
            let key = service_key(vs);
            if let (Some(service), Some(fallback)) =
                (held.services.get_mut(&key), desired::fallback_entry(vs))
            {
                let also_a_real = vs.reals.iter().any(|r| {
                    (r.address, key.dest_port(r.forwarding, r.port)) == fallback.dest(&key)
                });
                service.claim_fallback(&key, Some(&fallback), also_a_real);
            }
        }
        // Virtuals held and no longer configured first, then the configured ones in file order.
        let mut ops: Vec<Op> = held
            .services
            .iter()
            .filter(|(key, _)| !table.services.contains_key(key))
            .flat_map(|(key, old)| diff::diff_service(key, Some(old), None))
            .collect();
        for vs in &self.config.virtuals {
            let key = service_key(vs);
            ops.extend(diff::diff_service(
                &key,
                held.services.get(&key),
                table.services.get(&key),
            ));
        }
        self.table = table;
        self.carry_out(ops, "start", now, &mut fx);
        for v in 0..self.config.virtuals.len() {
            self.fallback_command(v, &mut fx);
        }
        self.status = DaemonStatus::Running;
        fx
    }

    /// Takes a new configuration. Reals that are in both keep their health and failure count
    /// (their checks keep running: lb-health keeps equal specs); the table changes only where
    /// the configuration did.
    pub fn reload(&mut self, config: Config, placement: Placement, now: Instant) -> Effects {
        let mut fx = Effects::default();
        let previous = self.status;
        self.status = DaemonStatus::Reloading;
        let old_reals = std::mem::take(&mut self.reals);
        (self.index, self.real_index, self.reals) = install(&config, old_reals);
        self.config = config;
        self.placement = placement;
        self.dirty.clear();
        self.fallback_status
            .retain(|k, _| self.index.contains_key(k));
        self.repeats.retain(|_, r| self.reals.contains_key(&r.real));
        if !self.started {
            self.pending = self
                .reals
                .iter()
                .filter(|(_, s)| s.health == Health::Unknown)
                .map(|(k, _)| *k)
                .collect();
            self.status = previous;
            return fx;
        }
        let table = desired::table(&self.config, &self.placement, self.health());
        let mut ops = Vec::new();
        for vs in &self.config.virtuals {
            let key = service_key(vs);
            ops.extend(diff::diff_service(
                &key,
                self.table.services.get(&key),
                table.services.get(&key),
            ));
        }
        for (key, old) in &self.table.services {
            if !table.services.contains_key(key) {
                ops.extend(diff::diff_service(key, Some(old), None));
            }
        }
        self.table = table;
        self.carry_out(ops, "start", now, &mut fx);
        for v in 0..self.config.virtuals.len() {
            self.fallback_command(v, &mut fx);
        }
        self.status = DaemonStatus::Running;
        fx
    }

    /// Stopping: with `cleanstop` (per virtual, else global) the virtual's up reals and then
    /// the virtual itself are purged; without, it is left forwarding. The ops in the effects
    /// are the cleaning (none when the data plane is to be left as it is).
    pub fn stop(&mut self, now: Instant) -> Effects {
        let mut fx = Effects::default();
        self.status = DaemonStatus::Stopping;
        let cleaned: Vec<usize> = (0..self.config.virtuals.len())
            .filter(|&v| self.config.virtuals[v].cleanstop)
            .collect();
        if cleaned.is_empty() {
            return fx;
        }
        if !self.started && cleaned.len() < self.config.virtuals.len() {
            // Nothing applied yet: only a data plane with no virtual of ours left is known to
            // be right.
            return fx;
        }
        let mut ops = Vec::new();
        for v in cleaned {
            let key = service_key(&self.config.virtuals[v]);
            ops.extend(diff::diff_service(
                &key,
                self.table.services.get(&key),
                None,
            ));
            if !self.started || !self.table.services.contains_key(&key) {
                // Never applied by us: say so as ldirectord does, and make sure it is gone.
                ops.push(Op::DeleteVirtual { key });
            }
            self.table.services.remove(&key);
        }
        self.carry_out(ops, "stop", now, &mut fx);
        fx
    }

    /// `Inaccessible real server` alerts that are due (ldirectord's `ld_emailalert_resend`).
    pub fn resend(&mut self, now: Instant) -> Effects {
        let mut fx = Effects::default();
        let due: Vec<(String, ServiceKey)> = self
            .repeats
            .iter()
            .filter_map(|(id, r)| {
                let v = *self.index.get(&r.real.service)?;
                let freq = Duration::from_secs(self.config.virtuals[v].emailalertfreq.into());
                (now.saturating_duration_since(r.since) >= freq)
                    .then(|| (id.clone(), r.real.service))
            })
            .collect();
        for (id, service) in due {
            if let Some(r) = self.repeats.get_mut(&id) {
                r.since = now;
            }
            let v = self.index[&service];
            self.mail(v, format!("Inaccessible real server: {id}"), &mut fx);
        }
        fx
    }

    /// Logs and mails `changes` of the virtual `key`, and keeps the repeat bookkeeping.
    fn report(&mut self, key: &ServiceKey, changes: &[Change], now: Instant, fx: &mut Effects) {
        let Some(&v) = self.index.get(key) else {
            fx.lines.extend(changes.iter().map(|c| c.message(key)));
            return;
        };
        for change in changes {
            fx.lines.push(change.message(key));
            if let Some((real, on)) = change.repeats() {
                let id = format!(
                    "{} ({})",
                    real_text(real.addr, real.port),
                    virtual_text(key)
                );
                if on && self.config.virtuals[v].emailalertfreq > 0 {
                    let real = RealKey {
                        service: *key,
                        real: SocketAddr::new(real.addr, real.port),
                    };
                    self.repeats.insert(id, Repeat { real, since: now });
                } else {
                    self.repeats.remove(&id);
                }
            }
            if let Some(subject) = change.mail_subject(key) {
                self.mail(v, subject, fx);
            }
        }
    }

    fn mail(&self, v: usize, subject: String, fx: &mut Effects) {
        let vs = &self.config.virtuals[v];
        if !self.status.mails_for(&vs.emailalertstatus) {
            return;
        }
        let Some(to) = vs.emailalert.as_ref().filter(|t| !t.is_empty()) else {
            return;
        };
        fx.lines.push(format!("emailalert: {subject}"));
        let mut details = String::new();
        if let Some(name) = vs.servicename.as_ref().filter(|n| !n.is_empty()) {
            details.push_str(&format!("Service name: {name}\n"));
        }
        if let Some(comment) = vs.comment.as_ref().filter(|c| !c.is_empty()) {
            details.push_str(&format!("Comment: {comment}\n"));
        }
        let subject = match vs.servicename.as_ref().filter(|n| !n.is_empty()) {
            Some(name) => format!("[{name}] {subject}"),
            None => subject,
        };
        fx.mails.push(Mail {
            to: to.clone(),
            from: self.config.global.emailalertfrom.clone(),
            smtp: vs.smtp.clone(),
            subject,
            details: (!details.is_empty()).then_some(details),
            status: self.status,
        });
    }

    /// `fallbackcommand start` when no real of the virtual is up, `stop` when one is; each
    /// transition once.
    fn fallback_command(&mut self, v: usize, fx: &mut Effects) {
        let vs = &self.config.virtuals[v];
        let key = service_key(vs);
        let any_up = vs.reals.iter().any(|r| {
            self.reals
                .get(&RealKey::new(key, r))
                .is_some_and(RealState::is_up)
        });
        let want = if any_up {
            FallbackStatus::Stop
        } else {
            FallbackStatus::Start
        };
        if self.fallback_status.insert(key, want) == Some(want) {
            return;
        }
        if let Some(command) = &vs.fallbackcommand {
            let word = match want {
                FallbackStatus::Start => "start",
                FallbackStatus::Stop => "stop",
            };
            fx.commands.push(fallback_command_line(command, word, vs));
        }
    }
}

/// ldirectord's `<fallbackcommand> start|stop <vip>:<vport> <tcp|udp|fwm>`. For a firewall
/// mark ldirectord passes an empty address (`:0 fwm`); the mark is given instead (`<mark>:0`).
pub fn fallback_command_line(command: &str, word: &str, vs: &VirtualService) -> String {
    let (target, protocol) = match vs.address {
        VirtualAddress::Socket { protocol, address } => {
            (real_text(address.ip(), address.port()), protocol.as_str())
        }
        VirtualAddress::Fwmark { mark, .. } => (format!("{mark}:0"), "fwm"),
    };
    format!("{command} {word} {target} {protocol}")
}

/// How long the start may wait for first verdicts: the runner's first-round spread plus the
/// longest a first check can take, plus a second.
pub fn start_deadline(config: &Config, first_spread_max: Duration) -> Duration {
    config
        .virtuals
        .iter()
        .filter(|vs| !vs.reals.is_empty() && vs.check.checktype != CheckType::Off)
        .map(|vs| {
            let c = &vs.check;
            let secs = |s: u32| Duration::from_secs(s.into());
            let probe = match c.checktype {
                CheckType::Negotiate | CheckType::Combined(_) => secs(c.negotiatetimeout),
                CheckType::Ping => secs(c.checktimeout) * c.checkcount.max(1),
                CheckType::Connect
                    if matches!(
                        vs.address,
                        VirtualAddress::Socket {
                            protocol: lb_config::Protocol::Udp,
                            ..
                        }
                    ) =>
                {
                    secs(c.checktimeout) * c.checkcount.max(1)
                }
                CheckType::Connect | CheckType::External | CheckType::ExternalPerl => {
                    secs(c.checktimeout)
                }
                CheckType::On | CheckType::Off => Duration::ZERO,
            };
            // The maintenance lookup comes first, bounded by checktimeout.
            let maintenance = if config.global.maintenancedir.is_some() {
                secs(c.checktimeout)
            } else {
                Duration::ZERO
            };
            secs(c.checkinterval).min(first_spread_max) + probe + maintenance
        })
        .max()
        .unwrap_or(Duration::ZERO)
        + Duration::from_secs(1)
}
