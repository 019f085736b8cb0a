//! Bodies refused at ingest are kept, and brought back: listed, shown, re-ingested and
//! dropped through the API, the command line and the dashboard. After the tenant a chat was
//! waiting for is configured, `reingest --all` makes conversations with deliveries of the
//! refused chats, and running it again makes nothing more.

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_TOKEN, Options, TestApp, fixture, run_cli, spawn_app_with};
use chatbridge::store::{DeliveryFilter, DeliveryState};

const ACME_TOKEN: &str = "acme-hook-1a2b3c-s3cr3t";
const GLOBEX_TOKEN: &str = "globex-hook-4d5e6f-s3cr3t";

fn tenants(globex: bool) -> String {
    let mut text = format!(
        "[[sources.smartsupp.tenants]]\nname = \"acme\"\ntoken = \"{ACME_TOKEN}\"\naccounts = [208]\n"
    );
    if globex {
        text.push_str(&format!(
            "[[sources.smartsupp.tenants]]\nname = \"globex\"\ntoken = \"{GLOBEX_TOKEN}\"\naccounts = [999]\n"
        ));
    }
    text
}

fn chat_of_account_999(channel: u64) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(&fixture("smartsupp/seed-example.json")).unwrap();
    doc["accountId"] = 999.into();
    doc["channel"]["id"] = channel.into();
    serde_json::to_vec(&doc).unwrap()
}

async fn post(app: &TestApp, token: &str, body: Vec<u8>) -> (u16, Value) {
    let response = app
        .post_raw(&format!("/hooks/smartsupp/{token}"), body)
        .await;
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Logs in to the dashboard; the session cookie.
async fn session(app: &TestApp, client: &reqwest::Client) -> String {
    let response = client
        .post(format!("{}/login", app.address))
        .form(&[("token", ADMIN_TOKEN), ("next", "/quarantine")])
        .send()
        .await
        .unwrap();
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn refused_chats_are_listed_shown_reingested_once_their_tenant_exists_and_dropped() {
    let app = spawn_app_with(Options {
        shared_token: false,
        extra: tenants(false),
        ..Options::default()
    })
    .await;

    // Two chats of an account no tenant has (the first sent twice), and Smartsupp's example
    // with a trailing comma.
    let (status, first) = post(&app, ACME_TOKEN, chat_of_account_999(1)).await;
    assert_eq!(status, 403, "{first}");
    let (_, resent) = post(&app, ACME_TOKEN, chat_of_account_999(1)).await;
    let (_, second) = post(&app, ACME_TOKEN, chat_of_account_999(2)).await;
    let seed = String::from_utf8(fixture("smartsupp/seed-example.json")).unwrap();
    let trailing_comma = seed.trim_end().trim_end_matches('}').to_owned() + ", }";
    let (status, broken) = post(&app, ACME_TOKEN, trailing_comma.clone().into_bytes()).await;
    assert_eq!(status, 400, "{broken}");
    let [first, resent, second, broken] =
        [&first, &resent, &second, &broken].map(|answer| answer["quarantined"].as_i64().unwrap());

    // Listed and shown through the API.
    let list = app.api_get("/api/quarantine").await;
    let ids: Vec<i64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [broken, second, resent, first]);
    let shown = app.api_get(&format!("/api/quarantine/{broken}")).await;
    assert_eq!(shown["body"], trailing_comma);
    assert!(
        shown["reason"].as_str().unwrap().contains("not valid JSON"),
        "{shown}"
    );

    // Tried again before anything changed: still refused, with the reason of today.
    let (status, answer) = app
        .api_post("/api/quarantine/reingest", json!({ "ids": [first] }))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["outcome"], "refused", "{answer}");
    assert!(
        answer["results"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("account 999"),
        "{answer}"
    );

    // The tenant of account 999 is added (a reload is enough for re-ingest; its hook URL
    // takes chats after a restart).
    let config = std::fs::read_to_string(&app.config_path).unwrap();
    std::fs::write(
        &app.config_path,
        config + &tenants(true)[tenants(false).len()..],
    )
    .unwrap();
    let (status, reloaded) = app.api_post("/api/reload", json!({})).await;
    assert_eq!(status, 200, "{reloaded}");
    let (_, api_answer) = app
        .api_post(
            "/api/quarantine/reingest",
            json!({ "ids": [first, 424242] }),
        )
        .await;
    assert_eq!(
        api_answer["results"][0]["outcome"], "stored",
        "{api_answer}"
    );
    assert_eq!(
        api_answer["results"][1]["outcome"], "missing",
        "{api_answer}"
    );

    // The rest from the command line: the resent chat is a duplicate of the first, the
    // second is stored, the broken one still refused.
    let config = app.config_path.to_str().unwrap();
    let (code, out, err) = run_cli(&["--config", config, "quarantine", "reingest", "--all"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("1 stored, 1 duplicates, 1 still refused"),
        "{out}"
    );
    let (code, out, _) = run_cli(&["--config", config, "quarantine", "reingest", "--all"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("0 stored, 0 duplicates, 1 still refused"),
        "{out}"
    );
    let (_, listed, _) = run_cli(&["--config", config, "quarantine", "list"]);
    assert!(listed.contains("1 quarantined bodies"), "{listed}");
    let (_, shown, _) = run_cli(&[
        "--config",
        config,
        "quarantine",
        "show",
        &broken.to_string(),
    ]);
    assert!(shown.contains(&trailing_comma), "{shown}");

    // Both chats of account 999 are conversations with their deliveries.
    for channel in ["1", "2"] {
        let id = format!("smartsupp:999:{channel}");
        let deliveries = app
            .store
            .deliveries(DeliveryFilter {
                conversation_id: Some(id.clone()),
                ..DeliveryFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(deliveries.len(), 1, "{id}: {deliveries:?}");
    }
    app.wait_for_deliveries(DeliveryState::Delivered, 2).await;

    // The dashboard lists what is left, re-ingests it (refused again) and drops it.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = session(&app, &client).await;
    let get = |path: String| {
        let request = client
            .get(format!("{}{path}", app.address))
            .header(COOKIE, &cookie);
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let page = get("/quarantine".into()).await;
    assert!(
        page.contains(&format!("id=\"quarantined-{broken}\"")),
        "{page}"
    );
    assert!(page.contains("not valid JSON"), "{page}");
    let detail = get(format!("/quarantine/{broken}")).await;
    assert!(
        detail.contains("&quot;accountId&quot;"),
        "the body is shown escaped: {detail}"
    );
    let reingested = client
        .post(format!("{}/quarantine/reingest", app.address))
        .header(COOKIE, &cookie)
        .form(&[("id", broken.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        reingested.headers()[LOCATION],
        "/quarantine?stored=0&duplicates=0&refused=1"
    );
    let dropped = client
        .post(format!("{}/quarantine/{broken}/drop", app.address))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(dropped.headers()[LOCATION], "/quarantine?dropped=1");
    assert!(
        app.api_get("/api/quarantine").await["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let missing = app
        .api(
            reqwest::Method::DELETE,
            &format!("/api/quarantine/{broken}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
