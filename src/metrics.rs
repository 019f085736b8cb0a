//! Prometheus metrics, served at `GET /metrics` in the OpenMetrics text format.
//!
//! Counters and histograms are updated where things happen (ingest, the worker, the HTTP
//! engine). Gauges of the queue are read from the store at scrape time: the store is the
//! truth, and a gauge kept in memory would drift from it across restarts and replicas.
//!
//! Each [`Metrics`] owns its registry, so several services in one process (the tests) do not
//! share counters.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::model::Timestamp;
use crate::store::{ConnectorStats, FetchCount};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Received {
    source: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Refused {
    source: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceOutcome {
    source: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchLabel {
    source: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabel {
    connector: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    connector: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Upstream {
    connector: String,
    step: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds, from 1 ms to about 65 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Every metric chatbridge exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    received: Family<Received, Counter>,
    quarantined: Family<Refused, Counter>,
    ignored: Family<SourceLabel, Counter>,
    fetches: Family<SourceOutcome, Counter>,
    fetch_jobs: Family<FetchLabel, Gauge>,
    deliveries: Family<Outcome, Counter>,
    retries: Family<ConnectorLabel, Counter>,
    queue_depth: Family<ConnectorLabel, Gauge>,
    oldest_pending: Family<ConnectorLabel, Gauge<f64, AtomicU64>>,
    dead_letters: Family<ConnectorLabel, Gauge>,
    circuit_open: Family<ConnectorLabel, Gauge>,
    ack_latency: Histograms<SourceLabel>,
    delivery_latency: Histograms<ConnectorLabel>,
    upstream_latency: Histograms<Upstream>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chatbridge");
        let received = Family::default();
        registry.register(
            "conversations_received",
            "Conversation versions stored, by source and conversation status",
            received.clone(),
        );
        let quarantined = Family::default();
        registry.register(
            "payloads_quarantined",
            "Bodies refused and kept in quarantine, by source and reason (unparseable, other_account)",
            quarantined.clone(),
        );
        let ignored = Family::default();
        registry.register(
            "events_ignored",
            "Webhook events acknowledged without storing anything (they end no conversation), by source",
            ignored.clone(),
        );
        let fetches = Family::default();
        registry.register(
            "fetches",
            "Fetch attempts, by source and outcome (fetched, retried, waiting, dead)",
            fetches.clone(),
        );
        let fetch_jobs = Family::default();
        registry.register(
            "fetch_jobs",
            "Fetch jobs kept, by source and state (pending, dead)",
            fetch_jobs.clone(),
        );
        let deliveries = Family::default();
        registry.register(
            "deliveries",
            "Deliveries settled, by connector and outcome (delivered, dead)",
            deliveries.clone(),
        );
        let retries = Family::default();
        registry.register(
            "delivery_retries",
            "Failed attempts that scheduled another attempt",
            retries.clone(),
        );
        let queue_depth = Family::default();
        registry.register("queue_depth", "Pending deliveries", queue_depth.clone());
        let oldest_pending = Family::default();
        registry.register(
            "oldest_pending_age_seconds",
            "Age of the oldest pending delivery",
            oldest_pending.clone(),
        );
        let dead_letters = Family::default();
        registry.register(
            "dead_letters",
            "Dead deliveries kept for retry",
            dead_letters.clone(),
        );
        let circuit_open = Family::default();
        registry.register(
            "circuit_open",
            "1 while the connector's circuit breaker holds its deliveries back",
            circuit_open.clone(),
        );
        let ack_latency: Histograms<SourceLabel> = Family::new_with_constructor(latency);
        registry.register(
            "ack_latency_seconds",
            "From a hook request's arrival to its answer after the commit",
            ack_latency.clone(),
        );
        let delivery_latency: Histograms<ConnectorLabel> = Family::new_with_constructor(latency);
        registry.register(
            "delivery_latency_seconds",
            "From a delivery being queued to the target accepting it",
            delivery_latency.clone(),
        );
        let upstream_latency: Histograms<Upstream> = Family::new_with_constructor(latency);
        registry.register(
            "upstream_request_duration_seconds",
            "One HTTP exchange with a target, by connector and step",
            upstream_latency.clone(),
        );
        Self {
            registry,
            received,
            quarantined,
            ignored,
            fetches,
            fetch_jobs,
            deliveries,
            retries,
            queue_depth,
            oldest_pending,
            dead_letters,
            circuit_open,
            ack_latency,
            delivery_latency,
            upstream_latency,
        }
    }

    /// A conversation version was stored.
    pub fn received(&self, source: &str, status: &str) {
        self.received
            .get_or_create(&Received {
                source: source.to_owned(),
                status: status.to_owned(),
            })
            .inc();
    }

    /// A webhook event that ends no conversation was acknowledged.
    pub fn ignored(&self, source: &str) {
        self.ignored
            .get_or_create(&SourceLabel {
                source: source.to_owned(),
            })
            .inc();
    }

    /// A fetch attempt ended with `outcome`.
    pub fn fetch(&self, source: &str, outcome: &str) {
        self.fetches
            .get_or_create(&SourceOutcome {
                source: source.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// A hook request was answered (stored, duplicate or refused).
    pub fn ack(&self, source: &str, ack: Duration) {
        self.ack_latency
            .get_or_create(&SourceLabel {
                source: source.to_owned(),
            })
            .observe(ack.as_secs_f64());
    }

    /// A body was quarantined, refused for `reason` ([`crate::intake::Refusal::kind`]).
    pub fn quarantined(&self, source: &str, reason: &str) {
        self.quarantined
            .get_or_create(&Refused {
                source: source.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// A delivery reached the target, `latency` after it was queued.
    pub fn delivered(&self, connector: &str, latency: Duration) {
        self.settled(connector, "delivered");
        self.delivery_latency
            .get_or_create(&ConnectorLabel {
                connector: connector.to_owned(),
            })
            .observe(latency.as_secs_f64());
    }

    /// A delivery died.
    pub fn dead(&self, connector: &str) {
        self.settled(connector, "dead");
    }

    fn settled(&self, connector: &str, outcome: &str) {
        self.deliveries
            .get_or_create(&Outcome {
                connector: connector.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// An attempt failed and another is scheduled.
    pub fn retried(&self, connector: &str) {
        self.retries
            .get_or_create(&ConnectorLabel {
                connector: connector.to_owned(),
            })
            .inc();
    }

    /// One HTTP exchange with a target took `took`.
    pub fn upstream(&self, connector: &str, step: &str, took: Duration) {
        self.upstream_latency
            .get_or_create(&Upstream {
                connector: connector.to_owned(),
                step: step.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// The exposition, with queue gauges set from `stats`, circuit gauges from `circuits`
    /// (each connector, and whether its circuit is open) and fetch gauges from `fetches`.
    pub fn render(
        &self,
        stats: &[ConnectorStats],
        circuits: &[(String, bool)],
        fetches: &[FetchCount],
    ) -> String {
        let now = Timestamp::now();
        // A source whose jobs are all gone has no row: its gauges go, rather than stay at
        // their last value.
        self.fetch_jobs.clear();
        for f in fetches {
            self.fetch_jobs
                .get_or_create(&FetchLabel {
                    source: f.source.clone(),
                    state: f.state.as_str().to_owned(),
                })
                .set(i64::try_from(f.count).unwrap_or(i64::MAX));
        }
        for s in stats {
            let label = ConnectorLabel {
                connector: s.connector.clone(),
            };
            self.queue_depth
                .get_or_create(&label)
                .set(i64::try_from(s.pending).unwrap_or(i64::MAX));
            self.dead_letters
                .get_or_create(&label)
                .set(i64::try_from(s.dead_total).unwrap_or(i64::MAX));
            let age = s.oldest_pending.map_or(0.0, |t| {
                (now.unix_millis() - t.unix_millis()).max(0) as f64 / 1000.0
            });
            self.oldest_pending.get_or_create(&label).set(age);
        }
        for (connector, open) in circuits {
            self.circuit_open
                .get_or_create(&ConnectorLabel {
                    connector: connector.clone(),
                })
                .set(i64::from(*open));
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
