//! The benchmark's flow maker: makes every run of a repeated test frame a new flow, then
//! tail-calls the program under measurement (`NEXT[0]`).
//!
//! `BPF_PROG_TEST_RUN` runs one frame again and again; each run here writes the next value of a
//! per-CPU counter that lives as long as the program into the frame's TCP source port (low 16
//! bits) and the last 16 bits of its source address (high 16 bits), and the number of the CPU
//! it runs on into the source address bits just above those: the IPv4 address's second byte
//! (the CPU's number mod 256), the IPv6 address's seventh 16-bit group. So each CPU has 2³²
//! distinct flows of its own, across every measurement the program makes, and CPUs never make
//! the same flow (on IPv4, unless their numbers differ by a multiple of 256). The frame's source
//! address then lies anywhere in its /8 (IPv4) or /96 (IPv6). The frame must be Ethernet (no
//! VLAN tag), IPv4 without options or IPv6 without extension headers, then TCP. Checksums are
//! left as they are: the balancer does not read them. `cargo xtask bench` takes the driver's own
//! cost out by also timing it in front of a program that only passes.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_get_smp_processor_id,
    macros::{map, xdp},
    maps::{PerCpuArray, ProgramArray},
    programs::XdpContext,
};

const ETH_HLEN: usize = 14;
/// Where a family's frame gets its flow, as offsets from the IP header.
struct Layout {
    /// The source address's last 16 bits: the counter's high half.
    addr_low: usize,
    /// The source address bytes just before `addr_low` that hold the CPU's number ...
    cpu: usize,
    /// ... one (IPv4, where the first byte must stay) or two.
    cpu_bytes: usize,
    /// The TCP header: its source port is the counter's low half.
    tcp: usize,
}

const V4: Layout = Layout {
    addr_low: 14,
    cpu: 13,
    cpu_bytes: 1,
    tcp: 20,
};
const V6: Layout = Layout {
    addr_low: 22,
    cpu: 20,
    cpu_bytes: 2,
    tcp: 40,
};

#[map]
static NEXT: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Flows made so far, per CPU: each CPU counts its own (no shared cache line, no lost updates
/// when several CPUs make flows at once).
#[map]
static MADE: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

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

/// Makes the frame this CPU's next flow; false if its headers are not all there.
#[inline(always)]
fn new_flow(ctx: &XdpContext, at: Layout) -> bool {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN + at.tcp + 2 > end {
        return false;
    }
    let Some(made) = MADE.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: no preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let ip = (start + ETH_HLEN) as *mut u8;
    // SAFETY: every field ends before the TCP source port's end, checked above; `made` is this
    // CPU's value, and the benchmark runs one measuring thread per CPU.
    unsafe {
        let n = (*made).wrapping_add(1);
        *made = n;
        *(ip.add(at.tcp) as *mut [u8; 2]) = (n as u16).to_be_bytes();
        *(ip.add(at.addr_low) as *mut [u8; 2]) = ((n >> 16) as u16).to_be_bytes();
        if at.cpu_bytes == 1 {
            *ip.add(at.cpu) = cpu as u8;
        } else {
            *(ip.add(at.cpu) as *mut [u8; 2]) = (cpu as u16).to_be_bytes();
        }
    }
    true
}

lb_ebpf::program_object!();
