//! One deployment for many customers: each has its own hook token, accepted only for chats
//! of its Smartsupp accounts, and its own connectors, limited to those accounts.

use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{Options, fixture, spawn_app_with};
use chatbridge::store::{DeliveryFilter, DeliveryState};

const ACME_TOKEN: &str = "acme-hook-1a2b3c-s3cr3t";
const GLOBEX_TOKEN: &str = "globex-hook-4d5e6f-s3cr3t";

#[tokio::test]
async fn each_tenant_posts_only_its_accounts_chats_and_they_reach_only_its_connectors() {
    let globex_hook = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/in"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&globex_hook)
        .await;
    let app = spawn_app_with(Options {
        helpdesk: false,
        extra: format!(
            r#"
[[sources.smartsupp.tenants]]
name = "acme"
token = "{ACME_TOKEN}"
accounts = [208]

[[sources.smartsupp.tenants]]
name = "globex"
token = "{GLOBEX_TOKEN}"
accounts = ["184203"]

[connectors.acme_desk]
type = "zendesk"
accounts = [208]
[connectors.acme_desk.settings]
subdomain = "acme"
email = "{email}"
api_token = "{token}"
base_url = "{{zendesk}}"

[connectors.globex_hook]
type = "webhook"
accounts = [184203]
[connectors.globex_hook.settings]
url = "{globex}/in"
"#,
            email = crate::helpers::ZENDESK_EMAIL,
            token = crate::helpers::ZENDESK_TOKEN,
            globex = globex_hook.uri(),
        ),
        ..Options::default()
    })
    .await;
    let post = |token: &'static str, body: Vec<u8>| {
        let app = &app;
        async move {
            app.post_raw(&format!("/hooks/smartsupp/{token}"), body)
                .await
        }
    };

    let acme = post(ACME_TOKEN, fixture("smartsupp/seed-example.json")).await;
    assert_eq!(acme.status(), 202);
    let globex = post(GLOBEX_TOKEN, fixture("smartsupp/missed-chat.json")).await;
    assert_eq!(globex.status(), 202);

    // Globex's token with an Acme chat: refused, kept, and delivered nowhere.
    let crossed = post(GLOBEX_TOKEN, crate::helpers::seed_with_channel(7)).await;
    assert_eq!(crossed.status(), 403);
    let answer: Value = crossed.json().await.unwrap();
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("tenant `globex`"),
        "{answer}"
    );
    assert!(answer["quarantined"].is_number());
    let kept = app.store.quarantined(10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].reason.contains("account 208"), "{}", kept[0].reason);

    app.wait_for_deliveries(DeliveryState::Delivered, 2).await;
    let deliveries = app
        .store
        .deliveries(DeliveryFilter::default())
        .await
        .unwrap();
    let routed: Vec<(String, String)> = deliveries
        .iter()
        .map(|d| (d.connector.clone(), d.conversation_id.clone()))
        .rev()
        .collect();
    assert_eq!(
        routed,
        [
            ("acme_desk".to_owned(), "smartsupp:208:55039".to_owned()),
            (
                "globex_hook".to_owned(),
                "smartsupp:184203:910003".to_owned()
            ),
        ]
    );
    assert_eq!(
        app.zendesk.tickets().len(),
        1,
        "Acme's desk has Acme's chat only"
    );
    assert_eq!(globex_hook.received_requests().await.unwrap().len(), 1);

    let stranger = post("not-a-tenant", fixture("smartsupp/seed-example.json")).await;
    assert_eq!(stranger.status(), 401);
}

#[test]
fn tenant_settings_are_checked_at_start() {
    let (_dir, config) = crate::cli::write_config(
        r#"
[sources.smartsupp]
[[sources.smartsupp.tenants]]
name = "acme"
token = "same-token"
accounts = []
[[sources.smartsupp.tenants]]
name = "globex"
token = "same-token"
accounts = [1]
"#,
    );
    let (code, _, err) = crate::helpers::run_cli(&["--config", &config, "check"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("sources.smartsupp.tenants.acme.accounts"),
        "{err}"
    );
    assert!(
        err.contains("sources.smartsupp.tenants.globex.token") && err.contains("used twice"),
        "{err}"
    );
    assert!(!err.contains("same-token"), "tokens are not echoed: {err}");

    let (_dir, config) = crate::cli::write_config("[sources.smartsupp]\n");
    let (code, _, err) = crate::helpers::run_cli(&["--config", &config, "check"]);
    assert_eq!(code, 1);
    assert!(err.contains("[[sources.smartsupp.tenants]]"), "{err}");
}
