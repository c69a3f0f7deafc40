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
    /// IP fragments; passed to the kernel.
    pub fragments: u64,
    /// ICMP and ICMPv6 errors; passed to the kernel.
    pub icmp_errors: u64,
    /// Packets for a local real or fallback, passed to the local stack.
    pub local: u64,
    /// Packets for a real whose MAC is not known yet; dropped.
    pub unresolved: u64,
}
