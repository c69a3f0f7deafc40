//! The per-VIP scheduling tables the program reads, built from the reals' weights: the weighted
//! round-robin sequence (IPVS's `wrr` order) and the weighted Maglev table. Pure functions; their
//! output is an API (flows are placed by it), so golden tests pin it.

use lb_common::maps::{RING_SIZE, WRR_SEQ_MAX};

/// IPVS's weighted round-robin order over `weights` (indexes into it), one full cycle.
///
/// IPVS (`ip_vs_wrr.c`) keeps a current weight `cw` that starts at `max − (gcd − 1)` and drops by
/// `gcd` each time the scan wraps; at each level it takes, in list order, every real whose weight
/// is at least `cw`. One cycle therefore gives real i exactly `weight_i / gcd` turns, interleaved:
/// weights 1, 2, 3 give `[2, 1, 2, 0, 1, 2]`.
///
/// A cycle longer than [`WRR_SEQ_MAX`] is built from weights scaled down to fit (each live
/// weight stays at least 1), so its shares are within 1/[`WRR_SEQ_MAX`] of the configured ones.
/// Weight 0 reals never appear; no live real gives an empty sequence.
pub fn wrr_sequence(weights: &[u32]) -> Vec<u16> {
    let weights = fit_weights(weights);
    let live = weights.iter().copied().filter(|&w| w > 0);
    let Some(max) = live.clone().max() else {
        return Vec::new();
    };
    let gcd = live.fold(0, gcd);
    let mut sequence = Vec::new();
    let mut current = max as i64 - (gcd as i64 - 1);
    while current > 0 {
        for (i, &w) in weights.iter().enumerate() {
            if w > 0 && w as i64 >= current {
                sequence.push(i as u16);
            }
        }
        current -= gcd as i64;
    }
    sequence
}

/// Round robin: every live real once per cycle, in order.
pub fn rr_sequence(weights: &[u32]) -> Vec<u16> {
    let ones: Vec<u32> = weights.iter().map(|&w| u32::from(w > 0)).collect();
    wrr_sequence(&ones)
}

/// The weights, scaled down when their cycle (Σweight / gcd) would exceed [`WRR_SEQ_MAX`].
fn fit_weights(weights: &[u32]) -> Vec<u32> {
    let cycle = |ws: &[u32]| {
        let g = ws.iter().copied().filter(|&w| w > 0).fold(0, gcd).max(1);
        ws.iter().map(|&w| (w / g) as u64).sum::<u64>()
    };
    if cycle(weights) <= WRR_SEQ_MAX as u64 {
        return weights.to_vec();
    }
    let total: u64 = weights.iter().map(|&w| w as u64).sum();
    let live = weights.iter().filter(|&&w| w > 0).count() as u64;
    // Aim below the limit by the live count: rounding each weight up to 1 adds at most that.
    let mut target = WRR_SEQ_MAX as u64 - live.min(WRR_SEQ_MAX as u64 / 2);
    loop {
        let scaled: Vec<u32> = weights
            .iter()
            .map(|&w| match w {
                0 => 0,
                w => ((w as u64 * target + total / 2) / total).max(1) as u32,
            })
            .collect();
        if cycle(&scaled) <= WRR_SEQ_MAX as u64 {
            return scaled;
        }
        target = target * 15 / 16;
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// What identifies a real to the consistent-hash table: its address and port, so that its
/// preferences do not change when other reals come and go.
pub fn ring_identity(addr: std::net::IpAddr, port: u16) -> Vec<u8> {
    let mut id = match addr {
        std::net::IpAddr::V4(a) => a.octets().to_vec(),
        std::net::IpAddr::V6(a) => a.octets().to_vec(),
    };
    id.extend_from_slice(&port.to_be_bytes());
    id
}

/// The weighted Maglev table ([`RING_SIZE`] entries, indexes into `reals`).
///
/// Each live real walks its own permutation of the table (offset and skip from two hashes of
/// its identity) and claims the next free entry on each of its turns; a real gets
/// `weight / max weight` turns per round, so its share of the table follows its weight, and
/// adding or removing a real moves only about its own share of entries (Maglev, NSDI'16 §3.4,
/// with weights as in Katran's MaglevV2). With no live real the table is all zeros and unused.
pub fn maglev(reals: &[(Vec<u8>, u32)]) -> Vec<u16> {
    let m = RING_SIZE as u64;
    let mut table = vec![u16::MAX; RING_SIZE as usize];
    let live: Vec<usize> = (0..reals.len()).filter(|&i| reals[i].1 > 0).collect();
    let Some(max) = live.iter().map(|&i| reals[i].1 as u64).max() else {
        return vec![0; RING_SIZE as usize];
    };
    let offset: Vec<u64> = reals.iter().map(|(id, _)| fnv1a(id, 0) % m).collect();
    let skip: Vec<u64> = reals
        .iter()
        .map(|(id, _)| fnv1a(id, 1) % (m - 1) + 1)
        .collect();
    let mut next = vec![0u64; reals.len()];
    let mut credit = vec![0u64; reals.len()];
    let mut filled = 0u64;
    loop {
        for &i in &live {
            credit[i] += reals[i].1 as u64;
            while credit[i] >= max {
                credit[i] -= max;
                let mut entry = (offset[i] + next[i] * skip[i]) % m;
                while table[entry as usize] != u16::MAX {
                    next[i] += 1;
                    entry = (offset[i] + next[i] * skip[i]) % m;
                }
                table[entry as usize] = i as u16;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    return table;
                }
            }
        }
    }
}

/// FNV-1a, 64-bit, with a seed byte: stable across releases and machines (the table is an API).
fn fnv1a(bytes: &[u8], seed: u8) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in std::iter::once(&seed).chain(bytes) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn counts(seq: &[u16], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &i in seq {
            c[i as usize] += 1;
        }
        c
    }

    #[test]
    fn wrr_interleaves_like_ipvs() {
        assert_eq!(wrr_sequence(&[10, 20, 30]), vec![2, 1, 2, 0, 1, 2]);
        assert_eq!(wrr_sequence(&[1, 1, 1]), vec![0, 1, 2]);
        assert_eq!(wrr_sequence(&[4, 0, 2]), vec![0, 0, 2]);
        assert_eq!(wrr_sequence(&[0, 0]), Vec::<u16>::new());
        assert_eq!(wrr_sequence(&[]), Vec::<u16>::new());
    }

    #[test]
    fn wrr_shares_are_exact() {
        let weights = [3, 7, 0, 11, 5];
        let seq = wrr_sequence(&weights);
        assert_eq!(seq.len(), 26);
        assert_eq!(counts(&seq, 5), vec![3, 7, 0, 11, 5]);
    }

    #[test]
    fn wrr_long_cycles_are_scaled_to_fit() {
        let weights: Vec<u32> = (1..=1000).collect();
        let seq = wrr_sequence(&weights);
        assert!(seq.len() <= WRR_SEQ_MAX as usize);
        let c = counts(&seq, 1000);
        let total: f64 = weights.iter().map(|&w| w as f64).sum();
        for (i, &w) in weights.iter().enumerate() {
            let want = w as f64 / total;
            let got = c[i] as f64 / seq.len() as f64;
            assert!(
                (want - got).abs() < 2.0 / WRR_SEQ_MAX as f64,
                "real {i}: {want} vs {got}"
            );
            assert!(c[i] >= 1);
        }
    }

    #[test]
    fn rr_ignores_weights_but_not_quiescence() {
        assert_eq!(rr_sequence(&[10, 0, 30]), vec![0, 2]);
    }

    fn ident(i: u8) -> Vec<u8> {
        ring_identity(IpAddr::from([10, 0, 0, i]), 80)
    }

    #[test]
    fn maglev_shares_follow_weights() {
        let reals: Vec<(Vec<u8>, u32)> = vec![(ident(1), 10), (ident(2), 20), (ident(3), 30)];
        let table = maglev(&reals);
        let c = counts(&table, 3);
        let m = RING_SIZE as f64;
        for (i, w) in [10.0, 20.0, 30.0].iter().enumerate() {
            let share = c[i] as f64 / m;
            assert!((share - w / 60.0).abs() < 0.01, "real {i}: share {share}");
        }
    }

    #[test]
    fn maglev_moves_few_entries_when_a_real_leaves() {
        let mut reals: Vec<(Vec<u8>, u32)> = (1..=10).map(|i| (ident(i), 1)).collect();
        let before = maglev(&reals);
        reals[4].1 = 0;
        let after = maglev(&reals);
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| b != a && **b != 4)
            .count();
        // Only the departed real's entries should move, plus a little Maglev churn.
        assert!(
            moved < RING_SIZE as usize / 50,
            "{moved} entries of other reals moved"
        );
        assert!(!after.contains(&4));
    }

    #[test]
    fn maglev_is_stable() {
        // Golden: flows that lost their flow-table entry are placed by this table.
        let reals: Vec<(Vec<u8>, u32)> = vec![(ident(1), 1), (ident(2), 2), (ident(3), 3)];
        let table = maglev(&reals);
        assert_eq!(&table[..12], &GOLDEN_MAGLEV_PREFIX);
    }

    const GOLDEN_MAGLEV_PREFIX: [u16; 12] = [1, 2, 0, 2, 1, 2, 2, 0, 1, 0, 2, 2];
}
