//! When to try a failed delivery again: the retry policy, as pure functions.
//!
//! The exponential schedule (initial interval, multiplier, cap) comes from the `backoff`
//! crate, driven with a fixed clock and no randomization so it is deterministic; jitter is
//! applied here from a random number the caller passes in, so tests can pin every delay.
//! This module is the only user of `backoff` (flagged unmaintained, RUSTSEC-2025-0012): to
//! swap it, only [`RetryPolicy::interval`] changes.
//!
//! Rules:
//! - a target's requested wait (`Retry-After`) is honoured, up to `max_interval`; the delay
//!   is never shorter than it;
//! - failures count against `max_attempts`; rate limiting (429) does not;
//! - nothing is retried past `max_elapsed` since the first attempt.

use std::time::{Duration, Instant};

use backoff::backoff::Backoff;
use backoff::exponential::ExponentialBackoff;

use crate::config::DeliveryConfig;

/// The retry schedule, from `[delivery]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Counted failures after which a delivery is dead.
    pub max_attempts: u32,
    /// Wait after the first failure.
    pub initial_interval: Duration,
    /// Growth per failure.
    pub multiplier: f64,
    /// Longest wait, and the ceiling for a target's requested wait.
    pub max_interval: Duration,
    /// No retry once this long has passed since the first attempt.
    pub max_elapsed: Duration,
    /// Jitter as a fraction of the wait (0.3 = ±30 %).
    pub randomization: f64,
}

impl From<&DeliveryConfig> for RetryPolicy {
    fn from(config: &DeliveryConfig) -> Self {
        Self {
            max_attempts: config.max_attempts,
            initial_interval: config.initial_interval,
            multiplier: config.multiplier,
            max_interval: config.max_interval,
            max_elapsed: config.max_elapsed,
            randomization: config.randomization,
        }
    }
}

/// A clock that always says the same instant: the schedule must not depend on when it is
/// computed.
struct FixedClock(Instant);

impl backoff::Clock for FixedClock {
    fn now(&self) -> Instant {
        self.0
    }
}

impl RetryPolicy {
    /// The wait after the `nth` failure (1-based), before jitter: initial × multiplier^(n−1),
    /// capped at `max_interval`.
    pub fn interval(&self, nth: u32) -> Duration {
        let now = Instant::now();
        let mut schedule = ExponentialBackoff {
            current_interval: self.initial_interval,
            initial_interval: self.initial_interval,
            randomization_factor: 0.0,
            multiplier: self.multiplier,
            max_interval: self.max_interval,
            start_time: now,
            max_elapsed_time: None,
            clock: FixedClock(now),
        };
        let mut interval = self.initial_interval;
        // The schedule reaches its cap after a few dozen steps for any sane multiplier.
        for _ in 0..nth.clamp(1, 64) {
            interval = schedule.next_backoff().unwrap_or(self.max_interval);
        }
        interval
    }

    /// The delay before the next attempt after a counted failure, or `None` to give up.
    ///
    /// `failures` counts this failure; `elapsed` is the time since the first attempt; `hint`
    /// is the target's requested wait; `random` is uniform in `[0, 1)`.
    pub fn after_failure(
        &self,
        failures: u32,
        elapsed: Duration,
        hint: Option<Duration>,
        random: f64,
    ) -> Option<Duration> {
        if failures >= self.max_attempts {
            return None;
        }
        self.within_budget(elapsed, self.delay(failures, hint, random))
    }

    /// The delay after a rate-limit answer, which does not use up the attempt budget.
    pub fn after_throttle(
        &self,
        failures: u32,
        elapsed: Duration,
        hint: Option<Duration>,
        random: f64,
    ) -> Option<Duration> {
        self.within_budget(elapsed, self.delay(failures.max(1), hint, random))
    }

    /// How long a connector whose credentials were rejected is paused, after `consecutive`
    /// rejections: the same growth, with no limit on attempts (the delivery is not at fault),
    /// but never shorter than `max_interval` or a minute, whichever is less: credentials are
    /// fixed by a person, and probing faster only adds failed logins at the target.
    pub fn pause(&self, consecutive: u32) -> Duration {
        self.interval(consecutive)
            .max(self.max_interval.min(Duration::from_secs(60)))
    }

    fn delay(&self, nth: u32, hint: Option<Duration>, random: f64) -> Duration {
        let base = self.interval(nth).as_secs_f64();
        let spread = self.randomization.clamp(0.0, 1.0);
        let factor = 1.0 - spread + 2.0 * spread * random.clamp(0.0, 1.0);
        let jittered = Duration::from_secs_f64((base * factor).max(0.0));
        match hint {
            Some(wait) => jittered.max(wait.min(self.max_interval)),
            None => jittered,
        }
    }

    fn within_budget(&self, elapsed: Duration, delay: Duration) -> Option<Duration> {
        (elapsed + delay <= self.max_elapsed).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_interval: Duration::from_secs(2),
            multiplier: 2.0,
            max_interval: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(3600),
            randomization: 0.5,
        }
    }

    #[test]
    fn intervals_grow_exponentially_up_to_the_cap() {
        let p = policy();
        let secs: Vec<u64> = (1..=7).map(|n| p.interval(n).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn jitter_spreads_the_wait_by_the_randomization_factor() {
        let p = policy();
        assert_eq!(
            p.after_failure(1, Duration::ZERO, None, 0.0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            p.after_failure(1, Duration::ZERO, None, 0.5),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            p.after_failure(2, Duration::ZERO, None, 1.0),
            Some(Duration::from_secs(6))
        );
    }

    #[test]
    fn a_requested_wait_is_honoured_up_to_the_cap() {
        let p = policy();
        let three = Some(Duration::from_secs(3));
        assert_eq!(
            p.after_failure(1, Duration::ZERO, three, 0.0),
            Some(Duration::from_secs(3))
        );
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(
            p.after_throttle(1, Duration::ZERO, hour, 0.0),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn gives_up_after_max_attempts_or_max_elapsed() {
        let p = policy();
        assert!(p.after_failure(4, Duration::ZERO, None, 0.5).is_some());
        assert_eq!(p.after_failure(5, Duration::ZERO, None, 0.5), None);
        assert_eq!(
            p.after_failure(1, Duration::from_secs(3599), None, 0.5),
            None
        );
    }

    #[test]
    fn a_paused_connector_waits_at_least_a_minute_or_the_cap() {
        let p = policy();
        assert_eq!(p.pause(1), Duration::from_secs(60));
        let short = RetryPolicy {
            max_interval: Duration::from_secs(5),
            ..policy()
        };
        assert_eq!(short.pause(1), Duration::from_secs(5));
    }

    #[test]
    fn throttling_does_not_use_up_attempts() {
        let p = policy();
        assert!(p.after_throttle(50, Duration::ZERO, None, 0.5).is_some());
    }
}
