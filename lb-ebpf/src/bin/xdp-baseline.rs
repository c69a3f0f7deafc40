//! The benchmark's yardstick: parse Ethernet and IP, swap the MACs, XDP_TX. Anything a load
//! balancer must do costs at least this, so `cargo xtask bench` reports ratios to it.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

const ETH_HLEN: usize = 14;

#[xdp]
pub fn xdp_baseline(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN + 20 > end {
        return xdp_action::XDP_PASS;
    }
    let eth = start as *mut u8;
    // SAFETY: bounds checked above.
    unsafe {
        let ethertype = u16::from_be_bytes([*eth.add(12), *eth.add(13)]);
        let ip_version = *eth.add(ETH_HLEN) >> 4;
        if !matches!((ethertype, ip_version), (0x0800, 4) | (0x86dd, 6)) {
            return xdp_action::XDP_PASS;
        }
        let dst = (eth as *const [u8; 6]).read_unaligned();
        let src = (eth.add(6) as *const [u8; 6]).read_unaligned();
        (eth as *mut [u8; 6]).write_unaligned(src);
        (eth.add(6) as *mut [u8; 6]).write_unaligned(dst);
    }
    xdp_action::XDP_TX
}

lb_ebpf::program_object!();
