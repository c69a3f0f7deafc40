//! Every map of the balancer, declared with BTF so `bpftool map dump` prints field names.
//! Names, sizes and layouts come from `lb_common`; each map's doc is in `lb_common::maps`.

use aya_ebpf::{
    btf_maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray, ProgramArray},
    macros::btf_map,
};
use lb_common::{
    keys::{Frag4Key, Frag6Key, Persist4Key, Persist6Key, Vip4Key, Vip6Key},
    maps::{
        BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, DEFAULT_FLOWS, FLOW_CACHE_SIZE, FRAG_TABLE_SIZE,
        MAX_PORTS, MAX_REALS, MAX_SLOTS, MAX_VIPS, PERSIST_TABLE_SIZE, flow_buckets,
    },
    stats::{GlobalStats, TrafficStats},
    values::{
        Cached4, Cached6, ConnCounts, FlowBucket, FragEntry, PersistEntry, RealDef, Ring,
        SlotReals, TunnelJob, VipFilter, VipMeta, WrrSeq,
    },
};

const VIPS: usize = MAX_VIPS as usize;
const REALS_N: usize = MAX_REALS as usize;
const SLOTS: usize = MAX_SLOTS as usize;
/// The flow tables' size in the object; the loader sets the configured one.
const FLOW_BUCKETS_N: usize = flow_buckets(DEFAULT_FLOWS) as usize;

#[btf_map]
pub static VIP_FILTER: Array<VipFilter, 1> = Array::new();
#[btf_map]
pub static VIPS4: HashMap<Vip4Key, VipMeta, VIPS, BPF_F_NO_PREALLOC> = HashMap::new();
#[btf_map]
pub static VIPS6: HashMap<Vip6Key, VipMeta, VIPS, BPF_F_NO_PREALLOC> = HashMap::new();
#[btf_map]
pub static REALS: Array<RealDef, REALS_N> = Array::new();
#[btf_map]
pub static SLOT_REALS: Array<SlotReals, SLOTS> = Array::new();
#[btf_map]
pub static RINGS: Array<Ring, SLOTS> = Array::new();
#[btf_map]
pub static WRR_SEQS: Array<WrrSeq, SLOTS> = Array::new();
#[btf_map]
pub static WRR_CURSORS: PerCpuArray<u32, SLOTS> = PerCpuArray::new();
#[btf_map]
pub static FLOWS4: Array<FlowBucket, FLOW_BUCKETS_N, BPF_F_MMAPABLE> = Array::new();
#[btf_map]
pub static FLOWS6: Array<FlowBucket, FLOW_BUCKETS_N, BPF_F_MMAPABLE> = Array::new();
#[btf_map]
pub static FLOW_CACHE4: PerCpuArray<Cached4, { FLOW_CACHE_SIZE as usize }> = PerCpuArray::new();
#[btf_map]
pub static FLOW_CACHE6: PerCpuArray<Cached6, { FLOW_CACHE_SIZE as usize }> = PerCpuArray::new();
#[btf_map]
pub static PERSIST4: LruHashMap<Persist4Key, PersistEntry, { PERSIST_TABLE_SIZE as usize }> =
    LruHashMap::new();
#[btf_map]
pub static PERSIST6: LruHashMap<Persist6Key, PersistEntry, { PERSIST_TABLE_SIZE as usize }> =
    LruHashMap::new();
#[btf_map]
pub static FRAGS4: LruHashMap<Frag4Key, FragEntry, { FRAG_TABLE_SIZE as usize }> =
    LruHashMap::new();
#[btf_map]
pub static FRAGS6: LruHashMap<Frag6Key, FragEntry, { FRAG_TABLE_SIZE as usize }> =
    LruHashMap::new();
#[btf_map]
pub static CONNS: Array<ConnCounts, REALS_N> = Array::new();
#[btf_map]
pub static CONNS_EXPIRED: Array<ConnCounts, REALS_N> = Array::new();
#[btf_map]
pub static VIP_STATS: PerCpuArray<TrafficStats, VIPS> = PerCpuArray::new();
#[btf_map]
pub static REAL_STATS: PerCpuArray<TrafficStats, REALS_N> = PerCpuArray::new();
#[btf_map]
pub static GLOBAL_STATS: PerCpuArray<GlobalStats, 1> = PerCpuArray::new();
#[btf_map]
pub static TX_PORTS: DevMapHash<{ MAX_PORTS as usize }> = DevMapHash::new();
/// The packet tests' clock (`clock.rs`): only in their build of the balancer.
#[cfg(feature = "test-clock")]
#[btf_map]
pub static CLOCK: Array<u64, 1> = Array::new();
#[btf_map]
pub static TUNNEL_PROG: ProgramArray<1> = ProgramArray::new();
#[btf_map]
pub static TUNNEL_JOB: PerCpuArray<TunnelJob, 1> = PerCpuArray::new();
