//! The desired table: which virtual services exist, on which data plane, their reals with
//! effective weights, and the fallback while it is in. The director computes it; a backend makes
//! its data plane hold it, by executing the [`diff::Op`]s between what it holds and this.
//! Plain data, no I/O; ordered maps so that two equal tables compare and print the same.
//!
//! Reals keep the port the configuration gives them. The data plane knows a real by its
//! [`ServiceKey::dest_port`]: ipvsadm gives a direct-routing or tunnelled real of an address
//! service the virtual's port, and so does every backend here.

pub mod diff;

use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, fmt, net::IpAddr};

pub use lb_config::{BackendKind, Forwarding, Protocol};

/// As ipvsadm prints a protocol.
pub fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    }
}

/// Identity of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ServiceKey {
    /// address:port over TCP or UDP.
    Inet {
        protocol: Protocol,
        addr: IpAddr,
        port: u16,
    },
    /// A firewall mark (IPVS backend only).
    Fwmark { mark: u32, ipv6: bool },
}

impl ServiceKey {
    /// The port a real has in the data plane: ipvsadm gives a direct-routing or tunnelled real
    /// of an address service the virtual's port (neither method can change it), and keeps the
    /// real's own for masquerading and firewall marks.
    pub fn dest_port(&self, forward: Forwarding, port: u16) -> u16 {
        match (self, forward) {
            (ServiceKey::Inet { port: vport, .. }, Forwarding::Gate | Forwarding::Ipip) => *vport,
            _ => port,
        }
    }

    /// Whether the virtual is IPv6 (its address, or `virtual6` for a mark).
    pub fn is_ipv6(&self) -> bool {
        match self {
            ServiceKey::Inet { addr, .. } => addr.is_ipv6(),
            ServiceKey::Fwmark { ipv6, .. } => *ipv6,
        }
    }
}

impl fmt::Display for ServiceKey {
    /// ipvsadm's form: `TCP  10.0.0.1:80`, `UDP  [2001:db8::1]:53`, `FWM  1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Inet {
                protocol,
                addr,
                port,
            } => {
                write!(
                    f,
                    "{:<4} {}",
                    protocol_name(*protocol),
                    SocketText(*addr, *port)
                )
            }
            ServiceKey::Fwmark { mark, ipv6 } => {
                write!(f, "FWM  {mark}{}", if *ipv6 { " IPv6" } else { "" })
            }
        }
    }
}

/// `addr:port` with IPv6 in brackets, as ipvsadm writes it.
pub struct SocketText(pub IpAddr, pub u16);

impl fmt::Display for SocketText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

/// ipvsadm's word for a forwarding method.
pub fn forwarding_name(forward: Forwarding) -> &'static str {
    match forward {
        Forwarding::Gate => "Route",
        Forwarding::Masq => "Masq",
        Forwarding::Ipip => "Tunnel",
    }
}

/// Persistence of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persistence {
    pub timeout_secs: u32,
    /// IPv4 netmask as a prefix length, or the IPv6 prefix length.
    pub prefix_len: u8,
}

/// IPVS's scheduler flags (`ipvsadm -b`): bits of the service's flags.
pub mod sched_flags {
    pub const SCHED1: u32 = 0x08;
    pub const SCHED2: u32 = 0x10;
    pub const SCHED3: u32 = 0x20;
    pub const ALL: u32 = SCHED1 | SCHED2 | SCHED3;

    /// ipvsadm's `parse_sched_flags`: the flag names of `-b`, comma-separated, for
    /// `scheduler`; the message ipvsadm prints when it refuses them.
    pub fn parse(scheduler: &str, text: &str) -> Result<u32, String> {
        let mut flags = 0;
        for flag in text.split(',') {
            let (bit, only_for) = match flag {
                "flag-1" => (SCHED1, None),
                "flag-2" => (SCHED2, None),
                "flag-3" => (SCHED3, None),
                "sh-fallback" => (SCHED1, Some("sh")),
                "sh-port" => (SCHED2, Some("sh")),
                "mh-fallback" => (SCHED1, Some("mh")),
                "mh-port" => (SCHED2, Some("mh")),
                _ => return Err(format!("invalid scheduler flag `{flag}'")),
            };
            if only_for.is_some_and(|s| s != scheduler) {
                return Err(format!("incompatible scheduler flag `{flag}'"));
            }
            flags |= bit;
        }
        Ok(flags)
    }

    /// ipvsadm's `print_sched_flags`: the names for `flags` under `scheduler`, comma-separated
    /// (empty when none is set).
    pub fn names(scheduler: &str, flags: u32) -> String {
        let named: &[(u32, &str)] = match scheduler {
            "sh" => &[(SCHED1, "sh-fallback"), (SCHED2, "sh-port")],
            "mh" => &[(SCHED1, "mh-fallback"), (SCHED2, "mh-port")],
            _ => &[(SCHED1, "flag-1"), (SCHED2, "flag-2"), (SCHED3, "flag-3")],
        };
        named
            .iter()
            .filter(|(bit, _)| flags & bit != 0)
            .map(|(_, name)| *name)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What `ipvsadm -A`/`-E` sets on a virtual service, and which data plane holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAttrs {
    /// The data plane that holds the service: `Xdp` or `Ipvs` (never `Auto`: the agent has
    /// chosen).
    pub backend: BackendKind,
    /// IPVS scheduler name (`wrr`, `rr`, `sh`, …).
    pub scheduler: String,
    pub persistence: Option<Persistence>,
    /// ipvsadm `-b` flags, as IPVS's flag bits ([`sched_flags`]).
    pub sched_flags: u32,
    /// One-packet scheduling (UDP only).
    pub one_packet: bool,
}

impl Default for ServiceAttrs {
    fn default() -> ServiceAttrs {
        ServiceAttrs {
            backend: BackendKind::Xdp,
            scheduler: "wrr".into(),
            persistence: None,
            sched_flags: 0,
            one_packet: false,
        }
    }
}

/// A real server as the data plane should have it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Real {
    pub addr: IpAddr,
    /// As configured (the data plane's is [`ServiceKey::dest_port`]).
    pub port: u16,
    pub forward: Forwarding,
    /// 0 = quiescent.
    pub weight: u32,
    /// ipvsadm `-x`; 0 = no limit.
    pub upper_threshold: u32,
    /// ipvsadm `-y`.
    pub lower_threshold: u32,
}

impl Real {
    /// How the data plane of service `key` knows this real: its address and data-plane port.
    pub fn dest(&self, key: &ServiceKey) -> (IpAddr, u16) {
        (self.addr, key.dest_port(self.forward, self.port))
    }
}

/// A virtual service as the data plane should have it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    #[serde(flatten)]
    pub attrs: ServiceAttrs,
    /// In configuration order: the round-robin schedulers interleave in this order.
    pub reals: Vec<Real>,
    /// The fallback server, present only while it is in (no real is up).
    pub fallback: Option<Real>,
}

impl Service {
    /// A data plane that does not tell a fallback from a real (IPVS) reads it back among the
    /// reals: take the one that is `fallback` back out, as ldirectord's start sets the fallback
    /// apart before it looks at the reals. `also_a_real` says the configuration lists the same
    /// real as a real of the virtual too: then it stays a real.
    pub fn claim_fallback(&mut self, key: &ServiceKey, fallback: Option<&Real>, also_a_real: bool) {
        let Some(fallback) = fallback else {
            return;
        };
        if self.fallback.is_some() || also_a_real {
            return;
        }
        if let Some(i) = self
            .reals
            .iter()
            .position(|r| r.dest(key) == fallback.dest(key))
        {
            self.fallback = Some(self.reals.remove(i));
        }
    }
}

/// Everything the data plane should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredTable {
    pub services: BTreeMap<ServiceKey, Service>,
}

impl DesiredTable {
    /// The services one data plane holds.
    pub fn on(&self, backend: BackendKind) -> DesiredTable {
        DesiredTable {
            services: self
                .services
                .iter()
                .filter(|(_, s)| s.attrs.backend == backend)
                .map(|(k, s)| (*k, s.clone()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sched_flags_as_ipvsadm_reads_and_prints_them() {
        use sched_flags::*;
        assert_eq!(parse("sh", "sh-port,sh-fallback"), Ok(SCHED1 | SCHED2));
        assert_eq!(names("sh", SCHED1 | SCHED2), "sh-fallback,sh-port");
        assert_eq!(parse("wrr", "flag-3"), Ok(SCHED3));
        assert_eq!(names("wrr", SCHED3), "flag-3");
        assert_eq!(names("mh", SCHED2), "mh-port");
        assert_eq!(
            parse("wrr", "sh-port"),
            Err("incompatible scheduler flag `sh-port'".into())
        );
        assert_eq!(
            parse("sh", "sh-port,nope"),
            Err("invalid scheduler flag `nope'".into())
        );
        assert_eq!(names("rr", 0), "");
    }

    #[test]
    fn direct_routing_and_tunnelled_reals_take_the_virtual_s_port() {
        let key = ServiceKey::Inet {
            protocol: Protocol::Tcp,
            addr: "192.0.2.1".parse().unwrap(),
            port: 80,
        };
        assert_eq!(key.dest_port(Forwarding::Gate, 8080), 80);
        assert_eq!(key.dest_port(Forwarding::Ipip, 8080), 80);
        assert_eq!(key.dest_port(Forwarding::Masq, 8080), 8080);
        let mark = ServiceKey::Fwmark {
            mark: 1,
            ipv6: false,
        };
        assert_eq!(mark.dest_port(Forwarding::Gate, 0), 0);
    }
}
