//! Passes every frame. Attached to the far end of a veth so that frames our balancer sends with
//! XDP_TX or redirect are received: a veth delivers XDP frames only to a peer running XDP.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

lb_ebpf::program_object!();
