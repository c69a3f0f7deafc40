//! The program's clocks: the kernel's (coarse monotonic nanoseconds, jiffies), or, in the packet
//! tests' build of the balancer only (feature `test-clock`), the test clock while they set one.
//!
//! The agent's program is built without the feature: it has no CLOCK map and no code that reads
//! one, so nothing a test can set ever moves the production clock, and user space (which reads
//! CLOCK only where it loaded the test build, `backend/xdp/expiry.rs`) agrees with it.

use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns};

/// The test clock (ns) while the packet tests set one (non-zero CLOCK).
#[cfg(feature = "test-clock")]
#[inline(always)]
fn test_clock() -> Option<u64> {
    crate::maps::CLOCK.get(0).copied().filter(|&t| t != 0)
}

/// The production build has no test clock.
#[cfg(not(feature = "test-clock"))]
#[inline(always)]
fn test_clock() -> Option<u64> {
    None
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
