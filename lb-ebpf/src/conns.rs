//! Per-real connection counts (IPVS's ActiveConn / InActConn), kept by the program with atomic
//! adds on flow state changes, and the TCP state of a flow as seen from the client side.
//!
//! The agent corrects for flows that ended silently (timed out, evicted) in CONNS_EXPIRED; the
//! count a scheduler reads is CONNS − CONNS_EXPIRED.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use lb_common::values::{
    ConnCounts, FLOW_CLOSING, FLOW_ESTABLISHED, FLOW_SYN_RECV, FLOW_UDP, FlowSlot,
};

use crate::{
    maps::{CONNS, CONNS_EXPIRED},
    parse::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

#[inline(always)]
fn add(real_id: u32, active: u64, inactive: u64) {
    let Some(counts) = CONNS.get_ptr_mut(real_id) else {
        return;
    };
    // SAFETY: array values live as long as the map and are 8-byte aligned; every CPU updates
    // them, hence atomic adds (core's AtomicU64 is not available on the BPF target).
    unsafe {
        if active != 0 {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*counts).active, active);
        }
        if inactive != 0 {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
                &raw mut (*counts).inactive,
                inactive,
            );
        }
    }
}

const MINUS_ONE: u64 = u64::MAX;

/// The state a flow starts in, from its first packet.
#[inline(always)]
pub fn initial_state(is_tcp: bool, flags: u8) -> u8 {
    if !is_tcp {
        FLOW_UDP
    } else if flags & (TCP_FIN | TCP_RST) != 0 {
        FLOW_CLOSING
    } else if flags & TCP_SYN != 0 {
        FLOW_SYN_RECV
    } else {
        // A mid-stream packet of a flow the table lost: it was established.
        FLOW_ESTABLISHED
    }
}

/// Counts a new flow in `state`.
#[inline(always)]
pub fn opened(real_id: u32, state: u8) {
    if state == FLOW_ESTABLISHED {
        add(real_id, 1, 0);
    } else {
        add(real_id, 0, 1);
    }
}

/// Forgets a flow that ended in `state` and is being replaced (a new SYN on a closed tuple).
#[inline(always)]
pub fn closed(real_id: u32, state: u8) {
    if state == FLOW_ESTABLISHED {
        add(real_id, MINUS_ONE, 0);
    } else {
        add(real_id, 0, MINUS_ONE);
    }
}

/// Moves a TCP flow along SYN_RECV → ESTABLISHED → CLOSING on a packet from the client.
#[inline(always)]
pub fn track(flow: &mut FlowSlot, flags: u8) {
    let closing = flags & (TCP_FIN | TCP_RST) != 0;
    match flow.state {
        FLOW_SYN_RECV if closing => flow.state = FLOW_CLOSING,
        FLOW_SYN_RECV if flags & TCP_ACK != 0 && flags & TCP_SYN == 0 => {
            flow.state = FLOW_ESTABLISHED;
            add(flow.real_id as u32, 1, MINUS_ONE);
        }
        FLOW_ESTABLISHED if closing => {
            flow.state = FLOW_CLOSING;
            add(flow.real_id as u32, MINUS_ONE, 1);
        }
        _ => {}
    }
}

/// Active and inactive connections of a real, as the least-connection schedulers see them.
#[inline(always)]
pub fn counts(real_id: u32) -> (u64, u64) {
    let zero = ConnCounts::default();
    // SAFETY: plain reads of array values; a torn read only skews one scheduling decision.
    let kept = CONNS.get(real_id).unwrap_or(&zero);
    let expired = CONNS_EXPIRED.get(real_id).unwrap_or(&zero);
    let active = kept.active.wrapping_sub(expired.active);
    let inactive = kept.inactive.wrapping_sub(expired.inactive);
    // A correction can briefly overtake the count it corrects; never go below zero.
    (
        if (active as i64) < 0 { 0 } else { active },
        if (inactive as i64) < 0 { 0 } else { inactive },
    )
}
