//! Values of the maps: what user space writes for the program to read (VIP metadata, reals, table
//! slots) and what the program writes (flows, persistence templates, connection counts).

use crate::maps::{MAX_REALS_PER_VIP, RING_SIZE, WRR_SEQ_MAX};

/// Scheduler of a virtual service, as [`VipMeta::scheduler`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduler {
    /// Weighted round robin: the [`crate::maps::WRR_SEQS`] sequence.
    Wrr = 0,
    /// Round robin: the same sequence built with every live weight taken as 1.
    Rr = 1,
    /// Source hashing: the consistent-hash table on the client address.
    Sh = 2,
    /// Destination hashing: the consistent-hash table on the VIP address.
    Dh = 3,
    /// Maglev hashing: the consistent-hash table on the flow tuple.
    Mh = 4,
    /// Least connections: min(active·256 + inactive), IPVS's "overhead".
    Lc = 5,
    /// Weighted least connections: min(overhead / weight).
    Wlc = 6,
    /// Shortest expected delay: min((active + 1) / weight).
    Sed = 7,
    /// Never queue: an idle real if any, else as sed.
    Nq = 8,
}

impl Scheduler {
    pub const ALL: [Scheduler; 9] = [
        Scheduler::Wrr,
        Scheduler::Rr,
        Scheduler::Sh,
        Scheduler::Dh,
        Scheduler::Mh,
        Scheduler::Lc,
        Scheduler::Wlc,
        Scheduler::Sed,
        Scheduler::Nq,
    ];

    /// The IPVS name (`ipvsadm -s`).
    pub const fn name(self) -> &'static str {
        match self {
            Scheduler::Wrr => "wrr",
            Scheduler::Rr => "rr",
            Scheduler::Sh => "sh",
            Scheduler::Dh => "dh",
            Scheduler::Mh => "mh",
            Scheduler::Lc => "lc",
            Scheduler::Wlc => "wlc",
            Scheduler::Sed => "sed",
            Scheduler::Nq => "nq",
        }
    }

    pub fn from_name(name: &str) -> Option<Scheduler> {
        Scheduler::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn from_u32(value: u32) -> Option<Scheduler> {
        Scheduler::ALL.into_iter().find(|s| *s as u32 == value)
    }

    /// Schedulers that place new flows through the consistent-hash table.
    pub const fn uses_ring(self) -> bool {
        matches!(self, Scheduler::Sh | Scheduler::Dh | Scheduler::Mh)
    }

    /// Schedulers that read per-real connection counts.
    pub const fn uses_conns(self) -> bool {
        matches!(
            self,
            Scheduler::Lc | Scheduler::Wlc | Scheduler::Sed | Scheduler::Nq
        )
    }
}

/// [`VipMeta::flags`]: `persistent` is set; [`VipMeta::persist_timeout_secs`] and
/// [`VipMeta::persist_mask`] apply.
pub const VIP_F_PERSISTENT: u32 = 1;

/// A virtual service. Replaced as a whole (one hash element) when its table changes, so a packet
/// sees either the old slot with its sizes or the new one, never a mix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipMeta {
    /// Index of the virtual service (0..MAX_VIPS): its counters and persistence templates.
    pub index: u32,
    /// The live table slot (`index * 2` or `index * 2 + 1`) in SLOT_REALS, RINGS, WRR_SEQS.
    pub slot: u32,
    /// [`Scheduler`] as u32.
    pub scheduler: u32,
    /// `VIP_F_*`.
    pub flags: u32,
    /// Persistence timeout in seconds.
    pub persist_timeout_secs: u32,
    /// Reals in the slot, including those of weight 0 (quiescent).
    pub n_reals: u32,
    /// Reals in the slot whose weight is above 0; 0 means only the fallback may take new flows.
    pub n_live: u32,
    /// Length of the slot's round-robin sequence.
    pub wrr_len: u32,
    /// Real id of the fallback server, 0 when there is none.
    pub fallback: u32,
    pub _pad: u32,
    /// Persistence netmask, network byte order (IPv4 uses the first 4 bytes).
    pub persist_mask: [u8; 16],
}

/// `RealDef::forward` values, IPVS's IP_VS_CONN_F_* forwarding codes.
pub const FORWARD_MASQ: u8 = 0;
/// The real is an address of the director itself: packets go to the local stack (XDP_PASS).
pub const FORWARD_LOCAL: u8 = 1;
pub const FORWARD_TUNNEL: u8 = 2;
/// Direct routing ("gate"): rewrite the MACs and send.
pub const FORWARD_ROUTE: u8 = 3;

/// [`RealDef::flags`]: the MAC and egress interface are known.
pub const REAL_F_RESOLVED: u32 = 1;
/// [`RealDef::flags`]: the agent reaches the real only in a way the program cannot send (a
/// stacked VLAN, say; the agent logs why), so it stays unresolved until its path changes. Only
/// user space reads it (`show`); the program goes by [`REAL_F_RESOLVED`].
pub const REAL_F_UNSUPPORTED: u32 = 2;

/// A real server of one virtual service (IPVS's "destination").
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RealDef {
    /// Network byte order; IPv4 uses the first 4 bytes.
    pub addr: [u8; 16],
    pub port: u16,
    /// AF_INET or AF_INET6.
    pub family: u8,
    /// `FORWARD_*`.
    pub forward: u8,
    /// Bumped each time the id is given to a real, so a flow or persistence template that
    /// remembers an older generation is seen as pointing at a removed real.
    pub generation: u32,
    /// Index of the virtual service the real belongs to.
    pub vip_index: u32,
    /// Egress interface.
    pub ifindex: u32,
    /// Destination MAC (the real's, or its next hop's).
    pub mac: [u8; 6],
    /// Source MAC: the egress interface's.
    pub src_mac: [u8; 6],
    /// `REAL_F_*`.
    pub flags: u32,
    /// The configured weight, as `show` prints it (the schedulers read [`SlotReal::weight`]).
    pub weight: u32,
    /// 802.1Q VLAN id the frame leaves with (host byte order); 0: untagged.
    pub vlan: u16,
    /// MTU of the egress interface in bytes: an encapsulated packet must fit in it.
    pub mtu: u16,
    /// `FORWARD_TUNNEL`: the outer source address, network byte order (IPv4 uses the first 4
    /// bytes): the director's address on the egress interface, or the prefix of a per-flow source.
    pub tunnel_src: [u8; 16],
    /// How many low bits of [`RealDef::tunnel_src`] are replaced by the flow's hash, so that the
    /// real's NIC spreads decapsulation over its queues (RSS); 0: the address as it is.
    pub tunnel_src_bits: u8,
    pub _pad: [u8; 7],
    /// [`crate::hash::vip_fold`] of the real's virtual service (address, port, protocol): a flow
    /// found by its tag goes to this real only if the packet is for this VIP.
    pub vip_fold: u64,
}

/// One real of a table slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotReal {
    pub real_id: u32,
    /// The weight the schedulers use. 0 = quiescent: no new flows, established ones continue
    /// (also while the real's MAC is not resolved yet).
    pub weight: u32,
}

/// The reals of a table slot, in configuration order ([`VipMeta::n_reals`] of them).
///
/// The per-slot tables are single large array values: user space writes a whole slot with one
/// syscall (array elements are rounded up to 8 bytes, so an array of `u16` would also cost four
/// times the memory).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotReals {
    pub reals: [SlotReal; MAX_REALS_PER_VIP as usize],
}

/// The consistent-hash (Maglev) table of a slot: indexes into [`SlotReals::reals`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ring {
    pub entries: [u16; RING_SIZE as usize],
    /// Rounds the value up to a multiple of 8 bytes.
    pub _pad: [u16; 3],
}

/// The weighted round-robin sequence of a slot ([`VipMeta::wrr_len`] entries): indexes into
/// [`SlotReals::reals`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrrSeq {
    pub entries: [u16; WRR_SEQ_MAX as usize],
}

/// [`FlowSlot::state`] values, after IPVS's TCP states as seen from the client side only.
pub const FLOW_SYN_RECV: u8 = 1;
pub const FLOW_ESTABLISHED: u8 = 2;
/// A FIN or RST was seen from the client.
pub const FLOW_CLOSING: u8 = 3;
/// UDP flows have one state.
pub const FLOW_UDP: u8 = 4;

/// How long a flow may stay idle in a state before it is over (its slot free for another flow,
/// its next packet placed again): IPVS's default timeouts (`ipvsadm --set` shows tcp 900, tcpfin
/// 120, udp 300; SYN_RECV is 60 in ip_vs_proto_tcp.c).
pub const fn flow_timeout_secs(state: u8) -> u32 {
    match state {
        FLOW_ESTABLISHED => 900,
        FLOW_SYN_RECV => 60,
        FLOW_CLOSING => 120,
        _ => 300,
    }
}

/// [`flow_timeout_secs`] in flow-clock units ([`FLOW_CLOCK_SHIFT`]), by state (index `state & 7`):
/// a table, so that the program reads it without a branch per state.
pub const FLOW_TIMEOUTS: [u32; 8] = {
    let mut t = [0; 8];
    let mut state = 0;
    while state < 8 {
        t[state] =
            ((flow_timeout_secs(state as u8) as u64 * 1_000_000_000) >> FLOW_CLOCK_SHIFT) as u32;
        state += 1;
    }
    t
};

/// A program clock reading (ns) as the flow clock.
pub const fn flow_clock(now_ns: u64) -> u32 {
    (now_ns >> FLOW_CLOCK_SHIFT) as u32
}

/// One flow in the flow table (FLOWS4, FLOWS6): an array of [`FlowBucket`]s, each flow in a slot
/// of the bucket its hash selects (see docs/dataplane.md, "The flow table").
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSlot {
    /// The flow's tag (31 bits of a hash of the flow that does not select the bucket, with the
    /// lowest bit set); 0: a free slot.
    pub tag: u32,
    pub real_id: u16,
    /// `FLOW_*`.
    pub state: u8,
    pub _pad: u8,
    /// [`RealDef::generation`] when the flow was placed.
    pub real_generation: u32,
    /// Flow clock ([`flow_clock`]) of the last packet, refreshed at most every
    /// [`LAST_SEEN_GRANULARITY`] (and, for a flow the flow cache serves, at least every
    /// [`CACHE_FRESH_TICKS`]). Wraps after 2.2 years; compared with wrapping arithmetic.
    pub last_seen: u32,
}

impl FlowSlot {
    /// Whether the slot holds a flow that is not over at flow clock `clock`.
    #[inline(always)]
    pub fn live(&self, clock: u32) -> bool {
        self.tag != 0
            && flow_age(clock, self.last_seen) <= FLOW_TIMEOUTS[(self.state & 7) as usize] as i32
    }

    /// Whether the slot's last-seen time is due a refresh at `clock` ([`LAST_SEEN_GRANULARITY`]).
    #[inline(always)]
    pub fn refresh_due(&self, clock: u32) -> bool {
        flow_age(clock, self.last_seen) > LAST_SEEN_GRANULARITY as i32
    }
}

/// How long ago, in flow-clock units, a flow last seen at `last_seen` was seen at `clock`. Signed:
/// a last-seen time ahead of `clock` (written by a CPU, or the program, that read the clock a
/// moment later than the reader) is a flow seen just now, not one 2³² units old.
#[inline(always)]
pub const fn flow_age(clock: u32, last_seen: u32) -> i32 {
    clock.wrapping_sub(last_seen) as i32
}

/// The flow clock: program clock (ns) >> this (2²⁴ ns ≈ 16.8 ms).
pub const FLOW_CLOCK_SHIFT: u32 = 24;

/// How often a flow's last-seen time is refreshed, in flow-clock units (≈ 1 s): often enough for
/// the idle timeouts, rarely enough not to write to the slot on every packet.
pub const LAST_SEEN_GRANULARITY: u32 = 60;

/// One bucket of the flow table: one cache line.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowBucket {
    pub slots: [FlowSlot; crate::maps::FLOW_WAYS as usize],
}

const _: () = assert!(core::mem::size_of::<FlowSlot>() == 16);
const _: () = assert!(core::mem::size_of::<FlowBucket>() == 64);

/// How long a flow cache entry serves packets before one goes to the flow table again to refresh
/// its last-seen time, in kernel ticks (jiffies, which the program reads without a helper call):
/// 1 s at HZ=1000, 4 s at HZ=250, 10 s at HZ=100; the idle timeouts of cached flows (established
/// TCP, UDP) are minutes.
pub const CACHE_FRESH_TICKS: u64 = 1000;

/// What the flow cache keeps of an established flow: enough to forward its next packet without
/// a flow-table lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CachedFlow {
    pub real_id: u32,
    pub real_generation: u32,
    pub vip_index: u32,
    pub _pad: u32,
    /// Program tick (jiffies) when the flow table's entry was last refreshed from this entry.
    pub refreshed_tick: u64,
}

/// An established flow as one CPU's flow cache holds it. The cache is per CPU and
/// direct-mapped (slot = flow hash modulo its size); an entry is used only while its key
/// matches, its real is current and the flow table's entry was refreshed in the last
/// [`CACHE_FRESH_TICKS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cached4 {
    pub key: crate::keys::Flow4Key,
    pub flow: CachedFlow,
}

/// [`Cached4`] for IPv6 flows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cached6 {
    pub key: crate::keys::Flow6Key,
    pub flow: CachedFlow,
}

/// Where the first fragment of a datagram went: its later fragments carry no ports, and follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragEntry {
    pub real_id: u32,
    /// [`RealDef::generation`] when the first fragment was placed.
    pub real_generation: u32,
    /// [`VipMeta::index`] of the datagram's virtual service.
    pub vip_index: u32,
    pub _pad: u32,
    /// Program clock (ns) when the first fragment was seen.
    pub first_seen_ns: u64,
}

/// A packet for an `ipip` real, as the balancer hands it to the tunnel program (per CPU: the tail
/// call runs on the same CPU, right after).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelJob {
    pub real_id: u32,
    /// [`VipMeta::index`] of the packet's virtual service, for its counters.
    pub vip_index: u32,
    /// The frame's length as it arrived, for the counters.
    pub len: u32,
    /// 1 when the packet started a flow.
    pub new_flow: u8,
    /// How many VLAN tags the frame arrived with.
    pub ingress_tags: u8,
    pub _pad: [u8; 2],
}

/// How long a first fragment's real is remembered for its later fragments, in nanoseconds: the
/// kernel's own reassembly timeout (`net.ipv4.ipfrag_time`, 30 s).
pub const FRAG_TIMEOUT_NS: u64 = 30_000_000_000;

/// Where a persistent client goes, and since when.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PersistEntry {
    pub real_id: u32,
    pub real_generation: u32,
    /// Program clock (ns) of the client's last new connection.
    pub last_new_ns: u64,
}

/// Which (address, port, protocol) may be a VIP: one bit per [`crate::hash::vip_filter_bit`],
/// set for every VIP. A packet whose bit is clear is not for a VIP and passes without a hash
/// lookup; a set bit only means "look it up".
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VipFilter {
    pub bits: [u64; VIP_FILTER_WORDS],
}

/// 65536 bits: with 128 VIPs, one packet in 500 not for a VIP is looked up anyway.
pub const VIP_FILTER_WORDS: usize = 1024;

/// Connections of a real, in IPVS's sense: `active` are established TCP flows, `inactive` the
/// others (half-open, closing, UDP).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnCounts {
    pub active: u64,
    pub inactive: u64,
}
