//! Typed handles on every map of the balancer, opened from a freshly loaded object or from the
//! pins a running (or stopped) agent left, and the checks that pinned maps still have the layout
//! this build expects.

use std::path::Path;

use aya::maps::{Array, DevMapHash, HashMap, Map, MapData, PerCpuArray, PerCpuValues};
use lb_common::{
    keys::{Frag4Key, Frag6Key, Persist4Key, Persist6Key, Vip4Key, Vip6Key},
    maps as names,
    stats::{GlobalStats, TrafficStats},
    values::{
        Cached4, Cached6, ConnCounts, FlowBucket, FragEntry, PersistEntry, RealDef, Ring,
        SlotReals, TunnelJob, VipFilter, VipMeta, WrrSeq,
    },
};

use super::flow_table::FlowTable;
use crate::backend::BackendError;

/// Every map of the balancer.
pub struct Maps {
    pub vip_filter: Array<MapData, VipFilter>,
    pub vips4: HashMap<MapData, Vip4Key, VipMeta>,
    pub vips6: HashMap<MapData, Vip6Key, VipMeta>,
    pub reals: Array<MapData, RealDef>,
    pub slot_reals: Array<MapData, SlotReals>,
    pub rings: Array<MapData, Ring>,
    pub wrr_seqs: Array<MapData, WrrSeq>,
    pub wrr_cursors: PerCpuArray<MapData, u32>,
    pub flows4: FlowTable,
    pub flows6: FlowTable,
    pub flow_cache4: PerCpuArray<MapData, Cached4>,
    pub flow_cache6: PerCpuArray<MapData, Cached6>,
    pub persist4: HashMap<MapData, Persist4Key, PersistEntry>,
    pub persist6: HashMap<MapData, Persist6Key, PersistEntry>,
    pub conns: Array<MapData, ConnCounts>,
    pub conns_expired: Array<MapData, ConnCounts>,
    pub vip_stats: PerCpuArray<MapData, TrafficStats>,
    pub real_stats: PerCpuArray<MapData, TrafficStats>,
    pub global_stats: PerCpuArray<MapData, GlobalStats>,
    pub tx_ports: DevMapHash<MapData>,
    /// The test clock: only in the balancer built for the packet tests (lb-ebpf's `test-clock`
    /// feature, [`crate::objects::BALANCER_TEST_CLOCK`]). Never pinned; the agent's program has
    /// no CLOCK map.
    #[cfg(feature = "test-support")]
    pub clock: Option<Array<MapData, u64>>,
}

fn typed<T: TryFrom<Map, Error = aya::maps::MapError>>(
    name: &str,
    map: Option<Map>,
) -> Result<T, BackendError> {
    let map =
        map.ok_or_else(|| BackendError::Unsupported(format!("the XDP object has no map {name}")))?;
    T::try_from(map).map_err(|e| BackendError::system(format!("map {name}"), e))
}

impl Maps {
    /// Takes the maps out of a loaded object.
    pub fn from_ebpf(ebpf: &mut aya::Ebpf) -> Result<Maps, BackendError> {
        let maps = Maps::open(|name| Ok(ebpf.take_map(name)))?;
        // Only the test-clock build of the balancer has one.
        #[cfg(feature = "test-support")]
        let maps = Maps {
            clock: ebpf
                .take_map(names::CLOCK)
                .map(|map| typed(names::CLOCK, Some(map)))
                .transpose()?,
            ..maps
        };
        Ok(maps)
    }

    /// Opens the maps pinned in `dir`.
    pub fn from_pins(dir: &Path) -> Result<Maps, BackendError> {
        Maps::open(|name| {
            let path = dir.join(name);
            let data = MapData::from_pin(&path)
                .map_err(|e| BackendError::system(format!("cannot open {}", path.display()), e))?;
            Map::from_map_data(data)
                .map(Some)
                .map_err(|e| BackendError::system(format!("map {}", path.display()), e))
        })
    }

    fn open(
        mut take: impl FnMut(&str) -> Result<Option<Map>, BackendError>,
    ) -> Result<Maps, BackendError> {
        Ok(Maps {
            vip_filter: typed(names::VIP_FILTER, take(names::VIP_FILTER)?)?,
            vips4: typed(names::VIPS4, take(names::VIPS4)?)?,
            vips6: typed(names::VIPS6, take(names::VIPS6)?)?,
            reals: typed(names::REALS, take(names::REALS)?)?,
            slot_reals: typed(names::SLOT_REALS, take(names::SLOT_REALS)?)?,
            rings: typed(names::RINGS, take(names::RINGS)?)?,
            wrr_seqs: typed(names::WRR_SEQS, take(names::WRR_SEQS)?)?,
            wrr_cursors: typed(names::WRR_CURSORS, take(names::WRR_CURSORS)?)?,
            flows4: FlowTable::new(names::FLOWS4, take(names::FLOWS4)?)?,
            flows6: FlowTable::new(names::FLOWS6, take(names::FLOWS6)?)?,
            flow_cache4: typed(names::FLOW_CACHE4, take(names::FLOW_CACHE4)?)?,
            flow_cache6: typed(names::FLOW_CACHE6, take(names::FLOW_CACHE6)?)?,
            persist4: typed(names::PERSIST4, take(names::PERSIST4)?)?,
            persist6: typed(names::PERSIST6, take(names::PERSIST6)?)?,
            conns: typed(names::CONNS, take(names::CONNS)?)?,
            conns_expired: typed(names::CONNS_EXPIRED, take(names::CONNS_EXPIRED)?)?,
            vip_stats: typed(names::VIP_STATS, take(names::VIP_STATS)?)?,
            real_stats: typed(names::REAL_STATS, take(names::REAL_STATS)?)?,
            global_stats: typed(names::GLOBAL_STATS, take(names::GLOBAL_STATS)?)?,
            tx_ports: typed(names::TX_PORTS, take(names::TX_PORTS)?)?,
            #[cfg(feature = "test-support")]
            clock: None,
        })
    }

    /// Zeroes a per-CPU counter slot on every CPU (a new VIP index or real id starts at 0).
    pub fn zero_traffic(
        map: &mut PerCpuArray<MapData, TrafficStats>,
        index: u32,
    ) -> Result<(), BackendError> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| BackendError::system("nr_cpus", e))?;
        let zeros = PerCpuValues::try_from(vec![TrafficStats::default(); cpus])
            .map_err(|e| BackendError::system("per-CPU values", e))?;
        map.set(index, zeros, 0)
            .map_err(|e| BackendError::system("zeroing counters", e))
    }

    /// Sums a per-CPU counter slot.
    pub fn sum_traffic(
        map: &PerCpuArray<MapData, TrafficStats>,
        index: u32,
    ) -> Result<TrafficStats, BackendError> {
        let values = map
            .get(&index, 0)
            .map_err(|e| BackendError::system("reading counters", e))?;
        Ok(values
            .iter()
            .fold(TrafficStats::default(), |a, v| TrafficStats {
                packets: a.packets + v.packets,
                bytes: a.bytes + v.bytes,
                new_flows: a.new_flows + v.new_flows,
            }))
    }

    /// The global counters, summed over CPUs.
    pub fn global(&self) -> Result<GlobalStats, BackendError> {
        let values = self
            .global_stats
            .get(&0, 0)
            .map_err(|e| BackendError::system("reading global counters", e))?;
        Ok(values
            .iter()
            .fold(GlobalStats::default(), |a, v| GlobalStats {
                passed: a.passed + v.passed,
                malformed: a.malformed + v.malformed,
                no_real: a.no_real + v.no_real,
                flow_miss_non_syn: a.flow_miss_non_syn + v.flow_miss_non_syn,
                frag_first: a.frag_first + v.frag_first,
                frag_later: a.frag_later + v.frag_later,
                frag_unknown: a.frag_unknown + v.frag_unknown,
                frag_absurd: a.frag_absurd + v.frag_absurd,
                icmp_to_flow: a.icmp_to_flow + v.icmp_to_flow,
                icmp_hashed: a.icmp_hashed + v.icmp_hashed,
                icmp_not_vip: a.icmp_not_vip + v.icmp_not_vip,
                icmp_bad_inner: a.icmp_bad_inner + v.icmp_bad_inner,
                local: a.local + v.local,
                unresolved: a.unresolved + v.unresolved,
                retag_failed: a.retag_failed + v.retag_failed,
                tunnelled: a.tunnelled + v.tunnelled,
                tunnel_too_big: a.tunnel_too_big + v.tunnel_too_big,
                tunnel_too_big_passed: a.tunnel_too_big_passed + v.tunnel_too_big_passed,
                tunnel_failed: a.tunnel_failed + v.tunnel_failed,
                flow_evicted: a.flow_evicted + v.flow_evicted,
                flow_table_full: a.flow_table_full + v.flow_table_full,
            }))
    }
}

/// (name, key size, value size, max entries or 0 when it is set at run time) of every map,
/// as this build lays them out.
fn layout() -> [(&'static str, usize, usize, u32); 24] {
    use lb_common::maps::*;
    use std::mem::size_of;
    [
        (VIP_FILTER, 4, size_of::<VipFilter>(), 1),
        // Sized by maxvirtuals, maxreals, maxflows and maxtemplates (`capacity.rs`): maps
        // pinned with other sizes are kept, and their sizes are the ones in force.
        (VIPS4, size_of::<Vip4Key>(), size_of::<VipMeta>(), 0),
        (VIPS6, size_of::<Vip6Key>(), size_of::<VipMeta>(), 0),
        (REALS, 4, size_of::<RealDef>(), 0),
        (SLOT_REALS, 4, size_of::<SlotReals>(), 0),
        (RINGS, 4, size_of::<Ring>(), 0),
        (WRR_SEQS, 4, size_of::<WrrSeq>(), 0),
        (WRR_CURSORS, 4, size_of::<u32>(), 0),
        (FLOWS4, 4, size_of::<FlowBucket>(), 0),
        (FLOWS6, 4, size_of::<FlowBucket>(), 0),
        (FLOW_CACHE4, 4, size_of::<Cached4>(), FLOW_CACHE_SIZE),
        (FLOW_CACHE6, 4, size_of::<Cached6>(), FLOW_CACHE_SIZE),
        (
            PERSIST4,
            size_of::<Persist4Key>(),
            size_of::<PersistEntry>(),
            0,
        ),
        (
            PERSIST6,
            size_of::<Persist6Key>(),
            size_of::<PersistEntry>(),
            0,
        ),
        (
            FRAGS4,
            size_of::<Frag4Key>(),
            size_of::<FragEntry>(),
            FRAG_TABLE_SIZE,
        ),
        (
            FRAGS6,
            size_of::<Frag6Key>(),
            size_of::<FragEntry>(),
            FRAG_TABLE_SIZE,
        ),
        (CONNS, 4, size_of::<ConnCounts>(), 0),
        (CONNS_EXPIRED, 4, size_of::<ConnCounts>(), 0),
        (VIP_STATS, 4, size_of::<TrafficStats>(), 0),
        (REAL_STATS, 4, size_of::<TrafficStats>(), 0),
        (GLOBAL_STATS, 4, size_of::<GlobalStats>(), 1),
        (TX_PORTS, 4, 8, MAX_PORTS),
        (TUNNEL_PROG, 4, 4, 1),
        (TUNNEL_JOB, 4, size_of::<TunnelJob>(), 1),
    ]
}

/// Whether the maps pinned in `dir` have the key and value sizes and sizes this build expects.
/// Pinned maps are reused without the kernel checking anything, so a layout change must be caught
/// here; `Err` names the first mismatch (or the first missing pin).
pub fn check_pinned_layout(dir: &Path) -> Result<(), String> {
    for (name, key, value, entries) in layout() {
        let path = dir.join(name);
        let info =
            aya::maps::MapInfo::from_pin(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let pinned = (
            info.key_size() as usize,
            info.value_size() as usize,
            info.max_entries(),
        );
        if pinned.0 != key || pinned.1 != value || (entries != 0 && pinned.2 != entries) {
            return Err(format!(
                "{name}: pinned with key {} B, value {} B, {} entries; this build has key {key} B, \
                 value {value} B, {entries} entries",
                pinned.0, pinned.1, pinned.2
            ));
        }
    }
    Ok(())
}
