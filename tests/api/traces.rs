//! OpenTelemetry export: with `[traces] otlp_endpoint` set, `chatbridge serve` posts its
//! spans to a collector over OTLP/HTTP (protobuf), flushing them at SIGTERM. The collector
//! here decodes what it receives with the OTLP protobuf types.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

use crate::fake_zendesk::FakeZendesk;
use crate::helpers::{HOOK_TOKEN, Options, ZENDESK_EMAIL, ZENDESK_TOKEN};
use crate::process::{post_seeds, serve, signal, wait_for_delivered, write_config};

const COLLECTOR_KEY: &str = "collector-key-4d5e6f-s3cr3t";

/// What a collector received: the export requests and each one's headers.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(HeaderMap, ExportTraceServiceRequest)>>>);

async fn export(
    State(received): State<Received>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain")],
            b"not an OTLP trace export".to_vec(),
        );
    };
    received.0.lock().unwrap().push((headers, request));
    // An empty ExportTraceServiceResponse: everything accepted.
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        Vec::new(),
    )
}

async fn start_collector() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(export))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), received)
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attribute(attributes, key)? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        other => Some(format!("{other:?}")),
    }
}

fn number(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attribute(attributes, key)? {
        any_value::Value::IntValue(n) => Some(*n),
        _ => None,
    }
}

// Multi-threaded: the collector must answer while the test waits for the process to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_otlp_endpoint_ingest_deliveries_and_upstream_calls_are_exported_as_spans() {
    let (collector, received) = start_collector().await;
    let dir = tempfile::tempdir().unwrap();
    let zendesk = FakeZendesk::start(ZENDESK_EMAIL, ZENDESK_TOKEN).await;
    let options = Options {
        extra: format!(
            "[traces]\notlp_endpoint = \"{collector}/\"\nservice_name = \"chatbridge-test\"\n\
             headers = {{ x-collector-key = \"{COLLECTOR_KEY}\" }}\n"
        ),
        ..Options::default()
    };
    let config_path = write_config(dir.path(), &zendesk, options).await;
    let config = config_path.to_str().unwrap();
    let (mut child, address, _logs) = serve(config);
    post_seeds(&address, 9300..9301).await;
    wait_for_delivered(config, 1).await;
    // Spans are sent in batches; SIGTERM flushes what is queued before the exit.
    signal(&child, "TERM");
    assert!(child.wait().unwrap().success());

    let exports = received.0.lock().unwrap().clone();
    assert!(!exports.is_empty(), "the collector received exports");
    for (headers, _) in &exports {
        assert_eq!(headers["x-collector-key"], COLLECTOR_KEY);
        assert_eq!(headers[header::CONTENT_TYPE], "application/x-protobuf");
    }
    let resources: Vec<_> = exports
        .iter()
        .flat_map(|(_, r)| &r.resource_spans)
        .collect();
    for resource in &resources {
        let attributes = &resource.resource.as_ref().unwrap().attributes;
        assert_eq!(
            text(attributes, "service.name").as_deref(),
            Some("chatbridge-test")
        );
    }
    let spans: Vec<&Span> = resources
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    let named = |name: &'static str| spans.iter().copied().filter(move |s| s.name == name);

    let ingest = named("request")
        .find(|s| text(&s.attributes, "route").as_deref() == Some("/hooks/{name}/{token}"))
        .expect("the hook request is a span");
    assert_eq!(text(&ingest.attributes, "method").as_deref(), Some("POST"));

    let deliver = named("deliver").next().expect("the attempt is a span");
    assert_eq!(
        text(&deliver.attributes, "conversation_id").as_deref(),
        Some("smartsupp:208:9300")
    );
    assert_eq!(
        text(&deliver.attributes, "connector").as_deref(),
        Some("helpdesk")
    );
    assert_eq!(number(&deliver.attributes, "attempt"), Some(1));

    let calls: Vec<&Span> = named("upstream")
        .filter(|s| s.parent_span_id == deliver.span_id && s.trace_id == deliver.trace_id)
        .collect();
    let steps: Vec<(Option<String>, Option<i64>)> = calls
        .iter()
        .map(|s| (text(&s.attributes, "step"), number(&s.attributes, "status")))
        .collect();
    assert_eq!(
        steps,
        [
            (Some("find_ticket".into()), Some(200)),
            (Some("create_ticket".into()), Some(201))
        ],
        "each call to the target is a child of the attempt, with its status"
    );

    // Nothing personal and no secret leaves in a span.
    let exported = format!("{spans:?}");
    for private in [
        "dusan@domain.com",
        "Dusan Kmet",
        "Hi, how can i help you",
        HOOK_TOKEN,
        ZENDESK_TOKEN,
        COLLECTOR_KEY,
    ] {
        assert!(!exported.contains(private), "`{private}` was exported");
    }
}
