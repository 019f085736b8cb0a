//! The operator's commands on the store: deliveries listed and retried, conversations
//! replayed, a visitor forgotten, quarantined bodies re-ingested or dropped.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;

use super::preview::print_lines;
use super::{DeliveriesCommand, QuarantineCommand, find};
use crate::config::Config;
use crate::maintenance::{Progress, ReplayRange};
use crate::model::Timestamp;
use crate::store::{DeliveryFilter, DeliveryState};
use crate::telemetry::Escaped;
use crate::{app, maintenance};

/// `deliveries list` and `deliveries retry`.
pub(super) async fn deliveries(
    config: &Config,
    action: DeliveriesCommand,
) -> anyhow::Result<ExitCode> {
    let store = app::open_store(config).await?;
    match action {
        DeliveriesCommand::List {
            state,
            connector,
            limit,
        } => {
            let state = state
                .as_deref()
                .map(DeliveryState::parse)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let rows = store
                .deliveries(DeliveryFilter {
                    state,
                    connector,
                    conversation_id: None,
                    before: None,
                    limit,
                })
                .await?;
            println!(
                "{:>6}  {:<9}  {:<16}  {:>8}  {:<24}  {:<32}  last error",
                "id", "state", "connector", "attempts", "next attempt / updated", "conversation"
            );
            for row in &rows {
                let when = if row.state == DeliveryState::Pending {
                    row.next_attempt_at
                } else {
                    row.updated_at
                };
                println!(
                    "{:>6}  {:<9}  {:<16}  {:>8}  {:<24}  {:<32}  {}",
                    row.id,
                    row.state,
                    row.connector,
                    row.attempts,
                    when.to_string(),
                    format!("{} v{}", Escaped(&row.conversation_id), row.version),
                    Escaped(row.last_error.as_deref().unwrap_or(""))
                );
            }
            println!("{} deliveries", rows.len());
        }
        DeliveriesCommand::Retry {
            ids,
            dead,
            connector,
        } => {
            let count = if dead {
                let mut progress = Reporter::new("retrying dead deliveries");
                let count =
                    maintenance::retry_dead(store.as_ref(), connector.as_deref(), &mut progress)
                        .await?;
                progress.finish();
                count
            } else if ids.is_empty() {
                anyhow::bail!(
                    "name delivery ids, or use --dead (see `chatbridge deliveries list --state dead`)"
                );
            } else {
                store.retry(&ids).await?
            };
            println!("{count} deliveries queued again; a running `chatbridge serve` picks them up");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `replay`: the conversations first received in a time range, queued again.
pub(super) async fn replay(
    config: &Config,
    since: &str,
    until: Option<&str>,
    connector: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let time = |text: &str, flag: &str| {
        Timestamp::parse(text).with_context(|| {
            format!("--{flag} `{text}` is not an RFC 3339 time like 2026-11-24T09:00:00Z")
        })
    };
    let registry = app::registry(config)?;
    let connectors = match connector {
        Some(name) => vec![find(&registry, name)?.name().to_owned()],
        None => registry.names(),
    };
    let range = ReplayRange {
        since: time(since, "since")?,
        until: until.map(|u| time(u, "until")).transpose()?,
        connectors,
    };
    let store = app::open_store(config).await?;
    let mut progress = Reporter::new("replaying conversations");
    let totals = maintenance::replay(store.as_ref(), &range, &mut progress).await?;
    progress.finish();
    println!(
        "{} conversations: {} deliveries queued, {} skipped (a delivery of them is still pending); a running `chatbridge serve` picks them up",
        totals.conversations, totals.queued, totals.already_pending
    );
    Ok(ExitCode::SUCCESS)
}

/// `forget`: a visitor erased, and what went.
pub(super) async fn forget(config: &Config, email: &str) -> anyhow::Result<ExitCode> {
    let store = app::open_store(config).await?;
    let outboxes = app::registry(config)?.outboxes();
    let report = maintenance::forget(store.as_ref(), email, &outboxes).await?;
    println!(
        "erased {} conversations ({} versions, {} deliveries, {} attempts, {} remembered remote ids), {} quarantined bodies, {} fetch jobs, {} outbox files; blanked {} answer excerpts of other conversations",
        report.conversations,
        report.versions,
        report.deliveries,
        report.attempts,
        report.ledger_entries,
        report.quarantined,
        report.fetches,
        report.files,
        report.excerpts_blanked
    );
    Ok(ExitCode::SUCCESS)
}

/// `quarantine`: what it prints for each action.
pub(super) async fn quarantine(
    config: &Config,
    store: &dyn crate::store::Store,
    action: QuarantineCommand,
) -> anyhow::Result<ExitCode> {
    match action {
        QuarantineCommand::List { limit } => {
            let rows = store.quarantined(limit).await?;
            println!(
                "{:>6}  {:<10}  {:>8}  {:<24}  reason",
                "id", "source", "bytes", "received"
            );
            for row in &rows {
                println!(
                    "{:>6}  {:<10}  {:>8}  {:<24}  {}",
                    row.id,
                    Escaped(&row.source),
                    row.size,
                    row.received_at.to_string(),
                    Escaped(&row.reason)
                );
            }
            println!("{} quarantined bodies", rows.len());
        }
        QuarantineCommand::Show { id } => {
            let kept = store.quarantined_body(id).await?.with_context(|| {
                format!("no quarantined body {id}; see `chatbridge quarantine list`")
            })?;
            println!("source:   {}", Escaped(&kept.item.source));
            println!("received: {}", kept.item.received_at);
            println!(
                "type:     {}",
                Escaped(kept.item.content_type.as_deref().unwrap_or("-"))
            );
            println!("reason:   {}", Escaped(&kept.item.reason));
            println!();
            print_lines(&String::from_utf8_lossy(&kept.item.body));
        }
        QuarantineCommand::Reingest { ids, all } => {
            let registry = app::registry(config)?;
            let redactor = crate::privacy::Redactor::new(&config.privacy.redact);
            let intake = crate::intake::Intake {
                store,
                registry: &registry,
                redactor: &redactor,
                wake: None,
                fetch_wake: None,
            };
            let sources = config.sources.instances();
            let report = if all {
                let mut progress = Reporter::new("re-ingesting quarantined bodies");
                let report = maintenance::reingest_all(&intake, &sources, &mut progress).await?;
                progress.finish();
                report
            } else if ids.is_empty() {
                anyhow::bail!(
                    "name quarantine ids, or use --all (see `chatbridge quarantine list`)"
                );
            } else {
                maintenance::reingest(&intake, &sources, &ids).await?
            };
            for result in &report.results {
                match (&result.conversation, &result.reason) {
                    (Some(conversation), _) => println!(
                        "{}: {:?}, conversation {} v{}",
                        result.id,
                        result.outcome,
                        Escaped(conversation),
                        result.version.unwrap_or_default()
                    ),
                    (None, reason) => println!(
                        "{}: {:?}: {}",
                        result.id,
                        result.outcome,
                        Escaped(reason.as_deref().unwrap_or_default())
                    ),
                }
            }
            let totals = report.totals;
            println!(
                "{} stored, {} duplicates, {} still refused; a running `chatbridge serve` delivers the stored ones",
                totals.stored, totals.duplicates, totals.refused
            );
        }
        QuarantineCommand::Drop { ids } => {
            let dropped = store.drop_quarantined(&ids).await?;
            println!("{dropped} quarantined bodies removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress of a bulk command: a bar on a terminal, a line per step otherwise (logs, CI).
pub(super) enum Reporter {
    Bar(indicatif::ProgressBar),
    Lines {
        what: &'static str,
        total: u64,
        done: u64,
    },
}

impl Reporter {
    fn new(what: &'static str) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(0).with_message(what);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            Self::Bar(bar)
        } else {
            Self::Lines {
                what,
                total: 0,
                done: 0,
            }
        }
    }

    fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Reporter {
    fn total(&mut self, n: u64) {
        match self {
            Self::Bar(bar) => bar.set_length(n),
            Self::Lines { what, total, .. } => {
                *total = n;
                eprintln!("{what}: {n} to do");
            }
        }
    }

    fn advance(&mut self, n: u64) {
        match self {
            Self::Bar(bar) => bar.inc(n),
            Self::Lines { what, total, done } => {
                *done += n;
                eprintln!("{what}: {done}/{total}");
            }
        }
    }
}
