//! The program's clocks: the kernel's (coarse monotonic nanoseconds, jiffies), or the packet
//! tests' clock while a test program sets one.

use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns};

use crate::maps::CLOCK;

/// Non-zero in the packet tests' program only (set at load time): the program's clocks follow
/// CLOCK while it is set. Read-only data, so the verifier sees the production program's zero and
/// drops the test clock's code from it.
#[unsafe(no_mangle)]
static TEST_CLOCK: u8 = 0;

/// The test clock (ns), in the packet tests' program while they set one.
#[inline(always)]
fn test_clock() -> Option<u64> {
    // SAFETY: a plain read; volatile so that the compiler does not fold the zero it was built with.
    if unsafe { core::ptr::read_volatile(&TEST_CLOCK) } == 0 {
        return None;
    }
    CLOCK.get(0).copied().filter(|&t| t != 0)
}

/// The program's clock (ns): the kernel's coarse monotonic clock, or the test clock.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: a helper without arguments.
    test_clock().unwrap_or_else(|| unsafe { bpf_ktime_get_coarse_ns() })
}

/// The flow cache's clock: kernel ticks (jiffies, inlined by the verifier: no helper call on the
/// cached path), or the test clock in ~ms (2²⁰ ns).
#[inline(always)]
pub fn tick() -> u64 {
    // SAFETY: a helper without arguments.
    test_clock().map_or_else(|| unsafe { bpf_jiffies64() }, |t| t >> 20)
}
