//! The runner and per-check state against real servers: combined-N sequencing, maintenance,
//! dedup, reload keeping state, off/on, shutdown.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Settings, http_server, negotiate, respond};
use lb_health::{
    CheckError, CheckOutcome, CheckResult, CheckSpec, CheckType, Checker, HealthRunner, Jitter,
    Probes, RunnerConfig, Service,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A server whose status code the test can change, counting requests.
async fn switchable_server() -> (std::net::SocketAddr, Arc<AtomicU16>, Arc<AtomicUsize>) {
    let status = Arc::new(AtomicU16::new(200));
    let hits = Arc::new(AtomicUsize::new(0));
    let (s, h) = (Arc::clone(&status), Arc::clone(&hits));
    let addr = http_server(Arc::new(move |_| {
        h.fetch_add(1, Ordering::SeqCst);
        respond(s.load(Ordering::SeqCst), "")
    }))
    .await;
    (addr, status, hits)
}

fn fast_config() -> RunnerConfig {
    RunnerConfig {
        jitter: Jitter {
            first_spread_max: Duration::from_millis(20),
            period_fraction: 0.1,
        },
        ..RunnerConfig::default()
    }
}

fn fast(mut spec: CheckSpec) -> CheckSpec {
    spec.check_interval = Duration::from_millis(100);
    spec
}

/// The next result, failing the test instead of hanging if none comes.
async fn next<K>(rx: &mut mpsc::Receiver<CheckResult<K>>) -> CheckResult<K> {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a result within 20 s")
        .expect("runner alive")
}

fn is_connect_round(reason: &str) -> bool {
    reason.starts_with("connected")
}

#[tokio::test]
async fn combined_check_negotiates_first_then_every_n_connects() {
    let (addr, status, _) = switchable_server().await;
    let mut spec = negotiate(addr, Service::Http);
    spec.check_type = CheckType::Combined(2);
    let probes = Probes::default();
    let mut checker = Checker::new(spec).unwrap();
    let mut round = async || checker.check(&probes).await.unwrap();

    let phases: Vec<bool> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            let o = round().await;
            assert!(o.up, "{o:?}");
            v.push(is_connect_round(&o.reason));
        }
        v
    };
    assert_eq!(phases, [false, true, true, false, true], "N, C, C, N, C");

    // The negotiate fails: connect still succeeds, so the next connect round runs, then
    // negotiate rounds repeat until one succeeds.
    status.store(500, Ordering::SeqCst);
    let o = round().await;
    assert!(o.up && is_connect_round(&o.reason), "{o:?}");
    for _ in 0..2 {
        let o = round().await;
        assert!(!o.up);
        assert_eq!(&*o.reason, "500 Internal Server Error");
    }
    status.store(200, Ordering::SeqCst);
    let o = round().await;
    assert_eq!((o.up, &*o.reason), (true, "200 OK"));
    let o = round().await;
    assert!(is_connect_round(&o.reason), "{o:?}");
}

/// Checks until `wanted` holds: the maintenance directory's listing is shared and re-read at
/// most every 100 ms, so a new file shows within a few rounds. Fails after 20 s.
async fn check_until(
    checker: &mut Checker,
    probes: &Probes,
    wanted: impl Fn(&CheckOutcome) -> bool,
) -> CheckOutcome {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let o = checker.check(probes).await.expect("a result");
        if wanted(&o) {
            return o;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not seen in 20 s: {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn maintenance_file_forces_down() {
    let (addr, _, hits) = switchable_server().await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = negotiate(addr, Service::Http);
    spec.maintenance_dir = Some(dir.path().to_path_buf());
    let probes = Probes::default();
    let mut checker = Checker::new(spec).unwrap();

    let o = checker.check(&probes).await.unwrap();
    assert!(o.up && !o.maintenance, "empty directory: {o:?}");

    let file = dir.path().join(format!("127.0.0.1:{}", addr.port()));
    std::fs::write(&file, "").unwrap();
    let o = check_until(&mut checker, &probes, |o| o.maintenance).await;
    assert!(!o.up && o.maintenance, "{o:?}");
    assert!(o.reason.contains("127.0.0.1:"), "{o:?}");
    let before = hits.load(Ordering::SeqCst);
    assert!(checker.check(&probes).await.unwrap().maintenance);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before,
        "no probe in maintenance"
    );

    std::fs::remove_file(&file).unwrap();
    check_until(&mut checker, &probes, |o| o.up).await;
    std::fs::write(dir.path().join("127.0.0.1"), "").unwrap();
    check_until(&mut checker, &probes, |o| o.maintenance).await;
    std::fs::remove_file(dir.path().join("127.0.0.1")).unwrap();
    check_until(&mut checker, &probes, |o| o.up).await;

    // A name from the reverse lookup: 127.0.0.1 is "localhost" in /etc/hosts.
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    if hosts
        .lines()
        .any(|l| l.starts_with("127.0.0.1") && l.contains("localhost"))
    {
        std::fs::write(dir.path().join("localhost"), "").unwrap();
        check_until(&mut checker, &probes, |o| o.maintenance).await;
        std::fs::remove_file(dir.path().join("localhost")).unwrap();
        check_until(&mut checker, &probes, |o| o.up).await;
    }

    // An unrelated file costs a lookup but changes nothing; a dangling link is no file (`-e`).
    std::fs::write(dir.path().join("10.9.9.9"), "").unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("127.0.0.1")).unwrap();
    // Once the listing holds the unrelated file, it is the one the checks see.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        let o = checker.check(&probes).await.unwrap();
        assert!(o.up && !o.maintenance, "{o:?}");
    }
}

#[tokio::test]
async fn off_reports_nothing_except_maintenance_and_on_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = negotiate("127.0.0.1:9".parse().unwrap(), Service::None);
    spec.check_type = CheckType::Off;
    spec.maintenance_dir = Some(dir.path().to_path_buf());
    let probes = Probes::default();
    let mut checker = Checker::new(spec.clone()).unwrap();
    assert_eq!(checker.check(&probes).await, None);
    std::fs::write(dir.path().join("127.0.0.1"), "").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while checker.check(&probes).await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "maintenance not seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(checker.check(&probes).await.unwrap().maintenance);

    spec.check_type = CheckType::On;
    spec.maintenance_dir = None;
    let o = Checker::new(spec).unwrap().check(&probes).await.unwrap();
    assert!(o.up);
}

#[tokio::test]
async fn equal_specs_are_checked_once_and_reported_to_every_key() {
    let (addr, _, hits) = switchable_server().await;
    let spec = fast(negotiate(addr, Service::Http));
    let shutdown = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel(64);
    let mut runner = HealthRunner::new(tx, fast_config(), &shutdown);
    let reload = runner.replace([("vs1", spec.clone()), ("vs2", spec.clone())]);
    assert_eq!((reload.started, reload.kept, reload.stopped), (1, 0, 0));
    assert_eq!(runner.len(), 1);

    let mut per_key = std::collections::HashMap::new();
    let mut ids = std::collections::HashSet::new();
    for _ in 0..6 {
        let r = next(&mut rx).await;
        assert!(r.up, "{r:?}");
        *per_key.entry(r.key).or_insert(0) += 1;
        ids.insert(r.check);
    }
    assert_eq!(ids.len(), 1, "one check serves both keys");
    assert_eq!(per_key.len(), 2);
    // Each round is one request and two results; allow one round in flight.
    let rounds = per_key.values().max().copied().unwrap();
    assert!(hits.load(Ordering::SeqCst) <= rounds + 1);
    runner.shutdown().await;
}

#[tokio::test]
async fn reload_keeps_unchanged_checks_and_their_state() {
    let (addr, _, _) = switchable_server().await;
    let mut combined = fast(negotiate(addr, Service::Http));
    combined.check_type = CheckType::Combined(1000);
    let mut other = combined.clone();
    other.check_type = CheckType::Connect;

    let shutdown = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel(64);
    let mut runner = HealthRunner::new(tx, fast_config(), &shutdown);
    runner.replace([("a", combined.clone())]);
    let first = next(&mut rx).await;
    assert_eq!(
        &*first.reason, "200 OK",
        "a combined check negotiates first"
    );
    let id = runner.check_id(&combined).unwrap();

    let reload = runner.replace([
        ("a", combined.clone()),
        ("b", combined.clone()),
        ("c", other.clone()),
    ]);
    assert_eq!((reload.kept, reload.started, reload.stopped), (1, 1, 0));
    assert_eq!(runner.check_id(&combined), Some(id), "same task");
    // A fresh task would negotiate; the kept one goes on with connect rounds, now for both
    // keys.
    let mut seen_b = false;
    while !seen_b {
        let r = next(&mut rx).await;
        if r.check == id {
            assert!(is_connect_round(&r.reason), "state kept: {r:?}");
            seen_b |= r.key == "b";
        }
    }

    let reload = runner.replace([("c", other.clone())]);
    assert_eq!((reload.kept, reload.started, reload.stopped), (1, 0, 1));
    assert_eq!(runner.check_id(&combined), None);
    // Results already queued may still arrive; after a few intervals none of the removed
    // check's do.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(r) = rx.try_recv() {
        let _ = r;
    }
    for _ in 0..5 {
        let r = next(&mut rx).await;
        assert_ne!(r.check, id, "removed check still reporting: {r:?}");
        assert_eq!(r.key, "c");
    }
    runner.shutdown().await;
}

#[tokio::test]
async fn refused_specs_are_returned_and_never_reported() {
    let shutdown = CancellationToken::new();
    let (tx, _rx) = mpsc::channel::<CheckResult<&str>>(8);
    let mut runner = HealthRunner::new(tx, fast_config(), &shutdown);
    let mut no_command = negotiate("127.0.0.1:21".parse().unwrap(), Service::Ftp);
    no_command.check_type = CheckType::External;
    no_command.check_command = " ".into();
    let mut bad_regex = negotiate("127.0.0.1:80".parse().unwrap(), Service::Http);
    *bad_regex.receive() = "(".into();
    let reload = runner.replace([("cmd", no_command), ("re", bad_regex)]);
    assert_eq!(runner.len(), 0);
    assert_eq!(reload.rejected.len(), 2);
    assert_eq!(reload.rejected[0], ("cmd", CheckError::EmptyCommand));
    assert!(matches!(
        reload.rejected[1],
        ("re", CheckError::InvalidReceive { .. })
    ));
    runner.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_checks_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let hang = dir.path().join("hang.sh");
    std::fs::write(&hang, "#!/bin/sh\nexec sleep 60\n").unwrap();
    std::fs::set_permissions(
        &hang,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    let mut spec = fast(negotiate("127.0.0.1:80".parse().unwrap(), Service::None));
    spec.check_type = CheckType::External;
    spec.check_command = hang.to_str().unwrap().into();
    spec.check_timeout = Duration::from_secs(60);

    let shutdown = CancellationToken::new();
    let (tx, _rx) = mpsc::channel::<CheckResult<u32>>(8);
    let mut runner = HealthRunner::new(tx, fast_config(), &shutdown);
    runner.replace([(1, spec)]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), runner.shutdown())
        .await
        .expect("shutdown does not wait for the 60 s check");
}

#[tokio::test]
async fn stats_count_rounds() {
    let (addr, _, _) = switchable_server().await;
    let shutdown = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel(64);
    let mut runner = HealthRunner::new(tx, fast_config(), &shutdown);
    runner.replace([((), fast(negotiate(addr, Service::Http)))]);
    for _ in 0..3 {
        next(&mut rx).await;
    }
    let stats = runner.stats();
    assert_eq!(stats.checks, 1);
    assert!(
        stats.rounds >= 3 && stats.up >= 3 && stats.down == 0,
        "{stats:?}"
    );
    runner.shutdown().await;
}

#[tokio::test]
async fn dropping_the_runner_stops_its_checks() {
    let (addr, _, hits) = switchable_server().await;
    let shutdown = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel(64);
    let mut runner = HealthRunner::new(tx, fast_config(), &shutdown);
    runner.replace([(1, fast(negotiate(addr, Service::Http)))]);
    next(&mut rx).await;
    drop(runner);
    // The tasks end at their next await and drop their sender: the channel closes.
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        while rx.recv().await.is_some() {}
    })
    .await;
    assert!(
        closed.is_ok(),
        "checks still running after the runner was dropped"
    );
    let after = hits.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hits.load(Ordering::SeqCst), after);
}

#[tokio::test]
async fn a_slow_agent_is_counted_and_still_gets_every_check() {
    let shutdown = CancellationToken::new();
    // Room for one result, and nobody reading for a while.
    let (tx, mut rx) = mpsc::channel(1);
    let mut runner = HealthRunner::new(tx, fast_config(), &shutdown);
    let on = |port| {
        let mut spec = negotiate(SocketAddr::from(([127, 0, 0, 1], port)), Service::None);
        spec.check_type = CheckType::On;
        fast(spec)
    };
    runner.replace([(1, on(1)), (2, on(2)), (3, on(3))]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while runner.stats().results_waited == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no wait counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 3 {
        seen.insert(next(&mut rx).await.key);
    }
    runner.shutdown().await;
}
