//! Log setup. The writer is a parameter so tests can capture or silence output.
//!
//! `RUST_LOG` wins over `[log] filter`. Personal data stays out of logs by construction:
//! spans and events carry ids, counts and statuses, never message text, names or e-mails,
//! and secrets never reach a field (see `http::ingest` and `connectors::http`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// Installs the global subscriber writing to `writer`. Returns false if one was already set.
pub fn init<W>(format: LogFormat, default_filter: &str, writer: W) -> bool
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
            .is_ok(),
        // Colours only for a person at a terminal, never into files or collectors.
        LogFormat::Text => builder
            .with_target(false)
            .with_ansi(std::io::stdout().is_terminal())
            .try_init()
            .is_ok(),
    }
}
