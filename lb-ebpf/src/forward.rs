//! Sending a packet to its real: direct routing rewrites the MACs and transmits (XDP_TX on the
//! ingress interface, a devmap redirect to another); a local real goes to the kernel's stack.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use lb_common::values::{FORWARD_LOCAL, FORWARD_ROUTE, REAL_F_RESOLVED, RealDef};

use crate::{maps::TX_PORTS, stats};

#[inline(always)]
pub fn forward(ctx: &XdpContext, real: &RealDef) -> u32 {
    if real.forward == FORWARD_LOCAL {
        stats::global(|s| s.local += 1);
        return xdp_action::XDP_PASS;
    }
    if real.forward != FORWARD_ROUTE || real.flags & REAL_F_RESOLVED == 0 {
        // The agent only programs reals it can reach; this is a real whose neighbour entry
        // vanished, until the agent resolves it again.
        stats::global(|s| s.unresolved += 1);
        return xdp_action::XDP_DROP;
    }
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
    let start = ctx.data();
    if start + 12 > ctx.data_end() {
        // Parsing already read the Ethernet header; this cannot happen, but the verifier
        // cannot know.
        return xdp_action::XDP_PASS;
    }
    let eth = start as *mut [u8; 6];
    // SAFETY: 12 bytes checked above.
    unsafe {
        eth.write_unaligned(real.mac);
        eth.add(1).write_unaligned(real.src_mac);
    }
    if action == xdp_action::XDP_TX {
        stats::global(|s| s.tx += 1);
    } else {
        stats::global(|s| s.redirected += 1);
    }
    action
}
