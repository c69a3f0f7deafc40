//! The live table: what a data plane holds right now, with its counters, read back from the data
//! plane itself (the pinned BPF maps, or the kernel's IPVS table), never from an agent's memory.
//! Both backends produce it; `show` prints it and the tests read it. Backend-neutral data.

use serde::Serialize;
use std::net::IpAddr;

use crate::table::{BackendKind, Persistence, ServiceKey};

/// A virtual service and its reals, as the data plane holds them.
#[derive(Clone, Debug, Serialize)]
pub struct LiveService {
    pub key: ServiceKey,
    /// The data plane that holds it.
    pub backend: BackendKind,
    pub scheduler: String,
    /// Scheduler flags, IPVS's bits (see `table::sched_flags`).
    pub sched_flags: u32,
    pub persistence: Option<Persistence>,
    /// One-packet scheduling.
    pub one_packet: bool,
    /// The persistence engine (IPVS `--pe`), empty for none.
    pub pe_name: String,
    pub reals: Vec<LiveReal>,
    pub stats: Traffic,
    /// The data plane's own rate estimates, where it keeps them (IPVS does; for XDP, `show
    /// --rate` measures them).
    pub rates: Option<Rates>,
}

/// A real server (or the fallback, while it is in) as the data plane holds it.
#[derive(Clone, Debug, Serialize)]
pub struct LiveReal {
    pub addr: IpAddr,
    pub port: u16,
    /// ipvsadm's word: Route, Local, Tunnel, Masq.
    pub forward: &'static str,
    /// The weight the data plane holds (0 = quiescent).
    pub weight: u32,
    /// Whether this is the fallback server (XDP keeps it apart; IPVS does not know).
    pub fallback: bool,
    /// Whether the data plane can forward to it: false for an XDP real whose MAC address is not
    /// resolved yet (it takes no new flows, whatever its weight says).
    pub resolved: bool,
    /// Whether the data plane cannot reach it at all where it is now: an XDP real behind a path
    /// the program cannot send on (stacked VLANs, say; the agent's log says why). Also not
    /// `resolved`.
    pub unsupported: bool,
    pub upper_threshold: u32,
    pub lower_threshold: u32,
    pub active_conns: u64,
    pub inactive_conns: u64,
    /// Persistence templates naming the real (IPVS).
    pub persist_conns: u64,
    pub stats: Traffic,
    pub rates: Option<Rates>,
}

/// Counters in ipvsadm's `--stats` terms: connections are new flows. A director doing direct
/// routing never sees replies, so its outbound counters stay 0, as they do for IPVS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    pub conns: u64,
    pub in_packets: u64,
    pub out_packets: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

/// Rates in ipvsadm's `--rate` terms, per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rates {
    pub cps: u64,
    pub in_pps: u64,
    pub out_pps: u64,
    pub in_bps: u64,
    pub out_bps: u64,
}

impl Traffic {
    /// The rates between two readings `secs` apart.
    pub fn rates_since(&self, earlier: &Traffic, secs: f64) -> Rates {
        let per_sec = |now: u64, then: u64| (now.saturating_sub(then) as f64 / secs).round() as u64;
        Rates {
            cps: per_sec(self.conns, earlier.conns),
            in_pps: per_sec(self.in_packets, earlier.in_packets),
            out_pps: per_sec(self.out_packets, earlier.out_packets),
            in_bps: per_sec(self.in_bytes, earlier.in_bytes),
            out_bps: per_sec(self.out_bytes, earlier.out_bytes),
        }
    }
}

/// libipvs's `ipvs_cmp_services`/`ipvs_cmp_dests` order: mark, family, protocol, address,
/// port; reals by address and port. Their differences are taken in C `int`, wrapping: two
/// addresses more than 2^31 apart compare the other way round, and ipvsadm prints them so.
pub fn sort(services: &mut [LiveService]) {
    for s in services.iter_mut() {
        s.reals.sort_by(|a, b| {
            address_order(a.addr, b.addr).then((a.port as i32 - b.port as i32).cmp(&0))
        });
    }
    services.sort_by(|a, b| service_order(&a.key, &b.key));
}

/// `a - b` in C `int`, as an ordering.
fn c_diff(a: u32, b: u32) -> std::cmp::Ordering {
    (a.wrapping_sub(b) as i32).cmp(&0)
}

fn address_order(a: IpAddr, b: IpAddr) -> std::cmp::Ordering {
    let words = |addr: IpAddr| -> [u32; 4] {
        match addr {
            IpAddr::V4(v4) => [u32::from(v4), 0, 0, 0],
            IpAddr::V6(v6) => {
                let o = v6.octets();
                std::array::from_fn(|i| {
                    u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
                })
            }
        }
    };
    let (a, b) = (words(a), words(b));
    a.iter()
        .zip(&b)
        .map(|(x, y)| c_diff(*x, *y))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

fn service_order(a: &ServiceKey, b: &ServiceKey) -> std::cmp::Ordering {
    // (mark, family, protocol, address, port), with 0/absent for what a key lacks.
    let parts = |k: &ServiceKey| match *k {
        ServiceKey::Inet {
            protocol,
            addr,
            port,
        } => (
            0,
            if addr.is_ipv6() { 10 } else { 2 },
            match protocol {
                crate::table::Protocol::Tcp => 6,
                crate::table::Protocol::Udp => 17,
            },
            addr,
            port,
        ),
        ServiceKey::Fwmark { mark, ipv6 } => (
            mark,
            if ipv6 { 10 } else { 2 },
            6,
            IpAddr::from([0u8; 4]),
            0,
        ),
    };
    let (a, b) = (parts(a), parts(b));
    c_diff(a.0, b.0)
        .then(a.1.cmp(&b.1))
        .then(a.2.cmp(&b.2))
        .then_with(|| address_order(a.3, b.3))
        .then(a.4.cmp(&b.4))
}
