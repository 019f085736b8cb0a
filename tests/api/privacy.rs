//! Chat transcripts are personal data: `forget` and the retention purge leave no trace of a
//! visitor in the store or the logs, and redaction rules rewrite message text before it is
//! stored or sent.

use chatbridge::config::RetentionConfig;
use chatbridge::maintenance::Retention;
use chatbridge::model::Timestamp;
use chatbridge::store::DeliveryState;
use serde_json::{Value, json};

use crate::fake_vendor::Scripted;
use crate::helpers::{
    HOOK_TOKEN, Options, TestApp, captured_logs, fixture, run_cli, spawn_app, spawn_app_with,
};

/// The seed chat of a visitor with this address, in conversation `channel`.
fn chat_of(email: &str, channel: u64) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(&fixture("smartsupp/seed-example.json")).unwrap();
    doc["channel"]["id"] = channel.into();
    doc["visitor"]["email"] = email.into();
    doc["messages"][0]["content"] = format!("Hello, write to me at {email}").into();
    serde_json::to_vec(&doc).unwrap()
}

/// Every stored value that contains `needle`, as `table: value`, read straight from the
/// database: what an attacker with the disk would see.
async fn traces_in_store(app: &TestApp, needle: &str) -> Vec<String> {
    let needle = needle.to_lowercase();
    let mut found = Vec::new();
    let mut keep = |table: &str, text: String| {
        if text.to_lowercase().contains(&needle) {
            found.push(format!("{table}: {text}"));
        }
    };
    if app.store_url.starts_with("postgres") {
        let (client, connection) = tokio_postgres::connect(&app.store_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let columns = client
            .query(
                "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND data_type IN ('text', 'bytea')",
                &[],
            )
            .await
            .unwrap();
        for column in columns {
            let (table, name, kind): (String, String, String) =
                (column.get(0), column.get(1), column.get(2));
            let value = if kind == "bytea" {
                format!("encode(\"{name}\", 'escape')")
            } else {
                format!("\"{name}\"")
            };
            for row in client
                .query(
                    &format!("SELECT {value} FROM \"{table}\" WHERE \"{name}\" IS NOT NULL"),
                    &[],
                )
                .await
                .unwrap()
            {
                keep(&table, row.get(0));
            }
        }
        return found;
    }
    let db = app.config_path.with_file_name("chatbridge.db");
    let conn = rusqlite::Connection::open(db).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for table in tables {
        let mut statement = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns = statement.column_count();
        let mut rows = statement.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..columns {
                if let rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) =
                    row.get_ref(i).unwrap()
                {
                    keep(&table, String::from_utf8_lossy(t).into_owned());
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn forget_erases_conversations_excerpts_and_quarantined_bodies_and_reports_them() {
    let app = spawn_app().await;
    let email = "Erase.Me.4711@example.net";
    // The target's refusal echoes the address, so the attempt log holds it too.
    app.zendesk.script([Scripted::status(
        422,
        json!({ "error": "RecordInvalid", "description": format!("Requester {email} is suspended") }),
    )]);
    app.post_smartsupp(chat_of(email, 4711)).await;
    app.post_smartsupp(chat_of("someone.else@example.net", 4712))
        .await;
    app.post_raw(
        &format!("/hooks/smartsupp/{HOOK_TOKEN}"),
        format!("{{\"visitor\": {{\"email\": \"{email}\"").into_bytes(),
    )
    .await;
    app.wait_for_deliveries(DeliveryState::Dead, 1).await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    assert!(!traces_in_store(&app, email).await.is_empty());

    let (status, report) = app
        .api_post(
            "/api/forget",
            json!({ "email": "erase.me.4711@EXAMPLE.net" }),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report,
        json!({ "conversations": 1, "versions": 1, "deliveries": 1, "attempts": 1,
                "ledger_entries": 0, "quarantined": 1, "fetches": 0, "excerpts_blanked": 0, "files": 0 })
    );
    assert_eq!(traces_in_store(&app, email).await, Vec::<String>::new());
    assert!(
        !captured_logs()
            .to_lowercase()
            .contains(&email.to_lowercase()),
        "a log line holds the address"
    );
    let others = app.api_get("/api/conversations").await;
    assert_eq!(
        others["items"].as_array().unwrap().len(),
        1,
        "other visitors stay"
    );

    let (bad, answer) = app.api_post("/api/forget", json!({ "email": "  " })).await;
    assert_eq!(bad, 400, "{answer}");
}

/// Every file under `dir` whose bytes hold `needle` in any letter case, or a JSON-escaped or
/// percent-encoded `@` of it.
fn files_holding(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let needle = needle.to_lowercase();
    let spellings = [
        needle.clone(),
        needle.replace('@', "\\u0040"),
        needle.replace('@', "%40"),
    ];
    let mut found = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).to_lowercase();
            if spellings.iter().any(|s| text.contains(s.as_str())) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[tokio::test]
async fn after_forget_no_file_under_the_data_folder_holds_the_address() {
    let app = spawn_app_with(Options {
        extra: "[connectors.outbox]\ntype = \"file\"\nsettings = { dir = \"{data}/outbox\" }\n"
            .into(),
        ..Options::default()
    })
    .await;
    let email = "zoe.forgetme@example.com";
    let data = app.config_path.parent().unwrap().to_path_buf();
    app.post_smartsupp(chat_of("Zoe.ForgetMe@example.com", 4901))
        .await;
    app.post_smartsupp(chat_of("stays@example.com", 4902)).await;
    // Refused (no channel) and kept, the address written with a JSON escape.
    let refused = app
        .post_smartsupp(
            r#"{"accountId": 208, "visitor": {"email": "zoe.forgetme\u0040example.com", "phone": "+420 777 123 456"}}"#,
        )
        .await;
    assert_eq!(refused.status(), 400);
    app.wait_for_deliveries(DeliveryState::Delivered, 4).await;
    assert!(
        !files_holding(&data, email).is_empty(),
        "the test writes the address somewhere"
    );

    let (status, report) = app.api_post("/api/forget", json!({ "email": email })).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["quarantined"], 1, "{report}");
    assert_eq!(report["files"], 1, "{report}");
    assert_eq!(files_holding(&data, email), Vec::<String>::new());
    assert_eq!(traces_in_store(&app, email).await, Vec::<String>::new());
    assert_eq!(
        files_holding(&data, "stays@example.com").len(),
        if app.store_url.starts_with("postgres") {
            1
        } else {
            2
        },
        "another visitor's outbox file (and, with SQLite, store) stay"
    );
}

#[tokio::test]
async fn forget_from_the_command_line_reports_what_it_removed() {
    let app = spawn_app().await;
    app.post_smartsupp(chat_of("cli.forget@example.net", 4801))
        .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    let config = app.config_path.to_str().unwrap();
    let (code, out, err) = crate::helpers::run_cli(&[
        "--config",
        config,
        "forget",
        "--email",
        "cli.forget@example.net",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("erased 1 conversations (1 versions, 1 deliveries, 1 attempts"),
        "{out}"
    );
    assert!(
        traces_in_store(&app, "cli.forget@example.net")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn the_retention_purge_removes_settled_conversations_and_outbox_files_past_their_time() {
    let app = spawn_app_with(Options {
        extra: "[connectors.outbox]\ntype = \"file\"\nsettings = { dir = \"{data}/outbox\" }\n"
            .into(),
        ..Options::default()
    })
    .await;
    let outbox = app.config_path.with_file_name("outbox");
    let email = "retention.4900@example.net";
    app.post_smartsupp(chat_of(email, 4900)).await;
    app.wait_for_deliveries(DeliveryState::Delivered, 2).await;
    let retention = Retention::new(
        app.store.clone(),
        app.registry.clone(),
        &RetentionConfig {
            delivered_days: 30,
            dead_days: 90,
        },
    );
    let day = std::time::Duration::from_secs(86_400);
    let report = retention
        .purge(Timestamp::now().plus(day * 29))
        .await
        .unwrap();
    assert_eq!(report.conversations, 0, "kept for 30 days");
    assert!(!traces_in_store(&app, email).await.is_empty());
    let report = retention
        .purge(Timestamp::now().plus(day * 31))
        .await
        .unwrap();
    assert_eq!(report.conversations, 1);
    assert_eq!(traces_in_store(&app, email).await, Vec::<String>::new());
    assert!(!captured_logs().to_lowercase().contains(email));

    // The outbox file goes 30 days after it was written, as its conversation did.
    assert_eq!(
        retention
            .purge_outboxes(Timestamp::now().plus(day * 29))
            .await
            .unwrap(),
        0
    );
    assert_eq!(files_holding(&outbox, email).len(), 1);
    assert_eq!(
        retention
            .purge_outboxes(Timestamp::now().plus(day * 31))
            .await
            .unwrap(),
        1
    );
    assert_eq!(files_holding(&outbox, email), Vec::<String>::new());
}

#[tokio::test]
async fn redaction_rules_rewrite_message_text_before_it_is_stored_sent_or_previewed() {
    let app = spawn_app_with(Options {
        extra: "[[privacy.redact]]\npattern = '\\b(?:\\d[ -]?){13,16}\\b'\nreplacement = '[card number]'\n"
            .into(),
        ..Options::default()
    })
    .await;
    let mut doc: Value = serde_json::from_slice(&fixture("smartsupp/seed-example.json")).unwrap();
    doc["messages"][0]["content"] = "my card is 4111 1111 1111 1111, can you refund?".into();
    let body = serde_json::to_vec(&doc).unwrap();
    app.post_smartsupp(body.clone()).await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    let sent = app.zendesk.tickets()[0].to_string();
    assert!(
        sent.contains("my card is [card number], can you refund?"),
        "{sent}"
    );
    // `chatbridge render` and the preview show what is sent.
    let scratch = tempfile::tempdir().unwrap();
    let file = scratch.path().join("card.json");
    std::fs::write(&file, &body).unwrap();
    let (code, out, err) = run_cli(&[
        "--config",
        app.config_path.to_str().unwrap(),
        "render",
        "--connector",
        "helpdesk",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("my card is [card number]") && !out.contains("4111 1111"),
        "{out}"
    );
    let (status, preview) = app
        .api_post(
            "/api/preview",
            json!({ "connector": "helpdesk", "payload": doc }),
        )
        .await;
    assert_eq!(status, 200, "{preview}");
    let shown = preview["requests"].to_string();
    assert!(
        shown.contains("my card is [card number]") && !shown.contains("4111 1111"),
        "{shown}"
    );
    assert_eq!(
        traces_in_store(&app, "4111 1111").await,
        Vec::<String>::new(),
        "stored redacted"
    );
    let resend = app.post_smartsupp(body).await;
    assert_eq!(
        resend.status(),
        200,
        "an identical resend is still a duplicate"
    );
}
