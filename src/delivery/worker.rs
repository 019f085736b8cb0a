//! The delivery loop: lease due deliveries, run each through its connector, record the
//! outcome, and sleep until the next one is due.
//!
//! Nothing waits in memory: a failed delivery gets `next_attempt_at` in the store and its
//! lease released, so a restart resumes exactly where the last process stopped. The loop
//! wakes when ingest stores something ([`Worker::waker`]), when an attempt finishes, or
//! when the next delivery falls due.
//!
//! A connector whose credentials are rejected (401/403) is paused: its deliveries are not
//! leased until the pause ends, then one round probes it. They wait without using up their
//! attempt budget, since the conversation is not at fault.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::retry::RetryPolicy;
use crate::connectors::{
    Checkpoint, DeliveryError, DeliveryJob, Failure, Receipt, Registry, StepOutputs,
};
use crate::model::{Conversation, Timestamp};
use crate::render::DeliveryInfo;
use crate::store::{AttemptOutcome, AttemptRecord, LeasedDelivery, NextState, Store, StoreError};

/// The longest the loop sleeps without checking the store (a safety net if a wake-up is
/// ever missed; wake-ups make the normal case immediate).
const MAX_IDLE: Duration = Duration::from_secs(30);
/// Wait after a store error before trying again.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// Runs deliveries.
#[derive(Debug)]
pub struct Worker {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    policy: RetryPolicy,
    concurrency: usize,
    lease_for: Duration,
    wake: Arc<Notify>,
    paused: Mutex<HashMap<String, Pause>>,
}

/// A connector whose credentials were rejected.
#[derive(Debug, Clone, Copy)]
struct Pause {
    until: Timestamp,
    consecutive: u32,
}

impl Worker {
    /// `concurrency` attempts run at once; a leased delivery is another process's after
    /// `lease_for` (it must exceed the longest attempt).
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        policy: RetryPolicy,
        concurrency: usize,
        lease_for: Duration,
    ) -> Self {
        Self {
            store,
            registry,
            policy,
            concurrency: concurrency.max(1),
            lease_for,
            wake: Arc::new(Notify::new()),
            paused: Mutex::new(HashMap::new()),
        }
    }

    /// Notified by ingest after a commit, so new deliveries start at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Connectors currently paused, by name.
    pub fn paused_connectors(&self) -> Vec<String> {
        let now = Timestamp::now();
        self.paused
            .lock()
            .expect("pause map is never poisoned: no panics while held")
            .iter()
            .filter(|(_, p)| p.until > now)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Runs until `shutdown` completes; then lets running attempts finish for up to `grace`.
    /// Unfinished ones keep their lease and are resumed by the next start.
    pub async fn run_until_stopped(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()>,
        grace: Duration,
    ) {
        tokio::pin!(shutdown);
        let mut running: JoinSet<()> = JoinSet::new();
        loop {
            let mut wait = MAX_IDLE;
            let free = self.concurrency.saturating_sub(running.len());
            if free > 0 {
                let paused = self.paused_connectors();
                match self
                    .store
                    .lease_due(Timestamp::now(), free, self.lease_for, &paused)
                    .await
                {
                    Ok(batch) => {
                        let leased = batch.len();
                        for delivery in batch {
                            running.spawn(self.clone().attempt(delivery));
                        }
                        if leased == free {
                            // There may be more due: loop as soon as a slot frees.
                            wait = Duration::ZERO;
                        } else if let Some(at) = self.next_wake(&paused).await {
                            wait = at;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot lease deliveries");
                        wait = STORE_RETRY;
                    }
                }
            }
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = running.join_next(), if !running.is_empty() => {}
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait), if !wait.is_zero() || running.is_empty() => {}
            }
        }
        let finished = tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                unfinished = running.len(),
                "attempts still running at shutdown; they resume on next start"
            );
            running.abort_all();
        }
    }

    /// Time until the next due delivery or the end of a pause, whichever is first.
    async fn next_wake(&self, paused: &[String]) -> Option<Duration> {
        let now = Timestamp::now();
        let due = match self.store.next_due(paused).await {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the queue");
                return Some(STORE_RETRY);
            }
        };
        let pause_end = self
            .paused
            .lock()
            .expect("never poisoned")
            .values()
            .map(|p| p.until)
            .filter(|t| *t > now)
            .min();
        let next = [due, pause_end].into_iter().flatten().min()?;
        let wait = (next.as_datetime() - now.as_datetime())
            .try_into()
            .unwrap_or(Duration::ZERO);
        // A due delivery that could not be leased (another process holds it) must not spin.
        Some(Duration::max(wait, Duration::from_millis(5)).min(MAX_IDLE))
    }

    /// Leases every delivery due now and runs them to completion; returns how many ran.
    /// For tests and one-shot tools: no timers involved.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn try_run_once(self: &Arc<Self>) -> Result<usize, StoreError> {
        let paused = self.paused_connectors();
        let batch = self
            .store
            .lease_due(Timestamp::now(), self.concurrency, self.lease_for, &paused)
            .await?;
        let count = batch.len();
        let mut running = JoinSet::new();
        for delivery in batch {
            running.spawn(self.clone().attempt(delivery));
        }
        while running.join_next().await.is_some() {}
        Ok(count)
    }

    /// One attempt of one delivery, recorded in the store whatever happens.
    async fn attempt(self: Arc<Self>, leased: LeasedDelivery) {
        let attempt = leased.attempts + 1;
        let kind = self
            .registry
            .get(&leased.connector)
            .map(|c| c.kind().to_owned())
            .unwrap_or_default();
        let span = tracing::info_span!(
            "deliver",
            connector = %leased.connector,
            r#type = %kind,
            conversation_id = %leased.conversation_id,
            delivery_id = leased.id,
            attempt,
        );
        async move {
            let started_at = Timestamp::now();
            let clock = Instant::now();
            let result = self.run(&leased, attempt).await;
            let (record, next) = self.decide(&leased, attempt, result, started_at, clock.elapsed());
            match &next {
                NextState::Delivered { .. } => {
                    tracing::info!(elapsed_ms = clock.elapsed().as_millis() as u64, "delivered")
                }
                NextState::RetryAt { at, reason, .. } => {
                    tracing::warn!(error = %reason, retry_at = %at, "delivery failed, will retry")
                }
                NextState::Dead { reason } => tracing::error!(error = %reason, "delivery dead"),
            }
            if let Err(e) = self.store.finish_attempt(leased.id, record, next).await {
                // The lease expires and the delivery is attempted again: at-least-once.
                tracing::error!(error = %e, "cannot record the attempt");
            }
        }
        .instrument(span)
        .await;
    }

    async fn run(&self, leased: &LeasedDelivery, attempt: u32) -> Result<Receipt, DeliveryError> {
        let connector =
            self.registry
                .get(&leased.connector)
                .ok_or_else(|| DeliveryError::Invalid {
                    step: "-".into(),
                    message: format!("connector `{}` is no longer configured", leased.connector),
                })?;
        let conversation: Conversation = serde_json::from_str(&leased.normalized)
            .map_err(|e| DeliveryError::Io(format!("stored conversation unreadable: {e}")))?;
        let raw: serde_json::Value =
            serde_json::from_slice(&leased.raw).unwrap_or(serde_json::Value::Null);
        let job = DeliveryJob {
            conversation: &conversation,
            raw: &raw,
            delivery: DeliveryInfo {
                id: leased.id,
                key: leased.key.clone(),
                version: leased.version,
                attempt,
            },
            completed: &leased.completed,
            ledger: &leased.ledger,
        };
        let checkpoint = StoreCheckpoint {
            store: self.store.as_ref(),
            delivery_id: leased.id,
        };
        connector.deliver(&job, &checkpoint).await
    }

    /// Turns an attempt's result into the record and the delivery's next state.
    fn decide(
        &self,
        leased: &LeasedDelivery,
        attempt: u32,
        result: Result<Receipt, DeliveryError>,
        started_at: Timestamp,
        duration: Duration,
    ) -> (AttemptRecord, NextState) {
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
                self.resume(&leased.connector);
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
            .map(|first| {
                (started_at.as_datetime() - first.as_datetime())
                    .try_into()
                    .unwrap_or(Duration::ZERO)
            })
            .unwrap_or(Duration::ZERO);
        let random = fastrand::f64();
        let retry_at = |delay: Duration, counts: bool| NextState::RetryAt {
            at: Timestamp::now().plus(delay),
            counts,
            reason: reason.clone(),
        };
        let next = match error.class() {
            Failure::Invalid => NextState::Dead {
                reason: reason.clone(),
            },
            Failure::Transient => match self.policy.after_failure(
                leased.failures + 1,
                elapsed,
                error.retry_after(),
                random,
            ) {
                Some(delay) => retry_at(delay, true),
                None => NextState::Dead {
                    reason: format!("gave up after {attempt} attempts: {reason}"),
                },
            },
            Failure::RateLimited => match self.policy.after_throttle(
                leased.failures,
                elapsed,
                error.retry_after(),
                random,
            ) {
                Some(delay) => retry_at(delay, false),
                None => NextState::Dead {
                    reason: format!("gave up: still rate limited after {elapsed:?}: {reason}"),
                },
            },
            Failure::Unhealthy => {
                let until = self.pause(&leased.connector);
                tracing::error!(
                    error = %reason,
                    paused_until = %until,
                    "target rejected the connector's credentials or endpoint; deliveries wait until it is fixed"
                );
                NextState::RetryAt {
                    at: until,
                    counts: false,
                    reason: reason.clone(),
                }
            }
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

    fn pause(&self, connector: &str) -> Timestamp {
        let mut paused = self.paused.lock().expect("never poisoned");
        let now = Timestamp::now();
        let entry = paused.entry(connector.to_owned()).or_insert(Pause {
            until: now,
            consecutive: 0,
        });
        // Several deliveries may fail in the same round; count the round once.
        if entry.until <= now {
            entry.consecutive += 1;
            entry.until = now.plus(self.policy.pause(entry.consecutive));
        }
        entry.until
    }

    fn resume(&self, connector: &str) {
        if self
            .paused
            .lock()
            .expect("never poisoned")
            .remove(connector)
            .is_some()
        {
            tracing::info!(connector, "connector healthy again");
        }
    }
}

/// Records each completed step in the store before the next step runs.
struct StoreCheckpoint<'a> {
    store: &'a dyn Store,
    delivery_id: i64,
}

#[async_trait]
impl Checkpoint for StoreCheckpoint<'_> {
    async fn step_completed(
        &self,
        step: &str,
        outputs: &StepOutputs,
        remember: &StepOutputs,
    ) -> Result<(), DeliveryError> {
        self.store
            .complete_step(self.delivery_id, step, outputs, remember)
            .await
            .map_err(|e| DeliveryError::Io(format!("cannot record step `{step}`: {e}")))
    }
}
