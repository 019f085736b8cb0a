//! `render` and `send`: one chat through one connector, shown (secrets masked) or sent once.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use super::find;
use crate::app;
use crate::config::Config;
use crate::connectors::{Checkpoint, DeliveryError, NoCheckpoint, PlannedRequest, Registry};
use crate::model::StepOutputs;
use crate::preview::Prepared;
use crate::sources::Source;
use crate::telemetry::Escaped;

/// `render`: the requests a connector would send for the chat in `file`.
pub(super) fn render(
    config: &Config,
    connector: &str,
    source: &str,
    file: &Path,
) -> anyhow::Result<ExitCode> {
    let registry = app::registry(config)?;
    let connector = find(&registry, connector)?;
    if let Some(chat) = prepare(config, &registry, connector.name(), source, file)? {
        print_plan(&connector.dry_run(&chat.job())?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `send`: the chat in `file` delivered once through a connector, its steps printed.
pub(super) async fn send(
    config: &Config,
    connector: &str,
    source: &str,
    file: &Path,
) -> anyhow::Result<ExitCode> {
    let registry = app::registry(config)?;
    let connector = find(&registry, connector)?;
    let Some(chat) = prepare(config, &registry, connector.name(), source, file)? else {
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

/// The chat in `file` as `serve` would hand it to instance `connector`, or `None` (having
/// said why) when `serve` would not hand it over: its type needs an e-mail the chat lacks,
/// the instance serves other accounts, its `when` does not hold. Nothing is rendered or
/// sent that a running bridge would not send.
pub(super) fn prepare(
    config: &Config,
    registry: &Registry,
    connector: &str,
    source: &str,
    file: &Path,
) -> anyhow::Result<Option<Prepared>> {
    let body = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let redactor = crate::privacy::Redactor::new(&config.privacy.redact);
    // A configured instance (its product and name), or a product by name.
    let product = config
        .sources
        .get(source)
        .and_then(|s| s.source(source))
        .or_else(|| Source::from_name(source))
        .with_context(|| {
            format!(
                "no source `{source}`: name a [sources.NAME] of the config or a product ({})",
                Source::ALL.map(Source::name).join(", ")
            )
        })?;
    let chat =
        Prepared::new(&redactor, connector, (product, source), &body).with_context(|| {
            format!(
                "{} is not a {product} payload chatbridge can render",
                file.display()
            )
        })?;
    if let Some(why) = chat.excluded(registry)? {
        println!("filtered out by {why}: `{connector}` does not receive this chat; nothing sent");
        return Ok(None);
    }
    Ok(Some(chat))
}

/// Prints `text` line by line, each line's control characters escaped ([`Escaped`]): chat
/// text shown in a terminal can neither move the cursor nor recolour what follows.
pub(super) fn print_lines(text: &str) {
    for line in text.lines() {
        println!("{}", Escaped(line));
    }
}

pub(super) fn print_plan(plan: &[PlannedRequest]) {
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

/// Prints each step as `send` completes it.
pub(super) struct PrintCheckpoint;

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
