//! What an attempt's end means for its delivery: the record kept, and whether it is
//! delivered, retried when, or dead and why. A pure function of what it is given (the
//! policy, the lease, the result, the clock and the jitter), so it is tested without a
//! worker, a store or a clock.

use std::time::Duration;

use crate::connectors::{DeliveryError, Failure, Receipt};
use crate::delivery::retry::RetryPolicy;
use crate::model::Timestamp;
use crate::store::{AttemptOutcome, AttemptRecord, LeasedDelivery, NextState};

/// When and how an attempt ended, with the clock and the jitter it is judged by, so that the
/// decision is a function of what it is given.
pub(super) struct Ended {
    pub(super) attempt: u32,
    pub(super) started_at: Timestamp,
    pub(super) duration: Duration,
    /// The target refused the credentials; it is called again then.
    pub(super) refused_until: Option<Timestamp>,
    pub(super) now: Timestamp,
    /// Uniform in [0, 1): where in the jitter's range a retry falls.
    pub(super) random: f64,
}

/// Turns an attempt's result into the record and the delivery's next state.
pub(super) fn decide(
    policy: &RetryPolicy,
    leased: &LeasedDelivery,
    result: Result<Receipt, DeliveryError>,
    ended: Ended,
) -> (AttemptRecord, NextState) {
    let Ended {
        attempt,
        started_at,
        duration,
        refused_until,
        now,
        random,
    } = ended;
    let mut record = AttemptRecord {
        attempt,
        started_at,
        duration,
        outcome: AttemptOutcome::Delivered,
        status: None,
        step: None,
        error: None,
        excerpt: None,
    };
    let error = match result {
        Ok(receipt) => {
            if let Some((step, status)) = receipt.last_sent() {
                record.step = Some(step.to_owned());
                record.status = Some(status);
            }
            return (
                record,
                NextState::Delivered {
                    remote: receipt.remote_ids(),
                    ledger: receipt.ledger,
                },
            );
        }
        Err(error) => error,
    };
    record.status = error.status();
    record.step = error.step().map(str::to_owned);
    record.error = Some(error.to_string());
    if let DeliveryError::Status { excerpt, .. } = &error {
        record.excerpt = Some(excerpt.clone());
    }
    let reason = error.to_string();
    let elapsed = leased
        .first_attempt_at
        .map_or(Duration::ZERO, |first| started_at.since(first));
    let retry_at = |delay: Duration, counts: bool| NextState::RetryAt {
        at: now.plus(delay),
        counts,
        reason: reason.clone(),
    };
    let next = match error.class() {
        Failure::Invalid => NextState::Dead {
            reason: reason.clone(),
        },
        Failure::Transient => {
            match policy.after_failure(leased.failures + 1, elapsed, error.retry_after(), random) {
                Some(delay) => retry_at(delay, true),
                None => NextState::Dead {
                    reason: format!("gave up after {attempt} attempts: {reason}"),
                },
            }
        }
        Failure::RateLimited => {
            match policy.after_throttle(leased.failures, elapsed, error.retry_after(), random) {
                Some(delay) => retry_at(delay, false),
                None => NextState::Dead {
                    reason: format!("gave up: still rate limited after {elapsed:?}: {reason}"),
                },
            }
        }
        Failure::Unhealthy => NextState::RetryAt {
            at: refused_until.unwrap_or_else(|| now.plus(policy.pause(1))),
            counts: false,
            reason: reason.clone(),
        },
    };
    record.outcome = match &next {
        NextState::Delivered { .. } => AttemptOutcome::Delivered,
        NextState::RetryAt { counts: false, .. } if error.class() == Failure::Unhealthy => {
            AttemptOutcome::Waiting
        }
        NextState::RetryAt { .. } => AttemptOutcome::Retry,
        NextState::Dead { .. } => AttemptOutcome::Dead,
    };
    (record, next)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::connectors::{StepOutcome, StepReport};
    use crate::model::StepOutputs;

    /// 10 s, 20 s, 40 s... with ±50 % jitter; three counted failures; an hour in all.
    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            initial_interval: Duration::from_secs(10),
            multiplier: 2.0,
            max_interval: Duration::from_secs(600),
            max_elapsed: Duration::from_secs(3600),
            randomization: 0.5,
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_millis(seconds * 1000).unwrap()
    }

    /// A delivery that failed `failures` times (counted), first tried at `first`.
    fn leased(failures: u32, first: Option<Timestamp>) -> LeasedDelivery {
        LeasedDelivery {
            id: 7,
            conversation_id: "smartsupp:1:2".into(),
            version: 1,
            connector: "helpdesk".into(),
            key: "cb:helpdesk:smartsupp:1:2".into(),
            attempts: failures,
            failures,
            first_attempt_at: first,
            queued_at: at(900),
            raw: Vec::new(),
            normalized: String::new(),
            completed: BTreeMap::new(),
            ledger: StepOutputs::new(),
        }
    }

    /// Attempt `attempt`, started at 1,000 s and judged at 1,001 s, its jitter three quarters
    /// up its range (a factor of 1.25 at ±50 %).
    fn ended(attempt: u32) -> Ended {
        Ended {
            attempt,
            started_at: at(1_000),
            duration: Duration::from_millis(120),
            refused_until: None,
            now: at(1_001),
            random: 0.75,
        }
    }

    fn answer(status: u16, class: Failure, retry_after: Option<Duration>) -> DeliveryError {
        DeliveryError::Status {
            step: "ticket".into(),
            status,
            class,
            retry_after,
            excerpt: r#"{"error":"RecordInvalid"}"#.into(),
        }
    }

    fn retry(next: &NextState) -> (Timestamp, bool) {
        match next {
            NextState::RetryAt { at, counts, .. } => (*at, *counts),
            other => panic!("not a retry: {other:?}"),
        }
    }

    fn dead(next: &NextState) -> &str {
        match next {
            NextState::Dead { reason } => reason,
            other => panic!("not dead: {other:?}"),
        }
    }

    #[test]
    fn a_success_records_the_last_step_sent() {
        let step = |name: &str, outcome| StepReport {
            step: name.into(),
            outcome,
            outputs: StepOutputs::new(),
        };
        let receipt = Receipt {
            steps: vec![
                step("search", StepOutcome::Sent(200)),
                step("ticket", StepOutcome::Sent(201)),
                step("note", StepOutcome::Skipped),
            ],
            ledger: StepOutputs::new(),
        };
        let (record, next) = decide(&policy(), &leased(0, None), Ok(receipt), ended(1));
        assert!(matches!(next, NextState::Delivered { .. }), "{next:?}");
        assert_eq!(record.outcome, AttemptOutcome::Delivered);
        assert_eq!(
            (record.step.as_deref(), record.status),
            (Some("ticket"), Some(201))
        );
        assert_eq!(record.error, None);
    }

    #[test]
    fn a_transient_failure_is_retried_after_the_jittered_interval_counted_from_now() {
        let error = answer(503, Failure::Transient, None);
        let (record, next) = decide(&policy(), &leased(1, Some(at(990))), Err(error), ended(2));
        // The second failure: 20 s, times 1.25.
        assert_eq!(retry(&next), (at(1_026), true));
        assert_eq!(record.outcome, AttemptOutcome::Retry);
        assert_eq!(
            (record.step.as_deref(), record.status),
            (Some("ticket"), Some(503))
        );
        assert_eq!(
            record.excerpt.as_deref(),
            Some(r#"{"error":"RecordInvalid"}"#)
        );
    }

    #[test]
    fn a_target_asking_for_longer_than_the_backoff_is_waited_for() {
        let error = answer(503, Failure::Transient, Some(Duration::from_secs(90)));
        let (_, next) = decide(&policy(), &leased(0, None), Err(error), ended(1));
        assert_eq!(retry(&next), (at(1_091), true));
    }

    #[test]
    fn the_last_counted_failure_makes_the_delivery_dead_saying_how_many_attempts() {
        let error = answer(503, Failure::Transient, None);
        let (record, next) = decide(&policy(), &leased(2, Some(at(950))), Err(error), ended(3));
        assert_eq!(record.outcome, AttemptOutcome::Dead);
        assert!(
            dead(&next).starts_with("gave up after 3 attempts: step `ticket`: HTTP 503"),
            "{next:?}"
        );
    }

    #[test]
    fn a_retry_that_would_end_past_max_elapsed_is_not_made() {
        // First tried 59 min 50 s before: a 12.5 s wait would end past the hour.
        let error = answer(503, Failure::Transient, None);
        let (_, next) = decide(
            &policy(),
            &leased(0, Some(at(-2_590))),
            Err(error),
            ended(1),
        );
        assert!(
            dead(&next).starts_with("gave up after 1 attempts"),
            "{next:?}"
        );
    }

    #[test]
    fn a_rate_limit_waits_what_the_target_asks_and_costs_no_attempt() {
        let error = answer(429, Failure::RateLimited, Some(Duration::from_secs(120)));
        // Even with the attempt budget spent, a throttled delivery is not given up.
        let (record, next) = decide(&policy(), &leased(2, Some(at(990))), Err(error), ended(3));
        assert_eq!(retry(&next), (at(1_121), false));
        assert_eq!(record.outcome, AttemptOutcome::Retry);
    }

    #[test]
    fn an_invalid_request_is_dead_at_once() {
        let error = answer(422, Failure::Invalid, None);
        let (record, next) = decide(&policy(), &leased(0, None), Err(error), ended(1));
        assert_eq!(record.outcome, AttemptOutcome::Dead);
        assert_eq!(
            dead(&next),
            r#"step `ticket`: HTTP 422: {"error":"RecordInvalid"}"#
        );
    }

    #[test]
    fn refused_credentials_wait_for_the_circuit_without_counting() {
        let error = || answer(401, Failure::Unhealthy, None);
        let reopens = Ended {
            refused_until: Some(at(5_000)),
            ..ended(1)
        };
        let (record, next) = decide(&policy(), &leased(0, None), Err(error()), reopens);
        assert_eq!(retry(&next), (at(5_000), false));
        assert_eq!(record.outcome, AttemptOutcome::Waiting);
        // Without the circuit's time: the first pause, at least a minute.
        let (_, next) = decide(&policy(), &leased(0, None), Err(error()), ended(1));
        assert_eq!(retry(&next), (at(1_061), false));
    }
}
