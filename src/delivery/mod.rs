//! Getting stored deliveries to their targets: the [`worker::Worker`] loop and the
//! [`retry::RetryPolicy`] that schedules failures.
//!
//! Connectors classify failures; this module schedules them. Keeping the policy here, and
//! only here, means every connector retries the same way and the rules are tested once.

mod decision;
pub mod limits;
pub mod retry;
pub mod worker;

pub use retry::RetryPolicy;
pub use worker::Worker;
