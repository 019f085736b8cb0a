//! The command line: check, render.

use crate::helpers::run_cli;

pub fn write_config(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap().to_owned();
    (dir, path)
}

const ZENDESK_INSTANCE: &str = r#"
[store]
url = "sqlite://unused.db"
[connectors.helpdesk]
type = "zendesk"
[connectors.helpdesk.settings]
subdomain = "acme"
email = "agent@acme.example"
api_token = "render-secret-4d5e6f"
"#;

#[test]
fn check_passes_the_shipped_config() {
    let (code, out, err) = run_cli(&["check"]);
    assert_eq!(code, 0, "{out}{err}");
    for kind in ["zendesk", "webhook", "file"] {
        assert!(out.contains(kind), "{out}");
    }
    assert!(out.contains("outbox") && out.contains("ok"), "{out}");
    assert!(
        out.contains("smartsupp    type smartsupp    /hooks/smartsupp/{token}"),
        "{out}"
    );
}

#[test]
fn check_names_an_unknown_connector_type_and_every_other_problem() {
    let (_dir, config) = write_config(
        "[server]\nlisten = \"nowhere\"\n[connectors.helpdesk]\ntype = \"zendeskk\"\n[delivery]\nmultiplier = 0.1\n",
    );
    let (code, _, err) = run_cli(&["--config", &config, "check"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("server.listen") && err.contains("delivery.multiplier"),
        "{err}"
    );

    let (_dir, config) = write_config("[connectors.helpdesk]\ntype = \"zendeskk\"\n");
    let (code, _, err) = run_cli(&["--config", &config, "check"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("connectors.helpdesk.type: unknown connector type `zendeskk`"),
        "{err}"
    );
    let known = err.split("known types: ").nth(1).unwrap_or_default();
    assert!(
        known.contains("file") && known.contains("webhook") && known.contains("zendesk"),
        "{err}"
    );
}

#[test]
fn check_names_each_source_problem_with_its_fix() {
    let (_dir, config) = write_config(
        "[sources.tawk]\n[sources.shop-crisp]\ntype = \"crisp\"\nsecret = \"s\"\n[sources.support]\nsecret = \"s\"\n",
    );
    let (code, _, err) = run_cli(&["--config", &config, "check"]);
    assert_eq!(code, 1, "{err}");
    for expected in [
        "sources.tawk.secret: is missing; tawk requests are refused until it is set",
        "sources.shop-crisp.api: is missing; crisp webhooks do not carry the transcript",
        "sources.support.type: is missing, and `support` is not a product's name",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }
}

#[test]
fn check_names_missing_and_unknown_settings() {
    let (_dir, config) = write_config(
        "[connectors.helpdesk]\ntype = \"zendesk\"\nsettings = { subdomain = \"a\", emial = \"x\" }\n",
    );
    let (code, _, err) = run_cli(&["--config", &config, "check"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("connectors.helpdesk.settings.email: required"),
        "{err}"
    );
    assert!(
        err.contains("connectors.helpdesk.settings.api_token: required"),
        "{err}"
    );
    assert!(
        err.contains("connectors.helpdesk.settings.emial: not a setting"),
        "{err}"
    );
}

#[test]
fn render_shows_method_url_and_body_and_never_the_secret() {
    let (_dir, config) = write_config(ZENDESK_INSTANCE);
    let (code, out, err) = run_cli(&[
        "--config",
        &config,
        "render",
        "--connector",
        "helpdesk",
        "src/samples/smartsupp/seed-example.json",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("GET https://acme.zendesk.com/api/v2/tickets?external_id=cb%3Ahelpdesk%3Asmartsupp%3A208%3A55039"), "{out}");
    assert!(
        out.contains("POST https://acme.zendesk.com/api/v2/tickets\n"),
        "{out}"
    );
    assert!(out.contains("authorization: ***"), "{out}");
    assert!(out.contains(r#""subject": "Hello""#), "{out}");
    assert!(!out.contains("render-secret-4d5e6f") && !err.contains("render-secret-4d5e6f"));
}

#[test]
fn render_takes_any_products_payload_by_its_source() {
    let (_dir, config) = write_config(&format!(
        "{ZENDESK_INSTANCE}\n[sources.olark]\ntoken = \"olark-token-0123\"\n"
    ));
    let render = |source: &str, file: &str| {
        run_cli(&[
            "--config",
            &config,
            "render",
            "--connector",
            "helpdesk",
            "--source",
            source,
            file,
        ])
    };
    let (code, out, err) = render("tawk", "tests/fixtures/tawk/chat-transcript-created.json");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(r#""subject": "Hi, is the Aurora X2 in stock in black?""#),
        "{out}"
    );
    // A configured instance: its name is the account of Olark's conversations.
    let (code, out, err) = render(
        "olark",
        "tests/fixtures/olark/conversation.form-urlencoded.txt",
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("cb%3Ahelpdesk%3Aolark%3Aolark%3AQ7mX2cV9bN4kL1pZ8sD3fG6hJ0aE5rT"),
        "{out}"
    );
    let (code, _, err) = render(
        "crisp",
        "tests/fixtures/crisp/session-set-state-resolved.json",
    );
    assert_eq!(code, 1);
    assert!(err.contains("does not carry its conversation"), "{err}");
    let (code, _, err) = render("zopim", "tests/fixtures/tawk/chat-end.json");
    assert_eq!(code, 1);
    assert!(
        err.contains("no source `zopim`") && err.contains("tawk"),
        "{err}"
    );
}

/// URLs that are credentials, in the forms they take once a request is built from them: a
/// Slack webhook written with a trailing `/`, a webhook with a token in its path and query, a
/// password in a help desk's address.
#[test]
fn render_masks_credentials_carried_in_urls() {
    let (_dir, config) = write_config(
        r#"
[store]
url = "sqlite://unused.db"
[connectors.slack]
type = "slack"
settings = { webhook_url = "https://hooks.slack.com/services/T0/B0/sl4ckT0ken/" }
[connectors.hook]
type = "webhook"
settings = { url = "https://hooks.acme.example/catch/p4thT0ken/?key=qu3ryT0ken" }
[connectors.rt]
type = "rt"
settings = { url = "https://bob:p%40ssW0rd@rt.acme.example", token = "rt-t0ken" }
"#,
    );
    for connector in ["slack", "hook", "rt"] {
        let (code, out, err) = run_cli(&[
            "--config",
            &config,
            "render",
            "--connector",
            connector,
            "src/samples/smartsupp/seed-example.json",
        ]);
        assert_eq!(code, 0, "{err}");
        for secret in [
            "sl4ckT0ken",
            "p4thT0ken",
            "qu3ryT0ken",
            "p%40ssW0rd",
            "p@ssW0rd",
            "rt-t0ken",
        ] {
            assert!(
                !out.contains(secret) && !err.contains(secret),
                "{secret}: {out}"
            );
        }
        assert!(out.contains("***"), "{out}");
    }
}

#[test]
fn render_reports_an_unknown_instance_with_the_configured_ones() {
    let (_dir, config) = write_config(ZENDESK_INSTANCE);
    let (code, _, err) = run_cli(&[
        "--config",
        &config,
        "render",
        "--connector",
        "nope",
        "src/samples/smartsupp/seed-example.json",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no connector instance `nope`") && err.contains("helpdesk"),
        "{err}"
    );
}

#[tokio::test]
async fn chat_text_reaches_the_terminal_escaped() {
    let app = crate::helpers::spawn_app_with(crate::helpers::Options {
        workers: false,
        ..crate::helpers::Options::default()
    })
    .await;
    let mut doc: serde_json::Value =
        serde_json::from_slice(&crate::helpers::fixture("smartsupp/seed-example.json")).unwrap();
    doc["channel"]["id"] = "66\n     1  dead  forged\u{1b}[2J\u{1b}]0;owned\u{7}".into();
    doc["visitor"]["name"] = "Eve\u{1b}[31m".into();
    let body = serde_json::to_vec(&doc).unwrap();
    assert_eq!(app.post_smartsupp(body.clone()).await.status(), 202);
    let config = app.config_path.to_str().unwrap();

    let (code, out, err) = run_cli(&["--config", config, "deliveries", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    let row = out.lines().find(|l| l.contains("forged")).unwrap();
    assert!(row.contains(r"66\n     1  dead  forged\u{1b}[2J"), "{row}");

    let payload = app.config_path.with_file_name("hostile.json");
    std::fs::write(&payload, &body).unwrap();
    let (code, out, err) = run_cli(&[
        "--config",
        config,
        "render",
        "--connector",
        "helpdesk",
        payload.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
}

/// `render` and `send` hand a chat to a connector only when `serve` would: a CRM type needs
/// the visitor's e-mail, so a chat without one is said to be filtered out, and nothing
/// reaches the target (Pipedrive's person search without its required `term`, a person
/// with an empty address).
#[tokio::test]
async fn render_and_send_leave_out_a_chat_serve_would_filter_out() {
    let desk = crate::desks::start(crate::desks::Brand::Pipedrive, "pd-api-token-cli").await;
    let (_dir, config) = write_config(&format!(
        "[store]\nurl = \"sqlite://unused.db\"\n[connectors.crm]\ntype = \"pipedrive\"\n\
         settings = {{ company_domain = \"acme\", api_token = \"pd-api-token-cli\", base_url = \"{}\" }}\n",
        desk.uri()
    ));
    for command in ["render", "send"] {
        let args = [
            "--config".to_owned(),
            config.clone(),
            command.to_owned(),
            "--connector".to_owned(),
            "crm".to_owned(),
            "src/samples/smartsupp/visitor-without-email.json".to_owned(),
        ];
        let (code, out, err) = tokio::task::spawn_blocking(move || {
            run_cli(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .unwrap();
        assert_eq!(code, 0, "{command}: {out}{err}");
        assert!(
            out.contains("filtered out by its `when`: (conversation.visitor.email)"),
            "{command}: {out}"
        );
        assert!(
            !out.contains("GET ") && !out.contains("delivered"),
            "{command}: {out}"
        );
    }
    assert!(desk.requests().is_empty(), "nothing reached Pipedrive");
}
