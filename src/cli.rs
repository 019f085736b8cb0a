//! The command line: `serve`, `check`, `render`, `send`, `deliveries list|retry`.
//!
//! Each command is a thin use of the library; what it prints is for people (one line per
//! item, problems with the key to fix and what to do next).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::app::{self, Application};
use crate::config::Config;
use crate::connectors::{
    Checkpoint, Connector, DeliveryError, DeliveryJob, NoCheckpoint, PlannedRequest, Registry,
    StepOutputs,
};
use crate::render::DeliveryInfo;
use crate::sources::{Parsed, Source};
use crate::store::{DeliveryFilter, DeliveryState};
use crate::telemetry;

/// A payload every connector is rendered against by `check`: Smartsupp's documented example.
const SAMPLE_PAYLOAD: &[u8] = include_bytes!("../tests/fixtures/smartsupp/seed-example.json");

/// chatbridge: forwards live-chat conversations into help desks and CRMs, durably.
#[derive(Debug, Parser)]
#[command(name = "chatbridge", version, about, propagate_version = true)]
pub struct Cli {
    /// The config file (environment variables CHATBRIDGE_* override it).
    #[arg(
        long,
        global = true,
        default_value = "config.toml",
        value_name = "PATH"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server and the delivery workers.
    Serve,
    /// Validate config, connector definitions, templates and secrets; list every problem.
    Check,
    /// Dry run: print the requests CONNECTOR would send for a payload; sends nothing.
    ///
    /// Example: chatbridge render --connector helpdesk tests/fixtures/smartsupp/seed-example.json
    Render {
        /// Connector instance name from the config.
        #[arg(long)]
        connector: String,
        /// A payload as the chat product posts it.
        file: PathBuf,
    },
    /// Deliver one payload now through CONNECTOR, printing each step; stores nothing.
    ///
    /// Example: chatbridge send --connector helpdesk tests/fixtures/smartsupp/seed-example.json
    Send {
        /// Connector instance name from the config.
        #[arg(long)]
        connector: String,
        /// A payload as the chat product posts it.
        file: PathBuf,
    },
    /// Inspect and retry deliveries.
    Deliveries {
        #[command(subcommand)]
        action: DeliveriesCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DeliveriesCommand {
    /// List deliveries, newest first.
    ///
    /// Example: chatbridge deliveries list --state dead
    List {
        /// pending, delivered or dead.
        #[arg(long)]
        state: Option<String>,
        /// Only this connector instance.
        #[arg(long)]
        connector: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Put dead deliveries back in the queue: by id, or all with --dead.
    ///
    /// Example: chatbridge deliveries retry --dead --connector helpdesk
    Retry {
        /// Delivery ids.
        ids: Vec<i64>,
        /// Every dead delivery (of --connector, if given).
        #[arg(long, conflicts_with = "ids")]
        dead: bool,
        /// With --dead: only this connector instance.
        #[arg(long, requires = "dead")]
        connector: Option<String>,
    },
}

/// Runs a parsed command line.
///
/// # Errors
/// A message for the user, printed by `main`.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Check = cli.command {
        return Ok(check(&cli.config));
    }
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::Serve => {
            telemetry::init(config.log.format, &config.log.filter, std::io::stdout);
            if config
                .sources
                .smartsupp
                .as_ref()
                .is_some_and(|s| secrecy::ExposeSecret::expose_secret(&s.token) == "dev-token")
            {
                tracing::warn!(
                    "sources.smartsupp.token is the example `dev-token`; set CHATBRIDGE_SOURCES__SMARTSUPP__TOKEN in production"
                );
            }
            let app = Application::build(config).await?;
            app.run_until_stopped().await.context("server failed")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => unreachable!("handled above"),
        Command::Render { connector, file } => {
            quiet_logs();
            let registry = app::registry(&config)?;
            let connector = find(&registry, &connector)?;
            let parsed = read_payload(&file)?;
            let plan = connector.plan(&dry_job(connector.name(), &parsed))?;
            print_plan(&plan);
            Ok(ExitCode::SUCCESS)
        }
        Command::Send { connector, file } => {
            quiet_logs();
            let registry = app::registry(&config)?;
            let connector = find(&registry, &connector)?;
            let parsed = read_payload(&file)?;
            let job = dry_job(connector.name(), &parsed);
            match connector.deliver(&job, &PrintCheckpoint).await {
                Ok(receipt) => {
                    println!("delivered: {}", receipt.remote_ids());
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("failed ({:?}): {e}", e.class());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Deliveries { action } => {
            quiet_logs();
            let store = app::open_store(&config)?;
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
                        "id",
                        "state",
                        "connector",
                        "attempts",
                        "next attempt / updated",
                        "conversation"
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
                            format!("{} v{}", row.conversation_id, row.version),
                            row.last_error.as_deref().unwrap_or("")
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
                        store.retry_dead(connector.as_deref()).await?
                    } else if ids.is_empty() {
                        anyhow::bail!(
                            "name delivery ids, or use --dead (see `chatbridge deliveries list --state dead`)"
                        );
                    } else {
                        store.retry(&ids).await?
                    };
                    println!(
                        "{count} deliveries queued again; a running `chatbridge serve` picks them up"
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `check`: loads everything and renders every connector against a sample payload, listing
/// every problem found.
fn check(path: &Path) -> ExitCode {
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
    println!("connector types:");
    for (kind, definition) in registry.definitions().iter() {
        println!("  {kind:<12} {}", definition.description);
    }
    let sample = Source::Smartsupp
        .parse(SAMPLE_PAYLOAD)
        .expect("the shipped sample payload parses");
    let mut failed = false;
    println!("connector instances:");
    for connector in registry.connectors() {
        match connector.plan(&dry_job(connector.name(), &sample)) {
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

fn quiet_logs() {
    telemetry::init(crate::config::LogFormat::Text, "warn", std::io::stderr);
}

fn find<'a>(
    registry: &'a Registry,
    name: &str,
) -> anyhow::Result<&'a std::sync::Arc<dyn Connector>> {
    registry.get(name).with_context(|| {
        let names: Vec<&str> = registry.connectors().map(|c| c.name()).collect();
        format!(
            "no connector instance `{name}` in the config; configured: {}",
            names.join(", ")
        )
    })
}

fn read_payload(file: &Path) -> anyhow::Result<Parsed> {
    let body = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    Source::Smartsupp
        .parse(&body)
        .with_context(|| format!("{} is not a payload chatbridge understands", file.display()))
}

/// A first delivery of `parsed`: nothing completed, nothing made at the target before.
fn dry_job<'a>(connector: &str, parsed: &'a Parsed) -> DeliveryJob<'a> {
    static NOTHING_COMPLETED: BTreeMap<String, StepOutputs> = BTreeMap::new();
    static NOTHING_MADE: StepOutputs = BTreeMap::new();
    DeliveryJob {
        conversation: &parsed.conversation,
        raw: &parsed.raw,
        delivery: DeliveryInfo {
            id: 0,
            key: format!("cb:{connector}:{}", parsed.conversation.id),
            version: 1,
            attempt: 1,
        },
        completed: &NOTHING_COMPLETED,
        ledger: &NOTHING_MADE,
    }
}

fn print_plan(plan: &[PlannedRequest]) {
    for (index, request) in plan.iter().enumerate() {
        let note = if request.depends_on_earlier {
            "  (uses answers of earlier steps; shown as if they found nothing)"
        } else {
            ""
        };
        println!(
            "# step {}/{}: {}{note}",
            index + 1,
            plan.len(),
            request.step
        );
        println!("{} {}", request.method, request.target);
        for (name, value) in &request.headers {
            println!("{name}: {value}");
        }
        if let Some(body) = &request.body {
            // Exactly as it would be sent: reformatting would reorder keys and hide mistakes.
            println!("\n{}", body.trim_end());
        }
        println!();
    }
}

/// Prints each step as `send` completes it.
struct PrintCheckpoint;

#[async_trait::async_trait]
impl Checkpoint for PrintCheckpoint {
    async fn step_completed(
        &self,
        step: &str,
        outputs: &StepOutputs,
        remember: &StepOutputs,
    ) -> Result<(), DeliveryError> {
        println!(
            "step {step}: ok {}",
            serde_json::to_string(outputs).unwrap_or_default()
        );
        NoCheckpoint.step_completed(step, outputs, remember).await
    }
}
