//! `check`: the config, every connector definition and template, each rendered against the
//! documented sample chat, every problem listed at once.

use std::path::Path;
use std::process::ExitCode;

use super::quiet_logs;
use crate::config::Config;
use crate::connectors::DeliveryJob;
use crate::sources::{Proof, Source};
use crate::{app, samples};

/// `check`: loads everything and renders every connector against a sample payload, listing
/// every problem found.
pub(super) fn check(path: &Path) -> ExitCode {
    quiet_logs();
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let registry = match app::registry(&config) {
        Ok(registry) => registry,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!("config {}: ok", path.display());
    println!("sources:");
    for instance in config.sources.instances().iter() {
        let route = match instance.source.proof() {
            Proof::UrlToken => format!("/hooks/{}/{{token}}", instance.name),
            Proof::Signature(_) => format!("/hooks/{} (signed)", instance.name),
            Proof::BodySecret => format!("/hooks/{} (secret in the body)", instance.name),
        };
        let fetch = instance
            .api
            .as_ref()
            .map(|api| format!(", fetching from {}", api.base_url))
            .unwrap_or_default();
        println!(
            "  {:<12} type {:<12} {route}{fetch}",
            instance.name, instance.source
        );
    }
    println!("connector types:");
    for (kind, definition) in registry.definitions().iter() {
        println!("  {kind:<12} {}", definition.description);
    }
    let sample = Source::Smartsupp
        .parse(samples::DOCUMENTED.body.as_bytes())
        .expect("the shipped sample payload parses");
    let mut failed = false;
    println!("connector instances:");
    for connector in registry.connectors() {
        match connector.dry_run(&DeliveryJob::first(
            connector.name(),
            &sample.conversation,
            &sample.raw,
        )) {
            Ok(plan) => println!(
                "  {:<12} type {:<10} ok ({} steps render)",
                connector.name(),
                connector.kind(),
                plan.len()
            ),
            Err(e) => {
                failed = true;
                println!(
                    "  {:<12} type {:<10} FAILS: {e}",
                    connector.name(),
                    connector.kind()
                );
            }
        }
    }
    if let Err(e) = registry.matching(&sample.conversation, &sample.raw) {
        failed = true;
        println!("a connector `when` filter fails: {e}");
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
