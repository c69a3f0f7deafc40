//! Fragments: a datagram's first fragment carries the ports and is placed like any packet; where
//! it went is remembered (FRAGS4, FRAGS6) so that the later fragments, which carry no ports,
//! follow it to the same real, where the datagram is reassembled.
//!
//! A later fragment whose first is not remembered (it arrived first, was remembered more than
//! [`FRAG_TIMEOUT_NS`] ago, or the datagram is not for a VIP) goes to the kernel: the director's
//! own reassembly, as under IPVS, rather than a silent loss.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::values::{FRAG_TIMEOUT_NS, FragEntry, RealDef};

use crate::{
    clock::now,
    family::Family,
    forward::{self, Counted},
    parse::{Fragment, Packet},
    schedule, stats,
};

/// Remembers where the first fragment `packet` of datagram `id` goes.
#[inline(always)]
pub fn remember<F: Family>(packet: &Packet<F::Addr>, id: u32, real: &RealDef, to: &Counted) {
    let key = F::frag_key(packet.addrs, id, packet.proto);
    let entry = FragEntry {
        real_id: to.real_id,
        real_generation: real.generation,
        vip_index: to.vip_index,
        _pad: 0,
        first_seen_ns: now(),
    };
    F::insert_frag(&key, &entry);
    stats::global(|s| s.frag_first += 1);
}

/// Sends a later fragment where its first fragment went, or to the kernel.
#[inline(always)]
pub fn follow<F: Family>(ctx: &XdpContext, fragment: &Fragment) -> u32 {
    let key = F::frag_key(fragment.addrs, fragment.id, fragment.proto);
    if let Some(entry) = F::frag(&key) {
        // SAFETY: read before any other operation on the map.
        let entry = unsafe { &*entry };
        if now().wrapping_sub(entry.first_seen_ns) <= FRAG_TIMEOUT_NS
            && let Some(real) =
                schedule::usable_real(entry.real_id, entry.real_generation, entry.vip_index)
        {
            let counted = Counted {
                vip_index: entry.vip_index,
                real_id: entry.real_id,
                len: fragment.len as u64,
                new_flow: false,
            };
            let action = forward::forward(ctx, real, counted, fragment.vlan_tags);
            if action != xdp_action::XDP_DROP {
                stats::global(|s| s.frag_later += 1);
            }
            return action;
        }
    }
    stats::global(|s| s.frag_unknown += 1);
    xdp_action::XDP_PASS
}
