//! The same six proofs for every HTTP connector type of the catalog, each against its
//! vendor's stand-in (`desks`): the seed chat arrives; a write whose answer is lost
//! leaves one object upstream; a later version updates what was made instead of making it
//! again; the vendor's throttle answer is waited out as the vendor asks; rejected
//! credentials pause the connector and create nothing; a chat whose ids and e-mail are made
//! of the search languages' quotes and operators finds only its own record. (Zendesk and
//! HubSpot have their own files; the e-mail connector is in `email.rs`.)

use std::time::Duration;

use chatbridge::store::DeliveryState;
use serde_json::json;

use crate::desks::{self, AnyDesk, Brand, HELPSCOUT_APP, SLACK_PATH};
use crate::fake_vendor::{FakeVendor, Scripted};
use crate::helpers::{Options, TestApp, fixture, seed_of, seed_unrated, spawn_app_with};

/// What a later version of a chat makes upstream.
#[derive(Debug, Clone, Copy)]
enum Later {
    /// A new object of this kind under the one made first (a note on the ticket).
    Child(&'static str),
    /// The object made first is written again (an upsert).
    Rewrite,
    /// Another object like the first (a notification).
    Again,
}

/// One connector type and what its stand-in should end up holding.
struct Case {
    brand: Brand,
    kind: &'static str,
    secret: &'static str,
    /// The instance's settings as TOML lines, given the stand-in's URL and the secret.
    settings: fn(&str, &str) -> String,
    /// Writes to paths starting with this make the main object.
    create_path: &'static str,
    /// The kind of the main object, which must exist exactly once.
    main: &'static str,
    later: Later,
    /// The vendor's "slow down" answer, and the least wait it asks for.
    throttle: fn() -> Scripted,
    min_wait: Duration,
    /// Whether a lost answer can be recovered (not for a Slack webhook).
    dedupes: bool,
    /// A text of the seed chat the main object carries (the transcript, or for a summary
    /// its subject).
    shows: &'static str,
}

fn seconds_from_now(seconds: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds)
}

const FRESHDESK: Case = Case {
    brand: Brand::Freshdesk,
    kind: "freshdesk",
    secret: "fd-api-key-5e6f-s3cr3t",
    settings: |base, secret| {
        format!("domain = \"acme\"\napi_key = \"{secret}\"\nbase_url = \"{base}\"")
    },
    create_path: "/api/v2/tickets",
    main: "ticket",
    later: Later::Child("note"),
    throttle: || {
        Scripted::with_header(
            429,
            "Retry-After",
            "2",
            json!({"message": "You have exceeded the limit of requests per minute"}),
        )
    },
    min_wait: Duration::from_secs(2),
    dedupes: true,
    shows: "tanks.",
};

const PIPEDRIVE: Case = Case {
    brand: Brand::Pipedrive,
    kind: "pipedrive",
    secret: "pd-api-token-77aa-s3cr3t",
    settings: |base, secret| {
        format!("company_domain = \"acme\"\napi_token = \"{secret}\"\nbase_url = \"{base}\"")
    },
    create_path: "/api/v1/notes",
    main: "note",
    later: Later::Again,
    throttle: || {
        Scripted::with_header(
            429,
            "x-ratelimit-reset",
            "2",
            json!({"success": false, "error": "Request over limit", "errorCode": 429}),
        )
    },
    min_wait: Duration::from_secs(2),
    dedupes: true,
    shows: "tanks.",
};

const HELPSCOUT: Case = Case {
    brand: Brand::HelpScout,
    kind: "helpscout",
    secret: "hs-app-secret-31ce-s3cr3t",
    settings: |base, secret| {
        format!(
            "mailbox_id = \"85\"\napp_id = \"{HELPSCOUT_APP}\"\napp_secret = \"{secret}\"\nbase_url = \"{base}\""
        )
    },
    create_path: "/v2/conversations",
    main: "conversation",
    later: Later::Child("note"),
    throttle: || {
        Scripted::with_header(
            429,
            "X-RateLimit-Retry-After",
            "2",
            json!({"message": "Too many requests"}),
        )
    },
    min_wait: Duration::from_secs(2),
    dedupes: true,
    shows: "tanks.",
};

const ZAMMAD: Case = Case {
    brand: Brand::Zammad,
    kind: "zammad",
    secret: "zm-token-0c0d-s3cr3t",
    settings: |base, secret| format!("url = \"{base}\"\ntoken = \"{secret}\""),
    create_path: "/api/v1/tickets",
    main: "ticket",
    later: Later::Child("article"),
    throttle: || {
        Scripted::with_header(
            429,
            "Retry-After",
            "2",
            json!({"error": "Too many requests"}),
        )
    },
    min_wait: Duration::from_secs(2),
    dedupes: true,
    shows: "tanks.",
};

const RT: Case = Case {
    brand: Brand::Rt,
    kind: "rt",
    secret: "1-14-e18a26c92cf7b7903cac46a957ef3e91",
    settings: |base, secret| format!("url = \"{base}\"\ntoken = \"{secret}\""),
    create_path: "/REST/2.0/ticket",
    main: "ticket",
    later: Later::Child("comment"),
    // RT does not throttle; an overloaded front answers 503 with a wait.
    throttle: || {
        Scripted::with_header(
            503,
            "Retry-After",
            "2",
            json!({"message": "Service Unavailable"}),
        )
    },
    min_wait: Duration::from_secs(2),
    dedupes: true,
    shows: "tanks.",
};

const JIRA: Case = Case {
    brand: Brand::Jira,
    kind: "jira",
    secret: "jira-api-token-9f8e-s3cr3t",
    settings: |base, secret| {
        format!(
            "site = \"acme\"\nemail = \"agent@acme.example\"\napi_token = \"{secret}\"\n\
             service_desk_id = \"10\"\nrequest_type_id = \"25\"\nbase_url = \"{base}\""
        )
    },
    create_path: "/rest/servicedeskapi/request",
    main: "request",
    later: Later::Child("comment"),
    // Jira's reset is an ISO 8601 instant.
    throttle: || {
        let reset = seconds_from_now(4)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        Scripted::with_header(
            429,
            "X-RateLimit-Reset",
            &reset,
            json!({"errorMessages": ["Rate limit exceeded."]}),
        )
    },
    min_wait: Duration::from_secs(2),
    dedupes: true,
    shows: "tanks.",
};

const SALESFORCE: Case = Case {
    brand: Brand::Salesforce,
    kind: "salesforce",
    secret: "00Dxx0000001gPL!AQ4AQ-s3cr3t",
    settings: |base, secret| format!("instance_url = \"{base}\"\naccess_token = \"{secret}\""),
    create_path: "/services/data/v62.0/sobjects/Case/Chatbridge_Key__c/",
    main: "record",
    later: Later::Rewrite,
    // A 403, not a 429, and no wait named: the definition's wait applies (capped by the
    // tests' max_interval of 5 s).
    throttle: || {
        Scripted::status(
            403,
            json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]),
        )
    },
    min_wait: Duration::from_secs(4),
    dedupes: true,
    shows: "tanks.",
};

const INTERCOM: Case = Case {
    brand: Brand::Intercom,
    kind: "intercom",
    secret: "dG9rOmludGVyY29tLXMzY3IzdA==",
    settings: |base, secret| {
        format!("access_token = \"{secret}\"\nadmin_id = \"991\"\nbase_url = \"{base}\"")
    },
    create_path: "/conversations",
    main: "conversation",
    later: Later::Child("note"),
    // Intercom's reset is a Unix time in seconds.
    throttle: || {
        let reset = seconds_from_now(4).unix_timestamp().to_string();
        Scripted::with_header(
            429,
            "X-RateLimit-Reset",
            &reset,
            json!({"type": "error.list", "errors": [{"code": "rate_limit_exceeded", "message": "Rate Limit Exceeded"}]}),
        )
    },
    min_wait: Duration::from_secs(2),
    dedupes: true,
    shows: "tanks.",
};

const SLACK: Case = Case {
    brand: Brand::Slack,
    kind: "slack",
    secret: "xoxwebhook5ecret",
    settings: |base, secret| format!("webhook_url = \"{base}{SLACK_PATH}/{secret}\""),
    create_path: SLACK_PATH,
    main: "message",
    later: Later::Again,
    throttle: || Scripted::with_header(429, "Retry-After", "2", json!("rate_limited")),
    min_wait: Duration::from_secs(2),
    dedupes: false,
    shows: "Completed chat* from Dusan Kmet (dusan@domain.com), rated 5/5",
};

async fn app_for(case: &Case, desk: &FakeVendor<AnyDesk>, secret: &str) -> TestApp {
    let settings = (case.settings)(&desk.uri(), secret);
    spawn_app_with(Options::only("target", case.kind, &settings)).await
}

async fn start(case: &Case) -> (FakeVendor<AnyDesk>, TestApp) {
    let desk = desks::start(case.brand, case.secret).await;
    let app = app_for(case, &desk, case.secret).await;
    (desk, app)
}

fn the_one(desk: &FakeVendor<AnyDesk>, kind: &str) -> desks::Object {
    desk.with(|d| {
        let all = d.all(kind);
        assert_eq!(all.len(), 1, "{kind}: {all:#?}");
        all[0].clone()
    })
}

async fn creates(case: &Case) {
    let (desk, app) = start(case).await;

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    let main = the_one(&desk, case.main);
    let text = main.body.to_string();
    assert!(
        text.contains(case.shows),
        "`{}` missing: {text}",
        case.shows
    );
    let everything = desk.with(|d| format!("{:?}", d.records().objects));
    assert!(
        everything.contains("dusan@domain.com"),
        "visitor e-mail missing upstream: {everything}"
    );
}

async fn lost_answer(case: &Case) {
    let (desk, app) = start(case).await;
    desk.script_for(case.create_path, [Scripted::WriteAndLoseAnswer]);

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let delivered = app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    assert_eq!(delivered[0].attempts, 2);
    let expected = if case.dedupes { 1 } else { 2 };
    desk.with(|d| assert_eq!(d.count(case.main), expected, "{:#?}", d.records().objects));
}

async fn later_version(case: &Case) {
    let (desk, app) = start(case).await;

    app.post_smartsupp(seed_unrated()).await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 2).await;

    match case.later {
        Later::Child(kind) => {
            let main = the_one(&desk, case.main);
            let child = the_one(&desk, kind);
            assert_eq!(
                child.parent.as_ref().map(desks::id_text),
                Some(desks::id_text(&main.id))
            );
            assert!(child.body.to_string().contains("5/5"), "{:?}", child.body);
        }
        Later::Rewrite => {
            let main = the_one(&desk, case.main);
            assert_eq!(main.writes, 2);
            assert!(
                main.body.to_string().contains("rating: 5"),
                "{:?}",
                main.body
            );
        }
        Later::Again => desk.with(|d| assert_eq!(d.count(case.main), 2)),
    }
}

async fn throttled(case: &Case) {
    let (desk, app) = start(case).await;
    desk.script_for(case.create_path, [(case.throttle)()]);

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    let writes: Vec<_> = desk
        .requests()
        .into_iter()
        .filter(|(_, r)| r.method.as_str() != "GET" && r.url.path().starts_with(case.create_path))
        .collect();
    let waited = writes[1].0 - writes[0].0;
    assert!(waited >= case.min_wait, "retried after {waited:?}");
    desk.with(|d| assert_eq!(d.count(case.main), 1));
}

async fn refused(case: &Case) {
    let desk = desks::start(case.brand, case.secret).await;
    let app = app_for(case, &desk, "revoked-credential").await;

    let row = app.first_attempt_of_the_seed().await;

    assert_eq!(row.state, DeliveryState::Pending);
    assert_eq!(app.worker.open_circuits(), ["target"]);
    desk.with(|d| assert_eq!(d.count(case.main), 0));
}

/// A chat whose id and e-mail hold the quote and operator characters of the vendors' search
/// languages (TicketSQL, JQL, Freshdesk's filter, Zammad's query string), after an ordinary
/// chat of someone whose address contains the hostile one's: each look-up finds its own
/// record only, and the visitor's name adds no requestor.
async fn lookups(case: &Case) {
    const OTHER: &str = "jo'neil*@example.com";
    const EMAIL: &str = "o'neil*@example.com";
    const CHANNEL: &str = r#"x' OR id > '0" OR labels != x OR tags:* OR (priority:1) \"#;
    let (desk, app) = start(case).await;
    app.post_smartsupp(seed_of("4401", OTHER, "Jo O'Neil"))
        .await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    let hostile = seed_of(CHANNEL, EMAIL, "attacker@evil.example, Bob");
    app.post_smartsupp(hostile.clone()).await;
    app.wait_for_deliveries(DeliveryState::Delivered, 2).await;

    let made = desk.with(|d| d.all(case.main));
    assert_eq!(
        made.len(),
        2,
        "the second chat found the first's: {made:#?}"
    );
    for person in ["person", "customer", "contact"] {
        let count = desk.with(|d| d.count(person));
        assert!(
            count == 0 || count == 2,
            "{count} {person}s for two visitors"
        );
    }
    if let Some(requestors) = made[1].body.get("Requestors") {
        assert_eq!(requestors, &json!([EMAIL]));
    }
    if !case.dedupes {
        return;
    }
    // A bridge without a record of the hostile chat (its store lost) looks it up upstream.
    let amnesiac = app_for(case, &desk, case.secret).await;
    amnesiac.post_smartsupp(hostile).await;
    let again = amnesiac
        .wait_for_deliveries(DeliveryState::Delivered, 1)
        .await;
    assert_eq!(desk.with(|d| d.count(case.main)), 2);
    let found: Vec<String> = again[0]
        .remote
        .as_ref()
        .and_then(|r| r.as_object())
        .into_iter()
        .flat_map(|r| r.values().map(desks::id_text))
        .collect();
    let [first, second] = [&made[0].id, &made[1].id].map(desks::id_text);
    assert!(
        found.contains(&second) && !found.contains(&first),
        "found {found:?}; the chats made {first} and {second}"
    );
}

macro_rules! proofs {
    ($module:ident, $case:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn creates_the_seed_chat() {
                creates(&$case).await;
            }

            #[tokio::test]
            async fn a_lost_answer_leaves_one_object() {
                lost_answer(&$case).await;
            }

            #[tokio::test]
            async fn a_later_version_updates_what_was_made() {
                later_version(&$case).await;
            }

            #[tokio::test]
            async fn throttling_waits_as_the_vendor_asks() {
                throttled(&$case).await;
            }

            #[tokio::test]
            async fn refused_credentials_pause_the_connector() {
                refused(&$case).await;
            }

            #[tokio::test]
            async fn look_ups_find_only_their_own_record() {
                lookups(&$case).await;
            }
        }
    };
}

proofs!(freshdesk, FRESHDESK);
proofs!(pipedrive, PIPEDRIVE);
proofs!(helpscout, HELPSCOUT);
proofs!(zammad, ZAMMAD);
proofs!(rt, RT);
proofs!(jira, JIRA);
proofs!(salesforce, SALESFORCE);
proofs!(intercom, INTERCOM);
proofs!(slack, SLACK);

/// Help Scout's token expires or is revoked between deliveries: the 401 fetches a fresh
/// one and the step goes through, without pausing the connector.
#[tokio::test]
async fn helpscout_renews_a_revoked_token_once_and_goes_on() {
    let (desk, app) = start(&HELPSCOUT).await;
    app.post_smartsupp(seed_unrated()).await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    desk.with_mut(|d| d.revoke_tokens());
    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let delivered = app.wait_for_deliveries(DeliveryState::Delivered, 2).await;

    assert!(delivered.iter().all(|d| d.attempts == 1));
    assert!(app.worker.open_circuits().is_empty());
    let token_fetches = desk
        .requests_with("POST")
        .iter()
        .filter(|(_, r)| r.url.path() == "/v2/oauth2/token")
        .count();
    assert_eq!(token_fetches, 2, "one token, then one renewal");
    desk.with(|d| assert_eq!((d.count("conversation"), d.count("note")), (1, 1)));
}

/// A visitor Jira Service Management knows as a customer of another desk: this desk's
/// customer list does not have them and creating them again is a conflict, so they are found
/// among the site's users, made a customer of this desk, and the request is raised for them.
#[tokio::test]
async fn jira_raises_the_request_for_a_customer_of_another_desk() {
    let (desk, app) = start(&JIRA).await;
    desk.with_mut(|d| {
        d.insert(
            "customer",
            json!("qm:other-desk:1"),
            json!({"email": "dusan@domain.com", "displayName": "Dusan Kmet", "desks": ["20"]}),
        );
    });

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let delivered = app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    assert_eq!(delivered[0].attempts, 1);
    let request = the_one(&desk, "request");
    assert_eq!(request.body["raiseOnBehalfOf"], "qm:other-desk:1");
    let customer = the_one(&desk, "customer");
    assert_eq!(customer.body["desks"], json!(["20", "10"]));
}
