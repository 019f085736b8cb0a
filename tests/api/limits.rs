//! Per-connector limits and metrics: a rate-limited connector does not slow another one, the
//! circuit breaker opens and closes, and `/metrics` counts what happened.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chatbridge::store::{DeliveryFilter, DeliveryState};
use serde_json::{Value, json};

use crate::fake_vendor::Scripted;
use crate::helpers::{
    Delivery, Options, TestApp, fixture, receiver_answering, seed_with_channel, spawn_app,
    spawn_app_with, wait_until,
};

async fn delivered(app: &TestApp, connector: &str) -> usize {
    app.store
        .deliveries(DeliveryFilter {
            state: Some(DeliveryState::Delivered),
            connector: Some(connector.into()),
            ..DeliveryFilter::default()
        })
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_connector_limited_to_5_rps_takes_9_s_for_50_while_another_finishes_at_full_speed() {
    let target = receiver_answering(200).await;
    let hook = |name: &str, limit: &str| {
        format!(
            "[connectors.{name}]\ntype = \"webhook\"\n{limit}\n[connectors.{name}.settings]\nurl = \"{}/{name}\"\n",
            target.uri()
        )
    };
    let app = spawn_app_with(Options {
        helpdesk: false,
        extra: hook("slow", "rate_limit = { per_second = 5, burst = 5 }") + &hook("fast", ""),
        ..Options::default()
    })
    .await;

    let start = Instant::now();
    for channel in 1..=50 {
        assert_eq!(
            app.post_smartsupp(seed_with_channel(channel))
                .await
                .status(),
            202
        );
    }
    let slow_when_fast_done = wait_until(|| async {
        let fast = delivered(&app, "fast").await;
        if fast == 50 {
            Some(delivered(&app, "slow").await)
        } else {
            None
        }
    })
    .await;
    let fast_took = start.elapsed();
    wait_until(|| async { (delivered(&app, "slow").await == 50).then_some(()) }).await;
    let slow_took = start.elapsed();
    eprintln!("fast: 50 in {fast_took:?}; slow: 50 in {slow_took:?}");

    // 5 at once, then 45 at 5 per second: at least 9 s, whatever the machine.
    assert!(
        slow_took >= Duration::from_millis(8900),
        "slow took {slow_took:?}"
    );
    assert!(
        slow_when_fast_done < 40,
        "the fast connector finished while the slow one had delivered {slow_when_fast_done}"
    );
    let requests = target.received_requests().await.unwrap();
    assert_eq!(
        requests.iter().filter(|r| r.url.path() == "/slow").count(),
        50,
        "one request per delivery"
    );
}

#[tokio::test]
async fn the_circuit_opens_after_the_configured_failures_and_closes_after_recovery() {
    let app = spawn_app_with(Options {
        extra: "[connectors.helpdesk.circuit]\nfailures = 3\ncool_down = \"1s\"\n".into(),
        delivery: Delivery {
            max_attempts: 10,
            ..Delivery::default()
        },
        ..Options::default()
    })
    .await;
    let outage = Scripted::status(503, json!({ "error": "Service Unavailable" }));
    app.zendesk.script([outage.clone(), outage.clone(), outage]);
    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;

    wait_until(|| async { (app.worker.open_circuits() == ["helpdesk"]).then_some(()) }).await;
    let ready: Value = app.get_json("/readyz").await;
    assert_eq!(ready["connectors"][0]["circuit"], "open", "{ready}");
    let opened = Instant::now();

    let row = app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    assert!(app.worker.open_circuits().is_empty());
    assert_eq!(app.worker.gates()[0].circuit.as_str(), "closed");
    let attempts = app.store.attempts(row[0].id).await.unwrap();
    assert_eq!(attempts.len(), 4, "three failures, then the probe");
    let gap = attempts[3].started_at.unix_millis() - attempts[2].started_at.unix_millis();
    assert!(gap >= 950, "the probe waited for the cool-down: {gap} ms");
    assert!(opened.elapsed() < Duration::from_secs(10));
    assert_eq!(app.zendesk.tickets().len(), 1);
}

/// Samples of a scrape by name and labels.
fn scrape(text: &str) -> HashMap<String, f64> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    scrape
        .samples
        .into_iter()
        .filter_map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(h) => h.last().map(|b| b.count)?,
                _ => return None,
            };
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            Some((format!("{}{{{}}}", s.metric, labels.join(",")), value))
        })
        .collect()
}

async fn metrics(app: &TestApp) -> HashMap<String, f64> {
    let response = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    scrape(&response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_parse_and_the_counters_move_with_what_happens() {
    let app = spawn_app().await;
    let before = metrics(&app).await;
    assert_eq!(
        before.get("chatbridge_conversations_received_total{source=smartsupp,status=completed}"),
        None
    );

    app.zendesk
        .script([Scripted::status(500, json!({ "error": "oops" }))]);
    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    app.post_smartsupp(fixture("smartsupp/missed-chat.json"))
        .await;
    app.post_raw(
        &format!("/hooks/smartsupp/{}", crate::helpers::HOOK_TOKEN),
        "not json",
    )
    .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 2).await;

    let after = metrics(&app).await;
    let get = |key: &str| {
        after
            .get(key)
            .copied()
            .unwrap_or_else(|| panic!("{key} in {after:#?}"))
    };
    assert_eq!(
        get("chatbridge_conversations_received_total{source=smartsupp,status=completed}"),
        1.0
    );
    assert_eq!(
        get("chatbridge_conversations_received_total{source=smartsupp,status=missed}"),
        1.0
    );
    assert_eq!(
        get("chatbridge_payloads_quarantined_total{reason=unparseable,source=smartsupp}"),
        1.0
    );
    assert_eq!(
        get("chatbridge_deliveries_total{connector=helpdesk,outcome=delivered}"),
        2.0
    );
    assert_eq!(
        get("chatbridge_delivery_retries_total{connector=helpdesk}"),
        1.0
    );
    assert_eq!(get("chatbridge_queue_depth{connector=helpdesk}"), 0.0);
    assert_eq!(get("chatbridge_dead_letters{connector=helpdesk}"), 0.0);
    assert_eq!(get("chatbridge_circuit_open{connector=helpdesk}"), 0.0);
    assert_eq!(
        get("chatbridge_ack_latency_seconds_count{source=smartsupp}"),
        3.0
    );
    assert_eq!(
        get("chatbridge_delivery_latency_seconds_count{connector=helpdesk}"),
        2.0
    );
    assert!(
        get(
            "chatbridge_upstream_request_duration_seconds_count{connector=helpdesk,step=create_ticket}"
        ) >= 3.0
    );
}
