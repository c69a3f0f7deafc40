//! The flow hash (MurmurHash3's 32-bit mixing), computed by the program to index the
//! consistent-hash table and by user space's model of the program. One definition for both, so
//! they cannot drift apart.
//!
//! Words are read in native byte order: the program and user space run on the same host.

use crate::keys::{Flow4Key, Flow6Key};

const SEED: u32 = 0x5844_4952; // "XDIR"

#[inline(always)]
fn mix(h: u32, k: u32) -> u32 {
    let k = k
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn finish(mut h: u32, len_words: u32) -> u32 {
    h ^= len_words * 4;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The consistent-hash table entry a hash selects: `hash · RING_SIZE / 2³²` (Lemire's
/// multiply-shift range reduction). Unlike `hash % RING_SIZE`, which LLVM turns into a
/// multiply-high sequence whose range the verifier cannot follow, the verifier can bound this.
#[inline(always)]
pub fn ring_index(hash: u32) -> u32 {
    ((hash as u64 * crate::maps::RING_SIZE as u64) >> 32) as u32
}

/// Multipliers of [`fold`], one per word position (destination words first, then source
/// words): distinct odd constants, so equal words at different positions do not cancel, and
/// the multiplications do not wait on each other.
const ODD: [u64; 5] = [
    0x9e37_79b9_7f4a_7c15,
    0xc2b2_ae3d_27d4_eb4f,
    0x1656_67b1_9e37_79f9,
    0x85eb_ca77_c2b2_ae63,
    0x27d4_eb2f_1656_67c5,
];

/// Where [`cache_hash`] folds the source words: after the destination's (two for IPv6).
const SRC_POSITION: usize = 2;

/// A cheap hash of 64-bit words, not yet mixed: for the VIP filter and the flow cache, computed
/// on every packet, where MurmurHash3 would cost several times more and its quality is not
/// needed. Each word (an IPv4 address widened, or half an IPv6 address) is multiplied by its
/// position's constant (`first` is the position of `words[0]`) and the products XORed into `x`.
/// Folds of different words combine with XOR; [`fold_mixed`] makes a folded value a hash.
#[inline(always)]
pub fn fold(mut x: u64, words: &[u64], first: usize) -> u64 {
    for (i, &w) in words.iter().enumerate() {
        x ^= w.wrapping_mul(ODD[first + i]);
    }
    x
}

/// A folded value made a 32-bit hash good in its top bits: the halves XORed (the high half holds
/// the products' best-mixed bits), then one last multiply.
#[inline(always)]
pub fn fold_mixed(x: u64) -> u32 {
    let x = (x ^ (x >> 32)) as u32;
    (x ^ (x >> 16)).wrapping_mul(0x9e37_79b1)
}

/// An address as [`fold`] takes it: one word for IPv4, two for IPv6, from its bytes in memory.
pub fn addr_words(addr: &[u8]) -> ([u64; 2], usize) {
    match addr.len() {
        4 => ([u32::from_ne_bytes(addr.try_into().unwrap()) as u64, 0], 1),
        _ => (
            [
                u64::from_ne_bytes(addr[..8].try_into().unwrap()),
                u64::from_ne_bytes(addr[8..16].try_into().unwrap()),
            ],
            2,
        ),
    }
}

/// The destination's share of the VIP filter and flow cache hashes: its address words
/// ([`addr_words`]), port and protocol, folded. The program computes it once per packet for
/// both.
#[inline(always)]
pub fn vip_fold(addr_words: &[u64], port: u16, proto: u8) -> u64 {
    fold(((port as u64) << 8) | proto as u64, addr_words, 0)
}

/// The bit of [`crate::values::VipFilter`] for a destination's [`vip_fold`]: the top 16 bits.
#[inline(always)]
pub fn vip_filter_bit(vip_fold: u64) -> u32 {
    fold_mixed(vip_fold) >> 16
}

/// The flow cache's hash of a flow: its destination's [`vip_fold`], then its source address
/// words and port (above the destination port and protocol's bits).
#[inline(always)]
pub fn cache_hash(vip_fold: u64, src_words: &[u64], sport: u16) -> u32 {
    let sport = ((sport as u64) << 24).wrapping_mul(ODD[4]);
    fold_mixed(fold(vip_fold ^ sport, src_words, SRC_POSITION))
}

#[inline(always)]
fn word(b: &[u8; 16], i: usize) -> u32 {
    u32::from_ne_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]])
}

/// Hash of an IPv4 address (source hashing, destination hashing).
#[inline(always)]
pub fn addr4(addr: [u8; 4]) -> u32 {
    finish(mix(SEED, u32::from_ne_bytes(addr)), 1)
}

/// Hash of an IPv6 address.
#[inline(always)]
pub fn addr6(addr: &[u8; 16]) -> u32 {
    let mut h = SEED;
    h = mix(h, word(addr, 0));
    h = mix(h, word(addr, 1));
    h = mix(h, word(addr, 2));
    h = mix(h, word(addr, 3));
    finish(h, 4)
}

/// Hash of an IPv4 flow tuple (Maglev hashing, and placing flows the flow table lost).
#[inline(always)]
pub fn flow4(key: &Flow4Key) -> u32 {
    let mut h = SEED;
    h = mix(h, u32::from_ne_bytes(key.src));
    h = mix(h, u32::from_ne_bytes(key.dst));
    h = mix(h, ((key.sport as u32) << 16) | key.dport as u32);
    h = mix(h, key.proto);
    finish(h, 4)
}

/// Hash of an IPv6 flow tuple.
#[inline(always)]
pub fn flow6(key: &Flow6Key) -> u32 {
    let mut h = SEED;
    h = mix(h, word(&key.src, 0));
    h = mix(h, word(&key.src, 1));
    h = mix(h, word(&key.src, 2));
    h = mix(h, word(&key.src, 3));
    h = mix(h, word(&key.dst, 0));
    h = mix(h, word(&key.dst, 1));
    h = mix(h, word(&key.dst, 2));
    h = mix(h, word(&key.dst, 3));
    h = mix(h, ((key.sport as u32) << 16) | key.dport as u32);
    h = mix(h, key.proto);
    finish(h, 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn different_inputs_spread() {
        let a = addr4([10, 0, 0, 1]);
        let b = addr4([10, 0, 0, 2]);
        assert_ne!(a, b);
        let mut k = Flow4Key {
            src: [1, 2, 3, 4],
            dst: [5, 6, 7, 8],
            sport: 1000,
            dport: 80,
            proto: 6,
        };
        let h1 = flow4(&k);
        k.sport = 1001;
        assert_ne!(h1, flow4(&k));
    }

    /// The flow cache is direct-mapped: flows of one client (every source port) and of many
    /// clients (consecutive addresses, one port) must spread over its slots, not pile up.
    #[test]
    fn cache_slots_spread() {
        const SLOTS: usize = crate::maps::FLOW_CACHE_SIZE as usize;
        fn check(case: &str, hash: impl Fn(u32) -> u32) {
            let mut load = [0u32; SLOTS];
            for i in 0..65536 {
                load[(hash(i) >> (32 - SLOTS.trailing_zeros())) as usize] += 1;
            }
            let used = load.iter().filter(|&&n| n > 0).count();
            let worst = *load.iter().max().unwrap();
            // 8 flows a slot on average: nearly every slot used, none far above the average.
            assert!(
                used > SLOTS * 95 / 100,
                "{case}: {used} of {SLOTS} slots used"
            );
            assert!(worst <= 32, "{case}: {worst} flows in one slot");
        }
        let vip = vip_fold(&[u32::from_ne_bytes([10, 0, 0, 100]) as u64], 80, 6);
        let vip6 = vip_fold(&[0xfd00, 0x100 << 48], 443, 6);
        let client = u32::from_ne_bytes([192, 0, 2, 1]) as u64;
        check("ports", |i| cache_hash(vip, &[client], i as u16));
        check("clients", |i| {
            cache_hash(vip, &[(0xc000_0000u32 + i).to_be() as u64], 40000)
        });
        check("ports6", |i| {
            cache_hash(vip6, &[0x2001_0db8, 1 << 56], i as u16)
        });
        check("clients6", |i| {
            cache_hash(vip6, &[0x2001_0db8, ((i as u64) << 48).to_be()], 40000)
        });
    }

    /// Golden values: the hash places flows that lost their flow-table entry, so changing it
    /// moves them. Change these only on purpose.
    #[test]
    fn golden() {
        assert_eq!(addr4([192, 168, 6, 2]), 0xe7a2_1917);
        let mut addr = [0u8; 16];
        addr[15] = 1;
        assert_eq!(addr6(&addr), 0xf1d9_1f83);
        let k = Flow4Key {
            src: [1, 2, 3, 4],
            dst: [5, 6, 7, 8],
            sport: 1000,
            dport: 80,
            proto: 6,
        };
        assert_eq!(flow4(&k), 0x8baf_fce0);
    }
}
