//! `xdirectord show [CONFIG] [--stats|--rate] [--json]`: the live table of both data planes,
//! read back from them (the configuration's pinned BPF maps, and the kernel's IPVS table), not
//! from an agent, so it works while none runs. Above the table, what forwards it: which
//! interfaces the XDP program is attached to and how, whether an agent runs and when it last
//! applied a change.
//!
//! The IPVS part is printed exactly as `ipvsadm -L -n` (with `--stats`, `--rate`) prints the
//! kernel's table; the XDP part in the same layout under its own heading.

use std::{ffi::OsStr, fmt::Write as _, net::IpAddr, path::PathBuf};

use serde::Serialize;

use crate::{
    backend::{
        ipvs::{self, IpvsTable, message::Info},
        xdp::{Dataplane, live::FlowTables, maps::Maps, paths::XdpAttachment, pin_dir},
    },
    control::pidfile::{PidFile, PidState},
    live::{LiveService, Rates, Traffic},
    table::{Persistence, ServiceKey, SocketText, sched_flags},
};

/// What `show` prints: ipvsadm's views.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum View {
    /// `ipvsadm -L -n`.
    #[default]
    Table,
    /// `ipvsadm -L -n --stats`.
    Stats,
    /// `ipvsadm -L -n --rate`.
    Rate,
}

/// `show --help`.
pub const HELP: &str = "\
Usage:
    xdirectord show [configfile] [--stats|--rate] [--json]

    Prints the table both data planes hold for the configuration, read back
    from them (the pinned BPF maps of the XDP program, and the kernel's IPVS
    table), so it works while no agent runs. First says whether an agent runs
    and when it last applied a change, and which interfaces the XDP program
    is attached to; then the IPVS table exactly as ipvsadm -L -n prints it, and
    the XDP table in the same layout.

    --stats  packet, byte and connection counters (ipvsadm -L -n --stats)
    --rate   rates per second (ipvsadm -L -n --rate); for XDP, measured over
             one second
    --json   the same as JSON, with the XDP program's own counters
    -h|--help  this help
";

/// How the agent of a configuration stands.
#[derive(Clone, Debug, Serialize)]
pub struct AgentStatus {
    /// Its pid while it runs.
    pub pid: Option<i32>,
    /// When it last applied a change to a data plane (local time), if it recorded one.
    pub last_apply: Option<String>,
}

/// The XDP data plane of the configuration, as found.
#[derive(Clone, Debug, Serialize)]
pub struct XdpPart {
    pub pins: PathBuf,
    /// Interfaces the configuration's program is attached to.
    pub attached: Vec<XdpAttachment>,
    pub services: Vec<LiveService>,
    /// Program-wide counters (passed, malformed, no real, …).
    pub global: lb_common::stats::GlobalStats,
    /// How full the flow tables are.
    pub flow_tables: FlowTables,
}

/// The kernel's IPVS table.
#[derive(Clone, Debug, Serialize)]
pub struct IpvsPart {
    /// `IP Virtual Server version 1.2.1`.
    pub version: String,
    pub conn_tab_size: u32,
    pub services: Vec<LiveService>,
}

/// Everything `show` found.
#[derive(Clone, Debug, Serialize)]
pub struct Shown {
    pub config: String,
    pub agent: AgentStatus,
    pub xdp: Option<XdpPart>,
    pub ipvs: Option<IpvsPart>,
}

/// Where an agent records its last apply: next to its pid file.
pub fn status_file(config_name: &str) -> PathBuf {
    PidFile::for_config(config_name)
        .path()
        .with_extension("applied")
}

/// Runs `show`; returns the exit status.
pub fn run(config: Option<&str>, view: View, json: bool) -> i32 {
    let name = lb_config::config_name(config.map(OsStr::new));
    match read(&name, view) {
        Ok(shown) => {
            let text = if json {
                serde_json::to_string_pretty(&shown).expect("serialisable") + "\n"
            } else {
                format(&shown, view)
            };
            // A reader that went away (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
            0
        }
        Err(message) => {
            eprintln!("xdirectord: {message}");
            1
        }
    }
}

/// Reads what the data planes of configuration `name` hold. An agent running in another
/// network namespace (`ip netns exec`) is looked at in its own: its pins through its root, its
/// interfaces and IPVS from a thread in its namespace.
pub fn read(name: &str, view: View) -> Result<Shown, String> {
    let pid = match PidFile::for_config(name).read() {
        PidState::Running(pid) => Some(pid),
        _ => None,
    };
    let last_apply = std::fs::read_to_string(status_file(name))
        .ok()
        .filter(|_| pid.is_some())
        .map(|t| t.trim().to_string());
    let pins = find_pins(name, pid)?;
    let name_owned = name.to_string();
    let (xdp, ipvs) = in_netns_of(pid, move || {
        let xdp = match &pins {
            Some(dir) => Some(read_xdp(dir, view)?),
            None => None,
        };
        let ipvs = read_ipvs()?;
        let _ = name_owned;
        Ok::<_, String>((xdp, ipvs))
    })?;
    if xdp.is_none() && ipvs.as_ref().is_none_or(|i| i.services.is_empty()) {
        return Err(format!(
            "no data plane for configuration {name}: nothing is pinned in {} and IPVS holds no \
             virtual service (is xdirectord started?)",
            pin_dir(name).map_or_else(|e| e.to_string(), |d| d.display().to_string())
        ));
    }
    Ok(Shown {
        config: name.to_string(),
        agent: AgentStatus { pid, last_apply },
        xdp,
        ipvs,
    })
}

/// Where the data plane of configuration `name` is pinned: in this process's bpffs, or in the
/// running agent's (an agent under `ip netns exec` may have a bpffs of its own).
fn find_pins(name: &str, pid: Option<i32>) -> Result<Option<PathBuf>, String> {
    let dir = pin_dir(name).map_err(|e| format!("bpffs: {e}"))?;
    if dir.exists() {
        return Ok(Some(dir));
    }
    if let Some(pid) = pid {
        let root = std::path::Path::new("/proc")
            .join(pid.to_string())
            .join("root");
        let theirs = root.join(dir.strip_prefix("/").unwrap_or(&dir));
        if theirs.exists() {
            return Ok(Some(theirs));
        }
    }
    Ok(None)
}

/// Runs `read` on a thread in the network namespace of process `pid` (this one's when `None`
/// or the same).
fn in_netns_of<T: Send + 'static>(
    pid: Option<i32>,
    read: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let theirs = pid.map(|pid| format!("/proc/{pid}/ns/net"));
    let same = |path: &str| {
        std::fs::metadata(path)
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            == std::fs::metadata("/proc/self/ns/net")
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
    };
    match theirs.filter(|p| !same(p)) {
        None => read(),
        Some(path) => std::thread::spawn(move || {
            let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
            // SAFETY: a namespace fd, for this thread only.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(format!(
                    "entering {path}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            read()
        })
        .join()
        .map_err(|_| "reading the data plane failed".to_string())?,
    }
}

/// The XDP data plane pinned in `dir`, with its counters (`show`, and the agent's metrics).
pub fn read_xdp(dir: &std::path::Path, view: View) -> Result<XdpPart, String> {
    let dataplane = Dataplane::new(Maps::from_pins(dir).map_err(|e| e.to_string())?);
    let mut services = dataplane.live().map_err(|e| e.to_string())?;
    if view == View::Rate {
        // The program keeps counters, not rates: measure them over a second.
        let started = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_secs(1));
        let later = dataplane.live().map_err(|e| e.to_string())?;
        let secs = started.elapsed().as_secs_f64();
        for (now, then) in later.iter().zip(services.iter_mut()) {
            then.rates = Some(now.stats.rates_since(&then.stats, secs));
            for (r_now, r_then) in now.reals.iter().zip(then.reals.iter_mut()) {
                r_then.rates = Some(r_now.stats.rates_since(&r_then.stats, secs));
            }
        }
    }
    let ours = crate::backend::xdp::pinned_program_id(dir);
    let attached = crate::backend::xdp::paths::KernelPaths::new(Vec::new())
        .and_then(|mut p| p.xdp_attachments())
        .map_err(|e| format!("reading interfaces: {e}"))?
        .into_iter()
        .filter(|a| Some(a.program) == ours)
        .collect();
    Ok(XdpPart {
        pins: dir.to_path_buf(),
        attached,
        services,
        global: dataplane.global_stats().map_err(|e| e.to_string())?,
        flow_tables: dataplane.flow_tables().map_err(|e| e.to_string())?,
    })
}

/// The kernel's IPVS table, if the kernel has IPVS (nothing is loaded to find out): `show`,
/// and the agent's metrics.
pub fn read_ipvs() -> Result<Option<IpvsPart>, String> {
    let Some(mut socket) = ipvs::netlink::IpvsSocket::open_existing().map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let table: IpvsTable = ipvs::read_table(&mut socket).map_err(|e| e.to_string())?;
    Ok(Some(IpvsPart {
        version: version_text(&table.info),
        conn_tab_size: table.info.conn_tab_size,
        services: table.live(),
    }))
}

fn version_text(info: &Info) -> String {
    let v = info.version;
    format!("{}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff)
}

/// The whole text: what forwards the table, then the IPVS table, then the XDP one.
pub fn format(shown: &Shown, view: View) -> String {
    let mut out = String::new();
    match shown.agent.pid {
        Some(pid) => {
            let _ = write!(
                out,
                "xdirectord for {}: agent running, pid {pid}",
                shown.config
            );
            match &shown.agent.last_apply {
                Some(at) => {
                    let _ = writeln!(out, ", last applied a change {at}");
                }
                None => out.push_str(", no change applied yet\n"),
            }
        }
        None => {
            let _ = writeln!(
                out,
                "xdirectord for {}: no agent runs (nothing checks the reals; the table below stays as it is)",
                shown.config
            );
        }
    }
    if let Some(xdp) = &shown.xdp {
        if xdp.attached.is_empty() {
            out.push_str(
                "XDP data plane: its program is attached to no interface: NOTHING FORWARDS the XDP table below\n",
            );
        } else {
            let on: Vec<String> = xdp
                .attached
                .iter()
                .map(|a| format!("{} ({})", a.interface, a.mode))
                .collect();
            let _ = writeln!(out, "XDP data plane: attached to {}", on.join(", "));
        }
    }
    if let Some(ipvs) = &shown.ipvs {
        out.push_str(&format_ipvs(ipvs, view));
    }
    if let Some(xdp) = &shown.xdp {
        out.push_str("xdirectord XDP data plane\n");
        out.push_str(&format_services(&xdp.services, view));
    }
    out
}

/// The IPVS table exactly as `ipvsadm -L -n` (`--stats`, `--rate`) prints it.
pub fn format_ipvs(ipvs: &IpvsPart, view: View) -> String {
    let mut out = format!(
        "IP Virtual Server version {} (size={})\n",
        ipvs.version, ipvs.conn_tab_size
    );
    out.push_str(&format_services(&ipvs.services, view));
    out
}

/// ipvsadm's title and lines for `services` (`print_title`, `print_service_entry`).
pub fn format_services(services: &[LiveService], view: View) -> String {
    let mut out = String::new();
    match view {
        View::Table => out.push_str(
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        ),
        View::Stats => {
            let _ = writeln!(
                out,
                "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
                "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
            );
        }
        View::Rate => {
            let _ = writeln!(
                out,
                "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
                "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
            );
        }
    }
    for s in services {
        let name = service_name(&s.key);
        match view {
            View::Table => {
                let _ = write!(out, "{name} {}", s.scheduler);
                let flags = sched_flags::names(&s.scheduler, s.sched_flags);
                if !flags.is_empty() {
                    let _ = write!(out, " ({flags})");
                }
                if let Some(p) = s.persistence {
                    out.push_str(&persistence_text(&s.key, p, &s.pe_name));
                }
                if s.one_packet {
                    out.push_str(" ops");
                }
                out.push('\n');
            }
            View::Stats => {
                let _ = write!(out, "{name:<33}");
                out.push_str(&traffic_columns(&s.stats));
                out.push('\n');
            }
            View::Rate => {
                let _ = write!(out, "{name:<33}");
                let r = s.rates.unwrap_or_default();
                for n in [r.cps, r.in_pps, r.out_pps, r.in_bps, r.out_bps] {
                    out.push_str(&large_number(n));
                }
                out.push('\n');
            }
        }
        for r in &s.reals {
            let mut dest = SocketText(r.addr, r.port).to_string();
            if r.addr.is_ipv4() {
                dest.truncate(28);
            }
            match view {
                View::Table => {
                    // A real the program cannot reach yet takes no flows, whatever its weight.
                    let weight = if r.resolved { r.weight } else { 0 };
                    let _ = write!(
                        out,
                        "  -> {dest:<28} {:<7} {:<6} {:<10} {:<10}",
                        r.forward, weight, r.active_conns, r.inactive_conns
                    );
                    if r.unsupported && r.weight > 0 {
                        let _ = write!(
                            out,
                            " (unsupported path, the log says why; weight {} once it changes)",
                            r.weight
                        );
                    } else if !r.resolved && r.weight > 0 {
                        let _ = write!(
                            out,
                            " (unresolved: no MAC address yet; weight {} once it resolves)",
                            r.weight
                        );
                    }
                    out.push('\n');
                }
                View::Stats => {
                    let _ = writeln!(out, "  -> {dest:<28}{}", traffic_columns(&r.stats));
                }
                View::Rate => {
                    let rates: Rates = r.rates.unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "  -> {dest:<28} {:8} {:8} {:8}{}{}",
                        rates.cps,
                        rates.in_pps,
                        rates.out_pps,
                        large_number(rates.in_bps),
                        large_number(rates.out_bps)
                    );
                }
            }
        }
    }
    out
}

/// ipvsadm's service name: `TCP  10.0.0.1:80` (IPv4 cut at 33 characters), `FWM  1 IPv6`.
fn service_name(key: &ServiceKey) -> String {
    let mut name = key.to_string();
    if let ServiceKey::Inet {
        addr: IpAddr::V4(_),
        ..
    } = key
    {
        name.truncate(33);
    }
    name
}

/// ` persistent N` with ` mask M` when not the whole address, and ` pe NAME`.
fn persistence_text(key: &ServiceKey, p: Persistence, pe_name: &str) -> String {
    let mut text = format!(" persistent {}", p.timeout_secs);
    if key.is_ipv6() {
        if p.prefix_len != 128 {
            let _ = write!(text, " mask {}", p.prefix_len);
        }
    } else if p.prefix_len < 32 {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(p.prefix_len))
            .unwrap_or(0);
        let _ = write!(text, " mask {}", std::net::Ipv4Addr::from(mask));
    }
    if !pe_name.is_empty() {
        let _ = write!(text, " pe {pe_name}");
    }
    text
}

fn traffic_columns(t: &Traffic) -> String {
    [
        t.conns,
        t.in_packets,
        t.out_packets,
        t.in_bytes,
        t.out_bytes,
    ]
    .into_iter()
    .map(large_number)
    .collect()
}

/// ipvsadm's `print_largenum`: 9 wide, with K/M/G/T beyond 100 million.
fn large_number(n: u64) -> String {
    match n {
        n if n < 100_000_000 => format!("{n:9}"),
        n if n < 1_000_000_000 => format!("{:8}K", n / 1_000),
        n if n < 100_000_000_000 => format!("{:8}M", n / 1_000_000),
        n if n < 100_000_000_000_000 => format!("{:8}G", n / 1_000_000_000),
        n => format!("{:8}T", n / 1_000_000_000_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        live::LiveReal,
        table::{BackendKind, Protocol},
    };

    fn sample() -> Vec<LiveService> {
        vec![LiveService {
            key: ServiceKey::Inet {
                protocol: Protocol::Tcp,
                addr: "192.168.6.240".parse().unwrap(),
                port: 80,
            },
            backend: BackendKind::Xdp,
            scheduler: "wrr".into(),
            sched_flags: 0,
            persistence: Some(Persistence {
                timeout_secs: 7200,
                prefix_len: 24,
            }),
            one_packet: false,
            pe_name: String::new(),
            reals: vec![LiveReal {
                addr: "192.168.6.2".parse().unwrap(),
                port: 80,
                forward: "Route",
                weight: 10,
                fallback: false,
                resolved: true,
                unsupported: false,
                upper_threshold: 0,
                lower_threshold: 0,
                active_conns: 12,
                inactive_conns: 31,
                persist_conns: 0,
                stats: Traffic {
                    conns: 43,
                    in_packets: 1234,
                    in_bytes: 123_456_789_012,
                    ..Traffic::default()
                },
                rates: None,
            }],
            stats: Traffic {
                conns: 43,
                in_packets: 1234,
                in_bytes: 123_456_789_012,
                ..Traffic::default()
            },
            rates: None,
        }]
    }

    /// The layout of `ipvsadm -L -n` (ipvsadm.c: print_title, print_service_entry).
    #[test]
    fn table_layout_is_ipvsadm_s() {
        assert_eq!(
            format_services(&sample(), View::Table),
            "Prot LocalAddress:Port Scheduler Flags\n  \
             -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
             TCP  192.168.6.240:80 wrr persistent 7200 mask 255.255.255.0\n  \
             -> 192.168.6.2:80               Route   10     12         31        \n"
        );
    }

    /// The layout of `ipvsadm -L -n --stats`.
    #[test]
    fn stats_layout_is_ipvsadm_s() {
        assert_eq!(
            format_services(&sample(), View::Stats),
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n  \
             -> RemoteAddress:Port\n\
             TCP  192.168.6.240:80                   43     1234        0     123G        0\n  \
             -> 192.168.6.2:80                     43     1234        0     123G        0\n"
        );
    }

    /// Scheduler flags, one-packet scheduling and an IPv6 mask, as ipvsadm prints them.
    #[test]
    fn flags_ops_and_ipv6_masks() {
        let mut s = sample();
        s[0].key = ServiceKey::Inet {
            protocol: Protocol::Udp,
            addr: "2001:db8::1".parse().unwrap(),
            port: 53,
        };
        s[0].scheduler = "sh".into();
        s[0].sched_flags = sched_flags::SCHED1 | sched_flags::SCHED2;
        s[0].persistence = Some(Persistence {
            timeout_secs: 60,
            prefix_len: 64,
        });
        s[0].one_packet = true;
        s[0].reals.clear();
        let text = format_services(&s, View::Table);
        assert!(
            text.ends_with(
                "UDP  [2001:db8::1]:53 sh (sh-fallback,sh-port) persistent 60 mask 64 ops\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_unresolved_real_is_marked_and_shows_the_weight_in_force() {
        let mut s = sample();
        s[0].reals[0].resolved = false;
        let text = format_services(&s, View::Table);
        assert!(
            text.contains(
                "  -> 192.168.6.2:80               Route   0      12         31         (unresolved: no MAC address yet; weight 10 once it resolves)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_real_on_an_unsupported_path_says_so() {
        let mut s = sample();
        s[0].reals[0].resolved = false;
        s[0].reals[0].unsupported = true;
        let text = format_services(&s, View::Table);
        assert!(
            text.contains(
                "  -> 192.168.6.2:80               Route   0      12         31         (unsupported path, the log says why; weight 10 once it changes)\n"
            ),
            "{text}"
        );
    }
}
