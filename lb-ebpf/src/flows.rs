//! The flow table (FLOWS4, FLOWS6): where each known flow goes. An array of 64-byte buckets of
//! four 16-byte slots (`lb_common::values::FlowBucket`); a flow lives in the bucket its flow hash
//! selects, in a slot holding its tag. A lookup and an insert read one cache line; nothing else
//! is kept per flow, and the kernel keeps no lists.
//!
//! Who may take a slot (docs/dataplane.md, "The flow table"): a free or expired slot anyone; a
//! live half-open or closing flow's slot only a flow that is established (or UDP); a live
//! established flow's slot nobody. A flow that finds no room is not stored: it is placed where
//! persistence or the consistent-hash table says, which its next packets find again. So a flood
//! of SYNs can fill free slots but never push out an established flow.

use lb_common::{
    maps::{DEFAULT_FLOWS, flow_buckets},
    values::{FLOW_ESTABLISHED, FLOW_UDP, FlowSlot},
};

use core::ffi::c_void;

use aya_ebpf::helpers::bpf_loop;

use crate::family::Family;

/// Buckets of FLOWS4 and FLOWS6 (their `max_entries`), set by the loader (`FLOW_BUCKETS`).
#[unsafe(no_mangle)]
static FLOW_BUCKETS: u32 = flow_buckets(DEFAULT_FLOWS);

/// What a flow's bucket holds for it: one pass over its slots, in `bpf_loop`. (Not an
/// unrolled scan: the verifier would follow every way a scan can end, with a slot pointer of
/// each offset, through the rest of the program; the loop's results are numbers it does not
/// know, so it follows the program once or twice. Every field a u64: the compiler merges the
/// stores of two neighbouring u32s into one 8-byte store, which the verifier refuses where it is
/// misaligned on the stack.)
#[repr(C)]
pub struct Bucket {
    /// The bucket's index.
    index: u64,
    tag: u64,
    clock: u64,
    /// Whether the new flow would be established or UDP (may push out a half-open flow).
    settled: u64,
    /// The way holding the flow's tag, whatever its state or age; [`NONE`] if none.
    found: u64,
    /// The first free (or expired) way; [`NONE`] if none.
    free: u64,
    /// A way held by a live half-open or closing flow; [`NONE`] if none.
    half_open: u64,
}

const WAYS: u32 = lb_common::maps::FLOW_WAYS;
/// No such way.
const NONE: u64 = WAYS as u64;

/// The bucket of a flow: `flow_hash` ([`Family::flow_hash`]) selects it, `tag_hash` (an
/// independent hash of the flow: the flow cache's) is its tag. Its slots are read at `clock`
/// for a new flow that is `settled` (established or UDP) or not.
#[inline(always)]
pub fn bucket<F: Family>(flow_hash: u32, tag_hash: u32, clock: u32, settled: bool) -> Bucket {
    // SAFETY: a u32 in .rodata, written only by the loader.
    let buckets = unsafe { core::ptr::read_volatile(&FLOW_BUCKETS) };
    let mut bucket = Bucket {
        // Lemire's multiply-shift: any number of buckets, no division.
        index: (flow_hash as u64 * buckets as u64) >> 32,
        tag: (tag_hash | 1) as u64,
        clock: clock as u64,
        settled: settled as u64,
        found: NONE,
        free: NONE,
        half_open: NONE,
    };
    // SAFETY: the callback only reads and writes `bucket`, which outlives the call.
    unsafe {
        bpf_loop(
            WAYS,
            look_at_way::<F> as *mut c_void,
            (&raw mut bucket).cast(),
            0,
        );
    }
    bucket
}

/// One way of [`bucket`]'s pass: 0 to go on, 1 to stop (the flow found).
#[inline(never)]
extern "C" fn look_at_way<F: Family>(way: u64, bucket: *mut c_void) -> i64 {
    // SAFETY: the `Bucket` that `bucket` passed to bpf_loop.
    let bucket = unsafe { &mut *bucket.cast::<Bucket>() };
    let Some(slot) = slot::<F>(bucket.index, way) else {
        return 1;
    };
    // SAFETY: a slot of the flow table; another CPU may write it at the same moment (the
    // caller checks the real's generation and VIP before it trusts what it read).
    let held = unsafe { &*slot };
    if held.tag as u64 == bucket.tag {
        bucket.found = way;
        return 1;
    }
    if !held.live(bucket.clock as u32) {
        if bucket.free == NONE {
            bucket.free = way;
        }
    } else if held.state != FLOW_ESTABLISHED && held.state != FLOW_UDP {
        bucket.half_open = way;
    }
    0
}

/// Slot `way` of bucket `index`.
#[inline(always)]
fn slot<F: Family>(index: u64, way: u64) -> Option<*mut FlowSlot> {
    let bucket = F::flow_bucket(index as u32)?;
    let way = way as usize;
    if way >= WAYS as usize {
        return None;
    }
    // SAFETY: `way` < FLOW_WAYS, within the bucket.
    Some(unsafe { (&raw mut (*bucket).slots).cast::<FlowSlot>().add(way) })
}

impl Bucket {
    /// The slot holding the flow's tag, whatever its state or age.
    #[inline(always)]
    pub fn found<F: Family>(&self) -> Option<*mut FlowSlot> {
        if self.found == NONE {
            return None;
        }
        slot::<F>(self.index, self.found)
    }

    /// Where the new flow goes: its own slot if it has one (it is placed again), else a free or
    /// expired one, else (for an established or UDP flow) a half-open or closing flow's. None:
    /// the bucket is full of live established flows (or of live flows, for a flow that is not
    /// established): [`Room::stored`] is false.
    #[inline(always)]
    pub fn room(&self) -> Room {
        let (way, evicts) = if self.found != NONE {
            (self.found, false)
        } else if self.free != NONE {
            (self.free, false)
        } else if self.settled != 0 && self.half_open != NONE {
            (self.half_open, true)
        } else {
            (NONE, false)
        };
        Room { way, evicts }
    }

    /// Writes a flow into `room`: its fields first, its tag last, so that a CPU that finds the
    /// tag reads the flow's fields (x86 keeps stores in order).
    #[inline(always)]
    pub fn write<F: Family>(
        &self,
        room: &Room,
        real_id: u32,
        generation: u32,
        state: u8,
        clock: u32,
    ) {
        let Some(slot) = slot::<F>(self.index, room.way) else {
            return;
        };
        // SAFETY: a slot of the flow table.
        unsafe {
            (*slot).real_id = real_id as u16;
            (*slot).state = state;
            (*slot).real_generation = generation;
            (*slot).last_seen = clock;
            core::ptr::write_volatile(&raw mut (*slot).tag, self.tag as u32);
        }
    }
}

/// Where a new flow goes in its bucket. (Not an `Option`: the compiler spills an `Option`'s
/// undefined payload, a stack write of an uninitialised register that the verifier refuses.)
pub struct Room {
    way: u64,
    /// Whether it pushes out a live (half-open or closing) flow.
    pub evicts: bool,
}

impl Room {
    /// Whether the flow gets a slot.
    #[inline(always)]
    pub fn stored(&self) -> bool {
        self.way != NONE
    }
}
