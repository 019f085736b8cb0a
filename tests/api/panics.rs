//! A connector that panics ends its attempt like any failure: recorded with the reason,
//! dead (it would panic again), and everything the attempt held given back. And chat text
//! that once made the `email` connector panic (a line break in the visitor's name) now goes
//! out on one clean line.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use chatbridge::connectors::{
    Checkpoint, Connector, DeliveryError, DeliveryJob, PlannedRequest, Receipt,
};
use chatbridge::render::Reads;
use chatbridge::store::DeliveryState;

use crate::fake_smtp::FakeSmtp;
use crate::helpers::{Options, receiver_answering, run_cli, seed_with_channel, spawn_app_with};

/// Wraps a configured connector and panics, mid-attempt, on a visitor named `panic`.
#[derive(Debug)]
struct PanicsOnName(Arc<dyn Connector>);

#[async_trait]
impl Connector for PanicsOnName {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn kind(&self) -> &str {
        self.0.kind()
    }
    fn reads(&self) -> Reads {
        self.0.reads()
    }
    async fn deliver(
        &self,
        job: &DeliveryJob<'_>,
        checkpoint: &dyn Checkpoint,
    ) -> Result<Receipt, DeliveryError> {
        tokio::task::yield_now().await;
        if job.conversation.visitor.name.as_deref() == Some("panic") {
            panic!("rendering choked on the visitor's name");
        }
        self.0.deliver(job, checkpoint).await
    }
    fn plan(&self, job: &DeliveryJob<'_>) -> Result<Vec<PlannedRequest>, DeliveryError> {
        if job.conversation.visitor.name.as_deref() == Some("panic") {
            panic!("rendering choked on the visitor's name");
        }
        self.0.plan(job)
    }
}

fn named(channel: u64, name: &str) -> Vec<u8> {
    let mut doc: serde_json::Value = serde_json::from_slice(&seed_with_channel(channel)).unwrap();
    doc["visitor"]["name"] = name.into();
    serde_json::to_vec(&doc).unwrap()
}

#[tokio::test]
async fn a_panicking_attempt_is_recorded_dead_and_the_next_chat_goes_through_the_limit() {
    let target = receiver_answering(200).await;
    let app = spawn_app_with(Options {
        helpdesk: false,
        extra: format!(
            "[connectors.hook]\ntype = \"webhook\"\nrate_limit = {{ per_second = 1, burst = 1 }}\n\
             concurrency = 1\n[connectors.hook.settings]\nurl = \"{}/hook\"\n",
            target.uri()
        ),
        ..Options::default()
    })
    .await;
    let mut registry =
        chatbridge::app::registry(&chatbridge::config::Config::load(&app.config_path).unwrap())
            .unwrap();
    let configured = registry.get("hook").unwrap().clone();
    assert!(
        registry
            .replace_connector(Arc::new(PanicsOnName(configured)))
            .is_some()
    );
    app.registry.replace(registry);

    assert_eq!(app.post_smartsupp(named(1, "panic")).await.status(), 202);
    let dead = app.wait_for_deliveries(DeliveryState::Dead, 1).await;
    let reason = dead[0].last_error.clone().unwrap_or_default();
    assert!(reason.contains("failed unexpectedly"), "{reason}");
    let attempts = app.store.attempts(dead[0].id).await.unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert!(
        attempts[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("choked on the visitor's name")),
        "{attempts:?}"
    );

    // The panic gave back its concurrency slot and its place in the rate limit.
    assert_eq!(app.post_smartsupp(named(2, "Jane")).await.status(), 202);
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    assert_eq!(target.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_line_break_in_the_visitor_name_leaves_one_clean_display_name() {
    const USER: &str = "bridge";
    const PASSWORD: &str = "smtp-password-4d5e-s3cr3t";
    let smtp = FakeSmtp::start(USER, PASSWORD).await;
    let settings = format!(
        "smtp_host = \"127.0.0.1\"\nsmtp_port = \"{}\"\ntls = \"none\"\n\
         username = \"{USER}\"\npassword = \"{PASSWORD}\"\n\
         from = \"Chat bridge <chats@acme.example>\"\nto = \"support@acme.example\"\n",
        smtp.port
    );
    let app = spawn_app_with(Options::only("mail", "email", &settings)).await;
    let body = named(3, "Eve\r\nBcc: victim@example.com\n\u{1b}[31mred");
    assert_eq!(app.post_smartsupp(body.clone()).await.status(), 202);
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    let messages = smtp.messages();
    let message = &messages[0];
    let reply_to = message
        .lines()
        .find(|l| l.starts_with("Reply-To:"))
        .unwrap_or_default();
    // lettre writes such a name as an RFC 2047 encoded word.
    let encoded = reply_to
        .strip_prefix("Reply-To: =?utf-8?b?")
        .and_then(|r| r.strip_suffix("?= <dusan@domain.com>"))
        .unwrap_or_else(|| panic!("{reply_to}"));
    let name = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    assert_eq!(
        String::from_utf8(name).unwrap(),
        "Eve Bcc: victim@example.com [31mred"
    );
    let mut headers = message.lines().take_while(|l| !l.trim().is_empty());
    assert!(!headers.any(|l| l.starts_with("Bcc:")), "{message}");

    // The dry run shows the same, where it used to crash.
    let payload = app.config_path.with_file_name("eve.json");
    std::fs::write(&payload, &body).unwrap();
    let config = app.config_path.to_str().unwrap();
    let (code, out, err) = run_cli(&[
        "render",
        "--config",
        config,
        "--connector",
        "mail",
        payload.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("Eve Bcc: victim@example.com [31mred"), "{out}");
}
