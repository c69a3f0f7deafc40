//! Choosing a real for a flow the table does not know: persistence first, then the virtual
//! service's scheduler for a connection start, or the consistent-hash table for a mid-stream
//! packet whose flow was lost. User space's model of these rules lives in
//! `lb-userspace/src/backend/xdp/model.rs` and must agree with this file.

use core::ffi::c_void;

use aya_ebpf::helpers::bpf_loop;
use lb_common::{
    hash,
    maps::MAX_REALS_PER_VIP,
    values::{PersistEntry, RealDef, Scheduler, SlotReal, VIP_F_PERSISTENT, VipMeta},
};

use crate::{
    conns,
    family::Family,
    maps::{REALS, RINGS, SLOT_REALS, WRR_CURSORS, WRR_SEQS},
    parse::Packet,
};

const NS_PER_SEC: u64 = 1_000_000_000;

/// The real with this id, if it still is the one a flow or template recorded.
#[inline(always)]
pub fn usable_real(real_id: u32, generation: u32, vip_index: u32) -> Option<&'static RealDef> {
    if real_id == 0 {
        return None;
    }
    let real = REALS.get(real_id)?;
    (real.generation == generation && real.vip_index == vip_index).then_some(real)
}

/// The real a flow-table slot names, if it is still the one the flow was placed on (same
/// generation) and belongs to the packet's VIP (`vip_fold`, [`Family::vip_fold`]).
#[inline(always)]
pub fn flow_real(real_id: u16, generation: u32, vip_fold: u64) -> Option<&'static RealDef> {
    if real_id == 0 {
        return None;
    }
    let real = REALS.get(real_id as u32)?;
    (real.generation == generation && real.vip_fold == vip_fold).then_some(real)
}

#[inline(always)]
fn slot_real(meta: &VipMeta, index: u32) -> Option<&'static SlotReal> {
    SLOT_REALS.get(meta.slot)?.reals.get(index as usize)
}

#[inline(always)]
fn ring(meta: &VipMeta, hash: u32) -> Option<u32> {
    // LLVM proves the entry in range and drops the slice's bounds check; verifiers before
    // Linux 6.7 lose the bounds of a XOR with an unknown value (the hash's mixing), so nothing
    // would bound the offset for them (6.1: "R0 max value is outside of the allowed memory
    // range"). Hidden from LLVM, the check stays and bounds it for every verifier.
    let entry = core::hint::black_box(hash::ring_index(hash));
    let index = *RINGS.get(meta.slot)?.entries.get(entry as usize)?;
    Some(slot_real(meta, index as u32)?.real_id)
}

/// Persistence: the real this client was sent to, while its template lives. A new connection
/// (`refresh`) restarts the template's timeout.
#[inline(always)]
fn persistent_real<F: Family>(
    meta: &VipMeta,
    key: &F::PersistKey,
    now: u64,
    refresh: bool,
) -> Option<u32> {
    // SAFETY: the pointer comes from a map lookup and is used before any other map operation.
    let entry = unsafe { &mut *F::persist(key)? };
    if now.wrapping_sub(entry.last_new_ns) > meta.persist_timeout_secs as u64 * NS_PER_SEC {
        return None;
    }
    usable_real(entry.real_id, entry.real_generation, meta.index)?;
    if refresh {
        entry.last_new_ns = now;
    }
    Some(entry.real_id)
}

/// A real for a connection start (TCP SYN, a UDP flow's first packet).
#[inline(always)]
pub fn for_new_flow<F: Family>(
    meta: &VipMeta,
    packet: &Packet<F::Addr>,
    flow_hash: u32,
    now: u64,
) -> Option<u32> {
    if meta.flags & VIP_F_PERSISTENT == 0 {
        return by_scheduler::<F>(meta, packet, flow_hash);
    }
    let key = F::persist_key(packet, &meta.persist_mask, meta.index);
    if let Some(real_id) = persistent_real::<F>(meta, &key, now, true) {
        return Some(real_id);
    }
    let real_id = by_scheduler::<F>(meta, packet, flow_hash)?;
    // No template to the fallback: clients return to the reals as soon as one is back.
    if real_id != meta.fallback {
        let real = REALS.get(real_id)?;
        let entry = PersistEntry {
            real_id,
            real_generation: real.generation,
            last_new_ns: now,
        };
        F::insert_persist(&key, &entry);
    }
    Some(real_id)
}

/// A real for a mid-stream packet whose flow the table lost (restart, eviction, a removed real):
/// where persistence or the consistent-hash table says, so that as few flows as possible move.
#[inline(always)]
pub fn for_lost_flow<F: Family>(
    meta: &VipMeta,
    packet: &Packet<F::Addr>,
    flow_hash: u32,
    now: u64,
) -> Option<u32> {
    if meta.n_live == 0 {
        return fallback(meta);
    }
    if meta.flags & VIP_F_PERSISTENT != 0 {
        let key = F::persist_key(packet, &meta.persist_mask, meta.index);
        if let Some(real_id) = persistent_real::<F>(meta, &key, now, false) {
            return Some(real_id);
        }
    }
    ring(meta, ring_hash::<F>(meta, packet, flow_hash))
}

#[inline(always)]
fn fallback(meta: &VipMeta) -> Option<u32> {
    (meta.fallback != 0).then_some(meta.fallback)
}

/// The hash that indexes the consistent-hash table: what the scheduler hashes on, or the flow
/// (`flow_hash`, [`Family::flow_hash`], which also picked the flow's bucket).
#[inline(always)]
fn ring_hash<F: Family>(meta: &VipMeta, packet: &Packet<F::Addr>, flow_hash: u32) -> u32 {
    if meta.scheduler == Scheduler::Sh as u32 {
        F::addr_hash(&F::src(packet))
    } else if meta.scheduler == Scheduler::Dh as u32 {
        F::addr_hash(&F::dst(packet))
    } else {
        flow_hash
    }
}

#[inline(always)]
fn by_scheduler<F: Family>(
    meta: &VipMeta,
    packet: &Packet<F::Addr>,
    flow_hash: u32,
) -> Option<u32> {
    if meta.n_live == 0 {
        return fallback(meta);
    }
    let s = meta.scheduler;
    if s == Scheduler::Wrr as u32 || s == Scheduler::Rr as u32 {
        round_robin(meta)
    } else if s == Scheduler::Sh as u32 || s == Scheduler::Dh as u32 || s == Scheduler::Mh as u32 {
        ring(meta, ring_hash::<F>(meta, packet, flow_hash))
    } else {
        least_connections(meta)
    }
}

/// The next real of the slot's weighted sequence, from this CPU's cursor.
#[inline(always)]
fn round_robin(meta: &VipMeta) -> Option<u32> {
    let cursor = WRR_CURSORS.get_ptr_mut(meta.slot)?;
    // SAFETY: a per-CPU array slot, only this CPU writes it.
    let cursor = unsafe { &mut *cursor };
    let position = if *cursor >= meta.wrr_len { 0 } else { *cursor };
    *cursor = position + 1;
    let index = *WRR_SEQS.get(meta.slot)?.entries.get(position as usize)?;
    Some(slot_real(meta, index as u32)?.real_id)
}

/// State of a least-connection search, carried across `bpf_loop` iterations.
#[repr(C)]
struct LeastConnections {
    slot: u32,
    n_reals: u32,
    scheduler: u32,
    best_id: u32,
    best_overhead: u64,
    best_weight: u64,
}

/// lc, wlc, sed and nq over the slot's reals, with IPVS's formulas and tie-breaking (the first
/// real in order wins a tie). The scan runs in `bpf_loop`, which the verifier checks once rather
/// than once per real.
#[inline(always)]
fn least_connections(meta: &VipMeta) -> Option<u32> {
    let mut search = LeastConnections {
        slot: meta.slot,
        n_reals: meta.n_reals,
        scheduler: meta.scheduler,
        best_id: 0,
        best_overhead: 0,
        best_weight: 0,
    };
    // SAFETY: the callback only reads and writes `search`, which outlives the call.
    unsafe {
        bpf_loop(
            MAX_REALS_PER_VIP,
            least_connections_step as *mut c_void,
            (&raw mut search).cast(),
            0,
        );
    }
    (search.best_id != 0).then_some(search.best_id)
}

/// One real of the least-connection scan: 0 to go on, 1 to stop.
#[inline(never)]
extern "C" fn least_connections_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `LeastConnections` that `least_connections` passed to bpf_loop.
    let search = unsafe { &mut *ctx.cast::<LeastConnections>() };
    if i >= search.n_reals as u64 {
        return 1;
    }
    let Some(real) = SLOT_REALS
        .get(search.slot)
        .and_then(|slot| slot.reals.get(i as usize))
    else {
        return 1;
    };
    if real.weight == 0 {
        return 0;
    }
    let s = search.scheduler;
    let (active, inactive) = conns::counts(real.real_id);
    if s == Scheduler::Nq as u32 && active == 0 {
        // nq: an idle real is taken at once.
        search.best_id = real.real_id;
        return 1;
    }
    let overhead = if s == Scheduler::Sed as u32 || s == Scheduler::Nq as u32 {
        active + 1
    } else {
        (active << 8) + inactive
    };
    let weight = real.weight as u64;
    let better = search.best_id == 0
        || if s == Scheduler::Lc as u32 {
            overhead < search.best_overhead
        } else {
            search.best_overhead * weight > overhead * search.best_weight
        };
    if better {
        search.best_id = real.real_id;
        search.best_overhead = overhead;
        search.best_weight = weight;
    }
    0
}
