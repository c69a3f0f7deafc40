//! The director's decisions ([`Core`]) through sequences of verdicts, reloads and stops: what
//! the data plane is told, what is logged, mailed and run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lb_config::Config;
use lb_config::testing::StaticEnvironment;

use super::core::{Core, DaemonStatus, Effects, start_deadline};
use super::desired::Placement;
use super::desired::{RealKey, service_key};
use super::state::{Health, Verdict};
use crate::table::{DesiredTable, Forwarding, ServiceKey};

fn parse(text: &str) -> Config {
    lb_config::parse(
        text.as_bytes(),
        "/etc/ha.d/t.cf".as_ref(),
        &StaticEnvironment::default(),
    )
    .expect("valid configuration")
}

/// A core past its start, with the given reals up and the rest down.
struct Rig {
    core: Core,
    now: Instant,
}

const WEB: &str = "192.0.2.1:80";
const R1: &str = "192.0.2.11:80";
const R2: &str = "192.0.2.12:80";

impl Rig {
    fn new(text: &str) -> Rig {
        Rig {
            core: Core::new(parse(text), Placement::new()),
            now: Instant::now(),
        }
    }

    /// Starts with every real's first verdict.
    fn started(text: &str, up: &[&str]) -> (Rig, Effects) {
        let mut rig = Rig::new(text);
        let keys: Vec<RealKey> = rig.core.reals().keys().copied().collect();
        let mut fx = Effects::default();
        for key in keys {
            let verdict = if up.contains(&key.real.to_string().as_str()) {
                Verdict::Up
            } else {
                Verdict::Down
            };
            fx.lines
                .extend(rig.core.observe(&key, verdict, &reason()).lines);
        }
        let more = rig.core.commit(rig.now);
        merge(&mut fx, more);
        assert!(rig.core.started(), "every real has a verdict");
        (rig, fx)
    }

    fn key(&self, vip: &str, real: &str) -> RealKey {
        let vip: SocketAddr = vip.parse().unwrap();
        let service = self
            .core
            .config()
            .virtuals
            .iter()
            .map(service_key)
            .find(|k| matches!(k, ServiceKey::Inet { addr, port, .. } if *addr == vip.ip() && *port == vip.port()))
            .expect("virtual");
        RealKey {
            service,
            real: real.parse().unwrap(),
        }
    }

    /// One verdict for a real of WEB, committed.
    fn verdict(&mut self, real: &str, verdict: Verdict) -> Effects {
        self.verdict_in(WEB, real, verdict)
    }

    fn verdict_in(&mut self, vip: &str, real: &str, verdict: Verdict) -> Effects {
        let key = self.key(vip, real);
        let mut fx = self.core.observe(&key, verdict, &reason());
        let more = self.core.commit(self.now);
        merge(&mut fx, more);
        fx
    }

    fn weights(&self, vip: &str) -> Vec<(String, u32)> {
        let vip: SocketAddr = vip.parse().unwrap();
        let service = self
            .core
            .table()
            .services
            .iter()
            .find(|(k, _)| matches!(k, ServiceKey::Inet { addr, port, .. } if *addr == vip.ip() && *port == vip.port()))
            .map(|(_, s)| s.clone())
            .expect("service in the table");
        service
            .reals
            .iter()
            .map(|r| (SocketAddr::new(r.addr, r.port).to_string(), r.weight))
            .collect()
    }

    fn fallback(&self, vip: &str) -> Option<String> {
        let vip: SocketAddr = vip.parse().unwrap();
        self.core
            .table()
            .services
            .iter()
            .find(|(k, _)| matches!(k, ServiceKey::Inet { addr, port, .. } if *addr == vip.ip() && *port == vip.port()))
            .and_then(|(_, s)| s.fallback)
            .map(|f| SocketAddr::new(f.addr, f.port).to_string())
    }
}

fn reason() -> Arc<str> {
    Arc::from("test")
}

fn merge(into: &mut Effects, fx: Effects) {
    into.lines.extend(fx.lines);
    into.mails.extend(fx.mails);
    into.commands.extend(fx.commands);
    into.monitor.extend(fx.monitor);
    into.ops.extend(fx.ops);
}

fn w(real: &str, weight: u32) -> (String, u32) {
    (real.to_string(), weight)
}

const TWO: &str = "checkinterval=1\nfailurecount=3\n\
                   virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate 2\n\treal=192.0.2.12:80 gate\n\
                   \tfallback=127.0.0.1:80\n\tfallbackcommand=\"/usr/local/bin/sorry\"\n";

#[test]
fn nothing_is_applied_until_every_real_has_a_verdict() {
    let mut rig = Rig::new(TWO);
    assert!(!rig.core.started());
    let fx = rig.verdict(R1, Verdict::Up);
    assert!(fx.ops.is_empty() && fx.lines.is_empty(), "{:?}", fx.lines);
    assert_eq!(rig.core.table(), &DesiredTable::default());
    let fx = rig.verdict(R2, Verdict::Down);
    assert!(!fx.ops.is_empty());
    assert_eq!(
        fx.lines,
        [
            "Added virtual server: 192.0.2.1:80",
            "Added real server: 192.0.2.11:80 (192.0.2.1:80) (Weight set to 2)",
        ]
    );
    assert_eq!(fx.commands, ["/usr/local/bin/sorry stop 192.0.2.1:80 tcp"]);
    assert_eq!(rig.weights(WEB), [w(R1, 2)]);
    assert_eq!(rig.fallback(WEB), None);
    assert_eq!(rig.core.status(), DaemonStatus::Running);
}

#[test]
fn the_start_deadline_counts_missing_verdicts_as_down() {
    let mut rig = Rig::new(TWO);
    rig.verdict(R1, Verdict::Up);
    let fx = rig.core.finish_start(rig.now);
    assert!(!fx.ops.is_empty());
    assert_eq!(rig.weights(WEB), [w(R1, 2)]);
    // The late verdict then counts as any other.
    let fx = rig.verdict(R2, Verdict::Up);
    assert_eq!(
        fx.lines,
        ["Added real server: 192.0.2.12:80 (192.0.2.1:80) (Weight set to 1)"]
    );
    // The deadline covers the first-round spread and the longest first check.
    let config = parse(TWO);
    assert_eq!(
        start_deadline(&config, Duration::from_secs(5)),
        Duration::from_secs(1) + Duration::from_secs(30) + Duration::from_secs(1)
    );
}

#[test]
fn failurecount_failures_delete_the_real_and_one_success_restores_it() {
    let (mut rig, _) = Rig::started(TWO, &[R1, R2]);
    let fx = rig.verdict(R1, Verdict::Down);
    assert_eq!(
        fx.lines,
        ["Soft failure real server: 192.0.2.11:80 (tcp:192.0.2.1:80) failure 1/3"]
    );
    assert!(fx.ops.is_empty());
    let fx = rig.verdict(R1, Verdict::Down);
    assert_eq!(
        fx.lines,
        ["Soft failure real server: 192.0.2.11:80 (tcp:192.0.2.1:80) failure 2/3"]
    );
    let fx = rig.verdict(R1, Verdict::Down);
    assert!(!fx.ops.is_empty());
    assert_eq!(
        fx.lines,
        ["Deleted real server: 192.0.2.11:80 (192.0.2.1:80)"]
    );
    assert_eq!(rig.weights(WEB), [w(R2, 1)]);
    assert!(fx.commands.is_empty(), "another real is still up");
    let fx = rig.verdict(R1, Verdict::Down);
    assert!(
        fx.lines.is_empty() && fx.ops.is_empty(),
        "a down real's failures are not counted"
    );
    let fx = rig.verdict(R1, Verdict::Up);
    assert_eq!(
        fx.lines,
        [
            "Resetting soft failure count: 192.0.2.11:80 (tcp:192.0.2.1:80)",
            "Added real server: 192.0.2.11:80 (192.0.2.1:80) (Weight set to 2)",
        ]
    );
    assert_eq!(rig.weights(WEB), [w(R1, 2), w(R2, 1)]);
}

#[test]
fn a_success_between_failures_resets_the_count() {
    let (mut rig, _) = Rig::started(TWO, &[R1, R2]);
    rig.verdict(R1, Verdict::Down);
    rig.verdict(R1, Verdict::Down);
    let fx = rig.verdict(R1, Verdict::Up);
    assert_eq!(
        fx.lines,
        ["Resetting soft failure count: 192.0.2.11:80 (tcp:192.0.2.1:80)"]
    );
    assert!(fx.ops.is_empty());
    let fx = rig.verdict(R1, Verdict::Down);
    assert_eq!(
        fx.lines,
        ["Soft failure real server: 192.0.2.11:80 (tcp:192.0.2.1:80) failure 1/3"]
    );
}

#[test]
fn the_fallback_is_in_only_while_no_real_is_up() {
    let text = TWO.replace("failurecount=3", "failurecount=1");
    let (mut rig, _) = Rig::started(&text, &[R1, R2]);
    let fx = rig.verdict(R1, Verdict::Down);
    assert_eq!(rig.fallback(WEB), None);
    assert!(fx.commands.is_empty());
    let fx = rig.verdict(R2, Verdict::Down);
    assert_eq!(
        fx.lines,
        [
            "Deleted real server: 192.0.2.12:80 (192.0.2.1:80)",
            "Added fallback server: 127.0.0.1:80 (192.0.2.1:80) (Weight set to 1)",
        ]
    );
    assert_eq!(fx.commands, ["/usr/local/bin/sorry start 192.0.2.1:80 tcp"]);
    assert_eq!(rig.weights(WEB), []);
    assert_eq!(rig.fallback(WEB).as_deref(), Some("127.0.0.1:80"));
    let fx = rig.verdict(R2, Verdict::Up);
    assert_eq!(
        fx.lines,
        [
            "Resetting soft failure count: 192.0.2.12:80 (tcp:192.0.2.1:80)",
            "Added real server: 192.0.2.12:80 (192.0.2.1:80) (Weight set to 1)",
            "Deleted fallback server: 127.0.0.1:80 (192.0.2.1:80)",
        ]
    );
    assert_eq!(fx.commands, ["/usr/local/bin/sorry stop 192.0.2.1:80 tcp"]);
    assert_eq!(rig.fallback(WEB), None);
    let fx = rig.verdict(R1, Verdict::Up);
    assert!(fx.commands.is_empty(), "stop runs once per transition");
}

#[test]
fn a_start_with_every_real_down_puts_the_fallback_in_and_runs_start() {
    let (rig, fx) = Rig::started(TWO, &[]);
    assert_eq!(
        fx.lines,
        [
            "Added virtual server: 192.0.2.1:80",
            "Added fallback server: 127.0.0.1:80 (192.0.2.1:80) (Weight set to 1)"
        ]
    );
    assert_eq!(fx.commands, ["/usr/local/bin/sorry start 192.0.2.1:80 tcp"]);
    assert_eq!(rig.fallback(WEB).as_deref(), Some("127.0.0.1:80"));
}

#[test]
fn quiescent_reals_stay_with_weight_zero() {
    let text = format!(
        "quiescent=yes\n{}",
        TWO.replace("failurecount=3", "failurecount=1")
    );
    let (mut rig, fx) = Rig::started(&text, &[R1]);
    assert_eq!(
        fx.lines,
        [
            "Added virtual server: 192.0.2.1:80",
            "Added real server: 192.0.2.11:80 (192.0.2.1:80) (Weight set to 2)",
            "Quiescent real server: 192.0.2.12:80 (192.0.2.1:80) (Weight set to 0)",
        ]
    );
    assert_eq!(rig.weights(WEB), [w(R1, 2), w(R2, 0)]);
    let fx = rig.verdict(R1, Verdict::Down);
    assert_eq!(
        fx.lines,
        [
            "Quiescent real server: 192.0.2.11:80 (192.0.2.1:80) (Weight set to 0)",
            "Added fallback server: 127.0.0.1:80 (192.0.2.1:80) (Weight set to 1)",
        ]
    );
    assert_eq!(rig.weights(WEB), [w(R1, 0), w(R2, 0)]);
    let fx = rig.verdict(R1, Verdict::Up);
    assert_eq!(
        fx.lines,
        [
            "Resetting soft failure count: 192.0.2.11:80 (tcp:192.0.2.1:80)",
            "Restored real server: 192.0.2.11:80 (192.0.2.1:80) (Weight set to 2)",
            "Deleted fallback server: 127.0.0.1:80 (192.0.2.1:80)",
        ]
    );
    assert_eq!(rig.weights(WEB), [w(R1, 2), w(R2, 0)]);
}

#[test]
fn the_fallback_is_deleted_never_quiesced() {
    let text = format!("quiescent=yes\n{}", TWO);
    let (mut rig, _) = Rig::started(&text, &[]);
    assert_eq!(rig.fallback(WEB).as_deref(), Some("127.0.0.1:80"));
    rig.verdict(R2, Verdict::Up);
    assert_eq!(rig.fallback(WEB), None);
}

#[test]
fn readdquiescent_says_how_a_never_added_real_enters_with_weight_zero() {
    // Both values end where ldirectord's start ends: the down real in with weight 0.
    for (readd, line) in [
        (
            "yes",
            "Readd Quiescent real server: 192.0.2.12:80 (192.0.2.1:80) (Weight set to 0)",
        ),
        (
            "no",
            "Quiescent real server: 192.0.2.12:80 (192.0.2.1:80) (Weight set to 0)",
        ),
    ] {
        let text = format!("quiescent=yes\nreaddquiescent={readd}\n{TWO}");
        let (rig, fx) = Rig::started(&text, &[R1]);
        assert_eq!(fx.lines[2], line);
        assert_eq!(rig.weights(WEB), [w(R1, 2), w(R2, 0)]);
    }
}

#[test]
fn maintenance_takes_a_real_down_at_once() {
    let (mut rig, _) = Rig::started(TWO, &[R1, R2]);
    let fx = rig.verdict(R1, Verdict::Maintenance);
    assert_eq!(
        fx.lines,
        ["Deleted real server: 192.0.2.11:80 (192.0.2.1:80)"]
    );
    let fx = rig.verdict(R1, Verdict::Up);
    assert_eq!(
        fx.lines[0],
        "Resetting soft failure count: 192.0.2.11:80 (tcp:192.0.2.1:80)"
    );
}

#[test]
fn checktype_off_never_activates_reals() {
    let text = TWO.replace("\tfallback=", "\tchecktype=off\n\tfallback=");
    let mut rig = Rig::new(&text);
    // No check runs, so nothing is awaited.
    let fx = rig.core.commit(rig.now);
    assert!(rig.core.started() && !fx.ops.is_empty());
    assert_eq!(rig.weights(WEB), []);
    assert_eq!(
        rig.fallback(WEB).as_deref(),
        Some("127.0.0.1:80"),
        "no real up: the fallback is in"
    );
    let fx = rig.verdict(R1, Verdict::Up);
    assert!(fx.ops.is_empty(), "a stray up verdict changes nothing");
    assert_eq!(rig.weights(WEB), []);
}

#[test]
fn checktype_on_is_up_at_its_first_report() {
    let text = TWO.replace("\tfallback=", "\tchecktype=on\n\tfallback=");
    let (rig, _) = Rig::started(&text, &[R1, R2]);
    assert_eq!(rig.weights(WEB), [w(R1, 2), w(R2, 1)]);
}

#[test]
fn fwmark_fallback_commands_name_the_mark() {
    let text = "virtual=7\n\treal=192.0.2.11 gate\n\tfallbackcommand=\"/bin/sorry\"\n";
    let (_, fx) = Rig::started(text, &[]);
    assert_eq!(fx.commands, ["/bin/sorry start 7:0 fwm"]);
}

#[test]
fn a_real_in_two_virtuals_has_a_state_in_each() {
    let text = "failurecount=2\n\
                virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate\n\n\
                virtual=192.0.2.2:80\n\treal=192.0.2.11:80 gate\n";
    let (mut rig, _) = Rig::started(text, &["192.0.2.11:80"]);
    let fx = rig.verdict_in("192.0.2.1:80", R1, Verdict::Down);
    assert_eq!(
        fx.lines,
        ["Soft failure real server: 192.0.2.11:80 (tcp:192.0.2.1:80) failure 1/2"]
    );
    let fx = rig.verdict_in("192.0.2.2:80", R1, Verdict::Down);
    assert_eq!(
        fx.lines,
        ["Soft failure real server: 192.0.2.11:80 (tcp:192.0.2.2:80) failure 1/2"]
    );
}

const MAIL: &str = "emailalert=\"ops@example.com\"\nemailalertfreq=60\nsmtp=127.0.0.1\n\
                    emailalertfrom=lb@example.com\nfailurecount=1\n\
                    virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate\n\treal=192.0.2.12:80 gate\n\
                    \tservicename=Web\n\tcomment=main site\n";

#[test]
fn alerts_are_mailed_with_the_service_name_and_status() {
    let (mut rig, fx) = Rig::started(MAIL, &[R1, R2]);
    assert_eq!(fx.mails.len(), 2, "the start's additions, while starting");
    assert!(fx.mails.iter().all(|m| m.status == DaemonStatus::Starting));
    let fx = rig.verdict(R1, Verdict::Down);
    assert_eq!(
        fx.lines,
        [
            "Deleted real server: 192.0.2.11:80 (192.0.2.1:80)",
            "emailalert: Deleted real server: 192.0.2.11:80 (192.0.2.1:80)",
        ]
    );
    let mail = &fx.mails[0];
    assert_eq!(
        mail.subject,
        "[Web] Deleted real server: 192.0.2.11:80 (192.0.2.1:80)"
    );
    assert_eq!(mail.to, "ops@example.com");
    assert_eq!(mail.from.as_deref(), Some("lb@example.com"));
    assert_eq!(mail.smtp.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        mail.details.as_deref(),
        Some("Service name: Web\nComment: main site\n")
    );
    assert_eq!(mail.status, DaemonStatus::Running);
}

#[test]
fn inaccessible_alerts_repeat_every_emailalertfreq_until_the_real_is_back() {
    let (mut rig, _) = Rig::started(MAIL, &[R1, R2]);
    rig.verdict(R1, Verdict::Down);
    let t0 = rig.now;
    assert!(
        rig.core
            .resend(t0 + Duration::from_secs(59))
            .mails
            .is_empty()
    );
    let fx = rig.core.resend(t0 + Duration::from_secs(60));
    assert_eq!(fx.mails.len(), 1);
    assert_eq!(
        fx.mails[0].subject,
        "[Web] Inaccessible real server: 192.0.2.11:80 (192.0.2.1:80)"
    );
    assert!(
        rig.core
            .resend(t0 + Duration::from_secs(100))
            .mails
            .is_empty(),
        "the next one a period later"
    );
    assert_eq!(
        rig.core.resend(t0 + Duration::from_secs(120)).mails.len(),
        1
    );
    rig.verdict(R1, Verdict::Up);
    assert!(
        rig.core
            .resend(t0 + Duration::from_secs(1000))
            .mails
            .is_empty(),
        "back up: no more repeats"
    );
}

#[test]
fn emailalertstatus_filters_by_daemon_status() {
    let text = MAIL.replace("smtp=", "emailalertstatus=running\nsmtp=");
    let (mut rig, fx) = Rig::started(&text, &[R1, R2]);
    assert!(fx.mails.is_empty(), "not while starting");
    assert_eq!(rig.verdict(R1, Verdict::Down).mails.len(), 1);
    let (mut rig, _) = Rig::started(
        &MAIL.replace("smtp=", "emailalertstatus=none\nsmtp="),
        &[R1, R2],
    );
    let fx = rig.verdict(R1, Verdict::Down);
    assert!(fx.mails.is_empty() && fx.lines.len() == 1, "{:?}", fx.lines);
}

#[test]
fn without_emailalert_nothing_is_mailed() {
    let (mut rig, _) = Rig::started(TWO, &[R1, R2]);
    rig.verdict(R1, Verdict::Down);
    let fx = rig.verdict(R1, Verdict::Down);
    assert!(fx.mails.is_empty());
}

#[test]
fn monitorfile_gets_every_result() {
    let text = TWO.replace("\tfallback=", "\tmonitorfile=/tmp/m.log\n\tfallback=");
    let (mut rig, _) = Rig::started(&text, &[R1, R2]);
    let fx = rig.verdict(R1, Verdict::Down);
    assert_eq!(fx.monitor.len(), 1);
    assert_eq!(fx.monitor[0].path, std::path::Path::new("/tmp/m.log"));
    assert_eq!(
        fx.monitor[0].real_id,
        r"negotiate:http:tcp:192.0.2.11:80:::2:gate:\/:"
    );
    assert!(!fx.monitor[0].up);
}

#[test]
fn reload_keeps_unchanged_reals_and_applies_only_the_difference() {
    let text = format!("{TWO}\nvirtual=192.0.2.2:80\n\treal=192.0.2.21:80 gate\n");
    let (mut rig, _) = Rig::started(&text, &[R1, "192.0.2.21:80"]);
    // R1 has counted a failure; the reload must not forget it.
    rig.verdict(R1, Verdict::Down);
    let before = rig.core.reals()[&rig.key(WEB, R1)];
    let new = "checkinterval=1\nfailurecount=3\n\
               virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate 2\n\treal=192.0.2.13:80 gate 4\n\
               \tfallback=127.0.0.1:80\n\tfallbackcommand=\"/usr/local/bin/sorry\"\n\tscheduler=rr\n\
               \n\
               virtual=192.0.2.3:80\n\treal=192.0.2.31:80 gate\n";
    let fx = rig.core.reload(parse(new), Placement::new(), rig.now);
    assert!(!fx.ops.is_empty());
    assert_eq!(
        fx.lines,
        [
            "Changed virtual server: 192.0.2.1:80",
            "Added virtual server: 192.0.2.3:80",
            "Purged virtual server (start): 192.0.2.2:80",
        ]
    );
    assert_eq!(
        rig.core.reals()[&rig.key(WEB, R1)],
        before,
        "unchanged real: same health, same count"
    );
    assert_eq!(
        rig.weights(WEB),
        [w(R1, 2)],
        "the new real waits for its first verdict"
    );
    assert!(
        rig.core.table().services.keys().all(
            |k| !matches!(k, ServiceKey::Inet { addr, .. } if addr.to_string() == "192.0.2.2")
        )
    );
    assert!(
        fx.commands.is_empty(),
        "192.0.2.3 has no fallbackcommand; 192.0.2.1 keeps its state"
    );
    let fx = rig.verdict(R1, Verdict::Down);
    assert_eq!(
        fx.lines,
        ["Soft failure real server: 192.0.2.11:80 (tcp:192.0.2.1:80) failure 2/3"]
    );
    let fx = rig.verdict("192.0.2.13:80", Verdict::Up);
    assert_eq!(
        fx.lines,
        ["Added real server: 192.0.2.13:80 (192.0.2.1:80) (Weight set to 4)"]
    );
}

#[test]
fn reload_purges_removed_reals_and_restores_changed_weights() {
    let (mut rig, _) = Rig::started(TWO, &[R1, R2]);
    let new = TWO
        .replace("\treal=192.0.2.12:80 gate\n", "")
        .replace("gate 2", "gate 5");
    let fx = rig.core.reload(parse(&new), Placement::new(), rig.now);
    assert_eq!(
        fx.lines,
        [
            "Restored real server: 192.0.2.11:80 (192.0.2.1:80) (Weight set to 5)",
            "Purged real server (start): 192.0.2.12:80 (192.0.2.1:80)",
        ]
    );
    assert_eq!(rig.weights(WEB), [w(R1, 5)]);
    let unchanged = rig.core.reload(parse(&new), Placement::new(), rig.now);
    assert!(
        unchanged.ops.is_empty() && unchanged.lines.is_empty(),
        "{:?}",
        unchanged.lines
    );
}

#[test]
fn reload_to_checktype_off_takes_the_reals_down() {
    let (mut rig, _) = Rig::started(TWO, &[R1, R2]);
    let fx = rig.core.reload(
        parse(&TWO.replace("\tfallback=", "\tchecktype=off\n\tfallback=")),
        Placement::new(),
        rig.now,
    );
    assert_eq!(rig.weights(WEB), []);
    assert_eq!(fx.commands, ["/usr/local/bin/sorry start 192.0.2.1:80 tcp"]);
}

#[test]
fn stop_purges_cleanstop_virtuals_and_leaves_the_others() {
    let text = format!("{TWO}\nvirtual=192.0.2.2:80\n\treal=192.0.2.21:80 gate\n\tcleanstop=no\n");
    let (mut rig, _) = Rig::started(&text, &[R1, "192.0.2.21:80"]);
    let fx = rig.core.stop(rig.now);
    assert_eq!(
        fx.lines,
        [
            "Purged real server (stop): 192.0.2.11:80 (192.0.2.1:80)",
            "Purged virtual server (stop): 192.0.2.1:80"
        ]
    );
    assert!(!fx.ops.is_empty(), "ops to apply");
    let table = rig.core.table();
    assert_eq!(
        table.services.len(),
        1,
        "the cleanstop=no virtual keeps forwarding"
    );
    let (_, kept) = table.services.iter().next().unwrap();
    assert_eq!(kept.reals[0].forward, Forwarding::Gate);
    let (mut rig, _) = Rig::started(&TWO.replace("failurecount=3", "cleanstop=no"), &[R1]);
    let fx = rig.core.stop(rig.now);
    assert!(
        fx.ops.is_empty() && fx.lines.is_empty(),
        "cleanstop=no leaves the data plane alone"
    );
}

#[test]
fn stop_before_the_first_apply_clears_only_when_every_virtual_is_clean() {
    let mut rig = Rig::new(TWO);
    let fx = rig.core.stop(rig.now);
    assert_eq!(
        fx.ops,
        [crate::table::diff::Op::DeleteVirtual { key: inet(WEB) }]
    );
    assert_eq!(fx.lines, ["Purged virtual server (stop): 192.0.2.1:80"]);
}

#[test]
fn results_for_reals_gone_in_a_reload_are_ignored() {
    let (mut rig, _) = Rig::started(TWO, &[R1, R2]);
    let gone = rig.key(WEB, R2);
    rig.core.reload(
        parse(&TWO.replace("\treal=192.0.2.12:80 gate\n", "")),
        Placement::new(),
        rig.now,
    );
    let fx = rig.core.observe(&gone, Verdict::Down, &reason());
    assert!(fx.lines.is_empty());
    assert!(rig.core.reals().get(&gone).is_none());
    assert_eq!(rig.core.reals()[&rig.key(WEB, R1)].health, Health::Up);
}

/// A real as the data plane holds it.
fn held_real(addr: &str, weight: u32) -> crate::table::Real {
    let addr: SocketAddr = addr.parse().unwrap();
    crate::table::Real {
        addr: addr.ip(),
        port: addr.port(),
        forward: Forwarding::Gate,
        weight,
        upper_threshold: 0,
        lower_threshold: 0,
    }
}

fn held_service(reals: Vec<crate::table::Real>) -> crate::table::Service {
    crate::table::Service {
        attrs: crate::table::ServiceAttrs::default(),
        reals,
        fallback: None,
    }
}

fn inet(addr: &str) -> ServiceKey {
    let addr: SocketAddr = addr.parse().unwrap();
    ServiceKey::Inet {
        protocol: crate::table::Protocol::Tcp,
        addr: addr.ip(),
        port: addr.port(),
    }
}

/// As ldirectord starting on IPVS entries a previous run left: what is there as configured is
/// not reported (or mailed) again; a real whose weight differs is restored, a real or virtual
/// no longer configured is purged.
#[test]
fn a_start_on_a_data_plane_left_running_reports_only_what_differs() {
    let mut rig = Rig::new(MAIL);
    let mut held = DesiredTable::default();
    held.services.insert(
        inet(WEB),
        held_service(vec![
            held_real(R1, 1),
            held_real(R2, 0),
            held_real("192.0.2.13:80", 1),
        ]),
    );
    held.services
        .insert(inet("192.0.2.9:80"), held_service(vec![held_real(R1, 1)]));
    rig.core.set_held(held);
    let mut fx = Effects::default();
    for real in [R1, R2] {
        let key = rig.key(WEB, real);
        merge(&mut fx, rig.core.observe(&key, Verdict::Up, &reason()));
    }
    let now = rig.now;
    merge(&mut fx, rig.core.commit(now));
    assert!(rig.core.started());
    assert_eq!(
        fx.lines,
        [
            "Purged virtual server (start): 192.0.2.9:80",
            "Restored real server: 192.0.2.12:80 (192.0.2.1:80) (Weight set to 1)",
            "emailalert: Restored real server: 192.0.2.12:80 (192.0.2.1:80) (Weight set to 1)",
            "Purged real server (start): 192.0.2.13:80 (192.0.2.1:80)",
            "emailalert: Purged real server (start): 192.0.2.13:80 (192.0.2.1:80)",
        ]
    );
    assert_eq!(fx.mails.len(), 2);
    assert!(!fx.ops.is_empty());
    assert_eq!(rig.weights(WEB), [w(R1, 1), w(R2, 1)]);
}
