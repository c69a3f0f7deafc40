//! `xdirectord show [CONFIG] [--stats] [--json]`: the live table, read from the pinned maps of
//! the data plane (not from an agent, so it works while none runs), printed in `ipvsadm -L -n`
//! layout, or `ipvsadm -L -n --stats` layout, or as JSON.

use std::{ffi::OsStr, fmt::Write as _, net::IpAddr};

use serde::Serialize;

use crate::{
    backend::xdp::{Dataplane, live::LiveService, maps::Maps, pin_dir},
    control::pidfile::{PidFile, PidState},
    table::{ServiceKey, SocketText},
};

/// What `--json` prints.
#[derive(Serialize)]
struct Snapshot<'a> {
    config: &'a str,
    services: &'a [LiveService],
    /// Program-wide counters (passed, malformed, no real, …).
    global: lb_common::stats::GlobalStats,
}

/// Runs `show`; returns the exit status.
pub fn run(config: Option<&str>, stats: bool, json: bool) -> i32 {
    let name = lb_config::config_name(config.map(OsStr::new));
    match read(&name) {
        Ok((services, global)) => {
            let text = if json {
                let snapshot = Snapshot {
                    config: &name,
                    services: &services,
                    global,
                };
                serde_json::to_string_pretty(&snapshot).expect("serialisable") + "\n"
            } else if stats {
                format_stats(&services)
            } else {
                format_table(&services)
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

/// Where the data plane of configuration `name` is pinned: in this process's bpffs, or, for an
/// agent started under `ip netns exec` (whose bpffs is a mount of its own, when the host's is out
/// of reach), in the running agent's.
fn find_pins(name: &str) -> Result<std::path::PathBuf, String> {
    let dir = pin_dir(name).map_err(|e| format!("bpffs: {e}"))?;
    if dir.exists() {
        return Ok(dir);
    }
    if let PidState::Running(pid) = PidFile::for_config(name).read() {
        let root = std::path::Path::new("/proc")
            .join(pid.to_string())
            .join("root");
        let theirs = root.join(dir.strip_prefix("/").unwrap_or(&dir));
        if theirs.exists() {
            return Ok(theirs);
        }
    }
    Ok(dir)
}

fn read(name: &str) -> Result<(Vec<LiveService>, lb_common::stats::GlobalStats), String> {
    let dir = find_pins(name)?;
    if !dir.exists() {
        return Err(format!(
            "no data plane for configuration {name}: nothing is pinned in {} (is xdirectord started?)",
            dir.display()
        ));
    }
    let dataplane = Dataplane::new(Maps::from_pins(&dir).map_err(|e| e.to_string())?);
    let mut services = dataplane.live().map_err(|e| e.to_string())?;
    // ipvsadm's order: address family, protocol, address, port.
    services.sort_by_key(|s| match s.key {
        ServiceKey::Inet {
            protocol,
            addr,
            port,
        } => (addr.is_ipv6(), protocol, addr, port),
        ServiceKey::Fwmark { .. } => (
            false,
            crate::table::Protocol::Tcp,
            IpAddr::from([0, 0, 0, 0]),
            0,
        ),
    });
    Ok((
        services,
        dataplane.global_stats().map_err(|e| e.to_string())?,
    ))
}

const HEADER: &str = "xdirectord XDP data plane\n";

/// `ipvsadm -L -n`.
pub fn format_table(services: &[LiveService]) -> String {
    let mut out = String::from(HEADER);
    out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
    out.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
    for s in services {
        let _ = write!(out, "{} {}", s.key, s.scheduler);
        if let Some((timeout, prefix_len)) = s.persistent {
            let _ = write!(out, " persistent {timeout}");
            match s.key {
                ServiceKey::Inet {
                    addr: IpAddr::V4(_),
                    ..
                } if prefix_len < 32 => {
                    let mask = u32::MAX.checked_shl(32 - prefix_len as u32).unwrap_or(0);
                    let _ = write!(out, " mask {}", std::net::Ipv4Addr::from(mask));
                }
                ServiceKey::Inet {
                    addr: IpAddr::V6(_),
                    ..
                } if prefix_len < 128 => {
                    let _ = write!(out, " mask {prefix_len}");
                }
                _ => {}
            }
        }
        out.push('\n');
        for r in &s.reals {
            let _ = writeln!(
                out,
                "  -> {:<28} {:<7} {:<6} {:<10} {:<10}",
                SocketText(r.addr, r.port).to_string(),
                r.forward,
                r.weight,
                r.active_conns,
                r.inactive_conns
            );
        }
    }
    out
}

/// ipvsadm's number column: 9 wide, with K/M/G/T beyond 100 million.
fn large_number(n: u64) -> String {
    match n {
        n if n < 100_000_000 => format!("{n:9}"),
        n if n < 1_000_000_000 => format!("{:8}K", n / 1_000),
        n if n < 100_000_000_000 => format!("{:8}M", n / 1_000_000),
        n if n < 100_000_000_000_000 => format!("{:8}G", n / 1_000_000_000),
        n => format!("{:8}T", n / 1_000_000_000_000),
    }
}

/// `ipvsadm -L -n --stats`. A director doing direct routing never sees replies: the outbound
/// columns are 0, as they are for IPVS in that mode.
pub fn format_stats(services: &[LiveService]) -> String {
    let mut out = String::from(HEADER);
    let _ = writeln!(
        out,
        "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
        "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
    );
    for s in services {
        let _ = write!(out, "{:<33}", s.key.to_string());
        for n in [s.stats.conns, s.stats.in_packets, 0, s.stats.in_bytes, 0] {
            out.push_str(&large_number(n));
        }
        out.push('\n');
        for r in &s.reals {
            let _ = write!(out, "  -> {:<28}", SocketText(r.addr, r.port).to_string());
            for n in [r.stats.conns, r.stats.in_packets, 0, r.stats.in_bytes, 0] {
                out.push_str(&large_number(n));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        backend::xdp::live::{LiveReal, Traffic},
        table::Protocol,
    };

    fn sample() -> Vec<LiveService> {
        vec![LiveService {
            key: ServiceKey::Inet {
                protocol: Protocol::Tcp,
                addr: "192.168.6.240".parse().unwrap(),
                port: 80,
            },
            scheduler: "wrr".into(),
            persistent: Some((7200, 24)),
            reals: vec![LiveReal {
                addr: "192.168.6.2".parse().unwrap(),
                port: 80,
                forward: "Route",
                weight: 10,
                fallback: false,
                resolved: true,
                active_conns: 12,
                inactive_conns: 31,
                stats: Traffic {
                    conns: 43,
                    in_packets: 1234,
                    in_bytes: 123_456_789_012,
                },
            }],
            stats: Traffic {
                conns: 43,
                in_packets: 1234,
                in_bytes: 123_456_789_012,
            },
        }]
    }

    /// The layout of `ipvsadm -L -n` (ipvsadm.c: print_title, print_service_entry).
    #[test]
    fn table_layout_is_ipvsadm_s() {
        assert_eq!(
            format_table(&sample()),
            "xdirectord XDP data plane\n\
             Prot LocalAddress:Port Scheduler Flags\n  \
             -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
             TCP  192.168.6.240:80 wrr persistent 7200 mask 255.255.255.0\n  \
             -> 192.168.6.2:80               Route   10     12         31        \n"
        );
    }

    /// The layout of `ipvsadm -L -n --stats`.
    #[test]
    fn stats_layout_is_ipvsadm_s() {
        assert_eq!(
            format_stats(&sample()),
            "xdirectord XDP data plane\n\
             Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n  \
             -> RemoteAddress:Port\n\
             TCP  192.168.6.240:80                   43     1234        0     123G        0\n  \
             -> 192.168.6.2:80                     43     1234        0     123G        0\n"
        );
    }
}
