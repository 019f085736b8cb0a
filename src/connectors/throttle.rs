//! Each connector instance's `rate_limit`: a token bucket that every request to its target
//! takes a token from, and that the worker's gate reads to lease no more deliveries than
//! the bucket lets through now ([`crate::delivery::limits`]). One bucket per instance, kept
//! here, across reloads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::config::RateLimit;

/// A token bucket: `per_second` tokens a second, at most `burst` saved up. One request
/// takes one token.
#[derive(Debug)]
pub struct TokenBucket {
    limit: RateLimit,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            state: Mutex::new((f64::from(limit.burst), Instant::now())),
        }
    }

    /// Tokens now, after refilling.
    fn refill(&self, state: &mut (f64, Instant)) -> f64 {
        let now = Instant::now();
        let earned = now.duration_since(state.1).as_secs_f64() * self.limit.per_second;
        state.0 = (state.0 + earned).min(f64::from(self.limit.burst));
        state.1 = now;
        state.0
    }

    /// Whole tokens available now, and how long until the next one when there are none.
    pub fn available(&self) -> (usize, Duration) {
        let mut state = self.state.lock();
        let tokens = self.refill(&mut state);
        let whole = tokens.floor().max(0.0) as usize;
        let wait = if whole == 0 {
            Duration::from_secs_f64((1.0 - tokens) / self.limit.per_second)
        } else {
            Duration::ZERO
        };
        (whole, wait)
    }

    /// Takes a token, waiting for one if the bucket is empty.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = self.state.lock();
                if self.refill(&mut state) >= 1.0 {
                    state.0 -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - state.0) / self.limit.per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// The buckets of every connector instance by name, kept across reloads so that a reload
/// does not hand a throttled connector a fresh burst.
#[derive(Debug, Default)]
pub struct Buckets(Mutex<HashMap<String, Arc<TokenBucket>>>);

impl Buckets {
    /// The bucket of instance `name` with this limit: the existing one if the limit is the
    /// same, else a new one.
    pub fn get(&self, name: &str, limit: RateLimit) -> Arc<TokenBucket> {
        let mut buckets = self.0.lock();
        match buckets.get(name) {
            Some(bucket) if bucket.limit == limit => bucket.clone(),
            _ => {
                let bucket = Arc::new(TokenBucket::new(limit));
                buckets.insert(name.to_owned(), bucket.clone());
                bucket
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_spaces_requests_after_its_burst() {
        let bucket = TokenBucket::new(RateLimit {
            per_second: 5.0,
            burst: 5,
        });
        let start = Instant::now();
        for _ in 0..15 {
            bucket.acquire().await;
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(1990), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(2100), "{elapsed:?}");
    }
}
