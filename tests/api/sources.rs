//! The chat products beside Smartsupp's POST hook: each fixture read into the conversation
//! it describes (expectations read off the payloads), then posted the way the product posts
//! it, proof included, becoming a ticket at the Zendesk stand-in and a contact with a note
//! at the HubSpot one. Signatures, body secrets and URL tokens refuse what the product
//! would not have sent, and store nothing of it; events that end no conversation are
//! acknowledged and create nothing.

use chatbridge::model::{MessageKind, Status};
use chatbridge::sources::{Event, Source};
use chatbridge::store::DeliveryState;
use hmac::{Hmac, Mac};
use serde_json::Value;

use crate::fake_hubspot;
use crate::helpers::{Options, TestApp, fixture, spawn_app_with, wait_until};

const TAWK_SECRET: &str = "tawk-test-secret";
const LIVECHAT_SECRET: &str = "livechat-test-secret";
const OLARK_TOKEN: &str = "olark-url-token-0123456789";

/// The sources every test app here has, with the fixtures' secrets.
fn sources() -> String {
    format!(
        r#"
[sources.tawk]
secret = "{TAWK_SECRET}"

[sources.livechat]
secret = "{LIVECHAT_SECRET}"
[sources.livechat.api]
identifier = "b1f2c3d4-0a1b-4c2d-8e3f-123456789abc"
token = "livechat-pat"
base_url = "http://127.0.0.1:9"

[sources.olark]
token = "{OLARK_TOKEN}"
"#
    )
}

/// One carried conversation: product, fixture, the id, status, visitor e-mail and name,
/// messages, agents, the subject, tags, department.
struct Expected {
    source: Source,
    file: &'static str,
    id: &'static str,
    status: Status,
    email: Option<&'static str>,
    name: Option<&'static str>,
    messages: usize,
    agents: &'static [&'static str],
    subject: &'static str,
    tags: &'static [&'static str],
    department: Option<&'static str>,
}

const TAWK_PROPERTY: &str = "65f1c0a2e4b0a1b2c3d4e5f6";

fn expected() -> Vec<Expected> {
    let olark_chat = |file| Expected {
        source: Source::Olark,
        file,
        id: "olark:olark:Q7mX2cV9bN4kL1pZ8sD3fG6hJ0aE5rT",
        status: Status::Completed,
        email: Some("pavel.marek@corp.example"),
        name: Some("Pavel Marek"),
        messages: 3,
        agents: &["Renata"],
        subject: "Hi, do you offer volume discounts for 120 seats?",
        tags: &["pricing", "b2b"],
        department: Some("Sales"),
    };
    vec![
        Expected {
            source: Source::Tawk,
            file: "tawk/chat-transcript-created.json",
            id: "tawk:65f1c0a2e4b0a1b2c3d4e5f6:b2f7c3e0-2967-11ef-9c4d-2f1e8a6b7c01",
            status: Status::Completed,
            email: Some("jana.mala@example.com"),
            name: Some("Jana Malá"),
            messages: 5,
            agents: &["Martin"],
            subject: "Hi, is the Aurora X2 in stock in black?",
            tags: &[],
            department: None,
        },
        Expected {
            source: Source::Tawk,
            file: "tawk/ticket-create.json",
            id: "tawk:65f1c0a2e4b0a1b2c3d4e5f6:ticket:c41d8e90-29c9-11ef-8a1f-8d2b7f3e4a55",
            status: Status::Offline,
            email: Some("tomas.kral@example.net"),
            name: Some("Tomáš Král"),
            messages: 1,
            agents: &[],
            subject: "Refund for order 20240611-0042",
            tags: &[],
            department: None,
        },
        olark_chat("olark/conversation.json"),
        olark_chat("olark/conversation.form-urlencoded.txt"),
        Expected {
            source: Source::Olark,
            file: "olark/offline-message.json",
            id: "olark:olark:R1nB5vC8xZ2mL4kJ7hG0fD3sA6pQ9wE",
            status: Status::Offline,
            email: Some("tomas.kral@example.net"),
            name: Some("Tomáš Král"),
            messages: 1,
            agents: &[],
            subject: "Please call me back tomorrow about the invoice.",
            tags: &[],
            department: None,
        },
        Expected {
            source: Source::LiveChat,
            file: "livechat/incoming-chat.json",
            id: "livechat:b1f2c3d4-0a1b-4c2d-8e3f-123456789abc:SF4KQ1L2ZC:SF4KQ1L2ZD",
            // At the chat's start nobody has answered yet.
            status: Status::Missed,
            email: Some("jana.mala@example.com"),
            name: Some("Jana Malá"),
            messages: 2,
            agents: &[],
            subject: "Hi, is the Aurora X2 in stock in black?",
            tags: &[],
            department: None,
        },
    ]
}

/// The document a product's body is read from, as the HTTP layer keeps it.
fn read(source: Source, file: &str) -> Event {
    let mut body = fixture(file);
    if source == Source::LiveChat {
        let secrets = chatbridge::sources::signature::Secrets {
            current: LIVECHAT_SECRET.into(),
            previous: None,
        };
        body = chatbridge::sources::livechat::authenticate(&secrets, &body)
            .unwrap()
            .to_vec();
    }
    let document = source.document(body.into()).unwrap();
    source.read(&document, source.name()).unwrap()
}

#[test]
fn every_carried_fixture_reads_as_the_conversation_it_describes() {
    for e in expected() {
        let Event::Conversation(c) = read(e.source, e.file) else {
            panic!("{}: not a conversation", e.file);
        };
        let at = e.file;
        assert_eq!(c.id.as_str(), e.id, "{at}");
        assert_eq!(c.source, e.source.name(), "{at}");
        assert_eq!(c.status, e.status, "{at}");
        assert_eq!(
            c.visitor.email.as_ref().map(|m| m.as_str()),
            e.email,
            "{at}"
        );
        assert_eq!(c.visitor.name.as_deref(), e.name, "{at}");
        assert_eq!(c.messages.len(), e.messages, "{at}");
        assert_eq!(c.agents, e.agents, "{at}");
        assert!(c.subject.starts_with(e.subject), "{at}: {}", c.subject);
        assert_eq!(c.tags, e.tags, "{at}");
        assert_eq!(c.department.as_deref(), e.department, "{at}");
        assert!(c.started_at.is_some() && c.ended_at >= c.started_at, "{at}");
        assert!(
            c.messages.windows(2).all(|w| w[0].sent_at <= w[1].sent_at),
            "{at}: transcript in time order"
        );
    }
}

#[test]
fn field_by_field_the_products_map_onto_the_one_model() {
    let Event::Conversation(tawk) = read(Source::Tawk, "tawk/chat-transcript-created.json") else {
        panic!()
    };
    assert_eq!(tawk.account_id, TAWK_PROPERTY);
    assert_eq!(tawk.visitor.country_code.as_deref(), Some("CZ"));
    assert_eq!(tawk.visitor.city.as_deref(), Some("Brno"));
    let kinds: Vec<MessageKind> = tawk.messages.iter().map(|m| m.kind).collect();
    use MessageKind::{Agent, System, Visitor};
    assert_eq!(kinds, [System, Visitor, Agent, Visitor, System]);
    assert_eq!(
        tawk.started_at.unwrap().to_string(),
        "2024-06-13T09:30:02.118Z"
    );
    assert_eq!(
        tawk.ended_at.unwrap().to_string(),
        "2024-06-13T09:41:55.300Z"
    );

    let Event::Conversation(olark) = read(Source::Olark, "olark/conversation.json") else {
        panic!()
    };
    assert_eq!(olark.visitor.phone, None, "an empty phone is no phone");
    assert_eq!(olark.visitor.ip.as_deref(), Some("198.51.100.17"));
    assert_eq!(olark.visitor.variables["plan"].value, "trial");
    assert_eq!(
        olark.visitor.variables["organization"].value,
        "Corp Example s.r.o."
    );
    assert_eq!(
        olark.pages[0].url.as_deref(),
        Some("https://app.example.com/pricing")
    );
    assert_eq!(olark.messages[1].author_name.as_deref(), Some("Renata"));
    assert_eq!(
        olark.started_at.unwrap().to_string(),
        "2024-06-13T09:30:01.420Z"
    );

    let Event::Conversation(live) = read(Source::LiveChat, "livechat/incoming-chat.json") else {
        panic!()
    };
    assert_eq!(live.visitor.ip.as_deref(), Some("203.0.113.24"));
    assert_eq!(live.visitor.country_code.as_deref(), Some("CZ"));
    assert_eq!(live.visitor.variables["customer_no"].value, "C-48213");
    assert_eq!(live.pages.len(), 2);
    assert_eq!(live.messages[1].event.as_deref(), Some("routing.assigned"));
    assert_eq!(
        live.started_at.unwrap().to_string(),
        "2024-06-13T09:30:02.118Z"
    );
}

#[test]
fn events_that_end_nothing_are_recognised_and_the_fetched_ones_name_their_conversation() {
    for (source, file, ignored) in [
        (Source::Tawk, "tawk/chat-end.json", "chat:end"),
        (Source::Crisp, "crisp/message-send.json", "message:send"),
    ] {
        assert_eq!(read(source, file), Event::Ignored(ignored.into()), "{file}");
    }
    for (source, file, id) in [
        (
            Source::SmartsuppV2,
            "smartsupp-v2/conversation-closed.json",
            "smartsupp-v2:184203:cv8Zp3LkQ1",
        ),
        (
            Source::Crisp,
            "crisp/session-set-state-resolved.json",
            "crisp:8c842203-7ed8-4e29-a608-7cf78a7d2fcc:session_700c65e1-85e2-465a-b9ac-ecb5ec2c9881",
        ),
        (
            Source::Tidio,
            "tidio/conversation-solved-by-operator.json",
            "tidio:k3bqz8ximv0lw2pe6jy4cusfo9tahnrd:0b9d6c3a-4e21-4f7a-9c58-3d2e1f0a9b87",
        ),
        (
            Source::LiveChat,
            "livechat/chat-deactivated.json",
            "livechat:b1f2c3d4-0a1b-4c2d-8e3f-123456789abc:SF4KQ1L2ZC:SF4KQ1L2ZD",
        ),
    ] {
        let Event::Fetch(fetch) = read(source, file) else {
            panic!("{file}: not fetched");
        };
        assert_eq!(fetch.conversation_id.as_str(), id, "{file}");
    }
}

fn tawk_signature(body: &[u8], secret: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Posts `file` as its product does: signed, with the secret in the body, or to the token
/// URL (form-encoded for Olark's `.txt` body).
async fn post_as_the_product(app: &TestApp, source: Source, file: &str) -> reqwest::Response {
    let body = fixture(file);
    let url = |path: &str| format!("{}{path}", app.address);
    let request = match source {
        Source::Tawk => app
            .client
            .post(url("/hooks/tawk"))
            .header("x-tawk-signature", tawk_signature(&body, TAWK_SECRET)),
        Source::Olark => app
            .client
            .post(url(&format!("/hooks/olark/{OLARK_TOKEN}")))
            .header(
                "content-type",
                if file.ends_with(".txt") {
                    "application/x-www-form-urlencoded"
                } else {
                    "application/json"
                },
            ),
        _ => app.client.post(url(&format!("/hooks/{}", source.name()))),
    };
    request.body(body).send().await.unwrap()
}

#[tokio::test]
async fn every_carried_fixture_becomes_a_zendesk_ticket() {
    let app = spawn_app_with(Options {
        extra: sources(),
        ..Options::default()
    })
    .await;
    let mut ids = std::collections::BTreeSet::new();
    // The Olark chat is posted once, as Olark posts it (form-encoded); its JSON twin is the
    // same conversation, as the reading test shows.
    for e in expected()
        .iter()
        .filter(|e| e.file != "olark/conversation.json")
    {
        let response = post_as_the_product(&app, e.source, e.file).await;
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 202, "{}: {answer}", e.file);
        assert_eq!(answer["conversation"], e.id, "{}", e.file);
        ids.insert(e.id);
    }
    let delivered = app
        .wait_for_deliveries(DeliveryState::Delivered, ids.len())
        .await;
    assert_eq!(delivered.len(), ids.len());
    let tickets = app.zendesk.tickets();
    assert_eq!(tickets.len(), ids.len(), "{tickets:#?}");
    for id in &ids {
        assert!(
            tickets
                .iter()
                .any(|t| t["external_id"].as_str().is_some_and(|x| x.ends_with(id))),
            "no ticket for {id}: {tickets:#?}"
        );
    }
}

#[tokio::test]
async fn every_carried_fixture_becomes_a_hubspot_contact_with_its_transcript() {
    const TOKEN: &str = "pat-na1-hubspot-sources-token";
    let hubspot = fake_hubspot::start(TOKEN).await;
    let settings = format!(
        "access_token = \"{TOKEN}\"\nbase_url = \"{}\"",
        hubspot.uri()
    );
    let mut options = Options::only("crm", "hubspot", &settings);
    options.extra.push_str(&sources());
    let app = spawn_app_with(options).await;
    let posted: Vec<Expected> = expected()
        .into_iter()
        .filter(|e| e.file != "olark/conversation.json")
        .collect();
    for e in &posted {
        let response = post_as_the_product(&app, e.source, e.file).await;
        assert_eq!(response.status(), 202, "{}", e.file);
    }
    app.wait_for_deliveries(DeliveryState::Delivered, posted.len())
        .await;
    hubspot.with(|h| {
        let mut emails: Vec<&str> = h
            .contacts
            .iter()
            .map(|c| c.properties["email"].as_str().unwrap())
            .collect();
        emails.sort_unstable();
        assert_eq!(
            emails,
            [
                "jana.mala@example.com",
                "pavel.marek@corp.example",
                "tomas.kral@example.net"
            ],
            "one contact per visitor, whichever product they wrote through"
        );
        assert_eq!(h.notes.len(), posted.len(), "a note per conversation");
        h.assert_notes_hold(&[
            "yes, we have 12 pieces in black",
            "I returned the order a week ago",
            "from 50 seats on",
            "Please call me back tomorrow",
        ]);
    });
}

#[tokio::test]
async fn when_filters_and_templates_read_the_product_as_conversation_source() {
    let mut options = Options {
        helpdesk: false,
        extra: sources(),
        ..Options::default()
    };
    options.extra.push_str(&format!(
        "[connectors.olark_desk]\ntype = \"zendesk\"\nwhen = \"conversation.source == 'olark'\"\n\
         [connectors.olark_desk.settings]\nsubdomain = \"acme\"\nemail = \"{}\"\napi_token = \"{}\"\n\
         base_url = \"{{zendesk}}\"\n",
        crate::helpers::ZENDESK_EMAIL,
        crate::helpers::ZENDESK_TOKEN
    ));
    let app = spawn_app_with(options).await;
    let tawk: Value = post_as_the_product(&app, Source::Tawk, "tawk/chat-transcript-created.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tawk["deliveries"], 0, "not an Olark chat: {tawk}");
    let olark: Value = post_as_the_product(
        &app,
        Source::Olark,
        "olark/conversation.form-urlencoded.txt",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(olark["deliveries"], 1, "{olark}");
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    let tickets = app.zendesk.tickets();
    assert_eq!(tickets.len(), 1);
    assert_eq!(
        tickets[0]["external_id"],
        "cb:olark_desk:olark:olark:Q7mX2cV9bN4kL1pZ8sD3fG6hJ0aE5rT"
    );
}

#[tokio::test]
async fn events_that_end_nothing_are_answered_200_and_create_nothing() {
    let app = spawn_app_with(Options {
        extra: sources(),
        ..Options::default()
    })
    .await;
    let response = post_as_the_product(&app, Source::Tawk, "tawk/chat-end.json").await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["ignored"], "chat:end");
    assert_eq!(answer["deliveries"], 0);
    let listed = app.api_get("/api/conversations").await;
    assert!(listed["items"].as_array().unwrap().is_empty(), "{listed}");
    assert!(app.store.quarantined(10).await.unwrap().is_empty());
    let metrics = app.get_text("/metrics").await;
    assert!(
        metrics.contains("chatbridge_events_ignored_total{source=\"tawk\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_redelivered_tawk_event_creates_nothing_new() {
    let app = spawn_app_with(Options {
        extra: sources(),
        ..Options::default()
    })
    .await;
    let file = "tawk/chat-transcript-created.json";
    assert_eq!(
        post_as_the_product(&app, Source::Tawk, file).await.status(),
        202
    );
    let again = post_as_the_product(&app, Source::Tawk, file).await;
    assert_eq!(again.status(), 200);
    let answer: Value = again.json().await.unwrap();
    assert_eq!(answer["duplicate"], true);
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    assert_eq!(app.zendesk.tickets().len(), 1);
}

/// What a refused request left behind: nothing at all.
async fn nothing_stored(app: &TestApp) {
    let listed = app.api_get("/api/conversations").await;
    assert!(listed["items"].as_array().unwrap().is_empty(), "{listed}");
    assert!(app.store.quarantined(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_tawk_request_the_secret_did_not_sign_is_401_and_stores_nothing() {
    let app = spawn_app_with(Options {
        extra: sources(),
        ..Options::default()
    })
    .await;
    let body = fixture("tawk/chat-transcript-created.json");
    let good = tawk_signature(&body, TAWK_SECRET);
    let mut changed = body.clone();
    changed[20] ^= 1;
    let cases: [(&str, Option<String>, Vec<u8>); 3] = [
        ("no header", None, body.clone()),
        (
            "wrong secret",
            Some(tawk_signature(&body, "another-secret")),
            body.clone(),
        ),
        ("one byte changed", Some(good.clone()), changed),
    ];
    for (case, signature, body) in cases {
        let mut request = app.client.post(format!("{}/hooks/tawk", app.address));
        if let Some(signature) = signature {
            request = request.header("x-tawk-signature", signature);
        }
        let response = request.body(body).send().await.unwrap();
        assert_eq!(response.status(), 401, "{case}");
        let answer: Value = response.json().await.unwrap();
        assert!(
            answer["error"].as_str().unwrap().contains("signed"),
            "{case}: {answer}"
        );
    }
    nothing_stored(&app).await;
    // A token route does not exist for a signed source.
    let with_token = app
        .client
        .post(format!("{}/hooks/tawk/{good}", app.address))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), 404);
    // Upper-case hex is the same MAC.
    let upper = app
        .client
        .post(format!("{}/hooks/tawk", app.address))
        .header("x-tawk-signature", good.to_uppercase())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(upper.status(), 202);
}

#[tokio::test]
async fn a_rotated_out_secret_works_while_it_is_previous_and_stops_when_removed() {
    let old = "tawk-old-secret";
    let body = fixture("tawk/chat-transcript-created.json");
    let post = |app: &TestApp, secret: &str| {
        app.client
            .post(format!("{}/hooks/tawk", app.address))
            .header("x-tawk-signature", tawk_signature(&body, secret))
            .body(body.clone())
            .send()
    };
    let rotating = spawn_app_with(Options {
        extra: format!("[sources.tawk]\nsecret = \"{TAWK_SECRET}\"\nprevious_secret = \"{old}\"\n"),
        ..Options::default()
    })
    .await;
    assert_eq!(post(&rotating, old).await.unwrap().status(), 202);

    let rotated = spawn_app_with(Options {
        extra: format!("[sources.tawk]\nsecret = \"{TAWK_SECRET}\"\n"),
        ..Options::default()
    })
    .await;
    assert_eq!(post(&rotated, old).await.unwrap().status(), 401);
    assert_eq!(post(&rotated, TAWK_SECRET).await.unwrap().status(), 202);
}

#[tokio::test]
async fn livechat_is_checked_by_the_secret_in_its_body_which_is_never_stored() {
    let app = spawn_app_with(Options {
        extra: sources(),
        ..Options::default()
    })
    .await;
    let body = fixture("livechat/incoming-chat.json");
    let forged = String::from_utf8(body.clone())
        .unwrap()
        .replace(LIVECHAT_SECRET, "guessed-secret");
    let refused = app
        .client
        .post(format!("{}/hooks/livechat", app.address))
        .body(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    nothing_stored(&app).await;

    let accepted = post_as_the_product(&app, Source::LiveChat, "livechat/incoming-chat.json").await;
    assert_eq!(accepted.status(), 202);
    let answer: Value = accepted.json().await.unwrap();
    let id = answer["conversation"].as_str().unwrap();
    let detail = app.api_get(&format!("/api/conversations/{id}")).await;
    assert!(
        !detail.to_string().contains(LIVECHAT_SECRET),
        "the secret is kept nowhere: {detail}"
    );
    let raw = wait_until(|| async {
        let delivered = app.deliveries(Some(DeliveryState::Delivered)).await;
        (!delivered.is_empty()).then(|| app.zendesk.tickets())
    })
    .await;
    assert!(!format!("{raw:?}").contains(LIVECHAT_SECRET));
}

#[tokio::test]
async fn olark_takes_its_token_in_the_url_and_refuses_a_wrong_one_unread() {
    let app = spawn_app_with(Options {
        extra: sources(),
        ..Options::default()
    })
    .await;
    let wrong = app
        .client
        .post(format!("{}/hooks/olark/not-the-token", app.address))
        .body(fixture("olark/conversation.form-urlencoded.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let missing = app
        .client
        .post(format!("{}/hooks/olark", app.address))
        .body(fixture("olark/conversation.form-urlencoded.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    nothing_stored(&app).await;
    let unknown = app
        .client
        .post(format!("{}/hooks/crisp", app.address))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404, "crisp is not configured here");
}

/// Every product's conversations, read from the fixtures (fetched ones from the stand-ins of
/// their APIs), with the documents templates read as `raw`.
async fn every_products_conversation() -> Vec<(String, chatbridge::sources::Parsed)> {
    use crate::fake_chat_apis::{self, Product};
    use chatbridge::sources::api::ApiClient;
    use chatbridge::sources::instance::Api;
    let mut all = Vec::new();
    for e in expected() {
        let Event::Conversation(conversation) = read(e.source, e.file) else {
            panic!("{}", e.file)
        };
        let document = e.source.document(fixture(e.file).into()).unwrap();
        let raw = serde_json::from_slice(&document).unwrap_or_default();
        all.push((
            e.file.to_owned(),
            chatbridge::sources::Parsed {
                conversation: *conversation,
                raw,
            },
        ));
    }
    let http = reqwest::Client::new();
    for (product, source, file, api) in [
        (
            Product::SmartsuppV2,
            Source::SmartsuppV2,
            "smartsupp-v2/conversation-closed.json",
            Api {
                base_url: String::new(),
                token: Some(fake_chat_apis::SMARTSUPP_TOKEN.into()),
                identifier: None,
                key: None,
            },
        ),
        (
            Product::Crisp,
            Source::Crisp,
            "crisp/session-set-state-resolved.json",
            Api {
                base_url: String::new(),
                token: None,
                identifier: Some(fake_chat_apis::CRISP_IDENTIFIER.into()),
                key: Some(fake_chat_apis::CRISP_KEY.into()),
            },
        ),
        (
            Product::LiveChat,
            Source::LiveChat,
            "livechat/chat-deactivated.json",
            Api {
                base_url: String::new(),
                token: Some(fake_chat_apis::LIVECHAT_PAT.into()),
                identifier: Some(fake_chat_apis::LIVECHAT_ACCOUNT.into()),
                key: None,
            },
        ),
        (
            Product::Tidio,
            Source::Tidio,
            "tidio/conversation-solved-by-operator.json",
            Api {
                base_url: String::new(),
                token: None,
                identifier: Some(fake_chat_apis::TIDIO_CLIENT_ID.into()),
                key: Some(fake_chat_apis::TIDIO_CLIENT_SECRET.into()),
            },
        ),
    ] {
        let stand_in = fake_chat_apis::start(product).await;
        let api = Api {
            base_url: stand_in.uri(),
            ..api
        };
        let fetched = source
            .fetch(
                ApiClient {
                    http: &http,
                    api: &api,
                },
                &fixture(file),
            )
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        all.push((
            file.to_owned(),
            chatbridge::sources::Parsed {
                conversation: fetched.conversation,
                raw: fetched.documents,
            },
        ));
    }
    all
}

#[tokio::test]
async fn every_connector_type_renders_every_products_conversation() {
    let config = chatbridge::config::Config::load(&crate::helpers::fixture_path("catalog.toml"))
        .expect("catalog config loads");
    let registry = chatbridge::app::registry(&config).expect("catalog registry builds");
    let conversations = every_products_conversation().await;
    assert_eq!(conversations.len(), 10, "six carried, four fetched");
    for connector in registry.connectors() {
        for (file, parsed) in &conversations {
            for (version, plan) in
                crate::helpers::every_version(&registry, connector.as_ref(), parsed)
            {
                assert!(!plan.is_empty(), "{} {file} v{version}", connector.kind());
                for request in &plan {
                    let json = request
                        .headers
                        .iter()
                        .any(|(n, v)| n == "content-type" && v == "application/json");
                    if let (true, Some(body)) = (json, &request.body) {
                        serde_json::from_str::<Value>(body).unwrap_or_else(|e| {
                            panic!(
                                "{} {file} {}: not JSON ({e}):\n{body}",
                                connector.kind(),
                                request.step
                            )
                        });
                    }
                }
            }
        }
    }
}
