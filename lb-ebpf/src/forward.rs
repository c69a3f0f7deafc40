//! Sending a packet to its real: direct routing rewrites the MACs and transmits (XDP_TX on the
//! ingress interface, a devmap redirect to another), with the real's VLAN tag ([`vlan`]); a
//! tunnel real gets the packet inside an outer IP header first, from the tunnel program
//! ([`crate::tunnel`]); a local real goes to the kernel's stack.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::values::{
    FORWARD_LOCAL, FORWARD_ROUTE, FORWARD_TUNNEL, REAL_F_RESOLVED, RealDef, TunnelJob,
};

use crate::{
    maps::{TUNNEL_JOB, TUNNEL_PROG, TX_PORTS},
    stats, vlan,
};

/// Which flow a packet belongs to, for the counters of its VIP and real: a packet is counted
/// for them only once it really goes to the real.
pub struct Counted {
    pub vip_index: u32,
    pub real_id: u32,
    pub len: u64,
    pub new_flow: bool,
}

/// Sends the frame to `real`; `ingress_tags` is how many VLAN tags it arrived with.
#[inline(always)]
pub fn forward(ctx: &XdpContext, real: &RealDef, counted: Counted, ingress_tags: u8) -> u32 {
    if real.forward == FORWARD_LOCAL {
        stats::global(|s| s.local += 1);
        stats::traffic(
            counted.vip_index,
            counted.real_id,
            counted.len,
            counted.new_flow,
        );
        return xdp_action::XDP_PASS;
    }
    if real.forward == FORWARD_TUNNEL && real.flags & REAL_F_RESOLVED != 0 {
        return to_tunnel(ctx, counted, ingress_tags);
    }
    if real.forward != FORWARD_ROUTE || real.flags & REAL_F_RESOLVED == 0 {
        // The agent only programs reals it can reach; this is a real whose neighbour entry
        // vanished, until the agent resolves it again.
        stats::global(|s| s.unresolved += 1);
        return xdp_action::XDP_DROP;
    }
    transmit(ctx, real, counted, ingress_tags)
}

/// Hands the packet to the tunnel program ([`crate::tunnel`]), which encapsulates it and
/// transmits it.
#[inline(always)]
fn to_tunnel(ctx: &XdpContext, counted: Counted, ingress_tags: u8) -> u32 {
    if let Some(job) = TUNNEL_JOB.get_ptr_mut(0) {
        // SAFETY: a per-CPU array slot; the tail call below runs on this CPU, right after.
        unsafe {
            *job = TunnelJob {
                real_id: counted.real_id,
                vip_index: counted.vip_index,
                len: counted.len as u32,
                new_flow: counted.new_flow as u8,
                ingress_tags,
                _pad: [0; 2],
            };
            TUNNEL_PROG.tail_call(ctx, 0);
        }
    }
    // Only reached when the tunnel program is missing.
    stats::global(|s| s.tunnel_failed += 1);
    xdp_action::XDP_DROP
}

/// Sends the frame, its IP packet ready, to a resolved real: with the real's VLAN tag and MACs,
/// out through the real's interface; `ingress_tags` is how many VLAN tags the frame has.
#[inline(always)]
pub fn transmit(ctx: &XdpContext, real: &RealDef, counted: Counted, ingress_tags: u8) -> u32 {
    // Decide the verdict first: a redirect to an interface missing from TX_PORTS drops the
    // frame, and a dropped frame is left as it came.
    let action = if real.ifindex as usize == ctx.ingress_ifindex() {
        xdp_action::XDP_TX
    } else {
        match TX_PORTS.redirect(real.ifindex, 0) {
            Ok(action) => action,
            Err(_) => {
                stats::global(|s| s.unresolved += 1);
                return xdp_action::XDP_DROP;
            }
        }
    };
    // Untagged in, untagged out (the common case): one compare, nothing else.
    if (ingress_tags != 0 || real.vlan != 0) && vlan::retag(ctx, ingress_tags, real.vlan).is_err() {
        stats::global(|s| s.retag_failed += 1);
        return xdp_action::XDP_DROP;
    }
    let start = ctx.data();
    if start + 12 > ctx.data_end() {
        // Parsing already read the Ethernet header; this cannot happen, but the verifier
        // cannot know.
        return xdp_action::XDP_PASS;
    }
    let eth = start as *mut u8;
    // Written a word at a time: a 6-byte array copy becomes a call to a byte-loop memmove.
    // SAFETY: 12 bytes checked above.
    unsafe {
        let (d, s) = (real.mac, real.src_mac);
        (eth as *mut u32).write_unaligned(u32::from_ne_bytes([d[0], d[1], d[2], d[3]]));
        (eth.add(4) as *mut u32).write_unaligned(u32::from_ne_bytes([d[4], d[5], s[0], s[1]]));
        (eth.add(8) as *mut u32).write_unaligned(u32::from_ne_bytes([s[2], s[3], s[4], s[5]]));
    }
    stats::traffic(
        counted.vip_index,
        counted.real_id,
        counted.len,
        counted.new_flow,
    );
    action
}
