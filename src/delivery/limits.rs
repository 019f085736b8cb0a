//! Per-connector gates: the circuit breaker, and how much of `rate_limit`'s bucket
//! ([`crate::connectors::throttle`]) and `concurrency` is free.
//!
//! They exist so that one target's limits or outage never slow the others. The worker asks
//! each connector's [`Gate`] how many of its deliveries may be leased now and leases only
//! those; deliveries held back stay in the store, not in a worker slot, so a throttled
//! connector cannot occupy the workers another connector needs.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::CircuitConfig;
use crate::connectors::throttle::TokenBucket;
use crate::model::Timestamp;

/// What the circuit breaker says about a connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// No calls until the cool-down ends.
    Open,
    /// One call probes the target; its outcome closes or re-opens the circuit.
    HalfOpen,
}

impl CircuitState {
    /// The name used in `/readyz`, metrics and the dashboard.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// How an attempt went, as far as the target's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The target accepted.
    Up,
    /// Timeout, connection failure, 5xx: counts towards opening.
    Failing,
    /// Credentials or endpoint refused: opens at once, for `pause`.
    Refused {
        /// How long to stop calling.
        pause: Duration,
    },
    /// Says nothing about the target (a 4xx about this conversation, a 429).
    Neutral,
}

/// One connector's circuit, concurrency and running count.
#[derive(Debug)]
pub struct Gate {
    circuit: CircuitConfig,
    concurrency: Option<usize>,
    bucket: Option<Arc<TokenBucket>>,
    running: usize,
    failures: u32,
    /// Times opened in a row without a success (refusals back off by it).
    opened: u32,
    open_until: Option<Timestamp>,
    probing: bool,
    reason: Option<String>,
}

/// A gate as shown in `/readyz` and on the dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct GateView {
    /// Connector instance.
    pub connector: String,
    /// Circuit state.
    pub circuit: CircuitState,
    /// Consecutive failures counted.
    pub failures: u32,
    /// When an open circuit lets a probe through.
    pub retry_at: Option<Timestamp>,
    /// The failure that opened it.
    pub reason: Option<String>,
    /// Attempts running now.
    pub running: usize,
}

impl Gate {
    /// A closed gate with these limits.
    pub fn new(
        circuit: CircuitConfig,
        concurrency: Option<usize>,
        bucket: Option<Arc<TokenBucket>>,
    ) -> Self {
        Self {
            circuit,
            concurrency,
            bucket,
            running: 0,
            failures: 0,
            opened: 0,
            open_until: None,
            probing: false,
            reason: None,
        }
    }

    /// Takes new limits from a reload; the circuit's state carries over.
    pub fn reconfigure(
        &mut self,
        circuit: CircuitConfig,
        concurrency: Option<usize>,
        bucket: Option<Arc<TokenBucket>>,
    ) {
        self.circuit = circuit;
        self.concurrency = concurrency;
        self.bucket = bucket;
    }

    /// The circuit's state at `now`.
    pub fn state(&self, now: Timestamp) -> CircuitState {
        match self.open_until {
            None => CircuitState::Closed,
            Some(until) if until > now => CircuitState::Open,
            Some(_) => CircuitState::HalfOpen,
        }
    }

    /// How many deliveries may start now, and when that may change if it is 0 for a
    /// reason that passes with time.
    pub fn capacity(&self, now: Timestamp, batch: usize) -> (usize, Option<Timestamp>) {
        let mut cap = batch;
        let mut changes = None;
        match self.state(now) {
            CircuitState::Closed => {}
            CircuitState::Open => return (0, self.open_until),
            CircuitState::HalfOpen => cap = usize::from(!self.probing),
        }
        if let Some(limit) = self.concurrency {
            cap = cap.min(limit.saturating_sub(self.running));
        }
        if let Some(bucket) = &self.bucket {
            let (tokens, wait) = bucket.available();
            // Running attempts will take tokens too; leave those for them.
            let free = tokens.saturating_sub(self.running);
            if free == 0 {
                changes = Some(now.plus(wait.max(Duration::from_millis(1))));
            }
            cap = cap.min(free);
        }
        (cap, changes)
    }

    /// An attempt starts.
    pub fn started(&mut self, now: Timestamp) {
        self.running += 1;
        if self.state(now) == CircuitState::HalfOpen {
            self.probing = true;
        }
    }

    /// An attempt ended; returns the state change to log, if any. A refusal returns when
    /// the target is next called.
    pub fn finished(
        &mut self,
        now: Timestamp,
        health: Health,
        reason: &str,
    ) -> Option<CircuitState> {
        self.running = self.running.saturating_sub(1);
        let before = self.state(now);
        let was_probe = std::mem::take(&mut self.probing) && before == CircuitState::HalfOpen;
        match health {
            Health::Up => {
                self.failures = 0;
                self.opened = 0;
                self.open_until = None;
                self.reason = None;
            }
            Health::Neutral => {
                if was_probe {
                    // The target answered: it is up, even if it disliked this conversation.
                    self.open_until = None;
                    self.opened = 0;
                }
            }
            Health::Failing => {
                self.failures += 1;
                let threshold = self.circuit.failures;
                if was_probe
                    || (threshold > 0
                        && self.failures >= threshold
                        && before == CircuitState::Closed)
                {
                    self.open(now, self.circuit.cool_down, reason);
                }
            }
            Health::Refused { pause } => {
                // Several deliveries may fail in the same round; count the round once.
                if before != CircuitState::Open {
                    self.open(now, pause, reason);
                }
            }
        }
        let after = self.state(now);
        (after != before).then_some(after)
    }

    fn open(&mut self, now: Timestamp, for_: Duration, reason: &str) {
        self.opened += 1;
        self.open_until = Some(now.plus(for_));
        self.reason = Some(reason.to_owned());
    }

    /// Whether no attempt of this connector is running.
    pub fn is_idle(&self) -> bool {
        self.running == 0
    }

    /// Times opened in a row (refusals back off by it).
    pub fn opened(&self) -> u32 {
        self.opened
    }

    /// When an open circuit lets a probe through.
    pub fn open_until(&self) -> Option<Timestamp> {
        self.open_until
    }

    /// This gate as shown to operators.
    pub fn view(&self, connector: &str, now: Timestamp) -> GateView {
        GateView {
            connector: connector.to_owned(),
            circuit: self.state(now),
            failures: self.failures,
            retry_at: self.open_until,
            reason: self.reason.clone(),
            running: self.running,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateLimit;

    fn gate(failures: u32) -> Gate {
        Gate::new(
            CircuitConfig {
                failures,
                cool_down: Duration::from_secs(30),
            },
            None,
            None,
        )
    }

    #[test]
    fn the_circuit_opens_after_the_configured_failures_then_probes_once_and_closes() {
        let now = Timestamp::now();
        let mut gate = gate(3);
        for _ in 0..2 {
            gate.started(now);
            assert_eq!(gate.finished(now, Health::Failing, "503"), None);
        }
        gate.started(now);
        assert_eq!(
            gate.finished(now, Health::Failing, "503"),
            Some(CircuitState::Open)
        );
        assert_eq!(gate.capacity(now, 8).0, 0);

        let later = now.plus(Duration::from_secs(31));
        assert_eq!(gate.state(later), CircuitState::HalfOpen);
        assert_eq!(gate.capacity(later, 8).0, 1);
        gate.started(later);
        assert_eq!(gate.capacity(later, 8).0, 0, "one probe at a time");
        assert_eq!(
            gate.finished(later, Health::Up, ""),
            Some(CircuitState::Closed)
        );
        assert_eq!(gate.capacity(later, 8).0, 8);
    }

    #[test]
    fn a_failed_probe_opens_the_circuit_again() {
        let now = Timestamp::now();
        let mut gate = gate(1);
        gate.started(now);
        gate.finished(now, Health::Failing, "timeout");
        let later = now.plus(Duration::from_secs(31));
        gate.started(later);
        assert_eq!(
            gate.finished(later, Health::Failing, "timeout"),
            Some(CircuitState::Open)
        );
        assert_eq!(gate.state(later), CircuitState::Open);
    }

    #[test]
    fn concurrency_and_tokens_bound_the_capacity() {
        let now = Timestamp::now();
        let bucket = Arc::new(TokenBucket::new(RateLimit {
            per_second: 1.0,
            burst: 3,
        }));
        let mut gate = Gate::new(CircuitConfig::default(), Some(2), Some(bucket));
        assert_eq!(gate.capacity(now, 8).0, 2);
        gate.started(now);
        assert_eq!(gate.capacity(now, 8).0, 1);
    }
}
