//! xdirectord on the lab's director, for the demo and the end-to-end tests.
//!
//! The agent runs under `nsenter --net=/var/run/netns/xdlab-dir`: the director's network
//! namespace but the host's mount namespace, so its pins are the host's
//! (`/sys/fs/bpf/xdirectord/<config>`) and outlive it, which is what makes a restart with
//! `cleanstop = no` hitless. (`ip netns exec` would give it a /sys of its own, whose bpffs may die
//! with it.) Its table is read back with `xdirectord show --json`, from the pinned maps.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use super::{DIRECTOR, PIN_ROOT};

/// An xdirectord instance of one configuration file, run in the lab's director namespace.
#[derive(Clone, Debug)]
pub struct Agent {
    pub binary: PathBuf,
    pub config: PathBuf,
    /// The configuration's file name: names the pid file and the pin directory.
    pub name: String,
    /// The network namespace it runs in (a name of `ip netns`).
    pub netns: String,
}

impl Agent {
    pub fn new(binary: impl Into<PathBuf>, config: impl Into<PathBuf>) -> Agent {
        Agent::in_netns(binary, config, DIRECTOR.ns)
    }

    /// An agent in another network namespace than the lab's director, for tests that build
    /// topologies of their own.
    pub fn in_netns(binary: impl Into<PathBuf>, config: impl Into<PathBuf>, netns: &str) -> Agent {
        let config = config.into();
        let name = config
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Agent {
            binary: binary.into(),
            config,
            name,
            netns: netns.to_owned(),
        }
    }

    /// `nsenter --net=/var/run/netns/NETNS XDIRECTORD ARGS…` (the lab's director: `xdlab-dir`).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/var/run/netns/{}", self.netns))
            .arg(&self.binary)
            .args(args);
        command
    }

    /// Runs `xdirectord CONFIG COMMAND` and fails with its output unless it exits 0.
    fn control(&self, command: &str) -> Result<()> {
        let mut cmd = self.command(&[]);
        cmd.arg(&self.config).arg(command).stdin(Stdio::null());
        let out = cmd
            .output()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        if !out.status.success() {
            bail!(
                "xdirectord {} {command} failed ({}): {}{}",
                self.config.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// `start`: daemonises, and returns once the data plane is open.
    pub fn start(&self) -> Result<()> {
        self.control("start")
    }

    /// `reload` (SIGHUP): returns at once.
    pub fn reload(&self) -> Result<()> {
        self.control("reload")
    }

    /// `stop` (SIGTERM), then waits until the daemon is gone (its pid file removed).
    pub fn stop(&self) -> Result<()> {
        self.control("stop")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.pid().is_some() {
            if Instant::now() > deadline {
                bail!("xdirectord for {} did not stop within 30 s", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// `/var/run/xdirectord.<name>.pid`.
    pub fn pid_file(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/xdirectord.{}.pid", self.name))
    }

    /// The daemon's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// Where its data plane is pinned.
    pub fn pin_dir(&self) -> PathBuf {
        Path::new(PIN_ROOT).join(self.name.replace('.', "_"))
    }

    /// Stops the daemon whatever its state (SIGTERM, then SIGKILL after 10 s) and removes its
    /// pins and pid file: the cleanup of a test, also after a failure.
    pub fn kill(&self) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.pid().is_some() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: as above.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(self.pin_dir());
        let _ = std::fs::remove_file(self.pid_file());
    }

    /// `xdirectord show CONFIG`: the live table in `ipvsadm -L -n` layout.
    pub fn show(&self) -> Result<String> {
        self.show_with(&[])
    }

    pub fn show_with(&self, extra: &[&str]) -> Result<String> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("show").arg(&self.config).args(extra);
        let out = cmd
            .output()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        if !out.status.success() {
            bail!(
                "{cmd:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// The live table, read back from the data plane (`show --json`).
    pub fn table(&self) -> Result<Vec<Service>> {
        parse_table(&self.show_with(&["--json"])?)
    }

    /// The XDP program's counters (`GlobalStats`: `icmp_to_flow`, `frag_first`, …) from `show
    /// --stats --json`.
    pub fn global_stats(&self) -> Result<BTreeMap<String, u64>> {
        let json = self.show_with(&["--stats", "--json"])?;
        let value: serde_json::Value =
            serde_json::from_str(&json).with_context(|| format!("show --json: {json}"))?;
        let global = value["xdp"]["global"]
            .as_object()
            .with_context(|| format!("show --stats --json: no xdp.global in {json}"))?;
        global
            .iter()
            .map(|(name, v)| Ok((name.clone(), number(v)?)))
            .collect()
    }

    /// The live service of `vip`, port 80, if the data plane holds it.
    pub fn service(&self, vip: impl Into<IpAddr>) -> Result<Option<Service>> {
        let vip = vip.into();
        Ok(self
            .table()?
            .into_iter()
            .find(|s| s.addr == vip && s.port == super::HTTP_PORT))
    }
}

/// A virtual service as the data plane holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub protocol: String,
    pub addr: IpAddr,
    pub port: u16,
    pub scheduler: String,
    pub reals: Vec<Real>,
}

/// A real (or the fallback) of a [`Service`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Real {
    pub addr: IpAddr,
    pub port: u16,
    pub weight: u32,
    pub fallback: bool,
    pub active_conns: u64,
    pub inactive_conns: u64,
    /// New connections it has been given.
    pub conns: u64,
}

impl Service {
    /// The real at `addr` (not the fallback), if the service holds it.
    pub fn real(&self, addr: impl Into<IpAddr>) -> Option<&Real> {
        let addr = addr.into();
        self.reals.iter().find(|r| r.addr == addr && !r.fallback)
    }

    /// Whether the fallback is in.
    pub fn has_fallback(&self) -> bool {
        self.reals.iter().any(|r| r.fallback)
    }

    /// `(address, weight)` of each real other than the fallback, in table order.
    pub fn weights(&self) -> Vec<(IpAddr, u32)> {
        self.reals
            .iter()
            .filter(|r| !r.fallback)
            .map(|r| (r.addr, r.weight))
            .collect()
    }
}

/// Reads `xdirectord show --json`.
pub fn parse_table(json: &str) -> Result<Vec<Service>> {
    let value: serde_json::Value =
        serde_json::from_str(json).with_context(|| format!("show --json: {json}"))?;
    let mut services = Vec::new();
    // Both data planes' services: the XDP program's and the kernel's IPVS table.
    let parts = [&value["xdp"]["services"], &value["ipvs"]["services"]];
    if parts.iter().all(|p| p.is_null()) {
        bail!("show --json: no services");
    }
    for s in parts.into_iter().filter_map(|p| p.as_array()).flatten() {
        let key = &s["key"];
        if key["kind"] != "inet" {
            continue;
        }
        let mut reals = Vec::new();
        for r in s["reals"].as_array().context("show --json: no reals")? {
            reals.push(Real {
                addr: parse_field(&r["addr"])?,
                port: number(&r["port"])? as u16,
                weight: number(&r["weight"])? as u32,
                fallback: r["fallback"].as_bool().unwrap_or(false),
                active_conns: number(&r["active_conns"])?,
                inactive_conns: number(&r["inactive_conns"])?,
                conns: number(&r["stats"]["conns"])?,
            });
        }
        services.push(Service {
            protocol: key["protocol"].as_str().unwrap_or("").to_owned(),
            addr: parse_field(&key["addr"])?,
            port: number(&key["port"])? as u16,
            scheduler: s["scheduler"].as_str().unwrap_or("").to_owned(),
            reals,
        });
    }
    Ok(services)
}

fn parse_field<T: std::str::FromStr>(v: &serde_json::Value) -> Result<T> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("show --json: bad field {v}"))
}

fn number(v: &serde_json::Value) -> Result<u64> {
    v.as_u64()
        .with_context(|| format!("show --json: bad number {v}"))
}

/// Polls `probe` every 100 ms until it returns `Some`, for at most `patience`. The error says
/// what was awaited, and the last error `probe` returned. Gives up at once when interrupted
/// (see [`crate::catch_interrupts`]).
pub fn wait_for<T>(
    what: &str,
    patience: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + patience;
    let mut last_error = None;
    loop {
        if crate::interrupted() {
            bail!("interrupted while waiting for {what}");
        }
        match probe() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() > deadline {
            let why = last_error.map_or(String::new(), |e| format!(" (last error: {e:#})"));
            bail!("gave up waiting {} s for {what}{why}", patience.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_show_json() {
        let json = r#"{"config":"lab.cf","ipvs":null,"xdp":{"services":[{"key":{"kind":"inet","protocol":"tcp",
            "addr":"10.200.0.100","port":80},"scheduler":"wrr","persistent":null,"reals":[
            {"addr":"10.200.0.11","port":80,"forward":"Route","weight":10,"fallback":false,
             "resolved":true,"active_conns":1,"inactive_conns":2,"stats":{"conns":3,
             "in_packets":12,"in_bytes":960}},
            {"addr":"127.0.0.1","port":80,"forward":"Local","weight":1,"fallback":true,
             "resolved":true,"active_conns":0,"inactive_conns":0,"stats":{"conns":0,
             "in_packets":0,"in_bytes":0}}],"stats":{}}],"global":{}}}"#;
        let table = parse_table(json).unwrap();
        assert_eq!(table.len(), 1);
        let s = &table[0];
        assert_eq!(
            (s.addr, s.port, s.scheduler.as_str()),
            (super::super::VIP.into(), 80, "wrr")
        );
        assert_eq!(s.weights(), vec![("10.200.0.11".parse().unwrap(), 10)]);
        assert!(s.has_fallback());
        assert_eq!(s.real(super::super::REALS[0].ipv4).unwrap().conns, 3);
    }
}
