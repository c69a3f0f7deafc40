//! The benchmark's floor for a new flow (`memory-floor`): one random read from memory the size of
//! the flow table, and nothing else a flow table does. Per packet it hashes the source address
//! and TCP source port as the balancer's flow cache does (`lb_common::hash::cache_hash`: a
//! multiply per word and one to mix), picks a bucket with Lemire's multiply-shift
//! (`hash * buckets >> 32`), reads the first slot's tag and compares it with the flow's, then
//! returns XDP_TX. The comparison decides the verdict (a match passes), so the read stays; a
//! zeroed map never matches (a flow's tag is never 0), so the verdict is XDP_TX.
//!
//! `BUCKETS` has one element here; `cargo xtask bench` sets its `max_entries` and the
//! [`FLOW_BUCKETS`] global to `lb_common::maps::flow_buckets(capacity)` at load. It runs behind
//! the flow maker (`xdp-bench-driver`), so every run reads a different bucket. The frame must be
//! Ethernet (no VLAN tag), IPv4 without options or IPv6 without extension headers, then TCP.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::Array,
    programs::XdpContext,
};
use lb_common::{hash, values::FlowBucket};

const ETH_HLEN: usize = 14;

/// The flow table's memory: 64-byte buckets, as many as the real table of that capacity has.
#[map]
static BUCKETS: Array<FlowBucket> = Array::with_max_entries(1, 0);

/// Buckets in `BUCKETS` (`.rodata`, set by the loader: the verifier then knows it).
#[unsafe(no_mangle)]
static FLOW_BUCKETS: u32 = 1;

#[xdp]
pub fn xdp_memory_floor(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN + 1 > end {
        return xdp_action::XDP_ABORTED;
    }
    let ip = start + ETH_HLEN;
    // SAFETY: the byte is within the frame (checked above).
    let hash = match unsafe { *(ip as *const u8) } >> 4 {
        4 if ip + 22 <= end => {
            // SAFETY: the source address (12..16) and port (20..22) lie in the frame.
            let (src, sport) = unsafe {
                (
                    (ip as *const u8).add(12).cast::<u32>().read_unaligned(),
                    (ip as *const u8).add(20).cast::<u16>().read_unaligned(),
                )
            };
            hash::cache_hash(0, &[src as u64], sport)
        }
        6 if ip + 42 <= end => {
            // SAFETY: the source address (8..24) and port (40..42) lie in the frame.
            let (src, sport) = unsafe {
                let p = ip as *const u8;
                (
                    [
                        p.add(8).cast::<u64>().read_unaligned(),
                        p.add(16).cast::<u64>().read_unaligned(),
                    ],
                    p.add(40).cast::<u16>().read_unaligned(),
                )
            };
            hash::cache_hash(0, &src, sport)
        }
        _ => return xdp_action::XDP_ABORTED,
    };
    // SAFETY: a plain read of a global the loader may have rewritten (volatile: not the
    // compiler's constant).
    let buckets = unsafe { core::ptr::read_volatile(&FLOW_BUCKETS) };
    let index = ((hash as u64 * buckets as u64) >> 32) as u32;
    let Some(bucket) = BUCKETS.get(index) else {
        return xdp_action::XDP_ABORTED;
    };
    // The tag a flow table would keep: bits the bucket's index did not use, never 0.
    let tag = hash.rotate_left(16) | 1;
    if bucket.slots[0].tag == tag {
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_TX
    }
}

lb_ebpf::program_object!();
