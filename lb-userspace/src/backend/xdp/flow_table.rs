//! The flow tables (FLOWS4, FLOWS6) as the agent sees them: BPF arrays of
//! [`FlowBucket`]s created with `BPF_F_MMAPABLE` and mapped into this process, so that reading
//! millions of slots (the idle sweep, `show`'s fill) costs no system call per flow. The program
//! writes the slots concurrently: every read here is a volatile read of one slot, and a slot
//! torn by a concurrent write only skews one count until the next sweep.

use std::{net::IpAddr, os::fd::AsFd as _, ptr::NonNull};

use aya::maps::{Map, MapData};
use lb_common::{
    keys::{Flow4Key, Flow6Key},
    maps::FLOW_WAYS,
    values::{FlowBucket, FlowSlot},
};

use crate::backend::BackendError;

/// One family's flow table, mapped.
pub struct FlowTable {
    map: MapData,
    buckets: NonNull<FlowBucket>,
    len: usize,
}

// SAFETY: the mapping is shared memory the kernel keeps alive while mapped; access goes through
// volatile reads and writes of plain data.
unsafe impl Send for FlowTable {}
unsafe impl Sync for FlowTable {}

impl FlowTable {
    /// Maps a flow table (an array map of [`FlowBucket`]s, mmapable).
    pub fn new(name: &str, map: Option<Map>) -> Result<FlowTable, BackendError> {
        let Some(Map::Array(map)) = map else {
            return Err(BackendError::Unsupported(format!(
                "the XDP object's {name} is not an array map"
            )));
        };
        let info = map
            .info()
            .map_err(|e| BackendError::system(format!("reading {name}"), e))?;
        if info.value_size() as usize != size_of::<FlowBucket>() {
            return Err(BackendError::Unsupported(format!(
                "{name} has {} B values, this build {} B",
                info.value_size(),
                size_of::<FlowBucket>()
            )));
        }
        let len = info.max_entries() as usize;
        let bytes = len * size_of::<FlowBucket>();
        // SAFETY: mapping a BPF array map's values (BPF_F_MMAPABLE), shared with the program.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&map.fd().as_fd()),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(BackendError::system(
                format!("mapping {name} into memory (created without BPF_F_MMAPABLE?)"),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(FlowTable {
            map,
            buckets: NonNull::new(address.cast()).expect("mmap returned a non-null address"),
            len,
        })
    }

    /// Where the program keeps a flow (`proto` IPPROTO_TCP or _UDP, ports in host order):
    /// its bucket and its tag, from the same hashes (`lb-ebpf/src/flows.rs`).
    pub fn locate(
        &self,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
        proto: u8,
    ) -> (usize, u32) {
        use lb_common::hash;
        let (flow_hash, src_words, dst_words) = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => (
                hash::flow4(&Flow4Key {
                    src: s.octets(),
                    dst: d.octets(),
                    sport,
                    dport,
                    proto: proto.into(),
                }),
                hash::addr_words(&s.octets()),
                hash::addr_words(&d.octets()),
            ),
            (s, d) => {
                let (s, d) = (v6_octets(s), v6_octets(d));
                (
                    hash::flow6(&Flow6Key {
                        src: s,
                        dst: d,
                        sport,
                        dport,
                        proto: proto.into(),
                    }),
                    hash::addr_words(&s),
                    hash::addr_words(&d),
                )
            }
        };
        let vip_fold = hash::vip_fold(&dst_words.0[..dst_words.1], dport, proto);
        let tag = hash::cache_hash(vip_fold, &src_words.0[..src_words.1], sport) | 1;
        let bucket = (u64::from(flow_hash) * self.len as u64) >> 32;
        (bucket as usize, tag)
    }

    /// Buckets.
    pub fn buckets(&self) -> usize {
        self.len
    }

    /// Flows the table holds at most.
    pub fn capacity(&self) -> u64 {
        self.len as u64 * FLOW_WAYS as u64
    }

    /// The map, for its file descriptor and information.
    pub fn map(&self) -> &MapData {
        &self.map
    }

    fn slot_ptr(&self, bucket: usize, way: usize) -> *mut FlowSlot {
        assert!(bucket < self.len && way < FLOW_WAYS as usize);
        // SAFETY: within the mapping (checked above).
        unsafe {
            (&raw mut (*self.buckets.as_ptr().add(bucket)).slots)
                .cast::<FlowSlot>()
                .add(way)
        }
    }

    /// A copy of one slot.
    pub fn slot(&self, bucket: usize, way: usize) -> FlowSlot {
        // SAFETY: a slot within the mapping; plain data.
        unsafe { self.slot_ptr(bucket, way).read_volatile() }
    }

    /// Every slot that holds a flow (tag not 0), live or not, with its bucket and way.
    pub fn used(&self) -> impl Iterator<Item = ((usize, usize), FlowSlot)> + '_ {
        (0..self.len).flat_map(move |bucket| {
            (0..FLOW_WAYS as usize).filter_map(move |way| {
                let slot = self.slot(bucket, way);
                (slot.tag != 0).then_some(((bucket, way), slot))
            })
        })
    }

    /// Frees a slot that held `tag`, if it still does: an atomic compare-and-swap of its tag, so
    /// that a flow the program writes there meanwhile (its fields first, its tag last) is kept.
    pub fn free_slot(&self, bucket: usize, way: usize, tag: u32) -> bool {
        // SAFETY: the tag is the slot's first field, a 4-byte aligned u32 in shared memory that
        // the program also writes as a whole.
        let word =
            unsafe { std::sync::atomic::AtomicU32::from_ptr(self.slot_ptr(bucket, way).cast()) };
        word.compare_exchange(
            tag,
            0,
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
        )
        .is_ok()
    }

    /// Writes a slot (tests and benchmarks fill tables this way).
    pub fn write_slot(&self, bucket: usize, way: usize, slot: FlowSlot) {
        // SAFETY: a slot within the mapping.
        unsafe { self.slot_ptr(bucket, way).write_volatile(slot) }
    }

    /// Empties the whole table.
    pub fn clear(&self) {
        // SAFETY: the whole mapping.
        unsafe { std::ptr::write_bytes(self.buckets.as_ptr(), 0, self.len) }
    }
}

impl Drop for FlowTable {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(
                self.buckets.as_ptr().cast(),
                self.len * size_of::<FlowBucket>(),
            )
        };
    }
}

fn v6_octets(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}
