//! The per-address-family parts of the balancer: key layouts, their maps and hashes. IPv4 and
//! IPv6 keep separate maps so IPv4 keys stay small (cheaper to hash on every packet).

use lb_common::{
    hash,
    keys::{Flow4Key, Flow6Key, Frag4Key, Frag6Key, Persist4Key, Persist6Key, Vip4Key, Vip6Key},
    maps::{FLOW_CACHE_SIZE, MAX_CPUS},
    values::{Cached4, Cached6, CachedFlow, FlowBucket, FragEntry, PersistEntry, VipMeta},
};

use core::ffi::c_void;

use aya_ebpf::helpers::{bpf_loop, bpf_map_lookup_percpu_elem};

use crate::{
    maps::{
        FLOW_CACHE4, FLOW_CACHE6, FLOWS4, FLOWS6, FRAGS4, FRAGS6, PERSIST4, PERSIST6, VIPS4, VIPS6,
    },
    parse::{Packet, dword, word},
};

pub trait Family {
    /// An address as the packet holds it (network byte order, in words).
    type Addr: Copy;
    type FlowKey;
    type PersistKey;
    type FragKey;
    /// This family's flow cache entry.
    type Cached;

    /// The packet's source address, read from the frame.
    fn src(packet: &Packet<Self::Addr>) -> Self::Addr;
    /// The packet's destination address, read from the frame.
    fn dst(packet: &Packet<Self::Addr>) -> Self::Addr;
    /// The packet's destination folded ([`hash::vip_fold`]): for the VIP filter and the cache.
    fn vip_fold(packet: &Packet<Self::Addr>) -> u64;
    fn vip(packet: &Packet<Self::Addr>) -> Option<*const VipMeta>;
    fn flow_key(packet: &Packet<Self::Addr>) -> Self::FlowKey;
    /// The flow table's bucket `index` ([`crate::flows`]).
    fn flow_bucket(index: u32) -> Option<*mut FlowBucket>;
    fn flow_hash(key: &Self::FlowKey) -> u32;
    fn addr_hash(addr: &Self::Addr) -> u32;
    fn persist_key(
        packet: &Packet<Self::Addr>,
        mask: &[u8; 16],
        vip_index: u32,
    ) -> Self::PersistKey;
    fn persist(key: &Self::PersistKey) -> Option<*mut PersistEntry>;
    fn insert_persist(key: &Self::PersistKey, entry: &PersistEntry);

    /// A fragmented datagram's key: `addrs` are its source and destination as the IP header
    /// holds them (checked by the parser), `id` its identification, `proto` its protocol.
    fn frag_key(addrs: *const u8, id: u32, proto: u8) -> Self::FragKey;
    fn frag(key: &Self::FragKey) -> Option<*const FragEntry>;
    fn insert_frag(key: &Self::FragKey, entry: &FragEntry);

    /// The hash that picks a flow's cache slot, from its destination's fold.
    fn cache_hash(vip_fold: u64, packet: &Packet<Self::Addr>) -> u32;
    /// This CPU's flow cache slot for a cache hash.
    fn cache_slot(hash: u32) -> Option<*mut Self::Cached>;
    /// The cached flow in `slot`, if it is the packet's.
    fn cached<'a>(slot: &'a Self::Cached, packet: &Packet<Self::Addr>) -> Option<&'a CachedFlow>;
    /// Caches `flow` for `key` in `slot`.
    fn cache(slot: &mut Self::Cached, key: &Self::FlowKey, flow: CachedFlow);
    /// Empties the slot of a cache hash on every CPU (the flow was placed again).
    fn uncache_everywhere(hash: u32);
}

/// Whether a flow key holds the packet's addresses (`N` 64-bit words: the key's first bytes are
/// the source and destination, as in the IP header) and then its ports and protocol, compared a
/// word at a time against the frame (a derived comparison of byte arrays becomes a call to
/// aya's byte-loop `bcmp`): a cache hit needs no key built on the stack.
#[inline(always)]
fn holds<K, const N: usize>(key: &K, p: &Packet<impl Copy>) -> bool {
    const { assert!(core::mem::size_of::<K>() == N * 8 + 8) };
    let k = key as *const K as *const u8;
    let mut difference = 0;
    for i in 0..N {
        // SAFETY: keys are #[repr(C)] Pod structs of N 64-bit words then two 32-bit words; the
        // packet's addresses are within the frame (checked by the parser).
        difference |=
            unsafe { (k.add(i * 8) as *const u64).read_unaligned() ^ dword(p.addrs, i * 8) };
    }
    // SAFETY: as above.
    let (ports, proto) = unsafe {
        (
            (k.add(N * 8) as *const u32).read_unaligned(),
            (k.add(N * 8 + 4) as *const u32).read_unaligned(),
        )
    };
    difference |= (ports ^ ports_word(p.sport, p.dport)) as u64;
    difference |= (proto ^ p.proto as u32) as u64;
    difference == 0
}

/// The word of a flow key that holds its ports (source first, as in the key).
#[inline(always)]
fn ports_word(sport: u16, dport: u16) -> u32 {
    let (s, d) = (sport.to_ne_bytes(), dport.to_ne_bytes());
    u32::from_ne_bytes([s[0], s[1], d[0], d[1]])
}

/// The cache slot: the top bits of a [`hash::cache_hash`].
#[inline(always)]
fn cache_index(hash: u32) -> u32 {
    hash >> (32 - FLOW_CACHE_SIZE.trailing_zeros())
}

/// A per-CPU flow cache map, for [`clear_on_every_cpu`].
trait CacheMap {
    /// Offset of a slot's [`CachedFlow`].
    const FLOW: usize;
    fn map() -> *mut c_void;
}

struct Cache4;
struct Cache6;

impl CacheMap for Cache4 {
    const FLOW: usize = core::mem::offset_of!(Cached4, flow);
    #[inline(always)]
    fn map() -> *mut c_void {
        core::ptr::from_ref(&FLOW_CACHE4).cast_mut().cast()
    }
}

impl CacheMap for Cache6 {
    const FLOW: usize = core::mem::offset_of!(Cached6, flow);
    #[inline(always)]
    fn map() -> *mut c_void {
        core::ptr::from_ref(&FLOW_CACHE6).cast_mut().cast()
    }
}

/// Kills a cache map's slot for `hash` on every CPU (`bpf_map_lookup_percpu_elem` reaches
/// other CPUs' copies): zeroes its real id, which never names a real. The walk over the CPUs
/// runs in `bpf_loop`, which the verifier checks once: an open-coded loop of `MAX_CPUS` steps is
/// checked step by step on every path that reaches it, which runs the verifier out of its
/// million instructions.
#[inline(always)]
fn clear_on_every_cpu<M: CacheMap>(hash: u32) {
    let mut index = cache_index(hash);
    // SAFETY: the callback only reads `index`, which outlives the call.
    unsafe {
        bpf_loop(
            MAX_CPUS,
            clear_on_cpu::<M> as *mut c_void,
            (&raw mut index).cast(),
            0,
        );
    }
}

/// Clears the slot on one CPU: 0 to go on, 1 to stop (past the last CPU).
#[inline(never)]
extern "C" fn clear_on_cpu<M: CacheMap>(cpu: u64, index: *mut c_void) -> i64 {
    // SAFETY: a per-CPU array map and the index `clear_on_every_cpu` passed; NULL past the last
    // CPU.
    let slot = unsafe { bpf_map_lookup_percpu_elem(M::map(), index, cpu as u32) }.cast::<u8>();
    if slot.is_null() {
        return 1;
    }
    // SAFETY: the slot's flow, within the value; its real id is a u32 at an aligned offset.
    unsafe {
        slot.add(M::FLOW + core::mem::offset_of!(CachedFlow, real_id))
            .cast::<u32>()
            .write(0)
    };
    0
}

pub struct V4;
pub struct V6;

#[inline(always)]
fn bytes16(words: [u32; 4]) -> [u8; 16] {
    // SAFETY: same size, every bit pattern valid.
    unsafe { core::mem::transmute(words) }
}

#[inline(always)]
fn mask_word(mask: &[u8; 16], i: usize) -> u32 {
    u32::from_ne_bytes([
        mask[i * 4],
        mask[i * 4 + 1],
        mask[i * 4 + 2],
        mask[i * 4 + 3],
    ])
}

impl Family for V4 {
    type Addr = u32;
    type FlowKey = Flow4Key;
    type PersistKey = Persist4Key;
    type FragKey = Frag4Key;
    type Cached = Cached4;

    #[inline(always)]
    fn src(p: &Packet<u32>) -> u32 {
        // SAFETY: the parser checked the IPv4 header, addresses included, against the frame.
        unsafe { word(p.addrs, 0) }
    }

    #[inline(always)]
    fn dst(p: &Packet<u32>) -> u32 {
        // SAFETY: as above.
        unsafe { word(p.addrs, 4) }
    }

    #[inline(always)]
    fn vip_fold(p: &Packet<u32>) -> u64 {
        hash::vip_fold(&[Self::dst(p) as u64], p.dport, p.proto)
    }

    #[inline(always)]
    fn vip(p: &Packet<u32>) -> Option<*const VipMeta> {
        let key = Vip4Key {
            addr: Self::dst(p).to_ne_bytes(),
            port: p.dport,
            proto: p.proto as u16,
        };
        VIPS4.get_ptr(key)
    }

    #[inline(always)]
    fn flow_key(p: &Packet<u32>) -> Flow4Key {
        Flow4Key {
            src: Self::src(p).to_ne_bytes(),
            dst: Self::dst(p).to_ne_bytes(),
            sport: p.sport,
            dport: p.dport,
            proto: p.proto as u32,
        }
    }

    #[inline(always)]
    fn flow_bucket(index: u32) -> Option<*mut FlowBucket> {
        FLOWS4.get_ptr_mut(index)
    }

    #[inline(always)]
    fn flow_hash(key: &Flow4Key) -> u32 {
        hash::flow4(key)
    }

    #[inline(always)]
    fn addr_hash(addr: &u32) -> u32 {
        hash::addr4(addr.to_ne_bytes())
    }

    #[inline(always)]
    fn persist_key(p: &Packet<u32>, mask: &[u8; 16], vip_index: u32) -> Persist4Key {
        Persist4Key {
            client: (Self::src(p) & mask_word(mask, 0)).to_ne_bytes(),
            vip_index,
        }
    }

    #[inline(always)]
    fn persist(key: &Persist4Key) -> Option<*mut PersistEntry> {
        PERSIST4.get_ptr_mut(key)
    }

    #[inline(always)]
    fn insert_persist(key: &Persist4Key, entry: &PersistEntry) {
        let _ = PERSIST4.insert(key, entry, 0);
    }

    #[inline(always)]
    fn frag_key(addrs: *const u8, id: u32, proto: u8) -> Frag4Key {
        // SAFETY: the caller's: both addresses lie in the frame.
        let (src, dst) = unsafe { (word(addrs, 0), word(addrs, 4)) };
        Frag4Key {
            src: src.to_ne_bytes(),
            dst: dst.to_ne_bytes(),
            id,
            proto: proto as u32,
        }
    }

    #[inline(always)]
    fn frag(key: &Frag4Key) -> Option<*const FragEntry> {
        FRAGS4.get_ptr(key)
    }

    #[inline(always)]
    fn insert_frag(key: &Frag4Key, entry: &FragEntry) {
        // A full map forgets its oldest datagram; an error leaves the later fragments to the
        // kernel.
        let _ = FRAGS4.insert(key, entry, 0);
    }

    #[inline(always)]
    fn cache_hash(vip_fold: u64, p: &Packet<u32>) -> u32 {
        hash::cache_hash(vip_fold, &[Self::src(p) as u64], p.sport)
    }

    #[inline(always)]
    fn cache_slot(hash: u32) -> Option<*mut Cached4> {
        FLOW_CACHE4.get_ptr_mut(cache_index(hash))
    }

    #[inline(always)]
    fn cached<'a>(slot: &'a Cached4, p: &Packet<u32>) -> Option<&'a CachedFlow> {
        holds::<Flow4Key, 1>(&slot.key, p).then_some(&slot.flow)
    }

    #[inline(always)]
    fn cache(slot: &mut Cached4, key: &Flow4Key, flow: CachedFlow) {
        slot.key = *key;
        slot.flow = flow;
    }

    #[inline(always)]
    fn uncache_everywhere(hash: u32) {
        clear_on_every_cpu::<Cache4>(hash);
    }
}

impl Family for V6 {
    type Addr = [u32; 4];
    type FlowKey = Flow6Key;
    type PersistKey = Persist6Key;
    type FragKey = Frag6Key;
    type Cached = Cached6;

    #[inline(always)]
    fn src(p: &Packet<[u32; 4]>) -> [u32; 4] {
        let a = p.addrs;
        // SAFETY: the parser checked the IPv6 header, addresses included, against the frame.
        unsafe { [word(a, 0), word(a, 4), word(a, 8), word(a, 12)] }
    }

    #[inline(always)]
    fn dst(p: &Packet<[u32; 4]>) -> [u32; 4] {
        let a = p.addrs;
        // SAFETY: as above.
        unsafe { [word(a, 16), word(a, 20), word(a, 24), word(a, 28)] }
    }

    #[inline(always)]
    fn vip_fold(p: &Packet<[u32; 4]>) -> u64 {
        // SAFETY: as above.
        let dst = unsafe { [dword(p.addrs, 16), dword(p.addrs, 24)] };
        hash::vip_fold(&dst, p.dport, p.proto)
    }

    #[inline(always)]
    fn vip(p: &Packet<[u32; 4]>) -> Option<*const VipMeta> {
        let key = Vip6Key {
            addr: bytes16(Self::dst(p)),
            port: p.dport,
            proto: p.proto as u16,
        };
        VIPS6.get_ptr(key)
    }

    #[inline(always)]
    fn flow_key(p: &Packet<[u32; 4]>) -> Flow6Key {
        Flow6Key {
            src: bytes16(Self::src(p)),
            dst: bytes16(Self::dst(p)),
            sport: p.sport,
            dport: p.dport,
            proto: p.proto as u32,
        }
    }

    #[inline(always)]
    fn flow_bucket(index: u32) -> Option<*mut FlowBucket> {
        FLOWS6.get_ptr_mut(index)
    }

    #[inline(always)]
    fn flow_hash(key: &Flow6Key) -> u32 {
        hash::flow6(key)
    }

    #[inline(always)]
    fn addr_hash(addr: &[u32; 4]) -> u32 {
        hash::addr6(&bytes16(*addr))
    }

    #[inline(always)]
    fn persist_key(p: &Packet<[u32; 4]>, mask: &[u8; 16], vip_index: u32) -> Persist6Key {
        let src = Self::src(p);
        let client = [
            src[0] & mask_word(mask, 0),
            src[1] & mask_word(mask, 1),
            src[2] & mask_word(mask, 2),
            src[3] & mask_word(mask, 3),
        ];
        Persist6Key {
            client: bytes16(client),
            vip_index,
        }
    }

    #[inline(always)]
    fn persist(key: &Persist6Key) -> Option<*mut PersistEntry> {
        PERSIST6.get_ptr_mut(key)
    }

    #[inline(always)]
    fn insert_persist(key: &Persist6Key, entry: &PersistEntry) {
        let _ = PERSIST6.insert(key, entry, 0);
    }

    #[inline(always)]
    fn frag_key(addrs: *const u8, id: u32, proto: u8) -> Frag6Key {
        let a = addrs;
        // SAFETY: the caller's: both addresses lie in the frame.
        let (src, dst) = unsafe {
            (
                [word(a, 0), word(a, 4), word(a, 8), word(a, 12)],
                [word(a, 16), word(a, 20), word(a, 24), word(a, 28)],
            )
        };
        Frag6Key {
            src: bytes16(src),
            dst: bytes16(dst),
            id,
            proto: proto as u32,
        }
    }

    #[inline(always)]
    fn frag(key: &Frag6Key) -> Option<*const FragEntry> {
        FRAGS6.get_ptr(key)
    }

    #[inline(always)]
    fn insert_frag(key: &Frag6Key, entry: &FragEntry) {
        let _ = FRAGS6.insert(key, entry, 0);
    }

    #[inline(always)]
    fn cache_hash(vip_fold: u64, p: &Packet<[u32; 4]>) -> u32 {
        // SAFETY: as above.
        let src = unsafe { [dword(p.addrs, 0), dword(p.addrs, 8)] };
        hash::cache_hash(vip_fold, &src, p.sport)
    }

    #[inline(always)]
    fn cache_slot(hash: u32) -> Option<*mut Cached6> {
        FLOW_CACHE6.get_ptr_mut(cache_index(hash))
    }

    #[inline(always)]
    fn cached<'a>(slot: &'a Cached6, p: &Packet<[u32; 4]>) -> Option<&'a CachedFlow> {
        holds::<Flow6Key, 4>(&slot.key, p).then_some(&slot.flow)
    }

    #[inline(always)]
    fn cache(slot: &mut Cached6, key: &Flow6Key, flow: CachedFlow) {
        slot.key = *key;
        slot.flow = flow;
    }

    #[inline(always)]
    fn uncache_everywhere(hash: u32) {
        clear_on_every_cpu::<Cache6>(hash);
    }
}
