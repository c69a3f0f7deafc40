//! The sequencing of `checktype = N` ("combined"): mostly connect checks, a negotiate check
//! every N successful connects.
//!
//! ldirectord keeps a counter per real (`num_connects`), starting at 999999 so the first check
//! is a negotiate. A negotiate success resets it to 0, a negotiate failure leaves it, so the next
//! round negotiates again. A connect success adds one; a connect failure sets it back to
//! 999999, which forces a negotiate next round. Once it reaches N, the next check negotiates.

/// Which check a combined round runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Connect,
    Negotiate,
}

/// The per-real counter of a combined check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Combined {
    every: u32,
    connects: u32,
}

/// ldirectord's starting value; any value >= N forces a negotiate.
const FORCE_NEGOTIATE: u32 = 999_999;

impl Combined {
    pub(crate) fn new(every: u32) -> Combined {
        Combined {
            every,
            connects: FORCE_NEGOTIATE,
        }
    }

    pub(crate) fn next_phase(&self) -> Phase {
        if self.connects >= self.every {
            Phase::Negotiate
        } else {
            Phase::Connect
        }
    }

    pub(crate) fn record(&mut self, phase: Phase, up: bool) {
        match (phase, up) {
            (Phase::Negotiate, true) => self.connects = 0,
            (Phase::Negotiate, false) => {}
            (Phase::Connect, true) => self.connects = self.connects.saturating_add(1),
            (Phase::Connect, false) => self.connects = FORCE_NEGOTIATE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Phase::*;

    /// Runs rounds with the given results and returns the phases chosen.
    fn run(every: u32, results: &[bool]) -> Vec<Phase> {
        let mut c = Combined::new(every);
        results
            .iter()
            .map(|&up| {
                let phase = c.next_phase();
                c.record(phase, up);
                phase
            })
            .collect()
    }

    #[test]
    fn first_check_negotiates_then_n_connects() {
        assert_eq!(
            run(3, &[true; 9]),
            [
                Negotiate, Connect, Connect, Connect, Negotiate, Connect, Connect, Connect,
                Negotiate
            ]
        );
    }

    #[test]
    fn connect_failure_forces_negotiate_next() {
        assert_eq!(
            run(3, &[true, true, false, true, true]),
            [Negotiate, Connect, Connect, Negotiate, Connect]
        );
    }

    #[test]
    fn negotiate_failure_negotiates_again() {
        assert_eq!(
            run(2, &[false, false, true, true]),
            [Negotiate, Negotiate, Negotiate, Connect]
        );
    }

    #[test]
    fn zero_always_negotiates() {
        assert_eq!(run(0, &[true, true]), [Negotiate, Negotiate]);
    }
}
