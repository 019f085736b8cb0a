//! The command line: `serve`, `check`, `render`, `send`, `deliveries list|retry`, `replay`,
//! `forget`.
//!
//! Each command is a thin use of the library; what it prints is for people (one line per
//! item, problems with the key to fix and what to do next).

mod check;
mod operate;
mod preview;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use self::check::check;
use self::operate::{deliveries, forget, quarantine, replay};
use self::preview::{render, send};
use crate::app::Application;
use crate::config::Config;
use crate::connectors::{Connector, Registry};
use crate::{app, telemetry};

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
        /// The source the payload comes from: a `[sources.NAME]` of the config, or a product
        /// (`tawk`, `olark`, `livechat`, ...).
        #[arg(long, default_value = "smartsupp")]
        source: String,
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
        /// The source the payload comes from, as for `render`.
        #[arg(long, default_value = "smartsupp")]
        source: String,
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
        Command::Render {
            connector,
            source,
            file,
        } => render(&config, &connector, &source, &file),
        Command::Send {
            connector,
            source,
            file,
        } => send(&config, &connector, &source, &file).await,
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
        .get("smartsupp")
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
