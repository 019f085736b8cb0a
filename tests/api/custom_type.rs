//! A connector type chatbridge does not ship, added as `docs/connectors.md` shows: one
//! definition in a `connectors_dir` and one template in a `templates_dir`, no rebuild. The
//! files are the ones in `examples/`, so the documentation cannot drift from what works.

use chatbridge::store::DeliveryState;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{Options, fixture, run_cli, spawn_app_with};

const KEY: &str = "osticket-api-key-6a7b-s3cr3t";

#[tokio::test]
async fn a_type_from_connectors_dir_with_a_template_from_templates_dir_delivers() {
    let osticket = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/tickets.json"))
        .and(header("x-api-key", KEY))
        .respond_with(ResponseTemplate::new(201).set_body_string("100042"))
        .expect(1)
        .mount(&osticket)
        .await;
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let settings = format!("url = \"{}\"\napi_key = \"{KEY}\"", osticket.uri());
    let app = spawn_app_with(Options {
        top: format!(
            "connectors_dir = \"{examples}/connectors\"\ntemplates_dir = \"{examples}/templates\"\n"
        ),
        ..Options::only("tickets", "osticket", &settings)
    })
    .await;

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    let received = osticket.received_requests().await.unwrap();
    let ticket: serde_json::Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(ticket["email"], "dusan@domain.com");
    assert_eq!(ticket["name"], "Dusan Kmet");
    assert_eq!(ticket["subject"], "Hello");
    let message = ticket["message"].as_str().unwrap();
    assert!(
        message.starts_with("data:text/html;charset=utf-8,") && message.contains("tanks."),
        "{message}"
    );

    // `check` lists the new type beside the shipped ones.
    let config = app.config_path.display().to_string();
    let (code, out, _) = run_cli(&["check", "--config", &config]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("osticket     osTicket ticket per conversation via its API"),
        "{out}"
    );
}
