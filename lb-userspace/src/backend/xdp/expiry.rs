//! Idle flows: the agent's sweep of the flow tables, as IPVS expires connections, and the
//! connection counts it keeps right for flows that end silently.

use lb_common::values::ConnCounts;

use super::{dataplane::Dataplane, maps::Maps};
use crate::backend::BackendError;

/// How long a flow may stay idle in each state before it is expired: IPVS's default timeouts
/// (`ipvsadm --set` shows tcp 900, tcpfin 120, udp 300; SYN_RECV is 60 in ip_vs_proto_tcp.c).
fn idle_timeout_ns(state: u32) -> u64 {
    let secs = match state {
        lb_common::values::FLOW_ESTABLISHED => 900,
        lb_common::values::FLOW_SYN_RECV => 60,
        lb_common::values::FLOW_CLOSING => 120,
        _ => 300,
    };
    secs * 1_000_000_000
}

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
    /// Flows idle past their state's timeout, deleted.
    pub expired: usize,
}

impl Dataplane {
    /// Deletes the flows idle past their state's timeout (as IPVS expires connections) and makes
    /// every real's connection counts agree with the flows that remain: the program counts flows
    /// in and out on SYN, ACK, FIN and RST, but a flow that ends silently (expired here, evicted
    /// from a full table, its client gone) is only accounted for here, in CONNS_EXPIRED.
    pub fn expire_flows(&mut self) -> Result<Expiry, BackendError> {
        let now = program_now(&self.maps)?;
        let mut live: std::collections::HashMap<u32, (u64, u64)> = std::collections::HashMap::new();
        let mut expiry = Expiry::default();
        let reals = &self.maps.reals;
        let mut tally = |entry: &lb_common::values::FlowEntry| -> Result<bool, BackendError> {
            let real = reals
                .get(&entry.real_id, 0)
                .map_err(|e| BackendError::system("reading REALS", e))?;
            let current =
                real.generation == entry.real_generation && real.vip_index == entry.vip_index;
            let idle = now.saturating_sub(entry.last_seen_ns) > idle_timeout_ns(entry.state);
            if !current || idle {
                return Ok(false);
            }
            let counts = live.entry(entry.real_id).or_default();
            if entry.state == lb_common::values::FLOW_ESTABLISHED {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
            Ok(true)
        };
        let mut dead4 = Vec::new();
        for item in self.maps.flows4.iter() {
            let (key, entry) = item.map_err(|e| BackendError::system("reading FLOWS4", e))?;
            if tally(&entry)? {
                expiry.live += 1
            } else {
                dead4.push(key)
            }
        }
        let mut dead6 = Vec::new();
        for item in self.maps.flows6.iter() {
            let (key, entry) = item.map_err(|e| BackendError::system("reading FLOWS6", e))?;
            if tally(&entry)? {
                expiry.live += 1
            } else {
                dead6.push(key)
            }
        }
        expiry.expired = dead4.len() + dead6.len();
        // A flow may have come back to life since it was read; deleting it then only sends its
        // next packet through the consistent-hash table, as after any flow-table loss.
        for key in dead4 {
            let _ = self.maps.flows4.remove(&key);
        }
        for key in dead6 {
            let _ = self.maps.flows6.remove(&key);
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
