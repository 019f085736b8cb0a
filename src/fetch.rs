//! The fetch stage: for products whose webhook does not carry the transcript (Smartsupp v2,
//! Crisp, LiveChat's `chat_deactivated`, Tidio), the kept event is turned into a
//! conversation by reading the product's REST API, after the product was answered.
//!
//! The products re-deliver or time out within seconds, so the event is stored and answered
//! first ([`crate::intake`]); the [`Fetcher`] then leases due jobs ([`crate::store::Fetches`]),
//! calls the product ([`crate::sources::Source::fetch`]) and stores what it read through the
//! same path as a posted conversation ([`crate::intake::Intake::keep`]): a version, with one
//! delivery per matching connector. Failures are judged as deliveries' are
//! ([`crate::connectors::Failure`], [`RetryPolicy`]): retried with backoff, throttled as told,
//! given up after the same budget and kept dead with the reason; refused credentials pause
//! the source's fetches (they wait, uncounted, and one probes when the pause ends).
//!
//! A job leaves the queue once its version is committed. If the process dies in between,
//! the job runs again and the identical fetch is a duplicate; a conversation that changed
//! meanwhile is a later version, as it should be. The same holds when an attempt outlasts
//! its lease (a product answering very slowly) and another replica takes the job over.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::connectors::{Failure, LiveRegistry};
use crate::delivery::retry::RetryPolicy;
use crate::intake::Intake;
use crate::metrics::Metrics;
use crate::model::Timestamp;
use crate::privacy::Redactor;
use crate::sources::api::{ApiClient, FetchError};
use crate::sources::instance::Instances;
use crate::store::{FetchNext, LeasedFetch, Store, StoreError};
use crate::telemetry::Escaped;

/// Jobs leased at once; each is a few calls to one product.
const BATCH: usize = 8;

/// How long the fetcher waits without news before looking at the queue again (a job kept
/// by another replica wakes no one here).
const IDLE_LOOK: Duration = Duration::from_secs(30);

/// A source whose credentials were refused: not called until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    /// When one job may probe again.
    pub until: Timestamp,
    /// Refusals in a row, for the pause's growth.
    pub consecutive: u32,
    /// The last refusal.
    pub reason: String,
}

/// The fetch stage's worker.
#[derive(Debug)]
pub struct Fetcher {
    store: Arc<dyn Store>,
    sources: Instances,
    http: reqwest::Client,
    policy: RetryPolicy,
    metrics: Arc<Metrics>,
    registry: Arc<LiveRegistry>,
    redactor: Arc<Redactor>,
    /// The delivery worker's, told when a fetched version brings deliveries.
    deliveries: Arc<Notify>,
    wake: Arc<Notify>,
    lease_for: Duration,
    paused: Mutex<HashMap<String, Pause>>,
}

/// What the fetcher is built from.
#[derive(Debug)]
pub struct FetcherParts {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The configured sources.
    pub sources: Instances,
    /// The shared HTTP client.
    pub http: reqwest::Client,
    /// `[delivery]`'s retry policy.
    pub policy: RetryPolicy,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Connectors, for routing the fetched versions.
    pub registry: Arc<LiveRegistry>,
    /// `[privacy] redact`.
    pub redactor: Arc<Redactor>,
    /// The delivery worker's waker.
    pub deliveries: Arc<Notify>,
    /// How long a job is this process's while it runs: long enough for its calls.
    pub lease_for: Duration,
}

impl Fetcher {
    /// A fetcher of `parts`.
    pub fn new(parts: FetcherParts) -> Self {
        Self {
            store: parts.store,
            sources: parts.sources,
            http: parts.http,
            policy: parts.policy,
            metrics: parts.metrics,
            registry: parts.registry,
            redactor: parts.redactor,
            deliveries: parts.deliveries,
            wake: Arc::new(Notify::new()),
            lease_for: parts.lease_for,
            paused: Mutex::new(HashMap::new()),
        }
    }

    /// Notified by ingest when a job is kept.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Sources whose fetches are paused now, with until when and why.
    pub fn paused(&self) -> Vec<(String, Pause)> {
        let now = Timestamp::now();
        let mut paused: Vec<(String, Pause)> = self
            .paused
            .lock()
            .iter()
            .filter(|(_, p)| p.until > now)
            .map(|(s, p)| (s.clone(), p.clone()))
            .collect();
        paused.sort_by(|a, b| a.0.cmp(&b.0));
        paused
    }

    /// The configured sources that fetch.
    fn fetching(&self) -> Vec<String> {
        self.sources
            .iter()
            .filter(|i| i.api.is_some())
            .map(|i| i.name.clone())
            .collect()
    }

    /// Runs until `shutdown` completes. An attempt cut short keeps its lease and runs again
    /// after it (at the next start, in a SQLite store).
    pub async fn run_until_stopped(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let all = self.fetching();
        if all.is_empty() {
            return;
        }
        tokio::pin!(shutdown);
        loop {
            let now = Timestamp::now();
            let open: Vec<String> = {
                let paused = self.paused.lock();
                all.iter()
                    .filter(|s| paused.get(*s).is_none_or(|p| p.until <= now))
                    .cloned()
                    .collect()
            };
            let leased = if open.is_empty() {
                Ok(Vec::new())
            } else {
                self.store
                    .lease_fetches(now, BATCH, self.lease_for, &open)
                    .await
            };
            let wait = match leased {
                Ok(jobs) if !jobs.is_empty() => {
                    let attempts = futures_util::future::join_all(
                        jobs.into_iter().map(|job| self.attempt(job)),
                    );
                    tokio::select! {
                        () = &mut shutdown => return,
                        _ = attempts => continue,
                    }
                }
                Ok(_) => self.until_next(&all).await,
                Err(e) => {
                    tracing::error!(error = %e, "could not lease fetch jobs; trying again");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// How long until a job of `sources` is due or a pause ends, at most [`IDLE_LOOK`].
    async fn until_next(&self, sources: &[String]) -> Duration {
        let now = Timestamp::now();
        let due = self.store.next_fetch_due(sources).await.ok().flatten();
        let pause_end = self
            .paused
            .lock()
            .values()
            .map(|p| p.until)
            .filter(|u| *u > now)
            .min();
        [due, pause_end]
            .into_iter()
            .flatten()
            .min()
            .map_or(IDLE_LOOK, |at| at.since(now).min(IDLE_LOOK))
    }

    /// One attempt at one job, recorded.
    async fn attempt(&self, job: LeasedFetch) {
        let span = tracing::info_span!(
            "fetch",
            source = %job.source,
            conversation_id = %Escaped(&job.conversation_id),
            attempt = job.attempts + 1,
        );
        async {
            let (id, source) = (job.id, job.source.clone());
            let next = self.run(&job).await;
            let outcome = match &next {
                FetchNext::Done => "fetched",
                FetchNext::RetryAt { counts: true, .. } => "retried",
                FetchNext::RetryAt { counts: false, .. } => "waiting",
                FetchNext::Dead { .. } => "dead",
            };
            match &next {
                FetchNext::Done => tracing::info!("conversation fetched and stored"),
                FetchNext::RetryAt { at, reason, .. } => {
                    tracing::warn!(retry_at = %at, reason = %Escaped(reason), "fetch failed; it runs again");
                }
                FetchNext::Dead { reason } => {
                    tracing::error!(reason = %Escaped(reason), "fetch given up; kept dead until retried");
                }
            }
            self.metrics.fetch(&source, outcome);
            if let Err(e) = self.store.finish_fetch(id, Timestamp::now(), next).await {
                // The lease runs out and the job runs again: nothing is lost.
                tracing::error!(error = %e, "could not record the fetch's outcome");
            }
        }
        .instrument(span)
        .await;
    }

    /// What became of the job's attempt.
    async fn run(&self, job: &LeasedFetch) -> FetchNext {
        let now = Timestamp::now();
        let Some(instance) = self.sources.get(&job.source) else {
            return FetchNext::RetryAt {
                at: now.plus(IDLE_LOOK),
                counts: false,
                reason: format!("source `{}` is not configured", job.source),
            };
        };
        let Some(api) = instance.api.as_ref() else {
            return FetchNext::Dead {
                reason: format!("{} conversations are not fetched", instance.source),
            };
        };
        let client = ApiClient {
            http: &self.http,
            api,
        };
        let fetched = match instance.source.fetch(client, &job.body).await {
            Ok(fetched) => fetched,
            Err(error) => return self.after_failure(job, error, now),
        };
        self.paused.lock().remove(&job.source);
        match self.keep(fetched).await {
            Ok(()) => FetchNext::Done,
            Err(e) => self.after_failure(
                job,
                FetchError {
                    class: Failure::Transient,
                    status: None,
                    retry_after: None,
                    message: format!("the fetched conversation could not be stored: {e}"),
                },
                now,
            ),
        }
    }

    /// Stores a fetched conversation as a version, routed to the connectors in use now.
    async fn keep(&self, fetched: crate::sources::api::Fetched) -> Result<(), StoreError> {
        let registry = self.registry.current();
        let intake = Intake {
            store: self.store.as_ref(),
            registry: &registry,
            redactor: &self.redactor,
            wake: Some(&self.deliveries),
            fetch_wake: None,
        };
        let bundle = serde_json::to_vec(&fetched.documents).unwrap_or_default();
        let raw = if intake.needs_raw() {
            fetched.documents
        } else {
            Value::Null
        };
        intake
            .keep(
                fetched.conversation,
                raw,
                &bundle,
                bundle.clone(),
                Timestamp::now(),
            )
            .await
            .map(|_| ())
    }

    /// The job's next state after `error`, judged as a delivery's would be.
    fn after_failure(&self, job: &LeasedFetch, error: FetchError, now: Timestamp) -> FetchNext {
        let reason = error.message.clone();
        let elapsed = now.since(job.received_at);
        let random = fastrand::f64();
        let retry = |delay: Option<Duration>, counts: bool| match delay {
            Some(delay) => FetchNext::RetryAt {
                at: now.plus(delay),
                counts,
                reason: reason.clone(),
            },
            None => FetchNext::Dead {
                reason: format!("given up after {} attempts: {reason}", job.attempts + 1),
            },
        };
        match error.class {
            Failure::Transient => retry(
                self.policy
                    .after_failure(job.attempts + 1, elapsed, error.retry_after, random),
                true,
            ),
            Failure::RateLimited => retry(
                self.policy
                    .after_throttle(job.attempts, elapsed, error.retry_after, random),
                false,
            ),
            Failure::Unhealthy => {
                let mut paused = self.paused.lock();
                let consecutive = paused.get(&job.source).map_or(0, |p| p.consecutive) + 1;
                let until = now.plus(self.policy.pause(consecutive));
                tracing::warn!(
                    source = %job.source,
                    paused_until = %until,
                    "the product refused the configured API credentials; this source's fetches wait until then"
                );
                paused.insert(
                    job.source.clone(),
                    Pause {
                        until,
                        consecutive,
                        reason: reason.clone(),
                    },
                );
                FetchNext::RetryAt {
                    at: until,
                    counts: false,
                    reason,
                }
            }
            Failure::Invalid => FetchNext::Dead { reason },
        }
    }
}
