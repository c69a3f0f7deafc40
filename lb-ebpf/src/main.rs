//! xdirectord's XDP program: parse into what the packet is ([`parse::Parsed`]), then its path:
//! a packet with ports goes through the balancer's steps (VIP filter → flow cache → flow table →
//! VIP lookup and scheduling → forward), each of which decides or hands on; a later fragment
//! follows its first ([`frag`]); an ICMP error about a VIP flow goes to the flow's real
//! ([`icmp`]). See `lb_common` for the maps.
//!
//! A packet that is not for a VIP leaves unchanged (XDP_PASS); a malformed one is counted and
//! passed, never forwarded.
#![no_std]
#![no_main]
// Atomic adds on map values: core's atomic types are not available on the BPF target.
#![feature(core_intrinsics)]
#![expect(
    internal_features,
    reason = "atomic_xadd is the only atomic add on the BPF target"
)]

mod clock;
mod conns;
mod family;
mod filter;
mod flows;
mod forward;
mod frag;
mod icmp;
mod maps;
mod parse;
mod schedule;
mod stats;
mod tunnel;
mod vlan;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::{
    IPPROTO_TCP,
    values::{
        CACHE_FRESH_TICKS, CachedFlow, FLOW_CLOSING, FLOW_ESTABLISHED, FLOW_UDP, RealDef, VipMeta,
        flow_clock,
    },
};

use clock::{now, tick};
use family::{Family, V4, V6};
use forward::Counted;
use maps::REALS;
use parse::{Network, NotForUs, Packet, Parsed, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

#[xdp]
pub fn xdirectord(ctx: XdpContext) -> u32 {
    let parsed = match parse::ethernet(&ctx) {
        Ok(Network::V4(l3)) => parse::ipv4(&ctx, l3).map(|p| dispatch::<V4>(&ctx, p)),
        Ok(Network::V6(l3)) => parse::ipv6(&ctx, l3).map(|p| dispatch::<V6>(&ctx, p)),
        Err(why) => Err(why),
    };
    match parsed {
        Ok(action) => action,
        Err(why) => {
            stats::global(|s| match why {
                NotForUs::Other => s.passed += 1,
                NotForUs::Malformed => s.malformed += 1,
                NotForUs::FragmentAbsurd => s.frag_absurd += 1,
                NotForUs::IcmpNotVip => s.icmp_not_vip += 1,
                NotForUs::IcmpBadInner => s.icmp_bad_inner += 1,
            });
            xdp_action::XDP_PASS
        }
    }
}

/// Each kind of packet to its path.
#[inline(always)]
fn dispatch<F: Family>(ctx: &XdpContext, parsed: Parsed<F::Addr>) -> u32 {
    match parsed {
        Parsed::Ports(packet) => balance::<F>(ctx, &packet),
        Parsed::LaterFragment(fragment) => frag::follow::<F>(ctx, &fragment),
        Parsed::IcmpError(quoted) => icmp::to_owner::<F>(ctx, &quoted),
    }
}

/// Flows whose ordinary packets change nothing in the flow table: they may be served from the
/// flow cache.
#[inline(always)]
fn cacheable(state: u8) -> bool {
    state == FLOW_ESTABLISHED || state == FLOW_UDP
}

/// A packet with ports, through the steps in order, each of which either decides (and returns)
/// or hands on: VIP filter, flow cache, flow table, VIP lookup and scheduling. (Written as one
/// function with early returns: split into functions that return "decided" or "continue",
/// LLVM's code for the same steps took the verifier past its million instructions.)
#[inline(always)]
fn balance<F: Family>(ctx: &XdpContext, packet: &Packet<F::Addr>) -> u32 {
    let vip_fold = F::vip_fold(packet);
    if !filter::maybe_vip(vip_fold) {
        stats::global(|s| s.passed += 1);
        return xdp_action::XDP_PASS;
    }
    let is_tcp = packet.proto == IPPROTO_TCP;
    let flags = packet.tcp_flags;
    let syn = is_tcp && flags & TCP_SYN != 0 && flags & TCP_ACK == 0;
    let cache_hash = F::cache_hash(vip_fold, packet);
    let slot = F::cache_slot(cache_hash);

    // Step: the flow cache. An established flow's ordinary packet (no SYN, FIN or RST: nothing
    // to track), from this CPU's flow cache, while the flow table's entry is fresh.
    if (!is_tcp || flags & (TCP_SYN | TCP_FIN | TCP_RST) == 0)
        && let Some(slot) = slot
        // SAFETY: a per-CPU array slot, only this CPU reads and writes it.
        && let Some(cached) = F::cached(unsafe { &*slot }, packet)
        && let Some(real) = schedule::usable_real(cached.real_id, cached.real_generation, cached.vip_index)
        && tick().wrapping_sub(cached.refreshed_tick) <= CACHE_FRESH_TICKS
    {
        let counted = Counted {
            vip_index: cached.vip_index,
            real_id: cached.real_id,
            len: packet.len as u64,
            new_flow: false,
        };
        return to_real::<F>(ctx, packet, real, counted);
    }

    let flow_key = F::flow_key(packet);
    let now = now();
    let clock = flow_clock(now);
    // Whether the flow would start established (or UDP): such a flow may push a half-open one
    // out of a full bucket. (Its state itself is worked out after the scheduling: carried over
    // it, each state would have the verifier walk the schedulers once more.)
    let settled = !is_tcp || flags & (TCP_SYN | TCP_FIN | TCP_RST) == 0;
    // The flow's hash: its bucket, and its place in the consistent-hash table.
    let flow_hash = F::flow_hash(&flow_key);
    let bucket = flows::bucket::<F>(flow_hash, cache_hash, clock, settled);
    // Step: the flow table. A known flow goes to its real without a VIP lookup: its real still
    // has the generation the flow remembers (a removed real or VIP has not), and belongs to the
    // packet's VIP (tags are 31 bits: a tag shared by two flows never crosses virtual services).
    if let Some(flow) = bucket.found::<F>() {
        // SAFETY: a slot of the flow table; another CPU may write it at the same moment, which
        // at worst sends this packet where that CPU's flow goes.
        let flow = unsafe { &mut *flow };
        if flow.live(clock)
            && let Some(real) = schedule::flow_real(flow.real_id, flow.real_generation, vip_fold)
        {
            if !(syn && flow.state == FLOW_CLOSING) {
                if is_tcp {
                    conns::track(flow, flags);
                }
                if flow.refresh_due(clock) {
                    flow.last_seen = clock;
                }
                let counted = Counted {
                    vip_index: real.vip_index,
                    real_id: flow.real_id as u32,
                    len: packet.len as u64,
                    new_flow: false,
                };
                if cacheable(flow.state)
                    && let Some(slot) = slot
                {
                    // SAFETY: as above.
                    F::cache(
                        unsafe { &mut *slot },
                        &flow_key,
                        cached(&counted, real, tick()),
                    );
                }
                return to_real::<F>(ctx, packet, real, counted);
            }
            // A new connection on the tuple of a closed one: forget the old, place the new, and
            // make sure no CPU's cache still sends it to the old real.
            conns::closed(flow.real_id as u32, flow.state);
            F::uncache_everywhere(cache_hash);
        }
        // Otherwise it is over (idle past its timeout) or its real was removed: place the flow
        // again, in the same slot.
    }

    // Step: the VIP and its persistence or scheduler; the flow is remembered if its bucket has
    // room for it. A flow that is not remembered is placed where its next packets will find it
    // again without the table: by persistence or the consistent-hash table.
    let Some(meta) = F::vip(packet) else {
        stats::global(|s| s.passed += 1);
        return xdp_action::XDP_PASS;
    };
    // SAFETY: VIPS maps are BPF_F_NO_PREALLOC: the element stays valid for this program run.
    let meta: &VipMeta = unsafe { &*meta };
    // Only the room's way is carried over the scheduling: counted here, an eviction is one
    // decided (the packet may still find no real and be dropped).
    let room = bucket.room();
    if !room.stored() {
        stats::global(|s| s.flow_table_full += 1);
    } else if room.evicts {
        stats::global(|s| s.flow_evicted += 1);
    }
    let lost = is_tcp && !syn;
    if lost {
        stats::global(|s| s.flow_miss_non_syn += 1);
    }
    let real_id = if lost || !room.stored() {
        schedule::for_lost_flow::<F>(meta, packet, flow_hash, now)
    } else {
        schedule::for_new_flow::<F>(meta, packet, flow_hash, now)
    };
    let Some(real_id) = real_id else {
        stats::global(|s| s.no_real += 1);
        return xdp_action::XDP_DROP;
    };
    let Some(real) = REALS.get(real_id) else {
        stats::global(|s| s.no_real += 1);
        return xdp_action::XDP_DROP;
    };
    let counted = Counted {
        vip_index: meta.index,
        real_id,
        len: packet.len as u64,
        new_flow: true,
    };
    if room.stored() {
        let state = conns::initial_state(is_tcp, flags);
        bucket.write::<F>(&room, real_id, real.generation, state, clock);
        conns::opened(real_id, state);
        if cacheable(state)
            && let Some(slot) = slot
        {
            // SAFETY: as above.
            F::cache(
                unsafe { &mut *slot },
                &flow_key,
                cached(&counted, real, tick()),
            );
        }
    }
    to_real::<F>(ctx, packet, real, counted)
}

/// What the flow cache keeps of a flow going to `real`, refreshed at `tick`.
#[inline(always)]
fn cached(counted: &Counted, real: &RealDef, tick: u64) -> CachedFlow {
    CachedFlow {
        real_id: counted.real_id,
        real_generation: real.generation,
        vip_index: counted.vip_index,
        _pad: 0,
        refreshed_tick: tick,
    }
}

/// Sends a packet to the real a step chose; a first fragment's real is remembered for the
/// fragments after it.
#[inline(always)]
fn to_real<F: Family>(
    ctx: &XdpContext,
    packet: &Packet<F::Addr>,
    real: &RealDef,
    counted: Counted,
) -> u32 {
    if let Some(id) = packet.first_fragment {
        frag::remember::<F>(packet, id, real, &counted);
    }
    forward::forward(ctx, real, counted, packet.vlan_tags)
}

lb_ebpf::program_object!();
