//! Idle flows: the agent's sweep of the flow tables, which keeps the connection counts right for
//! flows that end silently. The program itself treats a flow idle past its state's timeout
//! (IPVS's, `lb_common::values::flow_timeout_secs`) as over: its slot is free for a new flow and
//! its next packet is placed again. The sweep frees such slots too, so that the table's fill is
//! its live flows.

use lb_common::values::{ConnCounts, FLOW_ESTABLISHED, flow_clock};

use super::{dataplane::Dataplane, maps::Maps};
use crate::backend::BackendError;

/// The program's clock: CLOCK_MONOTONIC_COARSE, which is what `bpf_ktime_get_coarse_ns` reads;
/// or, where the tests loaded the balancer built with a test clock (the only one with a CLOCK
/// map, `lb-ebpf/src/clock.rs`), that clock while they set it, as the program reads it.
fn program_now(maps: &Maps) -> Result<u64, BackendError> {
    #[cfg(feature = "test-support")]
    if let Some(clock) = &maps.clock {
        let set = clock
            .get(&0, 0)
            .map_err(|e| BackendError::system("reading CLOCK", e))?;
        if set != 0 {
            return Ok(set);
        }
    }
    #[cfg(not(feature = "test-support"))]
    let _ = maps;
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// What one pass over the flow tables found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// Flows still alive.
    pub live: usize,
    /// Flows idle past their state's timeout (or whose real is gone), their slots freed.
    pub expired: usize,
}

impl Dataplane {
    /// The program's flow clock now ([`flow_clock`] of the program's clock): what a flow's
    /// last-seen time is compared with.
    pub fn flow_clock(&self) -> Result<u32, BackendError> {
        Ok(flow_clock(program_now(&self.maps)?))
    }

    /// Counts the live flows and makes every real's connection counts agree with them: the
    /// program counts flows in and out on SYN, ACK, FIN and RST, but a flow that ends silently
    /// (idle past its timeout, pushed out of a full bucket, its client gone) is only accounted
    /// for here, in CONNS_EXPIRED.
    pub fn expire_flows(&mut self) -> Result<Expiry, BackendError> {
        let clock = self.flow_clock()?;
        let mut live: std::collections::HashMap<u32, (u64, u64)> = std::collections::HashMap::new();
        let mut expiry = Expiry::default();
        let mut generations = std::collections::HashMap::new();
        let tables = [&self.maps.flows4, &self.maps.flows6];
        let used = tables
            .iter()
            .flat_map(|table| table.used().map(move |(at, slot)| (*table, at, slot)));
        for (table, (bucket, way), slot) in used {
            let real_id = u32::from(slot.real_id);
            let generation = match generations.get(&real_id) {
                Some(&g) => g,
                None => {
                    let real = self
                        .maps
                        .reals
                        .get(&real_id, 0)
                        .map_err(|e| BackendError::system("reading REALS", e))?;
                    generations.insert(real_id, real.generation);
                    real.generation
                }
            };
            if !slot.live(clock) || generation != slot.real_generation {
                if table.free_slot(bucket, way, slot.tag) {
                    expiry.expired += 1;
                }
                continue;
            }
            expiry.live += 1;
            let counts = live.entry(real_id).or_default();
            if slot.state == FLOW_ESTABLISHED {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
        }
        for programmed in self.programmed()?.values() {
            let ids = programmed
                .reals
                .iter()
                .map(|r| r.0)
                .chain(programmed.fallback.map(|f| f.0));
            for id in ids {
                let kept = self
                    .maps
                    .conns
                    .get(&id, 0)
                    .map_err(|e| BackendError::system("reading CONNS", e))?;
                let (active, inactive) = live.get(&id).copied().unwrap_or_default();
                let correction = ConnCounts {
                    active: kept.active.wrapping_sub(active),
                    inactive: kept.inactive.wrapping_sub(inactive),
                };
                self.maps
                    .conns_expired
                    .set(id, correction, 0)
                    .map_err(|e| BackendError::system("writing CONNS_EXPIRED", e))?;
            }
        }
        Ok(expiry)
    }
}
