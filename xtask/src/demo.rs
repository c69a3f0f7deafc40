//! `cargo xtask demo`: xdirectord doing its whole job on one machine, in the lab (docs/lab.md).
//!
//! Builds, brings the lab up, starts xdirectord on `examples/lab.cf` in the director's namespace,
//! prints the table, sends traffic from the client and counts which real answered, then stops one
//! real's server (failover), all of them (the fallback on the director serves), brings them back,
//! stops xdirectord and takes the lab down, also when a step fails. Every step is checked; the
//! first that misbehaves ends the demo with an error (and a non-zero exit).
//!
//! Waits are for conditions (the table read back from the data plane, the agent's log), with
//! generous deadlines, so a loaded machine is slower but not wrong.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};

use crate::lab::agent::{Agent, Service, wait_for};
use crate::lab::{self, CLIENT, DIRECTOR, FALLBACK_BODY, HTTP_PORT, REALS, VIP, VIP6, client};
use crate::run;

/// The configuration the demo runs, relative to the workspace root.
const CONFIG: &str = "examples/lab.cf";
/// Where xdirectord logs without a `logfile` (ldirectord's default); the demo quotes it.
const DEFAULT_LOG: &str = "/var/log/ldirectord.log";
/// How long the agent may take to act on a change (checks every second; a loaded machine lags).
const PATIENCE: Duration = Duration::from_secs(30);
/// How far a real's count may stray from its weight's share in one round. wrr keeps one cursor
/// per CPU, so a round split between CPUs can end mid-sequence on each.
const TOLERANCE: usize = 4;

/// Runs the demo. `xtask` is this binary (the lab's web servers are its `lab-httpd` command).
pub fn demo(xtask: &Path) -> Result<()> {
    if !lab::is_root() {
        bail!("the demo builds a lab of network namespaces: run it as root");
    }
    let existing = lab::existing_namespaces()?;
    let agents = lab::lab_agents();
    if !existing.is_empty() || !agents.is_empty() {
        bail!(
            "a lab is up ({}{}); the demo builds its own and takes it down at the end: \
             run `cargo xtask lab down` first",
            existing.join(" "),
            agents
                .iter()
                .map(|(config, pid)| format!(" xdirectord {config} pid {pid}"))
                .collect::<String>()
        );
    }
    say("building (cargo build)");
    run(crate::cargo().arg("build"))?;
    let xdirectord = xdirectord_next_to(xtask)?;
    let agent = Agent::new(xdirectord, CONFIG);
    // Ctrl-C ends the demo at its next step or wait, and the lab still comes down.
    crate::catch_interrupts();
    let started = Instant::now();
    let result = {
        let _teardown = Teardown(&agent);
        steps(xtask, &agent)
    };
    match result {
        Ok(()) => {
            say(&format!(
                "done in {:.0} s: every step behaved",
                started.elapsed().as_secs_f64()
            ));
            Ok(())
        }
        Err(e) => Err(e.context("demo failed")),
    }
}

/// The xdirectord built with this binary (same target directory and profile).
fn xdirectord_next_to(xtask: &Path) -> Result<PathBuf> {
    let binary = xtask
        .parent()
        .context("the xtask binary has no directory")?
        .join("xdirectord");
    ensure!(
        binary.exists(),
        "{} is missing after cargo build",
        binary.display()
    );
    Ok(binary)
}

/// Stops the agent and takes the lab down when the demo ends, whatever happened.
struct Teardown<'a>(&'a Agent);

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        self.0.kill();
        say("taking the lab down");
        if let Err(e) = lab::down() {
            eout!("demo: lab down failed: {e:#}");
        }
    }
}

fn say(line: &str) {
    out!("demo: {line}");
}

/// Stops the demo between steps once interrupted.
fn step(line: &str) -> Result<()> {
    ensure!(!crate::interrupted(), "interrupted");
    say(line);
    Ok(())
}

fn steps(xtask: &Path, agent: &Agent) -> Result<()> {
    lab::up(xtask)?;
    let mut log = AgentLog::open()?;

    step(&format!(
        "starting xdirectord on {CONFIG} in the director's namespace:\n      \
         nsenter --net=/var/run/netns/{} {} {CONFIG} start",
        DIRECTOR.ns,
        relative(&agent.binary).display(),
    ))?;
    agent.start()?;
    let all_up = [(0, 10), (1, 20), (2, 30)];
    wait_for_table(agent, "all three reals to pass their checks", |s| {
        reals_are(s, &all_up)
    })?;
    log.wait_and_print(&[
        "Added real server: 10.200.0.11:80 (10.200.0.100:80)",
        "Added real server: 10.200.0.12:80 (10.200.0.100:80)",
        "Added real server: 10.200.0.13:80 (10.200.0.100:80)",
    ])?;
    step("`xdirectord show` (read back from the pinned BPF maps):")?;
    indent(&agent.show()?);

    let v4 = SocketAddr::new(VIP.into(), HTTP_PORT);
    let v6 = SocketAddr::new(VIP6.into(), HTTP_PORT);
    traffic(v4, &[("web1", 10), ("web2", 20), ("web3", 30)])?;
    traffic(v6, &[("web1", 10), ("web2", 20), ("web3", 30)])?;

    step("stopping web1's server: its check fails and the agent takes it out")?;
    lab::stop_server(&REALS[0])?;
    wait_for_table(agent, "web1 to leave the table", |s| {
        reals_are(s, &[(1, 20), (2, 30)])
    })?;
    log.wait_and_print(&["Deleted real server: 10.200.0.11:80 (10.200.0.100:80)"])?;
    indent(&show_v4(agent)?);
    traffic(v4, &[("web2", 24), ("web3", 36)])?;

    step("stopping web2's and web3's servers too: the fallback on the director takes over")?;
    lab::stop_server(&REALS[1])?;
    lab::stop_server(&REALS[2])?;
    wait_for_table(agent, "the fallback to come in", |s| {
        s.reals.len() == 1 && s.has_fallback()
    })?;
    log.wait_and_print(&[
        "Deleted real server: 10.200.0.12:80 (10.200.0.100:80)",
        "Deleted real server: 10.200.0.13:80 (10.200.0.100:80)",
        "Added fallback server: 127.0.0.1:80 (10.200.0.100:80)",
    ])?;
    indent(&show_v4(agent)?);
    traffic(v4, &[("fallback", 12)])?;
    let reply = client::in_ns(CLIENT.ns, || client::get(v4, "/"))??;
    ensure!(
        reply.body == FALLBACK_BODY,
        "the fallback answered {:?}, not {FALLBACK_BODY:?}",
        reply.body
    );

    step("starting the three servers again: the reals come back, the fallback leaves")?;
    for real in &REALS {
        lab::start_server(xtask, real)?;
    }
    wait_for_table(agent, "all three reals to come back", |s| {
        reals_are(s, &all_up)
    })?;
    log.wait_and_print(&[
        "Added real server: 10.200.0.11:80 (10.200.0.100:80)",
        "Added real server: 10.200.0.12:80 (10.200.0.100:80)",
        "Added real server: 10.200.0.13:80 (10.200.0.100:80)",
        "Deleted fallback server: 127.0.0.1:80 (10.200.0.100:80)",
    ])?;
    indent(&show_v4(agent)?);
    traffic(v4, &[("web1", 10), ("web2", 20), ("web3", 30)])?;

    step("stopping xdirectord (cleanstop = yes: it purges its table and removes its pins)")?;
    agent.stop()?;
    ensure!(
        !agent.pin_dir().exists(),
        "{} is still there after stop",
        agent.pin_dir().display()
    );
    let reply = client::in_ns(CLIENT.ns, || client::get(v4, "/"))??;
    step(&format!(
        "without a balancer the director's own stack answers the VIP: {:?}",
        reply.body
    ))?;
    ensure!(
        reply.server == "fallback",
        "without a balancer the director itself should answer the VIP; {} did",
        reply.server
    );
    Ok(())
}

/// Waits until the IPv4 and the IPv6 service both satisfy `condition`.
fn wait_for_table(agent: &Agent, what: &str, condition: impl Fn(&Service) -> bool) -> Result<()> {
    let result = wait_for(what, PATIENCE, || {
        let table = agent.table()?;
        let ok = [IpAddr::from(VIP), IpAddr::from(VIP6)].iter().all(|vip| {
            table
                .iter()
                .find(|s| s.addr == *vip && s.port == HTTP_PORT)
                .is_some_and(&condition)
        });
        Ok(ok.then_some(()))
    });
    if result.is_err() && !crate::interrupted() {
        let now = agent.show().unwrap_or_else(|e| format!("{e:#}"));
        return result.with_context(|| format!("the table now:\n{now}"));
    }
    result
}

/// Whether the service holds exactly these reals (index into [`REALS`], weight), no fallback.
fn reals_are(service: &Service, expected: &[(usize, u32)]) -> bool {
    let want: Vec<(IpAddr, u32)> = expected
        .iter()
        .map(|&(i, w)| {
            let real = REALS[i];
            let addr = if service.addr.is_ipv4() {
                IpAddr::from(real.ipv4)
            } else {
                IpAddr::from(real.ipv6)
            };
            (addr, w)
        })
        .collect();
    !service.has_fallback() && service.weights() == want
}

/// New connections from the client, as many as `expected` adds up to (60: ten turns of the
/// 10/20/30 weighted round robin), one request each; prints who answered and checks it against
/// `expected` (server name, count).
fn traffic(to: SocketAddr, expected: &[(&str, usize)]) -> Result<()> {
    let n: usize = expected.iter().map(|(_, c)| c).sum();
    let counts: BTreeMap<String, usize> = client::in_ns(CLIENT.ns, || client::tally(to, n))?;
    let shown: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let target = match to.ip() {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    say(&format!(
        "{n} new connections from the client to {target}: {}",
        shown.join(", ")
    ));
    for (name, count) in &counts {
        let Some(&(_, want)) = expected.iter().find(|(e, _)| e == name) else {
            bail!("{count} connections went to {name}, which should have had none");
        };
        ensure!(
            count.abs_diff(want) <= TOLERANCE,
            "{name} served {count} connections, expected {want} ± {TOLERANCE}"
        );
    }
    for (name, _) in expected {
        ensure!(counts.contains_key(*name), "{name} served no connection");
    }
    Ok(())
}

/// The IPv4 service's lines of `xdirectord show`.
fn show_v4(agent: &Agent) -> Result<String> {
    let text = agent.show()?;
    let head = format!("TCP  {VIP}:{HTTP_PORT} ");
    let mut lines = text
        .lines()
        .skip_while(|l| !l.starts_with(&head))
        .enumerate()
        .take_while(|(i, l)| *i == 0 || l.starts_with("  ->"))
        .map(|(_, l)| l);
    Ok(lines.by_ref().collect::<Vec<_>>().join("\n"))
}

fn indent(text: &str) {
    for line in text.lines() {
        out!("    {line}");
    }
}

/// A path under the workspace as written from its root (`target/debug/xdirectord`).
fn relative(path: &Path) -> &Path {
    path.strip_prefix(crate::workspace_root()).unwrap_or(path)
}

/// The agent's log (ldirectord's default file, shared with other instances): the lines of this
/// configuration written since the demo began.
struct AgentLog {
    offset: u64,
}

impl AgentLog {
    fn open() -> Result<AgentLog> {
        let offset = std::fs::metadata(DEFAULT_LOG).map_or(0, |m| m.len());
        Ok(AgentLog { offset })
    }

    /// This configuration's messages since the last call.
    fn new_messages(&mut self) -> Vec<String> {
        let Ok(bytes) = std::fs::read(DEFAULT_LOG) else {
            return Vec::new();
        };
        // A rotated (shorter) file starts again from its beginning.
        let start = if (bytes.len() as u64) < self.offset {
            0
        } else {
            self.offset as usize
        };
        // Only whole lines: the agent may be writing one.
        let Some(end) = bytes[start..].iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        self.offset = (start + end + 1) as u64;
        let tag = format!("|{}|", CONFIG.rsplit('/').next().unwrap_or(CONFIG));
        String::from_utf8_lossy(&bytes[start..start + end])
            .lines()
            .filter(|l| l.contains(&tag))
            // `[Sun Nov 22 00:49:33 2026|lab.cf|12452] message`
            .filter_map(|l| l.split_once("] ").map(|(_, m)| m.to_owned()))
            .collect()
    }

    /// Waits until a message starting with each of `expected` has been logged, then prints them.
    fn wait_and_print(&mut self, expected: &[&str]) -> Result<()> {
        let mut seen: Vec<String> = Vec::new();
        let found = wait_for(
            &format!("the agent to log {expected:?} in {DEFAULT_LOG}"),
            PATIENCE,
            || {
                seen.extend(self.new_messages());
                let found: Option<Vec<&String>> = expected
                    .iter()
                    .map(|e| seen.iter().find(|s| s.starts_with(e)))
                    .collect();
                Ok(found.map(|f| f.into_iter().cloned().collect::<Vec<_>>()))
            },
        )?;
        for line in found {
            out!("      xdirectord: {line}");
        }
        Ok(())
    }
}
