//! One real's health in one virtual service: ldirectord's `_service_up` / `_service_down`.
//!
//! `failurecount` consecutive failures take an up real down, one success brings it back, and a
//! maintenance file takes it down at once. Pure: the caller logs what [`RealState::observe`]
//! returns and recomputes the desired table when the health changed.

/// What the director believes about a real.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Health {
    /// No verdict yet (just started, or new in a reload). Treated as down in the table;
    /// a failure decides it down without counting, as ldirectord's forced-down start does.
    #[default]
    Unknown,
    Up,
    Down,
}

/// One completed check round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Up,
    Down,
    /// A `maintenancedir` file names the real: down now, without counting failures
    /// (ldirectord's `service_set(..., "down", {force => 1})`).
    Maintenance,
}

/// A real's health and its count of consecutive failures while up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RealState {
    pub health: Health,
    /// ldirectord's `failcount`.
    pub failcount: u32,
}

/// What one verdict did, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Observation {
    /// `Resetting soft failure count: …`: a success after counted failures.
    pub reset: bool,
    /// `Soft failure real server: … failure n/N`: counted, still up.
    pub soft_failure: Option<(u32, u32)>,
    /// The health changed (including Unknown becoming Up or Down).
    pub changed: bool,
}

impl RealState {
    /// Applies one verdict; `failurecount` is the virtual's (at least 1).
    pub fn observe(&mut self, verdict: Verdict, failurecount: u32) -> Observation {
        let before = self.health;
        let mut seen = Observation::default();
        match verdict {
            Verdict::Up => {
                seen.reset = self.failcount > 0;
                self.failcount = 0;
                self.health = Health::Up;
            }
            // ldirectord does not count failures of a real that is not up.
            Verdict::Down if before != Health::Up => self.health = Health::Down,
            Verdict::Down => {
                self.failcount += 1;
                if self.failcount < failurecount {
                    seen.soft_failure = Some((self.failcount, failurecount));
                } else {
                    self.health = Health::Down;
                }
            }
            // Forced: counted even when already down, so the next success logs a reset.
            Verdict::Maintenance => {
                self.failcount += 1;
                self.health = Health::Down;
            }
        }
        seen.changed = self.health != before;
        seen
    }

    pub fn is_up(&self) -> bool {
        self.health == Health::Up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::{Down, Maintenance, Up};

    fn run(failurecount: u32, verdicts: &[Verdict]) -> (RealState, Vec<Observation>) {
        let mut state = RealState::default();
        let seen = verdicts
            .iter()
            .map(|v| state.observe(*v, failurecount))
            .collect();
        (state, seen)
    }

    #[test]
    fn the_first_verdict_decides_without_counting() {
        let (state, seen) = run(3, &[Down]);
        assert_eq!(
            state,
            RealState {
                health: Health::Down,
                failcount: 0
            }
        );
        assert!(seen[0].changed && seen[0].soft_failure.is_none());
        let (state, seen) = run(3, &[Up]);
        assert_eq!(state.health, Health::Up);
        assert!(seen[0].changed && !seen[0].reset);
    }

    #[test]
    fn failurecount_failures_take_an_up_real_down() {
        let (state, seen) = run(3, &[Up, Down, Down, Down]);
        assert_eq!(seen[1].soft_failure, Some((1, 3)));
        assert_eq!(seen[2].soft_failure, Some((2, 3)));
        assert!(!seen[1].changed && !seen[2].changed);
        assert_eq!(seen[3].soft_failure, None);
        assert!(seen[3].changed);
        assert_eq!(
            state,
            RealState {
                health: Health::Down,
                failcount: 3
            }
        );
    }

    #[test]
    fn failurecount_one_takes_it_down_at_once() {
        let (state, seen) = run(1, &[Up, Down]);
        assert!(seen[1].changed && seen[1].soft_failure.is_none());
        assert_eq!(state.health, Health::Down);
    }

    #[test]
    fn a_success_resets_the_count() {
        let (state, seen) = run(3, &[Up, Down, Down, Up, Down]);
        assert!(seen[3].reset && !seen[3].changed);
        assert_eq!(seen[4].soft_failure, Some((1, 3)), "counting starts again");
        assert_eq!(
            state,
            RealState {
                health: Health::Up,
                failcount: 1
            }
        );
    }

    #[test]
    fn failures_of_a_down_real_are_not_counted() {
        let (state, seen) = run(2, &[Up, Down, Down, Down, Down]);
        assert_eq!(
            state,
            RealState {
                health: Health::Down,
                failcount: 2
            }
        );
        assert!(!seen[3].changed && seen[3].soft_failure.is_none());
    }

    #[test]
    fn one_success_brings_a_down_real_back_and_logs_the_reset() {
        let (state, seen) = run(2, &[Up, Down, Down, Up]);
        assert!(seen[3].changed && seen[3].reset);
        assert_eq!(
            state,
            RealState {
                health: Health::Up,
                failcount: 0
            }
        );
    }

    #[test]
    fn maintenance_is_down_at_once_and_counted_each_round() {
        let (state, seen) = run(5, &[Up, Maintenance, Maintenance]);
        assert!(seen[1].changed && seen[1].soft_failure.is_none());
        assert!(!seen[2].changed);
        assert_eq!(
            state,
            RealState {
                health: Health::Down,
                failcount: 2
            }
        );
        let (_, seen) = run(5, &[Up, Maintenance, Up]);
        assert!(seen[2].changed && seen[2].reset);
    }

    #[test]
    fn every_sequence_matches_a_reference_model() {
        // ldirectord's _service_up/_service_down, transcribed, against every sequence of
        // up to 7 verdicts for failurecount 1..=3.
        fn reference(failurecount: u32, verdicts: &[Verdict]) -> (bool, Option<bool>, u32) {
            let (mut decided, mut up, mut failcount) = (false, false, 0u32);
            for v in verdicts {
                match v {
                    Up => {
                        failcount = 0;
                        up = true;
                    }
                    Down => {
                        if up {
                            failcount += 1;
                            if failcount >= failurecount {
                                up = false;
                            }
                        }
                    }
                    Maintenance => {
                        failcount += 1;
                        up = false;
                    }
                }
                decided = true;
            }
            (decided, decided.then_some(up), failcount)
        }
        let all = [Up, Down, Maintenance];
        for failurecount in 1..=3 {
            for len in 0..=7u32 {
                for n in 0..3usize.pow(len) {
                    let seq: Vec<Verdict> = (0..len).map(|i| all[n / 3usize.pow(i) % 3]).collect();
                    let (state, _) = run(failurecount, &seq);
                    let (decided, up, failcount) = reference(failurecount, &seq);
                    let health = match (decided, up) {
                        (false, _) => Health::Unknown,
                        (true, Some(true)) => Health::Up,
                        _ => Health::Down,
                    };
                    assert_eq!(
                        state,
                        RealState { health, failcount },
                        "{failurecount} {seq:?}"
                    );
                }
            }
        }
    }
}
