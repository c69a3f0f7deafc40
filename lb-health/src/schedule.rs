//! When each check runs: a random first delay so checks do not start in lockstep, then one
//! period per `checkinterval`, each stretched or shrunk by a small random fraction so checks
//! that started together drift apart instead of firing as one storm.
//!
//! Pure functions of a random number in `[0, 1)`, so they are tested without a clock.

use std::time::Duration;

/// How the runner spreads checks over time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter {
    /// First checks are spread uniformly over `min(checkinterval, first_spread_max)`. The cap
    /// keeps a long interval (ldirectord's default is 10 s, people use 60 s) from delaying the
    /// first verdict at start or reload: ldirectord checks everything at once at start.
    pub first_spread_max: Duration,
    /// Each period is `checkinterval * (1 ± period_fraction)`, uniformly. 0.1 keeps the mean
    /// rate at one check per interval and breaks up lockstep within a few periods.
    pub period_fraction: f64,
}

impl Default for Jitter {
    fn default() -> Jitter {
        Jitter {
            first_spread_max: Duration::from_secs(5),
            period_fraction: 0.1,
        }
    }
}

impl Jitter {
    /// Delay before a new check's first run; `unit` is uniform in `[0, 1)`.
    pub(crate) fn first_delay(&self, interval: Duration, unit: f64) -> Duration {
        interval
            .min(self.first_spread_max)
            .mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Length of the next period; `unit` is uniform in `[0, 1)`.
    pub(crate) fn period(&self, interval: Duration, unit: f64) -> Duration {
        let fraction = self.period_fraction.clamp(0.0, 0.5);
        let factor = 1.0 + fraction * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        interval.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_delay_is_within_the_interval_and_the_cap() {
        let j = Jitter::default();
        let second = Duration::from_secs(1);
        assert_eq!(j.first_delay(second, 0.0), Duration::ZERO);
        assert_eq!(j.first_delay(second, 0.5), Duration::from_millis(500));
        assert!(j.first_delay(second, 0.999_999) < second);
        assert!(j.first_delay(Duration::from_secs(60), 0.999_999) < Duration::from_secs(5));
    }

    #[test]
    fn period_stays_within_the_fraction() {
        let j = Jitter::default();
        let ten = Duration::from_secs(10);
        assert_eq!(j.period(ten, 0.0), Duration::from_secs(9));
        assert_eq!(j.period(ten, 0.5), ten);
        assert!(j.period(ten, 0.999_999) <= Duration::from_secs(11));
    }

    #[test]
    fn no_jitter_is_exact() {
        let j = Jitter {
            first_spread_max: Duration::ZERO,
            period_fraction: 0.0,
        };
        assert_eq!(j.first_delay(Duration::from_secs(3), 0.7), Duration::ZERO);
        assert_eq!(
            j.period(Duration::from_secs(3), 0.7),
            Duration::from_secs(3)
        );
    }
}
