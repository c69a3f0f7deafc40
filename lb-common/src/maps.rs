//! Map names (the ELF symbol names, also the pin file names) and sizes.
//!
//! Names are at most 15 characters: the kernel's BPF_OBJ_NAME_LEN is 16 including the NUL.

/// One [`crate::values::VipFilter`]: which destinations may be VIPs, checked before any lookup.
pub const VIP_FILTER: &str = "VIP_FILTER";
/// VIP lookup, IPv4: [`crate::keys::Vip4Key`] → [`crate::values::VipMeta`].
pub const VIPS4: &str = "VIPS4";
/// VIP lookup, IPv6: [`crate::keys::Vip6Key`] → [`crate::values::VipMeta`].
pub const VIPS6: &str = "VIPS6";
/// Real servers by real id: [`crate::values::RealDef`]. Id 0 is never used.
pub const REALS: &str = "REALS";
/// Per VIP table slot, the reals and their weights: [`crate::values::SlotReals`].
pub const SLOT_REALS: &str = "SLOT_REALS";
/// Per VIP table slot, the consistent-hash (Maglev) table: [`crate::values::Ring`].
pub const RINGS: &str = "RINGS";
/// Per VIP table slot, the weighted round-robin sequence: [`crate::values::WrrSeq`].
pub const WRR_SEQS: &str = "WRR_SEQS";
/// Per CPU and VIP table slot, the position in the round-robin sequence (`u32`).
pub const WRR_CURSORS: &str = "WRR_CURSORS";
/// Flow table, IPv4: an array of [`crate::values::FlowBucket`]s, [`FLOW_BUCKETS`] of them
/// (mmapable).
pub const FLOWS4: &str = "FLOWS4";
/// Flow table, IPv6.
pub const FLOWS6: &str = "FLOWS6";
/// Per-CPU flow cache in front of FLOWS4: [`crate::values::Cached4`].
pub const FLOW_CACHE4: &str = "FLOW_CACHE4";
/// Per-CPU flow cache in front of FLOWS6: [`crate::values::Cached6`].
pub const FLOW_CACHE6: &str = "FLOW_CACHE6";
/// Persistence templates, IPv4: [`crate::keys::Persist4Key`] → [`crate::values::PersistEntry`].
pub const PERSIST4: &str = "PERSIST4";
/// Persistence templates, IPv6.
pub const PERSIST6: &str = "PERSIST6";
/// Fragmented datagrams, IPv4: [`crate::keys::Frag4Key`] → [`crate::values::FragEntry`] (LRU):
/// where each first fragment went, for the later fragments.
pub const FRAGS4: &str = "FRAGS4";
/// Fragmented datagrams, IPv6: [`crate::keys::Frag6Key`] → [`crate::values::FragEntry`].
pub const FRAGS6: &str = "FRAGS6";
/// Connection counts per real id, kept by the program with atomic adds:
/// [`crate::values::ConnCounts`].
pub const CONNS: &str = "CONNS";
/// Corrections to [`CONNS`] written by the agent only (flows it expired): same layout.
pub const CONNS_EXPIRED: &str = "CONNS_EXPIRED";
/// Per-CPU traffic counters per VIP index: [`crate::stats::TrafficStats`].
pub const VIP_STATS: &str = "VIP_STATS";
/// Per-CPU traffic counters per real id: [`crate::stats::TrafficStats`].
pub const REAL_STATS: &str = "REAL_STATS";
/// Per-CPU global counters, one entry: [`crate::stats::GlobalStats`].
pub const GLOBAL_STATS: &str = "GLOBAL_STATS";
/// Egress interfaces for XDP_REDIRECT, keyed by ifindex (devmap hash).
pub const TX_PORTS: &str = "TX_PORTS";
/// One `u64`, only in the packet tests' build of the balancer (lb-ebpf's `test-clock` feature),
/// never pinned: when non-zero, that program's clock in nanoseconds instead of the kernel's
/// monotonic clock. Tests set it to step through persistence and flow expiry. The agent's
/// program has no such map.
pub const CLOCK: &str = "CLOCK";
/// The tunnel program (IPIP / IP6IP6 encapsulation), at index 0: the balancer tail-calls it for
/// an `ipip` real, so that the verifier checks the encapsulation once, on its own, instead of on
/// every path of the balancer that ends in forwarding.
pub const TUNNEL_PROG: &str = "TUNNEL_PROG";
/// One [`crate::values::TunnelJob`] per CPU: what the balancer hands the tunnel program.
pub const TUNNEL_JOB: &str = "TUNNEL_JOB";

/// Every map, in the order the agent pins and checks them.
pub const ALL: [&str; 24] = [
    VIP_FILTER,
    VIPS4,
    VIPS6,
    REALS,
    SLOT_REALS,
    RINGS,
    WRR_SEQS,
    WRR_CURSORS,
    FLOWS4,
    FLOWS6,
    FLOW_CACHE4,
    FLOW_CACHE6,
    PERSIST4,
    PERSIST6,
    FRAGS4,
    FRAGS6,
    CONNS,
    CONNS_EXPIRED,
    VIP_STATS,
    REAL_STATS,
    GLOBAL_STATS,
    TX_PORTS,
    TUNNEL_PROG,
    TUNNEL_JOB,
];

/// Virtual services per address family and protocol together, by default (`maxvirtuals`; the
/// object's size, which the loader sets at run time).
pub const MAX_VIPS: u32 = 128;
/// Most virtual services `maxvirtuals` accepts (each owns two slots of 128 KiB Maglev table and
/// 128 KiB round-robin sequence: 512 MiB of tables at 1,024).
pub const VIRTUALS_LIMIT: u32 = 1024;
/// Each VIP owns two table slots: the live one and the one user space prepares (see
/// [`crate::values::VipMeta::slot`]).
pub const MAX_SLOTS: u32 = MAX_VIPS * 2;
/// Real server ids by default (`maxreals`; the object's size, which the loader sets at run
/// time); id 0 is reserved so that a zeroed entry never names a real.
pub const MAX_REALS: u32 = 4096;
/// Most real ids `maxreals` accepts: a flow-table slot holds a real id in 16 bits.
pub const REALS_LIMIT: u32 = 1 << 16;
/// Reals (including a fallback) per virtual service.
pub const MAX_REALS_PER_VIP: u32 = 1024;
/// Maglev table size: prime, and ≫ MAX_REALS_PER_VIP so each real's share is within about 1.5%
/// of its weight's share (Maglev paper: M > 100·N keeps it within 1%).
pub const RING_SIZE: u32 = 65537;
/// Longest weighted round-robin sequence (Σweight / gcd). Longer sequences are scaled down.
pub const WRR_SEQ_MAX: u32 = 65536;
/// Slots per flow-table bucket: four 16-byte [`crate::values::FlowSlot`]s fill one 64-byte cache
/// line, so a lookup or an insert touches one line.
pub const FLOW_WAYS: u32 = 4;
/// Flows per address family by default (`maxflows`): 64 MiB per family at 16 B a flow.
pub const DEFAULT_FLOWS: u32 = 1 << 22;
/// Most flows per address family `maxflows` accepts (16 GiB per family).
pub const MAX_FLOWS: u32 = 1 << 30;
/// The program's global (`u32`, in `.rodata`, set by the loader) holding the number of buckets
/// of FLOWS4 and FLOWS6, which is also their `max_entries`: [`flow_buckets`] of the capacity.
pub const FLOW_BUCKETS: &str = "FLOW_BUCKETS";

/// Buckets of a flow table that holds `flows` flows.
pub const fn flow_buckets(flows: u32) -> u32 {
    let buckets = flows.div_ceil(FLOW_WAYS);
    if buckets == 0 { 1 } else { buckets }
}

/// Memory of a flow table of `buckets` buckets.
pub const fn flow_table_bytes(buckets: u32) -> u64 {
    buckets as u64 * size_of::<crate::values::FlowBucket>() as u64
}
/// Flow cache entries per CPU and address family (a power of two: the slot is hash & (size − 1)).
pub const FLOW_CACHE_SIZE: u32 = 8192;
/// CPUs whose flow cache slots a rescheduled flow clears (more than any machine here has).
pub const MAX_CPUS: u32 = 512;
/// Persistence templates per address family by default (`maxtemplates`; the object's size, which
/// the loader sets at run time).
pub const PERSIST_TABLE_SIZE: u32 = 1 << 16;
/// Most persistence templates per address family `maxtemplates` accepts.
pub const TEMPLATES_LIMIT: u32 = 1 << 26;
/// Fragmented datagrams remembered per address family: datagrams in flight at once; an LRU
/// map, so a flood of first fragments only pushes out the oldest.
pub const FRAG_TABLE_SIZE: u32 = 8192;
/// Egress interfaces.
pub const MAX_PORTS: u32 = 64;

/// BPF_F_NO_PREALLOC: hash elements are freed after an RCU grace period, so replacing a
/// [`VIPS4`] entry can never hand a reader a half-written value.
pub const BPF_F_NO_PREALLOC: usize = 1;
/// BPF_F_MMAPABLE: user space maps the array into its memory (the flow tables: the agent reads
/// millions of slots without a system call each).
pub const BPF_F_MMAPABLE: usize = 1 << 10;
