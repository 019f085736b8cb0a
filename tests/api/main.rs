//! End-to-end tests: chatbridge started on a random port with a temporary store, talking to
//! local servers that behave like the real targets. One binary, so linking happens once.

mod admin;
mod browser;
mod catalog;
mod chaos;
mod cli;
mod connectors;
mod contract;
mod crash;
mod custom_type;
mod dashboard;
mod delivery;
mod email;
mod fake_desks;
mod fake_hubspot;
mod fake_smtp;
mod fake_vendor;
mod fake_zendesk;
mod fixtures;
mod helpers;
mod hubspot;
mod ingest;
mod limits;
mod logs;
mod panics;
mod postgres;
mod privacy;
mod process;
mod quarantine;
mod real_counterparts;
mod server;
mod snapshots;
mod store;
mod tenants;
mod traces;
