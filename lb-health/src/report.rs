//! Delivery of completed rounds to the agent: queued by the check tasks, sent in batches by one
//! task, bounded, and counted when the agent is slow.
//!
//! Check tasks do not send on the agent's channel themselves: every send to a receiver that is
//! waiting on another thread wakes that thread, and at 10,000 checks a second those wake-ups
//! are a visible share of the CPU (docs/health-checks.md). Rounds are queued, and sent back to
//! back at most once per [`DELIVERY_PERIOD`], which wakes the agent once per batch. The first
//! result after a quiet spell goes out at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::outcome::CheckOutcome;
use crate::runner::{CheckId, CheckResult};

/// Rounds queued and not yet sent, at most. A check completing a round beyond this waits
/// (counted in `rounds_held`) until the agent has taken some: about 64 bytes each.
pub(crate) const MAX_QUEUED_ROUNDS: usize = 16_384;

/// After delivering a batch, the delivery task lets results gather this long: health
/// verdicts do not need sub-millisecond delivery, and fewer wake-ups of the agent save CPU.
pub(crate) const DELIVERY_PERIOD: Duration = Duration::from_millis(5);

/// One completed round, for every key of its check.
struct Round<K> {
    keys: Arc<[K]>,
    check: CheckId,
    outcome: CheckOutcome,
    duration: Duration,
}

pub(crate) struct Reports<K> {
    queued: Mutex<Vec<Round<K>>>,
    /// Wakes the delivery task when the queue stops being empty.
    wake: Notify,
    /// Room for queued rounds.
    room: Semaphore,
    results: mpsc::Sender<CheckResult<K>>,
    /// Results that found the agent's channel full (delivery waited for the agent).
    pub(crate) channel_full: AtomicU64,
    /// Rounds whose check waited because `MAX_QUEUED_ROUNDS` were undelivered.
    pub(crate) rounds_held: AtomicU64,
}

impl<K: Clone> Reports<K> {
    pub(crate) fn new(results: mpsc::Sender<CheckResult<K>>) -> Reports<K> {
        Reports {
            queued: Mutex::new(Vec::new()),
            wake: Notify::new(),
            room: Semaphore::new(MAX_QUEUED_ROUNDS),
            results,
            channel_full: AtomicU64::new(0),
            rounds_held: AtomicU64::new(0),
        }
    }

    /// Queues one round for every key in `keys`; false when the agent has gone.
    pub(crate) async fn queue(
        &self,
        keys: Arc<[K]>,
        check: CheckId,
        outcome: CheckOutcome,
        duration: Duration,
    ) -> bool {
        if self.results.is_closed() {
            return false;
        }
        let permit = match self.room.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                self.rounds_held.fetch_add(1, Ordering::Relaxed);
                match self.room.acquire().await {
                    Ok(permit) => permit,
                    Err(_closed) => return false,
                }
            }
        };
        // Given back by the delivery task once the round is sent.
        permit.forget();
        let was_empty = {
            let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
            queued.push(Round {
                keys,
                check,
                outcome,
                duration,
            });
            queued.len() == 1
        };
        // A non-empty queue already has a wake-up on its way, or is being taken.
        if was_empty {
            self.wake.notify_one();
        }
        true
    }

    /// Sends queued rounds until the agent's receiver is gone (or the task is cancelled).
    pub(crate) async fn deliver(&self) {
        let mut batch = Vec::new();
        loop {
            self.wake.notified().await;
            std::mem::swap(
                &mut batch,
                &mut *self.queued.lock().unwrap_or_else(|e| e.into_inner()),
            );
            let rounds = batch.len();
            for round in batch.drain(..) {
                for key in round.keys.iter() {
                    let result = CheckResult {
                        key: key.clone(),
                        check: round.check,
                        up: round.outcome.up,
                        maintenance: round.outcome.maintenance,
                        reason: Arc::clone(&round.outcome.reason),
                        failure: round.outcome.failure,
                        duration: round.duration,
                    };
                    match self.results.try_send(result) {
                        Ok(()) => {}
                        Err(TrySendError::Full(result)) => {
                            self.channel_full.fetch_add(1, Ordering::Relaxed);
                            if self.results.send(result).await.is_err() {
                                self.room.close();
                                return;
                            }
                        }
                        Err(TrySendError::Closed(_)) => {
                            self.room.close();
                            return;
                        }
                    }
                }
            }
            self.room.add_permits(rounds);
            tokio::time::sleep(DELIVERY_PERIOD).await;
        }
    }
}
