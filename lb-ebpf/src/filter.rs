//! The VIP filter: whether a destination may be a VIP, decided before any hash-table lookup.

use lb_common::hash;

use crate::maps::VIP_FILTER;

/// Whether the VIP filter lets a destination (its [`hash::vip_fold`]) through to the lookups.
#[inline(always)]
pub fn maybe_vip(vip_fold: u64) -> bool {
    let bit = hash::vip_filter_bit(vip_fold);
    let Some(filter) = VIP_FILTER.get(0) else {
        return true;
    };
    filter
        .bits
        .get((bit >> 6) as usize)
        .is_none_or(|word| word & (1 << (bit & 63)) != 0)
}
