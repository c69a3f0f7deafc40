//! Counter helpers over the per-CPU stats maps (no atomics needed: each CPU has its own copy).

use lb_common::stats::GlobalStats;

use crate::maps::{GLOBAL_STATS, REAL_STATS, VIP_STATS};

#[inline(always)]
pub fn global(count: impl FnOnce(&mut GlobalStats)) {
    if let Some(stats) = GLOBAL_STATS.get_ptr_mut(0) {
        // SAFETY: a per-CPU array slot, only this CPU writes it.
        count(unsafe { &mut *stats });
    }
}

/// Counts a packet (and a new flow) for a VIP and one of its reals.
#[inline(always)]
pub fn traffic(vip_index: u32, real_id: u32, len: u64, new_flow: bool) {
    let new = new_flow as u64;
    if let Some(stats) = VIP_STATS.get_ptr_mut(vip_index) {
        // SAFETY: as above.
        let stats = unsafe { &mut *stats };
        stats.packets += 1;
        stats.bytes += len;
        stats.new_flows += new;
    }
    if let Some(stats) = REAL_STATS.get_ptr_mut(real_id) {
        // SAFETY: as above.
        let stats = unsafe { &mut *stats };
        stats.packets += 1;
        stats.bytes += len;
        stats.new_flows += new;
    }
}
