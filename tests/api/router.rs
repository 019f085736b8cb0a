//! The routes driven in process (`oneshot`), with a connector written for the test in place
//! of the configured one: what a request is answered and what it leaves in the store, where
//! a socket and a target would add nothing to the question.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chatbridge::app::Application;
use chatbridge::config::Config;
use chatbridge::connectors::{
    Checkpoint, Connector, DeliveryError, DeliveryJob, PlannedRequest, Receipt,
};
use chatbridge::render::Reads;
use chatbridge::store::{DeliveryFilter, DeliveryState};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::helpers::{ADMIN_TOKEN, HOOK_TOKEN, fixture};

/// Stands in for the configured `tickets` connector and is never attempted: no worker runs
/// here, and the question is what the routes store, not what a target receives.
#[derive(Debug)]
struct Unattempted;

#[async_trait]
impl Connector for Unattempted {
    fn name(&self) -> &str {
        "tickets"
    }

    fn kind(&self) -> &str {
        "unattempted"
    }

    fn reads(&self) -> Reads {
        Reads::read_by("")
    }

    async fn deliver(
        &self,
        _: &DeliveryJob<'_>,
        _: &dyn Checkpoint,
    ) -> Result<Receipt, DeliveryError> {
        unreachable!("no worker runs in these tests")
    }

    fn plan(&self, _: &DeliveryJob<'_>) -> Result<Vec<PlannedRequest>, DeliveryError> {
        unreachable!("previews build their connectors from the config")
    }
}

/// The application on a temporary SQLite store, its `tickets` connector [`Unattempted`],
/// no worker; and its routes.
async fn routes() -> (Application, axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\
         [store]\nurl = \"sqlite://{}/chatbridge.db\"\n\
         [sources.smartsupp]\ntoken = \"{HOOK_TOKEN}\"\n\
         [admin]\ntoken = \"{ADMIN_TOKEN}\"\n\
         [delivery]\nworkers = 0\n\
         [connectors.tickets]\ntype = \"webhook\"\n\
         [connectors.tickets.settings]\nurl = \"https://desk.example/hook\"\n",
        dir.path().display()
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).expect("the test config is valid");
    let mut registry = chatbridge::app::registry(&config).unwrap();
    let app = Application::build(config).await.expect("the app builds");
    assert!(registry.replace_connector(Arc::new(Unattempted)).is_some());
    app.registry().replace(registry);
    let router = app.router();
    (app, router, dir)
}

async fn answer(router: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn hook(token: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(format!("/hooks/smartsupp/{token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn a_chat_is_answered_after_it_is_stored_with_a_delivery_for_the_connector() {
    let (app, router, _dir) = routes().await;
    let (status, _) = answer(
        &router,
        hook(HOOK_TOKEN, fixture("smartsupp/seed-example.json")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let pending = app
        .store()
        .deliveries(DeliveryFilter {
            state: Some(DeliveryState::Pending),
            ..DeliveryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].connector, "tickets");
}

#[tokio::test]
async fn a_wrong_hook_token_is_refused_and_leaves_nothing() {
    let (app, router, _dir) = routes().await;
    let (status, _) = answer(
        &router,
        hook("not-the-token", fixture("smartsupp/seed-example.json")),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let stored = app.store().conversation_count(&Default::default()).await;
    assert_eq!(stored.unwrap(), 0);
}

#[tokio::test]
async fn an_unreadable_chat_is_refused_with_the_id_it_is_kept_under() {
    let (app, router, _dir) = routes().await;
    let (status, body) = answer(&router, hook(HOOK_TOKEN, b"{\"id\": ".to_vec())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let id = body["quarantined"].as_i64().expect("a quarantine id");
    let kept = app.store().quarantined_body(id).await.unwrap();
    assert_eq!(kept.expect("kept").item.body, b"{\"id\": ".to_vec());
}

#[tokio::test]
async fn the_preview_shows_the_configured_plan_to_the_admin_only_with_its_secret_url_masked() {
    let (_app, router, _dir) = routes().await;
    let payload: Value = serde_json::from_slice(&fixture("smartsupp/seed-example.json")).unwrap();
    let preview = |token: Option<&str>| {
        let mut request =
            Request::post("/api/preview").header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        request
            .body(Body::from(
                json!({"connector": "tickets", "payload": payload}).to_string(),
            ))
            .unwrap()
    };
    let (status, _) = answer(&router, preview(None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = answer(&router, preview(Some(ADMIN_TOKEN))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let planned = &body["requests"][0];
    assert_eq!(planned["method"], "POST", "{body}");
    assert_eq!(
        planned["target"], "***",
        "the webhook's URL is a secret: {body}"
    );
    assert!(!body.to_string().contains("desk.example/hook"), "{body}");
    assert!(
        planned["body"]
            .as_str()
            .is_some_and(|b| b.contains("\"id\":\"smartsupp:208:55039\"")),
        "{body}"
    );
}
