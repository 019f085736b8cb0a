//! The delivery loop: lease due deliveries, run each through its connector, record the
//! outcome, and sleep until the next one is due.
//!
//! Nothing waits in memory: a failed delivery gets `next_attempt_at` in the store and its
//! lease released, so a restart resumes exactly where the last process stopped. The loop
//! wakes when ingest stores something ([`Worker::waker`]), when an attempt finishes, or
//! when the next delivery falls due.
//!
//! Each connector has a [`Gate`]: its circuit breaker, concurrency and rate limit decide how
//! many of its deliveries are leased, so a failing or throttled target holds back only its
//! own deliveries, in the store, never a worker slot another connector needs. A connector
//! whose credentials are rejected (401/403) has its circuit opened at once: its deliveries
//! wait without using up their attempt budget, since the conversation is not at fault, and
//! one delivery probes the target when the pause ends.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::connectors::{Checkpoint, DeliveryError, DeliveryJob, Failure, LiveRegistry, Receipt};
use crate::delivery::decision::{Ended, decide};
use crate::delivery::limits::{CircuitState, Gate, GateView, Health};
use crate::delivery::retry::RetryPolicy;
use crate::metrics::Metrics;
use crate::model::{Conversation, StepOutputs, Timestamp};
use crate::render::DeliveryInfo;
use crate::store::{AttemptOutcome, LeasedDelivery, NextState, Queue, Store, StoreError};
use crate::telemetry::Escaped;

/// The longest the loop sleeps without checking the store (a safety net if a wake-up is
/// ever missed; wake-ups make the normal case immediate).
const MAX_IDLE: Duration = Duration::from_secs(30);

/// Wait after a store error before trying again.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// Runs deliveries.
#[derive(Debug)]
pub struct Worker {
    store: Arc<dyn Store>,
    registry: Arc<LiveRegistry>,
    metrics: Arc<Metrics>,
    policy: RetryPolicy,
    concurrency: usize,
    lease_for: Duration,
    wake: Arc<Notify>,
    /// Attempts calling their target now. A slot is free once the target has answered:
    /// recording the outcome (a durable commit) does not hold it, so `concurrency` bounds the
    /// calls at the targets, not the waits for the disk.
    calling: AtomicUsize,
    /// Notified when an attempt's call ends.
    freed: Notify,
    gates: Mutex<HashMap<String, Gate>>,
    /// Deliveries leased by this worker and not yet finished.
    in_flight: Mutex<HashSet<i64>>,
}

impl Worker {
    /// `concurrency` attempts run at once; a leased delivery is another process's after
    /// `lease_for` unless renewed, which the run loop does every third of it while the
    /// attempt runs.
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<LiveRegistry>,
        metrics: Arc<Metrics>,
        policy: RetryPolicy,
        concurrency: usize,
        lease_for: Duration,
    ) -> Self {
        Self {
            store,
            registry,
            metrics,
            policy,
            concurrency: concurrency.max(1),
            lease_for,
            wake: Arc::new(Notify::new()),
            calling: AtomicUsize::new(0),
            freed: Notify::new(),
            gates: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
        }
    }

    /// Notified by ingest after a commit, so new deliveries start at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Connectors whose circuit is open now, by name.
    pub fn open_circuits(&self) -> Vec<String> {
        self.gates()
            .into_iter()
            .filter(|g| g.circuit == CircuitState::Open)
            .map(|g| g.connector)
            .collect()
    }

    /// Every configured connector's gate, for `/readyz`, metrics and the dashboard.
    pub fn gates(&self) -> Vec<GateView> {
        let now = Timestamp::now();
        let gates = self.sync_gates();
        let mut views: Vec<GateView> = gates.iter().map(|(name, g)| g.view(name, now)).collect();
        views.sort_by(|a, b| a.connector.cmp(&b.connector));
        views
    }

    /// The gates, brought in line with the connectors configured now (a reload may have
    /// added, removed or re-limited some; circuit states carry over).
    fn sync_gates(&self) -> parking_lot::MutexGuard<'_, HashMap<String, Gate>> {
        let registry = self.registry.current();
        let mut gates = self.gates.lock();
        // A removed connector's gate goes once its last attempt ends.
        gates.retain(|name, gate| registry.get(name).is_some() || !gate.is_idle());
        for (name, limits) in registry.limits() {
            match gates.get_mut(name) {
                Some(gate) => {
                    gate.reconfigure(limits.circuit, limits.concurrency, limits.bucket.clone())
                }
                None => {
                    gates.insert(
                        name.to_owned(),
                        Gate::new(limits.circuit, limits.concurrency, limits.bucket.clone()),
                    );
                }
            }
        }
        gates
    }

    /// Leases up to `free` due deliveries within every connector's limits, and marks them
    /// started. Also returns when a connector held back by time (cool-down, rate limit) may
    /// take work again, and the connectors that may take work now.
    async fn lease(
        &self,
        free: usize,
    ) -> Result<(Vec<LeasedDelivery>, Option<Timestamp>, Vec<String>), StoreError> {
        let now = Timestamp::now();
        let mut caps = BTreeMap::new();
        let mut changes = None::<Timestamp>;
        for (name, gate) in self.sync_gates().iter() {
            let (cap, change) = gate.capacity(now, free);
            caps.insert(name.clone(), cap);
            changes = [changes, change].into_iter().flatten().min();
        }
        let batch = self
            .store
            .lease_due(now, free, self.lease_for, &caps)
            .await?;
        {
            let mut gates = self.gates.lock();
            let mut in_flight = self.in_flight.lock();
            for delivery in &batch {
                if let Some(gate) = gates.get_mut(&delivery.connector) {
                    gate.started(now);
                }
                in_flight.insert(delivery.id);
            }
            self.calling.fetch_add(batch.len(), Ordering::Relaxed);
        }
        let open = caps
            .into_iter()
            .filter(|(_, cap)| *cap > 0)
            .map(|(name, _)| name)
            .collect();
        Ok((batch, changes, open))
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
        let mut renewal = tokio::time::interval(self.lease_for / 3);
        renewal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Under load, slots free one at a time; leasing for each would cost a store round
        // trip per delivery. So a freed slot leads to a lease only once a quarter of the
        // slots are free (or none is taken); new work, a due time and a held-back connector's
        // release lease at once.
        let batch = (self.concurrency / 4).max(1);
        let mut lease_now = true;
        // When the next lease is due without any event: a retry's time, a cool-down's end.
        let mut next_look = tokio::time::Instant::now();
        loop {
            // Every finished attempt is reaped at each turn, not one per turn: under steady
            // load the loop turns for new work and freed slots more often than it takes the
            // join branch, and each finished task held its memory until joined.
            while let Some(finished) = running.try_join_next() {
                reaped(finished);
            }
            let free = self
                .concurrency
                .saturating_sub(self.calling.load(Ordering::Relaxed));
            if lease_now && free > 0 {
                next_look = tokio::time::Instant::now() + MAX_IDLE;
                match self.lease(free).await {
                    Ok((leased, changes, open)) => {
                        let full = leased.len() == free;
                        for delivery in leased {
                            running.spawn(self.clone().attempt(delivery));
                        }
                        // A full batch may have left more due: the next freed slots take
                        // them. Otherwise, look again when the next one is due.
                        if !full && let Some(at) = self.next_wake(&open, changes).await {
                            next_look = tokio::time::Instant::now() + at;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot lease deliveries");
                        next_look = tokio::time::Instant::now() + STORE_RETRY;
                    }
                }
            }
            lease_now = tokio::select! {
                () = &mut shutdown => break,
                _ = renewal.tick(), if !running.is_empty() => {
                    self.renew().await;
                    false
                }
                () = self.freed.notified() => {
                    let calling = self.calling.load(Ordering::Relaxed);
                    calling == 0 || self.concurrency.saturating_sub(calling) >= batch
                }
                Some(finished) = running.join_next(), if !running.is_empty() => {
                    reaped(finished);
                    false
                }
                () = self.wake.notified() => true,
                () = tokio::time::sleep_until(next_look) => true,
            };
        }
        let finished = tokio::time::timeout(grace, async {
            while let Some(finished) = running.join_next().await {
                reaped(finished);
            }
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                unfinished = running.len(),
                "attempts still running at shutdown; they start again on the next run"
            );
            // Taken before the attempts are cut: each lets go of its own as it is dropped.
            let cut: Vec<i64> = self.in_flight.lock().drain().collect();
            running.abort_all();
            while running.join_next().await.is_some() {}
            if let Err(e) = self.store.release(&cut).await {
                tracing::error!(error = %e, "cannot release the leases of cut attempts; they wait for the lease to end");
            }
        }
    }

    /// Keeps the leases of the attempts running here: a long attempt is not taken over by
    /// another replica while it is still going.
    async fn renew(&self) {
        let ids: Vec<i64> = self.in_flight.lock().iter().copied().collect();
        if ids.is_empty() {
            return;
        }
        let until = Timestamp::now().plus(self.lease_for);
        if let Err(e) = self.store.renew(&ids, until).await {
            tracing::error!(error = %e, "cannot renew leases; another replica may take these deliveries over");
        }
    }

    /// Time until the next due delivery of a connector in `open` (not held back), or until
    /// a held-back one may take work again, whichever is first.
    async fn next_wake(&self, open: &[String], changes: Option<Timestamp>) -> Option<Duration> {
        let now = Timestamp::now();
        let due = match self.store.next_due(open).await {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the queue");
                return Some(STORE_RETRY);
            }
        };
        let next = [due, changes].into_iter().flatten().min()?;
        let wait = next.since(now);
        // A due delivery that could not be leased (another process holds it) must not spin.
        Some(Duration::max(wait, Duration::from_millis(5)).min(MAX_IDLE))
    }

    /// Leases every delivery due now and runs them to completion; returns how many ran.
    /// For tests and one-shot tools: no timers involved.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn try_run_once(self: &Arc<Self>) -> Result<usize, StoreError> {
        let (batch, _, _) = self.lease(self.concurrency).await?;
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
        let slot = Slot(self.clone());
        let leased_here = InFlight(self.clone(), leased.id);
        let attempt = leased.attempts + 1;
        let registry = self.registry.current();
        let kind = registry
            .get(&leased.connector)
            .map(|c| c.kind().to_owned())
            .unwrap_or_default();
        let span = tracing::info_span!(
            "deliver",
            connector = %leased.connector,
            r#type = %kind,
            conversation_id = %Escaped(&leased.conversation_id),
            delivery_id = leased.id,
            // Signed: trace exporters keep unsigned numbers as text.
            attempt = i64::from(attempt),
        );
        async move {
            let started_at = Timestamp::now();
            let clock = Instant::now();
            let result = self.run(&registry, &leased, attempt).await;
            let summary = result
                .as_ref()
                .err()
                .map(DeliveryError::summary)
                .unwrap_or_default();
            let reopens = self.gate_finished(&leased.connector, &result, &summary);
            drop(slot);
            let (record, next) = decide(
                &self.policy,
                &leased,
                result,
                Ended {
                    attempt,
                    started_at,
                    duration: clock.elapsed(),
                    refused_until: reopens,
                    now: Timestamp::now(),
                    random: fastrand::f64(),
                },
            );
            match &next {
                NextState::Delivered { .. } => {
                    let latency = Timestamp::now().since(leased.queued_at);
                    self.metrics.delivered(&leased.connector, latency);
                    tracing::info!(elapsed_ms = clock.elapsed().as_millis() as u64, "delivered")
                }
                NextState::RetryAt { at, .. } => {
                    if record.outcome == AttemptOutcome::Waiting {
                        tracing::error!(
                            error = %Escaped(&summary),
                            paused_until = %at,
                            "target rejected the connector's credentials or endpoint; deliveries wait until it is fixed"
                        );
                    }
                    self.metrics.retried(&leased.connector);
                    tracing::warn!(error = %Escaped(&summary), retry_at = %at, "delivery failed, will retry")
                }
                NextState::Dead { .. } => {
                    self.metrics.dead(&leased.connector);
                    tracing::error!(error = %Escaped(&summary), "delivery dead")
                }
            }
            if let Err(e) = self.store.finish_attempt(leased.id, record, next).await {
                // The lease expires and the delivery is attempted again: at-least-once.
                tracing::error!(error = %e, "cannot record the attempt");
            }
            drop(leased_here);
        }
        .instrument(span)
        .await;
    }

    /// Tells the connector's gate how the attempt went; returns when a target that refused
    /// the credentials is next called.
    fn gate_finished(
        &self,
        connector: &str,
        result: &Result<Receipt, DeliveryError>,
        summary: &str,
    ) -> Option<Timestamp> {
        let now = Timestamp::now();
        let mut gates = self.gates.lock();
        let gate = gates.get_mut(connector)?;
        let health = match result.as_ref().map_err(DeliveryError::class) {
            Ok(_) => Health::Up,
            Err(Failure::Transient) => Health::Failing,
            Err(Failure::Unhealthy) => Health::Refused {
                pause: self.policy.pause(gate.opened() + 1),
            },
            Err(Failure::Invalid | Failure::RateLimited) => Health::Neutral,
        };
        match gate.finished(now, health, summary) {
            Some(CircuitState::Open) => tracing::error!(
                error = %Escaped(summary),
                retry_at = ?gate.open_until().map(|t| t.to_string()),
                "circuit open: not calling the target until the cool-down ends"
            ),
            Some(CircuitState::Closed) => tracing::info!("circuit closed: target healthy again"),
            _ => {}
        }
        matches!(health, Health::Refused { .. })
            .then(|| gate.open_until())
            .flatten()
    }

    async fn run(
        &self,
        registry: &crate::connectors::Registry,
        leased: &LeasedDelivery,
        attempt: u32,
    ) -> Result<Receipt, DeliveryError> {
        let connector = registry
            .get(&leased.connector)
            .ok_or_else(|| DeliveryError::Invalid {
                step: "-".into(),
                message: format!("connector `{}` is no longer configured", leased.connector),
            })?;
        let conversation: Conversation = serde_json::from_str(&leased.normalized)
            // A stored row that does not read will not read on a retry either.
            .map_err(|e| DeliveryError::Invalid {
                step: "-".into(),
                message: format!("stored conversation unreadable: {e}"),
            })?;
        let raw: serde_json::Value = if connector.reads().raw {
            serde_json::from_slice(&leased.raw).unwrap_or(serde_json::Value::Null)
        } else {
            serde_json::Value::Null
        };
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
        connector.attempt(&job, &checkpoint).await
    }
}

/// The slot an attempt takes from [`Worker::lease`] until its target has answered (or the
/// attempt is cut short).
struct Slot(Arc<Worker>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.calling.fetch_sub(1, Ordering::Relaxed);
        self.0.freed.notify_one();
    }
}

/// A delivery this worker holds the lease of, from [`Worker::lease`] until its attempt is
/// recorded or cut short: while it is here, its lease is renewed. Let go even if the
/// attempt panics, so that the lease runs out and another attempt takes it.
struct InFlight(Arc<Worker>, i64);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.lock().remove(&self.1);
    }
}

/// Logs an attempt that panicked (its delivery is attempted again once its lease runs out);
/// one that was cut short at shutdown says so itself.
fn reaped(finished: Result<(), tokio::task::JoinError>) {
    if let Err(e) = finished
        && e.is_panic()
    {
        tracing::error!(
            "an attempt panicked; its delivery is attempted again when its lease runs out"
        );
    }
}

/// Records each completed step in the store before the next step runs.
struct StoreCheckpoint<'a> {
    store: &'a dyn Queue,
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
            .map_err(|e| DeliveryError::Io {
                message: format!("cannot record step `{step}`: {e}"),
                class: crate::connectors::Failure::Transient,
            })
    }
}
