//! Decapsulates IPIP on a real server whose kernel has no ipip module (the test kernel has none):
//! an IPv4 packet carrying IPv4 (protocol 4), or an IPv6 packet whose next header is IPv6 (41),
//! loses its outer header and goes to the stack as the inner packet, behind the same Ethernet
//! header. This is what `tunl0` / `ip6tnl0` do for the reals of an `ipip` virtual; anything else
//! (an outer fragment, IPv6 extension headers before the inner packet, a mismatched inner
//! version, other protocols) passes untouched.
//!
//! Like the kernel's fallback tunnel devices it takes every tunnelled packet the host receives,
//! whatever its outer addresses: the host only receives what is addressed to it.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_xdp_adjust_head, macros::xdp, programs::XdpContext,
};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
const IPV6_HLEN: usize = 40;

#[xdp]
pub fn xdp_ipip_decap(ctx: XdpContext) -> u32 {
    match outer_len(&ctx) {
        Some(len) => strip(&ctx, len),
        None => xdp_action::XDP_PASS,
    }
}

/// The length of the outer IP header when the frame is IPv4-in-IPv4 or IPv6-in-IPv6.
#[inline(always)]
fn outer_len(ctx: &XdpContext) -> Option<usize> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN + 1 > end {
        return None;
    }
    let eth = start as *const u8;
    // SAFETY: the Ethernet header and the IP version byte, checked above.
    let (ethertype, version) = unsafe {
        (
            u16::from_be_bytes([*eth.add(12), *eth.add(13)]),
            *eth.add(ETH_HLEN) >> 4,
        )
    };
    match (ethertype, version) {
        (ETH_P_IP, 4) => outer_v4(ctx),
        (ETH_P_IPV6, 6) => outer_v6(ctx),
        _ => None,
    }
}

/// The outer IPv6 header's length when the next header is the inner IPv6 packet.
#[inline(always)]
fn outer_v6(ctx: &XdpContext) -> Option<usize> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN + IPV6_HLEN + 1 > end {
        return None;
    }
    let ip = (start + ETH_HLEN) as *const u8;
    // SAFETY: the outer header and the inner version byte, checked above.
    let (next, inner) = unsafe { (*ip.add(6), *ip.add(IPV6_HLEN)) };
    (next == IPPROTO_IPV6 && inner >> 4 == 6).then_some(IPV6_HLEN)
}

/// The outer IPv4 header's length when it carries a whole (unfragmented) IPv4 packet.
#[inline(always)]
fn outer_v4(ctx: &XdpContext) -> Option<usize> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN + 20 > end {
        return None;
    }
    let ip = (start + ETH_HLEN) as *const u8;
    // SAFETY: 20 bytes of IPv4 header checked above.
    let (ihl, frag, proto) = unsafe {
        (
            (*ip & 0x0f) as usize * 4,
            u16::from_be_bytes([*ip.add(6), *ip.add(7)]),
            *ip.add(9),
        )
    };
    // A fragment of a tunnelled packet needs reassembly first, which only the stack can do (more
    // fragments, or an offset).
    if proto != IPPROTO_IPIP || ihl < 20 || frag & 0x3fff != 0 {
        return None;
    }
    // The inner packet's first byte: its version. The constant bound (60, the largest header)
    // is what the verifier can follow.
    if ihl > 60 || start + ETH_HLEN + ihl + 20 > end {
        return None;
    }
    // SAFETY: checked just above.
    let inner = unsafe { *((start + ETH_HLEN + ihl) as *const u8) };
    (inner >> 4 == 4).then_some(ihl)
}

/// Removes `outer` bytes after the Ethernet header, which moves forward over them unchanged
/// (the ethertype is the inner packet's too).
#[inline(always)]
fn strip(ctx: &XdpContext, outer: usize) -> u32 {
    let start = ctx.data();
    if start + ETH_HLEN > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: ETH_HLEN bytes checked above.
    let eth = unsafe { (start as *const [u8; ETH_HLEN]).read_unaligned() };
    // SAFETY: the context is this program's; `outer` is at most 60 (checked by the callers).
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer as i32) } != 0 {
        return xdp_action::XDP_PASS;
    }
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN > end {
        // The inner packet was checked to follow; the verifier needs the check anyway.
        return xdp_action::XDP_DROP;
    }
    // SAFETY: ETH_HLEN bytes checked above.
    unsafe { (start as *mut [u8; ETH_HLEN]).write_unaligned(eth) };
    xdp_action::XDP_PASS
}

lb_ebpf::program_object!();
