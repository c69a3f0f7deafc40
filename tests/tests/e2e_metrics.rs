//! End to end on the lab (docs/lab.md): the agent's Prometheus endpoint (`metrics =`), with
//! an XDP virtual live and traffic having flowed. `promtool check metrics` accepts what it
//! serves; a real Prometheus server (Debian's `prometheus`, a private data directory, killed
//! afterwards) scrapes it every second in the director's namespace, and its HTTP API gives a
//! real's packet count equal to what `show --stats` reads from the data plane. A second agent
//! asking for the same address does not start, and says why.

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use xdirectord_tests::e2e::{GLOBALS, PATIENCE, lab, real_addr, tally, virtual_service, web};
use xtask::lab::agent::wait_for;
use xtask::lab::{DIRECTOR, VIP};

/// Where the agent serves metrics, and where the test's Prometheus listens: loopback in the
/// director's namespace.
const METRICS: &str = "127.0.0.1:19100";
const PROMETHEUS: &str = "127.0.0.1:19090";

/// `args` run in the director's network namespace, as the lab runs the agent.
fn in_director(program: &str) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/var/run/netns/{}", DIRECTOR.ns))
        .arg("--")
        .arg(program);
    cmd
}

/// `curl URL` in the director's namespace: the body, or `None` on any failure.
fn fetch(url: &str) -> Option<String> {
    let out = in_director("curl")
        .args(["--silent", "--fail", "--max-time", "10", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A Prometheus server of the test: killed, and its directory removed, when dropped.
struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start() -> Prometheus {
        let dir = tempfile::tempdir().expect("a directory for Prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  \
                 - job_name: xdirectord\n    static_configs:\n      - targets: ['{METRICS}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let child = in_director("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("prometheus.log")).expect("a log file"),
            ))
            .spawn()
            .expect("start prometheus (cargo xtask setup installs it)");
        Prometheus { child, _dir: dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The value of an instant query that selects one series, if it does.
    fn query(&self, query: &str) -> Option<f64> {
        let url = format!(
            "http://{PROMETHEUS}/api/v1/query?query={}",
            query
                .bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' =>
                        (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        );
        let answer: serde_json::Value = serde_json::from_str(&fetch(&url)?).ok()?;
        let result = answer["data"]["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real's incoming packets as `show --stats --json` reads them from the data plane.
fn show_packets(binary: &Path, config: &Path, real: std::net::IpAddr) -> u64 {
    let out = Command::new(binary)
        .arg("show")
        .arg(config)
        .args(["--stats", "--json"])
        .output()
        .expect("run show");
    assert!(out.status.success(), "{out:?}");
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("show --json");
    shown["xdp"]["services"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["reals"].as_array().into_iter().flatten())
        .find(|r| r["addr"].as_str() == Some(&real.to_string()) && r["fallback"] == false)
        .and_then(|r| r["stats"]["in_packets"].as_u64())
        .unwrap_or_else(|| panic!("show has no real {real}: {shown}"))
}

#[test]
fn prometheus_scrapes_what_show_reads() {
    let Some(lab) = lab() else { return };
    let agent = lab.agent(
        "e2e-metrics",
        &format!(
            "{GLOBALS}metrics={METRICS}\n{}",
            virtual_service(VIP.into(), "scheduler=wrr")
        ),
    );
    agent.wait_for_reals(VIP, &[(0, 10), (1, 20), (2, 30)]);
    let counts = tally(web(VIP), 60);
    assert_eq!(counts.values().sum::<usize>(), 60, "{counts:?}");

    // What the agent serves, with traffic counted, is valid for promtool.
    let text = fetch(&format!("http://{METRICS}/metrics")).expect("the agent serves metrics");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (cargo xtask setup installs prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let web1 = real_addr(0, false);
    let real = format!(
        "local_address=\"{VIP}\",local_port=\"80\",proto=\"TCP\",local_mark=\"\",\
         remote_address=\"{web1}\",remote_port=\"80\""
    );
    for series in [
        format!("xdirectord_real_up{{{real}}} 1"),
        format!("xdirectord_real_weight_configured{{{real}}} 10"),
        format!("xdirectord_real_weight{{{real},backend=\"xdp\"}} 10"),
        "xdirectord_xdp_attached{interface=\"eth0\",mode=\"native\"} 1".to_string(),
    ] {
        assert!(text.lines().any(|l| l == series), "{series} not in\n{text}");
    }
    for family in [
        "xdirectord_check_duration_seconds_bucket{",
        "xdirectord_check_failures_total{",
        "xdirectord_xdp_packets_total{counter=\"passed\"}",
        "xdirectord_xdp_flow_table_capacity{family=\"ipv4\"}",
        "xdirectord_config_last_reload_timestamp_seconds ",
    ] {
        assert!(text.contains(family), "{family} not in\n{text}");
    }

    // Prometheus scrapes it; once the traffic has stopped, the real's count it holds is the
    // one show reads.
    let prometheus = Prometheus::start();
    let expected = show_packets(&lab.binaries.xdirectord, &agent.agent.config, web1);
    assert!(expected > 0, "web1 served no packet: {counts:?}");
    let query = format!("xdirectord_real_incoming_packets_total{{remote_address=\"{web1}\"}}");
    let mut last = None;
    let got = wait_for("Prometheus to hold show's count", PATIENCE, || {
        last = prometheus.query(&query);
        Ok(last.filter(|v| *v == expected as f64))
    });
    assert!(
        got.is_ok(),
        "Prometheus has {last:?} for {query}, show has {expected}\n{}",
        prometheus.log()
    );
    assert_eq!(
        show_packets(&lab.binaries.xdirectord, &agent.agent.config, web1),
        expected,
        "no packet reached web1 meanwhile"
    );

    // Another agent cannot have the address: its start fails and names it.
    let busy = agent
        .agent
        .config
        .with_file_name("xdlab-e2e-metrics-busy.cf");
    std::fs::write(
        &busy,
        format!(
            "{GLOBALS}metrics={METRICS}\n{}",
            virtual_service("10.200.0.101".parse().unwrap(), "")
        ),
    )
    .unwrap();
    let out = in_director(lab.binaries.xdirectord.to_str().unwrap())
        .arg(&busy)
        .arg("start")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&busy);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr.contains(&format!("cannot serve metrics on {METRICS}")) && stderr.contains("in use"),
        "{stderr}"
    );
}
