//! Counters, per CPU. User space sums the CPUs.

/// Traffic of a VIP or a real.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
pub struct TrafficStats {
    pub packets: u64,
    /// Bytes of the frames, Ethernet header included.
    pub bytes: u64,
    /// Flows placed (a SYN, a first UDP packet, or a non-SYN flow-table miss).
    pub new_flows: u64,
}

/// Program-wide counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
pub struct GlobalStats {
    /// Packets not for a VIP, passed unchanged.
    pub passed: u64,
    /// Packets whose headers end before they should; passed, never forwarded.
    pub malformed: u64,
    /// Packets for a VIP that had no usable real and no fallback; dropped.
    pub no_real: u64,
    /// TCP packets without SYN that found no flow: placed by the consistent-hash table.
    pub flow_miss_non_syn: u64,
    /// First fragments of a datagram for a VIP: placed like any packet, and remembered (FRAGS4,
    /// FRAGS6) so that the later fragments follow them to the same real.
    pub frag_first: u64,
    /// Later fragments (no ports) sent to the real their first fragment went to.
    pub frag_later: u64,
    /// Later fragments with no remembered first fragment (it came later or long ago, or the
    /// datagram is not for a VIP): passed to the kernel.
    pub frag_unknown: u64,
    /// Fragments whose offset and length reach beyond an IP datagram's 65,535 bytes, or whose
    /// length fields contradict their headers: passed, never forwarded.
    pub frag_absurd: u64,
    /// ICMP / ICMPv6 errors about a flow the flow table knows: sent to the flow's real.
    pub icmp_to_flow: u64,
    /// ICMP / ICMPv6 errors about a VIP flow the flow table does not know: sent where
    /// persistence or the consistent-hash table places the flow.
    pub icmp_hashed: u64,
    /// ICMP / ICMPv6 errors about a packet no VIP sent: passed unchanged.
    pub icmp_not_vip: u64,
    /// ICMP / ICMPv6 errors whose quoted packet is cut short, lies (version, header length, a
    /// source that is not the error's destination) or shows no ports: passed, never forwarded.
    pub icmp_bad_inner: u64,
    /// Packets for a local real or fallback, passed to the local stack.
    pub local: u64,
    /// Packets for a real whose MAC is not known yet; dropped.
    pub unresolved: u64,
    /// Packets for a real whose 802.1Q tag could not be pushed or popped (the driver left no
    /// headroom for it); dropped.
    pub retag_failed: u64,
    /// Packets encapsulated (IPIP, IP6IP6) towards an `ipip` real.
    pub tunnelled: u64,
    /// Packets for an `ipip` real that would not fit its egress MTU once encapsulated, answered
    /// with ICMP "fragmentation needed" / ICMPv6 "packet too big".
    pub tunnel_too_big: u64,
    /// Packets for an `ipip` real that would not fit its egress MTU and that the program does
    /// not answer (IPv4 without "don't fragment", ICMP messages, runts): passed to the kernel.
    pub tunnel_too_big_passed: u64,
    /// Packets the kernel gave no room for an outer header; dropped.
    pub tunnel_failed: u64,
    /// Half-open or closing flows pushed out of a full flow-table bucket by a new flow (live
    /// established flows are never pushed out).
    pub flow_evicted: u64,
    /// New flows that found their bucket full of live established flows: forwarded without
    /// state, where the consistent-hash table places them (see docs/dataplane.md).
    pub flow_table_full: u64,
}
