//! The command line: `serve`, `check`, `render`, `send`, `deliveries list|retry`, `replay`,
//! `forget`.
//!
//! Each command is a thin use of the library; what it prints is for people (one line per
//! item, problems with the key to fix and what to do next).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::app::{self, Application};
use crate::config::Config;
use crate::connectors::{
    Checkpoint, Connector, DeliveryError, DeliveryJob, NoCheckpoint, PlannedRequest, Registry,
};
use crate::maintenance::{self, Progress, ReplayRange};
use crate::model::{StepOutputs, Timestamp};
use crate::preview::Prepared;
use crate::samples;
use crate::sources::Source;
use crate::store::{DeliveryFilter, DeliveryState};
use crate::telemetry::{self, Escaped};

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
    ///
    /// SIGHUP reloads connector definitions and templates (a broken edit is refused and the
    /// running set stays); SIGTERM stops after in-flight attempts finish.
    ///
    /// Example: chatbridge serve --config /etc/chatbridge/config.toml
    Serve,
    /// Validate config, connector definitions, templates and secrets; list every problem.
    ///
    /// Example: chatbridge check --config config.toml
    Check,
    /// Dry run: print the requests CONNECTOR would send for a payload; sends nothing.
    ///
    /// Example: chatbridge render --connector helpdesk src/samples/smartsupp/seed-example.json
    Render {
        /// Connector instance name from the config.
        #[arg(long)]
        connector: String,
        /// A payload as the chat product posts it.
        file: PathBuf,
    },
    /// Deliver one payload now through CONNECTOR, printing each step; stores nothing.
    ///
    /// Example: chatbridge send --connector helpdesk src/samples/smartsupp/seed-example.json
    Send {
        /// Connector instance name from the config.
        #[arg(long)]
        connector: String,
        /// A payload as the chat product posts it.
        file: PathBuf,
    },
    /// Inspect and retry deliveries.
    ///
    /// Example: chatbridge deliveries list --state dead
    Deliveries {
        #[command(subcommand)]
        action: DeliveriesCommand,
    },
    /// Deliver stored conversations again, to the connectors that received them before.
    /// Connectors that dedupe at the target (Zendesk external_id, search before create) find
    /// what they made instead of creating it twice.
    ///
    /// Example: chatbridge replay --since 2026-11-01T00:00:00Z --connector helpdesk
    Replay {
        /// First received at or after this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        since: String,
        /// First received before this time (RFC 3339; default now).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Only through this connector instance (default: every configured one).
        #[arg(long)]
        connector: Option<String>,
    },
    /// Bodies refused at ingest: list, show, bring back through today's parser and config,
    /// or drop.
    ///
    /// Example: chatbridge quarantine reingest --all
    Quarantine {
        #[command(subcommand)]
        action: QuarantineCommand,
    },
    /// Erase every stored trace of a visitor: conversations, versions, attempt excerpts and
    /// quarantined bodies; prints what was removed. Cannot be undone.
    ///
    /// Example: chatbridge forget --email jane@example.com
    Forget {
        /// The visitor's e-mail address.
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
enum QuarantineCommand {
    /// List quarantined bodies, newest first, with why each was refused.
    ///
    /// Example: chatbridge quarantine list
    List {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Print one quarantined body as it arrived, after its reason.
    ///
    /// Example: chatbridge quarantine show 12
    Show {
        /// Quarantine id.
        id: i64,
    },
    /// Run bodies through today's parser and config (after a fix or a new tenant): those
    /// that pass become conversations with deliveries, as if posted now; the others stay,
    /// with the new reason.
    ///
    /// Example: chatbridge quarantine reingest 12 13, or chatbridge quarantine reingest --all
    Reingest {
        /// Quarantine ids.
        ids: Vec<i64>,
        /// Every quarantined body.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Remove quarantined bodies for good.
    ///
    /// Example: chatbridge quarantine drop 12
    Drop {
        /// Quarantine ids.
        #[arg(required = true)]
        ids: Vec<i64>,
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
    if !matches!(cli.command, Command::Serve) {
        quiet_logs();
    }
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Check => unreachable!("handled above"),
        Command::Render { connector, file } => render(&config, &connector, &file),
        Command::Send { connector, file } => send(&config, &connector, &file).await,
        Command::Deliveries { action } => deliveries(&config, action).await,
        Command::Replay {
            since,
            until,
            connector,
        } => replay(&config, &since, until.as_deref(), connector.as_deref()).await,
        Command::Quarantine { action } => {
            let store = app::open_store(&config).await?;
            quarantine(&config, store.as_ref(), action).await
        }
        Command::Forget { email } => forget(&config, &email).await,
    }
}

/// `serve`: logs (and traces) as configured, then the service until it is stopped.
async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let traces = telemetry::Traces::from_config(&config.traces)?;
    telemetry::init(
        config.log.format,
        &config.log.filter,
        std::io::stdout,
        traces.as_ref(),
    );
    if traces.is_some() {
        tracing::info!(
            service_name = %config.traces.service_name,
            sample_ratio = config.traces.sample_ratio,
            "exporting traces over OTLP/HTTP"
        );
    }
    if config
        .sources
        .smartsupp
        .as_ref()
        .and_then(|s| s.token.as_ref())
        .is_some_and(|t| secrecy::ExposeSecret::expose_secret(t) == "dev-token")
    {
        tracing::warn!(
            "sources.smartsupp.token is the example `dev-token`; set CHATBRIDGE_SOURCES__SMARTSUPP__TOKEN in production"
        );
    }
    let app = Application::build(config).await?;
    let served = app.run_until_stopped().await.context("server failed");
    if let Some(traces) = traces {
        traces.shutdown().await;
    }
    served?;
    Ok(ExitCode::SUCCESS)
}

/// `render`: the requests a connector would send for the chat in `file`.
fn render(config: &Config, connector: &str, file: &Path) -> anyhow::Result<ExitCode> {
    let registry = app::registry(config)?;
    let connector = find(&registry, connector)?;
    if let Some(chat) = prepare(config, &registry, connector.name(), file)? {
        print_plan(&connector.dry_run(&chat.job())?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `send`: the chat in `file` delivered once through a connector, its steps printed.
async fn send(config: &Config, connector: &str, file: &Path) -> anyhow::Result<ExitCode> {
    let registry = app::registry(config)?;
    let connector = find(&registry, connector)?;
    let Some(chat) = prepare(config, &registry, connector.name(), file)? else {
        return Ok(ExitCode::SUCCESS);
    };
    match connector.attempt(&chat.job(), &PrintCheckpoint).await {
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

/// `deliveries list` and `deliveries retry`.
async fn deliveries(config: &Config, action: DeliveriesCommand) -> anyhow::Result<ExitCode> {
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
async fn replay(
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
async fn forget(config: &Config, email: &str) -> anyhow::Result<ExitCode> {
    let store = app::open_store(config).await?;
    let outboxes = app::registry(config)?.outboxes();
    let report = maintenance::forget(store.as_ref(), email, &outboxes).await?;
    println!(
        "erased {} conversations ({} versions, {} deliveries, {} attempts, {} remembered remote ids), {} quarantined bodies, {} outbox files; blanked {} answer excerpts of other conversations",
        report.conversations,
        report.versions,
        report.deliveries,
        report.attempts,
        report.ledger_entries,
        report.quarantined,
        report.files,
        report.excerpts_blanked
    );
    Ok(ExitCode::SUCCESS)
}

/// `quarantine`: what it prints for each action.
async fn quarantine(
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
            };
            let tokens = crate::sources::auth::SourceAuth::from_config(config);
            let report = if all {
                let mut progress = Reporter::new("re-ingesting quarantined bodies");
                let report = maintenance::reingest_all(&intake, &tokens, &mut progress).await?;
                progress.finish();
                report
            } else if ids.is_empty() {
                anyhow::bail!(
                    "name quarantine ids, or use --all (see `chatbridge quarantine list`)"
                );
            } else {
                maintenance::reingest(&intake, &tokens, &ids).await?
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

fn quiet_logs() {
    telemetry::init(
        crate::config::LogFormat::Text,
        "warn",
        std::io::stderr,
        None,
    );
}

fn find<'a>(
    registry: &'a Registry,
    name: &str,
) -> anyhow::Result<&'a std::sync::Arc<dyn Connector>> {
    registry.get(name).with_context(|| {
        let names = registry.names();
        format!(
            "no connector instance `{name}` in the config; configured: {}",
            names.join(", ")
        )
    })
}

/// The chat in `file` as `serve` would hand it to instance `connector`, or `None` (having
/// said why) when `serve` would not hand it over: its type needs an e-mail the chat lacks,
/// the instance serves other accounts, its `when` does not hold. Nothing is rendered or
/// sent that a running bridge would not send.
fn prepare(
    config: &Config,
    registry: &Registry,
    connector: &str,
    file: &Path,
) -> anyhow::Result<Option<Prepared>> {
    let body = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let redactor = crate::privacy::Redactor::new(&config.privacy.redact);
    let chat = Prepared::new(&redactor, connector, &body)
        .with_context(|| format!("{} is not a payload chatbridge understands", file.display()))?;
    if let Some(why) = chat.excluded(registry)? {
        println!("filtered out by {why}: `{connector}` does not receive this chat; nothing sent");
        return Ok(None);
    }
    Ok(Some(chat))
}

/// Prints `text` line by line, each line's control characters escaped ([`Escaped`]): chat
/// text shown in a terminal can neither move the cursor nor recolour what follows.
fn print_lines(text: &str) {
    for line in text.lines() {
        println!("{}", Escaped(line));
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
        println!("{} {}", request.method, Escaped(&request.target));
        for (name, value) in &request.headers {
            println!("{name}: {}", Escaped(value));
        }
        if let Some(body) = &request.body {
            // As it would be sent (reformatting would reorder keys and hide mistakes), but
            // with no character that could drive the terminal.
            println!();
            print_lines(body.trim_end());
        }
        println!();
    }
}

/// Progress of a bulk command: a bar on a terminal, a line per step otherwise (logs, CI).
enum Reporter {
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
