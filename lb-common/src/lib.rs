//! Types shared by the XDP program (`lb-ebpf`) and user space: the layout of every map, its name,
//! its size, and the few pure functions both sides must compute identically (the flow hash).
//!
//! Everything here is `#[repr(C)]` with explicit padding: the kernel hashes every byte of a key,
//! so a padding byte left to chance would make lookups miss at random. With the `user` feature the
//! types implement `aya::Pod` so user space can read and write them.
//!
//! # Layout
//! * [`maps`]: map names and sizes.
//! * [`keys`]: keys of the hash maps (VIPs, flows, persistence, fragmented datagrams).
//! * [`values`]: what the program reads (VIP metadata, reals, per-VIP tables) and writes (flows,
//!   persistence, connection counts).
//! * [`stats`]: the counters.
//! * [`hash`]: the flow hash, used by the program and by user space's model of it.
#![no_std]

pub mod hash;
pub mod keys;
pub mod maps;
pub mod stats;
pub mod values;

/// Version of the map layout. Pinned maps are reused across agent restarts only when the pinned
/// `INFO` map carries the same version; a new layout starts from fresh maps.
pub const LAYOUT_VERSION: u32 = 4;

/// `family` field values (the kernel's AF_INET / AF_INET6).
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// `proto` field values (IANA protocol numbers).
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

#[cfg(feature = "user")]
mod pod {
    use super::{keys::*, stats::*, values::*};
    // SAFETY: all of these are #[repr(C)], Copy, with explicit padding and no pointers.
    unsafe impl aya::Pod for Vip4Key {}
    unsafe impl aya::Pod for Vip6Key {}
    unsafe impl aya::Pod for Flow4Key {}
    unsafe impl aya::Pod for Flow6Key {}
    unsafe impl aya::Pod for Persist4Key {}
    unsafe impl aya::Pod for Persist6Key {}
    unsafe impl aya::Pod for Frag4Key {}
    unsafe impl aya::Pod for Frag6Key {}
    unsafe impl aya::Pod for FragEntry {}
    unsafe impl aya::Pod for VipMeta {}
    unsafe impl aya::Pod for RealDef {}
    unsafe impl aya::Pod for TunnelJob {}
    unsafe impl aya::Pod for SlotReal {}
    unsafe impl aya::Pod for SlotReals {}
    unsafe impl aya::Pod for Ring {}
    unsafe impl aya::Pod for WrrSeq {}
    unsafe impl aya::Pod for FlowSlot {}
    unsafe impl aya::Pod for FlowBucket {}
    unsafe impl aya::Pod for PersistEntry {}
    unsafe impl aya::Pod for ConnCounts {}
    unsafe impl aya::Pod for VipFilter {}
    unsafe impl aya::Pod for Cached4 {}
    unsafe impl aya::Pod for Cached6 {}
    unsafe impl aya::Pod for TrafficStats {}
    unsafe impl aya::Pod for GlobalStats {}
}
