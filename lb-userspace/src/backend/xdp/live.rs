//! The maps read back as a table with counters: what `xdirectord show` prints. Read from the data
//! plane itself, so it works while no agent runs.

use serde::Serialize;
use std::net::IpAddr;

use lb_common::{
    AF_INET6,
    stats::{GlobalStats, TrafficStats},
    values::{FORWARD_LOCAL, FORWARD_MASQ, FORWARD_TUNNEL, RealDef, Scheduler, VIP_F_PERSISTENT},
};

use super::dataplane::{Dataplane, mask_prefix_len, real_addr};
use crate::{
    backend::BackendError,
    table::{DesiredTable, Forward, Persistence, Real, Service, ServiceKey},
};

/// A virtual service and its reals, as the data plane holds them.
#[derive(Clone, Debug, Serialize)]
pub struct LiveService {
    pub key: ServiceKey,
    pub scheduler: String,
    /// Persistence timeout in seconds, and its netmask as a prefix length.
    pub persistent: Option<(u32, u8)>,
    pub reals: Vec<LiveReal>,
    pub stats: Traffic,
}

/// A real server (or the fallback, while it is in) as the data plane holds it.
#[derive(Clone, Debug, Serialize)]
pub struct LiveReal {
    pub addr: IpAddr,
    pub port: u16,
    /// ipvsadm's word: Route, Local, Tunnel, Masq.
    pub forward: &'static str,
    /// The configured weight (0 = quiescent).
    pub weight: u32,
    /// Whether this is the fallback server.
    pub fallback: bool,
    /// Whether its MAC is known (it takes new flows only then).
    pub resolved: bool,
    pub active_conns: u64,
    pub inactive_conns: u64,
    pub stats: Traffic,
}

/// Counters in ipvsadm's `--stats` terms: connections are new flows; a director doing direct
/// routing never sees replies, so outbound counters are always 0.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Traffic {
    pub conns: u64,
    pub in_packets: u64,
    pub in_bytes: u64,
}

impl From<TrafficStats> for Traffic {
    fn from(s: TrafficStats) -> Traffic {
        Traffic {
            conns: s.new_flows,
            in_packets: s.packets,
            in_bytes: s.bytes,
        }
    }
}

fn forward_name(def: &RealDef) -> &'static str {
    match def.forward {
        FORWARD_LOCAL => "Local",
        FORWARD_MASQ => "Masq",
        FORWARD_TUNNEL => "Tunnel",
        _ => "Route",
    }
}

impl Dataplane {
    /// What the maps hold, as a desired table: every real as direct routing (a local one
    /// included), without thresholds, scheduler flags or one-packet scheduling (the data plane
    /// does not keep them).
    pub fn held(&self) -> Result<DesiredTable, BackendError> {
        let real = |r: &LiveReal| Real {
            addr: r.addr,
            port: r.port,
            forward: Forward::Gate,
            weight: r.weight,
            upper_threshold: 0,
            lower_threshold: 0,
        };
        let services = self
            .live()?
            .into_iter()
            .map(|s| {
                let service = Service {
                    scheduler: s.scheduler,
                    persistence: s.persistent.map(|(timeout_secs, prefix_len)| Persistence {
                        timeout_secs,
                        prefix_len,
                    }),
                    sched_flags: None,
                    one_packet: false,
                    reals: s.reals.iter().filter(|r| !r.fallback).map(real).collect(),
                    fallback: s.reals.iter().find(|r| r.fallback).map(real),
                };
                (s.key, service)
            })
            .collect();
        Ok(DesiredTable { services })
    }

    /// Every virtual service with its reals and counters, sorted as ipvsadm sorts them.
    pub fn live(&self) -> Result<Vec<LiveService>, BackendError> {
        let mut services = Vec::new();
        for programmed in self.programmed()?.into_values() {
            let meta = programmed.meta;
            let key = programmed.key.service_key();
            let ipv6 = matches!(
                key,
                ServiceKey::Inet {
                    addr: IpAddr::V6(_),
                    ..
                }
            );
            let mut reals = Vec::new();
            let entries = programmed
                .reals
                .iter()
                .map(|(id, def, _)| (*id, *def, false))
                .chain(programmed.fallback.map(|(id, def)| (id, def, true)));
            for (id, def, fallback) in entries {
                let (active, inactive) = self.conns(id)?;
                reals.push(LiveReal {
                    addr: real_addr(&def),
                    port: def.port,
                    forward: forward_name(&def),
                    weight: if fallback { 1 } else { def.weight },
                    fallback,
                    resolved: def.flags & lb_common::values::REAL_F_RESOLVED != 0,
                    active_conns: active,
                    inactive_conns: inactive,
                    stats: super::maps::Maps::sum_traffic(&self.maps.real_stats, id)?.into(),
                });
                debug_assert!(def.family != AF_INET6 || ipv6);
            }
            reals.sort_by_key(|r| (r.addr, r.port));
            services.push(LiveService {
                key,
                scheduler: Scheduler::from_u32(meta.scheduler)
                    .map_or("?", |s| s.name())
                    .to_owned(),
                persistent: (meta.flags & VIP_F_PERSISTENT != 0).then(|| {
                    (
                        meta.persist_timeout_secs,
                        mask_prefix_len(&meta.persist_mask, ipv6),
                    )
                }),
                reals,
                stats: super::maps::Maps::sum_traffic(&self.maps.vip_stats, meta.index)?.into(),
            });
        }
        services.sort_by_key(|s| s.key);
        Ok(services)
    }

    /// Active and inactive connections of a real: the program's counts less the agent's
    /// corrections for flows that ended silently.
    pub fn conns(&self, id: u32) -> Result<(u64, u64), BackendError> {
        let read = |map: &aya::maps::Array<_, lb_common::values::ConnCounts>| {
            map.get(&id, 0)
                .map_err(|e| BackendError::system("reading connection counts", e))
        };
        let kept = read(&self.maps.conns)?;
        let expired = read(&self.maps.conns_expired)?;
        let clamp = |v: u64| if (v as i64) < 0 { 0 } else { v };
        Ok((
            clamp(kept.active.wrapping_sub(expired.active)),
            clamp(kept.inactive.wrapping_sub(expired.inactive)),
        ))
    }

    /// Program-wide counters.
    pub fn global_stats(&self) -> Result<GlobalStats, BackendError> {
        self.maps.global()
    }
}
