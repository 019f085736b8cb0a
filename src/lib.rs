//! chatbridge receives finished live-chat conversations, keeps them durably, and forwards
//! them to help desks and CRMs through declarative connectors.
//!
//! How a conversation flows through the modules:
//!
//! 1. [`http::ingest`] takes a chat product's webhook at its source instance's route and has
//!    it prove itself before anything of it is read as a chat (a URL token, compared in
//!    constant time; an HMAC over the raw bytes, [`sources::signature`]; LiveChat's body
//!    secret); [`intake`] reads the body with [`sources`] into a [`model::Conversation`], an
//!    event to fetch, or an event that ends nothing. Bodies that do not parse are quarantined
//!    and answered 400; [`maintenance::reingest`] brings them back through the same intake.
//!    Events whose transcript is at the product are kept as fetch jobs, answered, and read
//!    from the product's API by [`fetch::Fetcher`], which stores what it read through the
//!    same intake.
//! 2. [`connectors::Registry::matching`] picks the connector instances whose `when` filter
//!    holds; [`store::Inbox::ingest`] commits the raw body, the conversation and one
//!    delivery per instance in one transaction (group-committed with concurrent requests),
//!    and only then is the sender answered 202.
//! 3. [`delivery::Worker`] leases due deliveries ([`store::Queue`]) and runs each through its
//!    [`connectors::Connector`]; most connectors are TOML definitions
//!    ([`connectors::definition`]) run by [`connectors::http`], rendering Tera templates
//!    with [`render`].
//! 4. Each answer is classified once by the engine; [`delivery::retry`] schedules retries
//!    (exponential backoff, `Retry-After`), and the store records every attempt. Deliveries
//!    that cannot succeed are kept dead, with their reason, until retried.
//!
//! The store is one object with a trait per role, each implemented by both backends
//! ([`store::sqlite`], [`store::postgres`], folders split by concern: the writer's threads,
//! the schema, a file per role): [`store::Inbox`], [`store::Queue`], [`store::Deliveries`]
//! (deliveries as operators see them), [`store::Archive`] (stored conversations),
//! [`store::Fetches`] (the fetch stage's jobs), [`store::Maintenance`] (retention, erasure,
//! health) and [`store::Sessions`]. A caller
//! takes the role it uses; [`store::Store`] is all of them.
//!
//! Supporting modules: [`config`] (figment layers; values and validation apart), [`app`]
//! (wiring and shutdown), [`cli`] (the commands: arguments, previews, the operator's
//! commands, `check`), [`http::api`] (the admin API, a file per resource), [`http::auth`]
//! (the admin token and sessions, for the API and the dashboard alike),
//! [`http::dashboard`] (pages, login, playground), [`telemetry`] (logs), [`metrics`]
//! (Prometheus), [`privacy`] (redaction at ingest), [`maintenance`] (replay, retry, erasure
//! and retention, shared by the CLI and the admin API), [`preview`] (a chat as a connector
//! would get it, for `render`, `send` and the previews), [`samples`] (the chats the
//! playground and `check` use). In [`connectors`]: the registry, the errors and the settings
//! apart from the `Connector` trait; the HTTP engine apart from request building and
//! signing, OAuth, classification and outputs; [`connectors::Reloader`] rebuilds connectors
//! and templates on SIGHUP and `POST /api/reload`; [`connectors::throttle`] keeps each
//! instance's rate-limit bucket, which requests take from and the worker's gates read.
//!
//! Dependencies point one way: [`model`] (the conversation, delivery keys, step outputs) is
//! below everything, the store and the connectors both build on it, and no module imports
//! one that imports it back.

#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod delivery;
pub mod fetch;
pub mod http;
pub mod intake;
pub mod maintenance;
pub mod metrics;
pub mod model;
pub mod preview;
pub mod privacy;
pub mod render;
pub mod samples;
pub mod sources;
pub mod store;
pub mod telemetry;
pub mod tls;
