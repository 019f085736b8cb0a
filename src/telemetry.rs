//! Logs, and traces exported over OTLP. The log writer is a parameter so tests can capture
//! or silence output.
//!
//! `RUST_LOG` wins over `[log] filter`, and the filter picks spans for export too. Personal
//! data stays out of logs and traces by construction: spans and events carry ids, counts and
//! statuses, never message text, names or e-mails, and secrets never reach a field (see
//! `http::ingest` and `connectors::http`).
//!
//! Traces are off unless `[traces] otlp_endpoint` is set; then [`Traces`] adds one layer to
//! the subscriber and a batch exporter thread. Without it nothing is built, so a deployment
//! that does not trace pays nothing for the feature.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use async_trait::async_trait;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use secrecy::ExposeSecret;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogFormat, TracesConfig};

/// How long one export may take before it is given up (the SDK then drops that batch).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why trace export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The exporter could not be built from the config.
    #[error("traces: cannot export to the OTLP endpoint: {0}")]
    Exporter(String),
}

/// The OTLP trace pipeline. Call [`Traces::shutdown`] before the process ends, so the spans
/// still queued are sent.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// The pipeline for `config`, or `None` when no endpoint is configured. Must be called
    /// inside the tokio runtime that will carry the exports.
    ///
    /// # Errors
    /// When the endpoint or a header cannot be used.
    pub fn from_config(config: &TracesConfig) -> Result<Option<Self>, TelemetryError> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        crate::tls::install_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("chatbridge/", env!("CARGO_PKG_VERSION")))
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let headers: HashMap<String, String> = config
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), value.expose_secret().to_owned()))
            .collect();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(OnRuntime { client, runtime })
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .with_timeout(EXPORT_TIMEOUT)
            .with_headers(headers)
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        Ok(Some(Self { provider }))
    }

    /// Sends what is still queued and stops the exporter.
    pub async fn shutdown(self) {
        // The SDK blocks while its exporter thread flushes, and the flush itself runs on
        // this runtime: block a thread that is not one of the runtime's workers.
        let provider = self.provider;
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = flushed {
            eprintln!("traces: the last spans could not be exported: {e}");
        }
    }
}

/// Sends the exporter's requests with reqwest on the service's tokio runtime. The SDK's
/// batch processor runs on a thread of its own, where reqwest's async client cannot run by
/// itself; the stock blocking client would bring a second TLS stack.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let request = reqwest::Request::try_from(request)?;
        self.runtime
            .spawn(async move {
                let response = client.execute(request).await?;
                let mut answer = Response::builder().status(response.status());
                if let Some(headers) = answer.headers_mut() {
                    *headers = response.headers().clone();
                }
                Ok(answer.body(response.bytes().await?)?)
            })
            .await?
    }
}

/// Text from a chat (a conversation id, an error that may quote one) as a log field: every
/// control character is written escaped (`\n`, `\u{1b}`), so a value can neither start a
/// forged log line nor drive the terminal that shows the log. Log such values as
/// `field = %Escaped(&value)`, never inside the message.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        for c in self.0.chars() {
            // Line and paragraph separators end a line in some viewers; bidirectional
            // overrides reorder what a person reads.
            if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
            {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// Installs the global subscriber writing logs to `writer` and, with `traces`, exporting
/// spans. Returns false if a subscriber was already set.
pub fn init<W>(format: LogFormat, default_filter: &str, writer: W, traces: Option<&Traces>) -> bool
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    subscriber(format, default_filter, writer, traces)
        .try_init()
        .is_ok()
}

/// The subscriber [`init`] installs: logs in `format` to `writer`, filtered by `RUST_LOG` or
/// else `default_filter`, and spans exported with `traces`. Tests scope one to a thread to
/// read what their own service logged.
pub fn subscriber<W>(
    format: LogFormat,
    default_filter: &str,
    writer: W,
    traces: Option<&Traces>,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt::layer().with_writer(writer);
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        // Colours only for a person at a terminal, never into files or collectors.
        LogFormat::Text => logs
            .with_target(false)
            .with_ansi(std::io::stdout().is_terminal())
            .boxed(),
    };
    let spans = traces.map(|t| {
        tracing_opentelemetry::layer().with_tracer(t.provider.tracer(env!("CARGO_PKG_NAME")))
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .with(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_escaped_field_stays_on_its_line_in_text_logs() {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || TestWriter(writer.clone()))
            .finish();
        let forged = "smartsupp:208:1\n2026-12-06T00:00:00Z ERROR forged\r\u{2028}\u{202e}";
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("deliver", conversation_id = %Escaped(forged));
            let _entered = span.enter();
            tracing::info!("delivered");
        });
        let logged = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert_eq!(logged.lines().count(), 1, "{logged}");
        assert!(logged.contains(r"smartsupp:208:1\n2026"), "{logged}");
        assert!(
            !logged.contains('\r') && !logged.contains('\u{2028}') && !logged.contains('\u{202e}')
        );
    }

    struct TestWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for TestWriter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
