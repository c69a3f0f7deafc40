//! 802.1Q tags on the way out: a forwarded frame leaves with exactly the tag of its real's VLAN
//! (none for a real reached untagged), whatever tags it arrived with: a director on a trunk
//! receives a client's frame on one VLAN and sends it to a real on another.
//!
//! Every change of shape moves the start of the frame (`bpf_xdp_adjust_head`) and moves no
//! bytes: the ethertype before the IP header stays where it is, and the MACs in front of the tag
//! are written afresh by the forwarding step anyway.
//!
//! | arrived with        | real on VLAN v                           | real untagged    |
//! |---------------------|------------------------------------------|------------------|
//! | no tag              | head −4, tag (0x8100, PCP 0, v) written  | nothing to do    |
//! | one tag             | VID ← v in place, its PCP and DEI kept   | head +4          |
//! | two tags (QinQ)     | head +4, the inner tag becomes (0x8100, its PCP and DEI, v) | head +8 |
//!
//! The tag always leaves as 802.1Q (TPID 0x8100), as a Linux VLAN device sends it; the agent
//! refuses reals behind 802.1ad or stacked VLAN devices (`paths.rs`). A QinQ frame's outer tag
//! names the provider's segment it arrived on, which says nothing about where a real is: the real's
//! path, read from the director's kernel, decides the tag, as it does for every other frame.

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};

use crate::parse::ETH_P_8021Q;

/// Bytes of one tag (TPID and TCI).
const VLAN_HLEN: i32 = 4;
/// Where the tag goes: after the two MACs.
const TAG_AT: usize = 12;
/// The TCI's priority (PCP) and drop-eligible (DEI) bits: kept from the tag the frame arrived
/// with, so that a switch queues it as the client's side did.
const TCI_PRIORITY: u16 = 0xf000;
const TCI_VID: u16 = 0x0fff;

/// The frame could not be given its real's tag: the driver left too little headroom to push one.
pub struct RetagFailed;

/// Gives the frame its real's layer-2 shape: `dst MAC, src MAC, [0x8100 tag of vlan], ethertype`,
/// no tag when `vlan` is 0. `ingress_tags` is how many tags the frame arrived with (0 to 2; the
/// parser takes no more). Bytes 0..12 (the MACs) are left for the caller to write.
///
/// The caller skips the call for an untagged frame to an untagged real: the established path
/// pays one compare for VLAN support.
#[inline(always)]
pub fn retag(ctx: &XdpContext, ingress_tags: u8, vlan: u16) -> Result<(), RetagFailed> {
    let egress_tags = i32::from(vlan != 0);
    let shrink = (i32::from(ingress_tags) - egress_tags) * VLAN_HLEN;
    if shrink != 0 {
        // SAFETY: the helper checks the new start against the headroom and the frame's end, and
        // every packet pointer is read again below (the verifier forgets them across the call).
        if unsafe { bpf_xdp_adjust_head(ctx.ctx, shrink) } != 0 {
            return Err(RetagFailed);
        }
    }
    if vlan == 0 {
        return Ok(());
    }
    let start = ctx.data();
    if start + TAG_AT + VLAN_HLEN as usize > ctx.data_end() {
        // The frame held its IP header a moment ago; this cannot happen, but the verifier
        // cannot know.
        return Err(RetagFailed);
    }
    let tag = (start + TAG_AT) as *mut u8;
    // A frame that arrived untagged has a MAC's bytes where the tag goes: priority 0.
    let priority = if ingress_tags == 0 {
        0
    } else {
        // SAFETY: within the bytes checked above.
        let tci = unsafe { (tag.add(2) as *const [u8; 2]).read() };
        u16::from_be_bytes(tci) & TCI_PRIORITY
    };
    let tpid = ETH_P_8021Q.to_be_bytes();
    let tci = (priority | (vlan & TCI_VID)).to_be_bytes();
    // Written as one word, as the forwarding step writes the MACs.
    // SAFETY: within the bytes checked above.
    unsafe {
        (tag as *mut u32).write_unaligned(u32::from_ne_bytes([tpid[0], tpid[1], tci[0], tci[1]]));
    }
    Ok(())
}
