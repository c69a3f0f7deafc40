//! The agent with real health checks against real web servers on loopback, driven through the
//! library with the fake backend: failures and recoveries reach the table, reloads change
//! only what changed, a bad file changes nothing, alerts are really mailed, and the commands
//! of the configuration really run.

mod common;
// lb-health's real servers (Debian's daemons on loopback, private data, stopped when dropped).
#[path = "../../lb-health/tests/servers/mod.rs"]
mod servers;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{SmtpSink, WebReal, wait_for_file, wait_for_line, wait_for_table, weight};
use xdirectord::alert::Mailer;
use xdirectord::backend::fake::FakeBackend;
use xdirectord::daemon::{Agent, AgentSettings};
use xdirectord::log::Logger;

struct Running {
    agent: Agent,
    backend: FakeBackend,
    lines: Arc<Mutex<Vec<String>>>,
    dir: tempfile::TempDir,
    path: PathBuf,
}

const VIP: &str = "127.0.0.1:8080";

fn write(path: &Path, text: &str) {
    // A new mtime even within the same second, as an editor's save would give.
    let old = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    std::fs::write(path, text).unwrap();
    if let Some(old) = old {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(old + Duration::from_secs(2)).unwrap();
    }
}

async fn start(text: &str, tweak: impl FnOnce(&mut AgentSettings)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.cf");
    write(&path, text);
    let config = lb_config::load(&path).expect("a valid configuration");
    let (logger, lines) = Logger::capture();
    let mut settings = AgentSettings::new(logger);
    settings.file_poll = Duration::from_millis(100);
    tweak(&mut settings);
    let backend = FakeBackend::default();
    let agent = Agent::start(
        config,
        Default::default(),
        Box::new(backend.clone()),
        settings,
    );
    Running {
        agent,
        backend,
        lines,
        dir,
        path,
    }
}

fn web_config(globals: &str, reals: &[&WebReal]) -> String {
    let mut text =
        format!("checkinterval=1\nchecktimeout=2\nnegotiatetimeout=2\n{globals}virtual={VIP}\n");
    for real in reals {
        text.push_str(&format!("\treal={} masq\n", real.addr));
    }
    text.push_str("\tservice=http\n\trequest=\"health\"\n\treceive=\"ok\"\n");
    text
}

fn has_line(lines: &Arc<Mutex<Vec<String>>>, text: &str) -> bool {
    let lines = lines.lock().unwrap();
    let found = lines.iter().any(|l| l == text);
    if !found {
        eprintln!("no line {text:?} in {lines:#?}");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_that_stops_is_removed_after_failurecount_rounds_and_restored_when_back() {
    let (mut a, b) = (WebReal::start().await, WebReal::start().await);
    let run = start(&web_config("failurecount=2\n", &[&a, &b]), |_| {}).await;
    let (ra, rb) = (a.addr, b.addr);
    wait_for_table(&run.backend, &run.lines, "both reals up", |t| {
        weight(t, ra) == Some(1) && weight(t, rb) == Some(1)
    })
    .await;

    a.stop().await;
    wait_for_table(&run.backend, &run.lines, "the stopped real out", |t| {
        weight(t, ra).is_none()
    })
    .await;
    assert!(has_line(
        &run.lines,
        &format!("Soft failure real server: {ra} (tcp:{VIP}) failure 1/2")
    ));
    assert!(has_line(
        &run.lines,
        &format!("Deleted real server: {ra} ({VIP})")
    ));
    // Before the deciding failure the real stayed in: no table without it came earlier.
    let applied = run.backend.applied.lock().unwrap().clone();
    let first_out = applied
        .iter()
        .position(|t| weight(t, ra).is_none() && weight(t, rb).is_some());
    assert!(first_out.is_some_and(|i| applied[..i].iter().any(|t| weight(t, ra) == Some(1))));
    assert_eq!(
        weight(&run.backend.current(), rb),
        Some(1),
        "the other real is untouched"
    );

    a.restart().await;
    wait_for_table(&run.backend, &run.lines, "the real back", |t| {
        weight(t, ra) == Some(1)
    })
    .await;
    assert!(has_line(
        &run.lines,
        &format!("Resetting soft failure count: {ra} (tcp:{VIP})")
    ));
    assert!(has_line(
        &run.lines,
        &format!("Added real server: {ra} ({VIP}) (Weight set to 1)")
    ));

    run.agent.handle().stop("TERM").await;
    run.agent.wait().await;
    assert!(
        run.backend.current().services.is_empty(),
        "cleanstop: the virtual is purged"
    );
    assert!(has_line(
        &run.lines,
        &format!("Purged virtual server (stop): {VIP}")
    ));
    assert!(has_line(
        &run.lines,
        "xdirectord daemon terminated on signal: TERM"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiescent_real_keeps_its_place_with_weight_zero() {
    let (mut a, b) = (WebReal::start().await, WebReal::start().await);
    let run = start(
        &web_config("quiescent=yes\ncleanstop=no\n", &[&a, &b]),
        |_| {},
    )
    .await;
    let ra = a.addr;
    wait_for_table(&run.backend, &run.lines, "up", |t| weight(t, ra) == Some(1)).await;
    a.stop().await;
    wait_for_table(&run.backend, &run.lines, "quiesced", |t| {
        weight(t, ra) == Some(0)
    })
    .await;
    assert!(has_line(
        &run.lines,
        &format!("Quiescent real server: {ra} ({VIP}) (Weight set to 0)")
    ));
    a.restart().await;
    wait_for_table(&run.backend, &run.lines, "restored", |t| {
        weight(t, ra) == Some(1)
    })
    .await;
    assert!(has_line(
        &run.lines,
        &format!("Restored real server: {ra} ({VIP}) (Weight set to 1)")
    ));
    run.agent.handle().stop("INT").await;
    run.agent.wait().await;
    assert_eq!(
        weight(&run.backend.current(), ra),
        Some(1),
        "cleanstop=no leaves it forwarding"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fallback_and_fallbackcommand_follow_the_last_real() {
    let mut a = WebReal::start().await;
    let dir = tempfile::tempdir().unwrap();
    let calls = dir.path().join("calls");
    let script = dir.path().join("sorry");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", calls.display()),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let globals = format!(
        "fallback=127.0.0.9:80\nfallbackcommand={}\nfailurecount=1\n",
        script.display()
    );
    let run = start(&web_config(&globals, &[&a]), |_| {}).await;
    let ra = a.addr;
    let fallback: SocketAddr = "127.0.0.9:80".parse().unwrap();
    let has_fallback = move |t: &xdirectord::table::DesiredTable| {
        t.services.values().any(|s| {
            s.fallback
                .is_some_and(|f| f.addr == fallback.ip() && f.port == 80)
        })
    };
    wait_for_table(&run.backend, &run.lines, "up", |t| {
        weight(t, ra) == Some(1) && !has_fallback(t)
    })
    .await;
    wait_for_file(&calls, &format!("stop {VIP} tcp")).await;
    a.stop().await;
    wait_for_table(&run.backend, &run.lines, "the fallback in", |t| {
        weight(t, ra).is_none() && has_fallback(t)
    })
    .await;
    wait_for_file(&calls, &format!("start {VIP} tcp")).await;
    a.restart().await;
    wait_for_table(&run.backend, &run.lines, "the fallback out", |t| {
        weight(t, ra) == Some(1) && !has_fallback(t)
    })
    .await;
    let calls = wait_for_file(&calls, &format!("start {VIP} tcp\nstop {VIP} tcp\n")).await;
    assert_eq!(
        calls,
        format!("stop {VIP} tcp\nstart {VIP} tcp\nstop {VIP} tcp\n")
    );
    run.agent.handle().stop("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_delivered_over_smtp() {
    let sink = SmtpSink::start().await;
    let mut a = WebReal::start().await;
    let globals = "emailalert=\"ops@example.com\"\nsmtp=127.0.0.1\nemailalertfrom=lb@example.com\nfailurecount=1\n";
    let text =
        web_config(globals, &[&a]).replace("\tservice=http", "\tservicename=Web\n\tservice=http");
    let port = sink.port;
    let run = start(&text, |s| s.mailer = Mailer::new().with_smtp_port(port)).await;
    let ra = a.addr;
    wait_for_table(&run.backend, &run.lines, "up", |t| weight(t, ra) == Some(1)).await;
    let added = sink.wait_for("Added real server").await;
    assert!(added.contains("Daemon-Status: starting"), "{added}");
    a.stop().await;
    let mail = sink.wait_for(&format!("Deleted real server: {ra}")).await;
    assert!(
        mail.contains(&format!("Subject: [Web] Deleted real server: {ra} ({VIP})")),
        "{mail}"
    );
    assert!(mail.contains("From: lb@example.com"), "{mail}");
    assert!(mail.contains("To: ops@example.com"), "{mail}");
    assert!(
        mail.contains(&format!(
            "Log-Message: [Web] Deleted real server: {ra} ({VIP})"
        )),
        "{mail}"
    );
    assert!(mail.contains("Daemon-Status: running"), "{mail}");
    assert!(mail.contains("Service name: Web"), "{mail}");
    assert!(has_line(
        &run.lines,
        &format!("emailalert: Deleted real server: {ra} ({VIP})")
    ));
    run.agent.handle().stop("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_only_what_changed_and_keeps_the_state_of_unchanged_reals() {
    let (a, b, c, d) = (
        WebReal::start().await,
        WebReal::start().await,
        WebReal::start().await,
        WebReal::start().await,
    );
    let before = format!(
        "checkinterval=1\nnegotiatetimeout=2\n\
         virtual=127.0.0.1:8080\n\treal={} masq\n\treal={} masq\n\tservice=http\n\treceive=\"ok\"\n\n\
         virtual=127.0.0.1:8081\n\treal={} masq\n\tservice=http\n\treceive=\"ok\"\n",
        a.addr, b.addr, c.addr
    );
    let run = start(&before, |_| {}).await;
    let (ra, rb, rc, rd) = (a.addr, b.addr, c.addr, d.addr);
    wait_for_table(&run.backend, &run.lines, "every real up", |t| {
        [ra, rb, rc].iter().all(|r| weight(t, *r) == Some(1))
    })
    .await;
    let handle = run.agent.handle();
    let first = handle.snapshot().await.unwrap();

    // a: weight 1 → 3; b: removed; d: added; 8081 removed; 8082 added with c.
    let after = format!(
        "checkinterval=1\nnegotiatetimeout=2\n\
         virtual=127.0.0.1:8080\n\treal={} masq 3\n\treal={} masq\n\tservice=http\n\treceive=\"ok\"\n\n\
         virtual=127.0.0.1:8082\n\treal={} masq\n\tservice=http\n\treceive=\"ok\"\n",
        a.addr, d.addr, c.addr
    );
    write(&run.path, &after);
    assert!(handle.reload().await, "a good file is taken");
    // Right after the reload, before any new check round: the unchanged real is in with its
    // new weight, and its check kept running.
    let now = handle.snapshot().await.unwrap();
    assert_eq!(weight(&now.table, ra), Some(3));
    assert_eq!(weight(&now.table, rb), None);
    assert!(
        now.stats.checks_kept > first.stats.checks_kept,
        "{:?}",
        now.stats
    );
    assert_eq!(now.table.services.len(), 2);
    assert!(has_line(
        &run.lines,
        &format!("Restored real server: {ra} (127.0.0.1:8080) (Weight set to 3)")
    ));
    assert!(has_line(
        &run.lines,
        &format!("Purged real server (start): {rb} (127.0.0.1:8080)")
    ));
    assert!(has_line(
        &run.lines,
        "Purged virtual server (start): 127.0.0.1:8081"
    ));
    assert!(has_line(&run.lines, "Added virtual server: 127.0.0.1:8082"));
    wait_for_table(&run.backend, &run.lines, "new reals up", |t| {
        weight(t, rd) == Some(1) && weight(t, rc) == Some(1)
    })
    .await;

    // A bad file: logged as ldirectord logs it, nothing changes.
    let applied = run.backend.applied.lock().unwrap().len();
    let table = run.backend.current();
    write(&run.path, &format!("{after}quiescent=maybe\n"));
    assert!(!handle.reload().await);
    let pid = std::process::id();
    let error = format!(
        "Error [{pid}] reading file {} at line 13: quiescent must be 'yes' or 'no'",
        run.path.display()
    );
    assert!(
        has_line(&run.lines, &error),
        "{:#?}",
        run.lines.lock().unwrap()
    );
    // A file lb-health cannot check: refused the same way.
    write(
        &run.path,
        &after.replace(
            "\tservice=http\n\treceive=\"ok\"\n\n",
            "\tservice=http_proxy\n\n",
        ),
    );
    assert!(!handle.reload().await);
    wait_for_line(
        &run.lines,
        "service http_proxy needs request to be an absolute URL",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        run.backend.current(),
        table,
        "the running configuration stays in force"
    );
    assert_eq!(
        run.backend.applied.lock().unwrap().len(),
        applied,
        "nothing was applied"
    );
    let _ = run.dir;
    handle.stop("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoreload_and_callback_follow_the_file() {
    let (a, b) = (WebReal::start().await, WebReal::start().await);
    let dir = tempfile::tempdir().unwrap();
    let called = dir.path().join("called");
    let callback = dir.path().join("callback");
    std::fs::write(
        &callback,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", called.display()),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&callback)
        .status()
        .unwrap();
    let globals = format!("autoreload=yes\ncallback=\"{}\"\n", callback.display());
    let run = start(&web_config(&globals, &[&a]), |_| {}).await;
    let (ra, rb) = (a.addr, b.addr);
    wait_for_table(&run.backend, &run.lines, "up", |t| weight(t, ra) == Some(1)).await;
    write(&run.path, &web_config(&globals, &[&a, &b]));
    wait_for_table(&run.backend, &run.lines, "the added real", |t| {
        weight(t, rb) == Some(1)
    })
    .await;
    let path = run.path.display().to_string();
    assert!(has_line(
        &run.lines,
        &format!("Configuration file '{path}' has changed on disk")
    ));
    assert!(has_line(&run.lines, " - reread new configuration"));
    wait_for_file(&called, &format!("{path}\n")).await;
    run.agent.handle().stop("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_autoreload_a_changed_file_is_ignored() {
    let (a, b) = (WebReal::start().await, WebReal::start().await);
    let run = start(&web_config("", &[&a]), |_| {}).await;
    let ra = a.addr;
    wait_for_table(&run.backend, &run.lines, "up", |t| weight(t, ra) == Some(1)).await;
    write(&run.path, &web_config("", &[&a, &b]));
    wait_for_line(&run.lines, " - ignore new configuration").await;
    assert_eq!(weight(&run.backend.current(), b.addr), None);
    run.agent.handle().stop("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_files_and_monitorfile() {
    let a = WebReal::start().await;
    let dir = tempfile::tempdir().unwrap();
    let monitor = dir.path().join("monitor.log");
    let globals = format!("maintenancedir={}\n", dir.path().display());
    let text = web_config(&globals, &[&a]).replace(
        "\tservice=http",
        &format!("\tmonitorfile=\"{}\"\n\tservice=http", monitor.display()),
    );
    let run = start(&text, |_| {}).await;
    let ra = a.addr;
    wait_for_table(&run.backend, &run.lines, "up", |t| weight(t, ra) == Some(1)).await;
    let file = dir.path().join(ra.to_string());
    std::fs::write(&file, "").unwrap();
    wait_for_table(&run.backend, &run.lines, "in maintenance", |t| {
        weight(t, ra).is_none()
    })
    .await;
    std::fs::remove_file(&file).unwrap();
    wait_for_table(&run.backend, &run.lines, "back", |t| {
        weight(t, ra) == Some(1)
    })
    .await;
    let lines = std::fs::read_to_string(&monitor).unwrap();
    let id = format!(
        "negotiate http tcp {} {} 1 masq /health ok",
        ra.ip(),
        ra.port()
    );
    assert!(
        lines.contains(&format!("] [{}] {id} [up] ", std::process::id())),
        "{lines}"
    );
    assert!(lines.contains(&format!("{id} [down] ")), "{lines}");
    run.agent.handle().stop("TERM").await;
}

/// Protocol checks through the agent: nntp against nnrpd and mysql against mariadb, each
/// real added when its check passes, kept out while it fails, removed when its server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_checks_add_and_remove_reals() {
    let (news, news_port) = servers::nnrpd(None);
    let (_refusing, refusing_port) = servers::nnrpd(Some("closed for the test"));
    let (database, database_port) = servers::mariadb();
    let at = |port| SocketAddr::new(servers::V4, port);
    let (news_real, refusing_real, database_real) =
        (at(news_port), at(refusing_port), at(database_port));
    let text = format!(
        "checkinterval=1\nchecktimeout=2\nnegotiatetimeout=2\n\
         virtual=127.0.0.1:119\n\treal={news_real} gate\n\treal={refusing_real} gate\n\
         \tservice=nntp\n\n\
         virtual=127.0.0.1:3306\n\treal={database_real} gate\n\tservice=mysql\n\
         \tlogin=\"probe\"\n\tpasswd=\"s3cret\"\n\tdatabase=\"shop\"\n\
         \trequest=\"SELECT * FROM items\"\n"
    );
    let run = start(&text, |_| {}).await;
    wait_for_table(&run.backend, &run.lines, "the answering reals in", |t| {
        weight(t, news_real) == Some(1) && weight(t, database_real) == Some(1)
    })
    .await;
    assert_eq!(
        weight(&run.backend.current(), refusing_real),
        None,
        "nnrpd greeting with 400 is down"
    );
    assert!(has_line(
        &run.lines,
        &format!("Added real server: {news_real} (127.0.0.1:119) (Weight set to 1)")
    ));

    drop(news);
    wait_for_table(
        &run.backend,
        &run.lines,
        "the stopped news server out",
        |t| weight(t, news_real).is_none() && weight(t, database_real) == Some(1),
    )
    .await;
    drop(database);
    wait_for_table(&run.backend, &run.lines, "the stopped database out", |t| {
        weight(t, database_real).is_none()
    })
    .await;
    assert!(has_line(
        &run.lines,
        &format!("Deleted real server: {database_real} (127.0.0.1:3306)")
    ));
    run.agent.handle().stop("TERM").await;
    run.agent.wait().await;
}
