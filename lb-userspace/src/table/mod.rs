//! The desired table: which virtual services exist, their reals with effective weights, and the
//! fallback while it is in. The director computes it; a backend makes the data plane match it.
//! Plain data, no I/O; ordered maps so that two equal tables compare and print the same.

use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, fmt, net::IpAddr};

/// Transport protocol of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// As ipvsadm prints it.
    pub fn ipvsadm_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
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
                    protocol.ipvsadm_name(),
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

/// ldirectord's forwarding methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forward {
    /// Direct routing (ipvsadm `-g`, "Route").
    Gate,
    /// NAT (ipvsadm `-m`, "Masq").
    Masq,
    /// IP-in-IP tunnelling (ipvsadm `-i`, "Tunnel").
    Ipip,
}

/// Persistence of a virtual service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persistence {
    pub timeout_secs: u32,
    /// IPv4 netmask as a prefix length, or the IPv6 prefix length.
    pub prefix_len: u8,
}

/// A real server as the data plane should have it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Real {
    pub addr: IpAddr,
    pub port: u16,
    pub forward: Forward,
    /// 0 = quiescent.
    pub weight: u32,
    /// ipvsadm `-x`; 0 = no limit.
    pub upper_threshold: u32,
    /// ipvsadm `-y`.
    pub lower_threshold: u32,
}

/// A virtual service as the data plane should have it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// IPVS scheduler name (`wrr`, `rr`, `sh`, …).
    pub scheduler: String,
    pub persistence: Option<Persistence>,
    /// ipvsadm `-b` flags, verbatim.
    pub sched_flags: Option<String>,
    /// One-packet scheduling (UDP only).
    pub one_packet: bool,
    /// In configuration order: the round-robin schedulers interleave in this order.
    pub reals: Vec<Real>,
    /// The fallback server, present only while it is in (no real is up).
    pub fallback: Option<Real>,
}

/// Everything the data plane should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredTable {
    pub services: BTreeMap<ServiceKey, Service>,
}
