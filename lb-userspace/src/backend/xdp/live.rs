//! The maps read back as the live table with counters (what `xdirectord show` prints). Read
//! from the data plane itself, so it works while no agent runs.

use std::net::IpAddr;

use lb_common::{
    AF_INET6,
    stats::{GlobalStats, TrafficStats},
    values::{FORWARD_LOCAL, FORWARD_MASQ, FORWARD_TUNNEL, RealDef, Scheduler, VIP_F_PERSISTENT},
};

use super::dataplane::{Dataplane, mask_prefix_len, real_addr};
use crate::{
    backend::BackendError,
    live::{LiveReal, LiveService, Traffic},
    table::{Persistence, ServiceKey},
};

impl From<TrafficStats> for Traffic {
    fn from(s: TrafficStats) -> Traffic {
        Traffic {
            conns: s.new_flows,
            in_packets: s.packets,
            in_bytes: s.bytes,
            ..Traffic::default()
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
                    unsupported: def.flags & lb_common::values::REAL_F_UNSUPPORTED != 0,
                    upper_threshold: 0,
                    lower_threshold: 0,
                    active_conns: active,
                    inactive_conns: inactive,
                    persist_conns: 0,
                    stats: super::maps::Maps::sum_traffic(&self.maps.real_stats, id)?.into(),
                    rates: None,
                });
                debug_assert!(def.family != AF_INET6 || ipv6);
            }
            services.push(LiveService {
                key,
                backend: crate::table::BackendKind::Xdp,
                scheduler: Scheduler::from_u32(meta.scheduler)
                    .map_or("?", |s| s.name())
                    .to_owned(),
                sched_flags: 0,
                persistence: (meta.flags & VIP_F_PERSISTENT != 0).then(|| Persistence {
                    timeout_secs: meta.persist_timeout_secs,
                    prefix_len: mask_prefix_len(&meta.persist_mask, ipv6),
                }),
                one_packet: false,
                pe_name: String::new(),
                reals,
                stats: super::maps::Maps::sum_traffic(&self.maps.vip_stats, meta.index)?.into(),
                rates: None,
            });
        }
        crate::live::sort(&mut services);
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

    /// How full the flow tables are: their live flows (a walk over the mapped tables), their
    /// capacity, and what the program counted of evictions and of flows it found no room for.
    pub fn flow_tables(&self) -> Result<FlowTables, BackendError> {
        let clock = self.flow_clock()?;
        let table = |t: &super::flow_table::FlowTable| FlowTable {
            entries: t.used().filter(|(_, slot)| slot.live(clock)).count() as u64,
            capacity: t.capacity(),
            bytes: lb_common::maps::flow_table_bytes(t.buckets() as u32),
        };
        let global = self.maps.global()?;
        Ok(FlowTables {
            ipv4: table(&self.maps.flows4),
            ipv6: table(&self.maps.flows6),
            evicted: global.flow_evicted,
            no_room: global.flow_table_full,
        })
    }
}

/// The flow tables' fill.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlowTables {
    pub ipv4: FlowTable,
    pub ipv6: FlowTable,
    /// Half-open or closing flows pushed out of a full bucket by an established one.
    pub evicted: u64,
    /// New flows that found their bucket full and were forwarded without an entry.
    pub no_room: u64,
}

/// One flow table: live flows, the most it holds, and its memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlowTable {
    pub entries: u64,
    pub capacity: u64,
    pub bytes: u64,
}
