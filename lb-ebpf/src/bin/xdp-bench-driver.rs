//! The benchmark's flow maker: makes every run of a repeated test frame a new flow, then
//! tail-calls the program under measurement (`NEXT[0]`).
//!
//! `BPF_PROG_TEST_RUN` runs one frame again and again; each run here writes the next value of a
//! counter that lives as long as the program into the frame's TCP source port (low 16 bits) and
//! the last 16 bits of its source address (high 16 bits): 2³² distinct flows from one frame,
//! across every measurement the program makes. The frame must be Ethernet
//! (no VLAN tag), IPv4 without options or IPv6 without extension headers, then TCP. Checksums are
//! left as they are: the balancer does not read them. `cargo xtask bench` takes the driver's own
//! cost out by also timing it in front of a program that only passes.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, ProgramArray},
    programs::XdpContext,
};

const ETH_HLEN: usize = 14;
/// The offsets, from the IP header, of the source address's last 16 bits and of the TCP header.
const V4: (usize, usize) = (14, 20);
const V6: (usize, usize) = (22, 40);

#[map]
static NEXT: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Flows made so far.
#[map]
static MADE: Array<u32> = Array::with_max_entries(1, 0);

#[xdp]
pub fn xdp_bench_driver(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN + 1 > end {
        return xdp_action::XDP_ABORTED;
    }
    // SAFETY: the byte is within the frame (checked above).
    let made = match unsafe { *((start + ETH_HLEN) as *const u8) } >> 4 {
        4 => new_flow(&ctx, V4),
        6 => new_flow(&ctx, V6),
        _ => false,
    };
    if made {
        // SAFETY: a program array of this object and an XDP context.
        unsafe { NEXT.tail_call(&ctx, 0) };
    }
    xdp_action::XDP_ABORTED
}

/// Makes the frame the next flow; false if its headers are not all there.
#[inline(always)]
fn new_flow(ctx: &XdpContext, (addr_low, tcp): (usize, usize)) -> bool {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN + tcp + 2 > end {
        return false;
    }
    let Some(made) = MADE.get_ptr_mut(0) else {
        return false;
    };
    let ip = (start + ETH_HLEN) as *mut u8;
    // SAFETY: both fields end before the TCP source port's end, checked above; `made` is an
    // array value (the benchmark runs one program at a time).
    unsafe {
        *made = (*made).wrapping_add(1);
        *(ip.add(tcp) as *mut [u8; 2]) = (*made as u16).to_be_bytes();
        *(ip.add(addr_low) as *mut [u8; 2]) = ((*made >> 16) as u16).to_be_bytes();
    }
    true
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
