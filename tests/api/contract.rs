//! What chatbridge sends, validated against the vendors' own OpenAPI files: requests pass
//! through Stoplight Prism in proxy mode (`prism proxy --errors SPEC UPSTREAM`), which answers
//! 422 to a request that breaks the spec and forwards valid ones to the vendor stand-in; with
//! `--errors` it also refuses a stand-in answer that breaks the spec, which keeps the
//! stand-in honest.
//!
//! Needs Prism: `CHATBRIDGE_TEST_PRISM` names its executable (`.ci/run` installs the pinned
//! version and sets it). Without it these tests say so and pass without checking anything.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use chatbridge::store::DeliveryState;

use crate::fake_desks::{self, Brand, Desk};
use crate::fake_hubspot::{self, HubSpot};
use crate::fake_vendor::FakeVendor;
use crate::helpers::{Options, TestApp, fixture, spawn_app_with, wait_until};

const TOKEN: &str = "pat-na1-contract-test";

/// A Prism proxy for one spec, stopped when dropped.
struct Prism {
    child: Child,
    address: String,
}

impl Drop for Prism {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prism_executable() -> Option<PathBuf> {
    crate::helpers::counterpart(
        "CHATBRIDGE_TEST_PRISM",
        "a Prism 5 executable to validate against vendor specs",
    )
}

fn spec(path: &Path) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/specs")
        .join(path)
}

async fn start_prism(executable: &Path, spec_file: impl AsRef<Path>, upstream: &str) -> Prism {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(executable)
        .args([
            "proxy",
            "--errors",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .arg(spec(spec_file.as_ref()))
        .arg(upstream)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Prism starts");
    let address = format!("127.0.0.1:{port}");
    wait_until(|| async { tokio::net::TcpStream::connect(&address).await.ok() }).await;
    Prism {
        child,
        address: format!("http://{address}"),
    }
}

/// One address in front of one Prism per spec file, routing by path prefix: the connector has
/// one base URL, HubSpot's specs are one file per object.
struct Front {
    routes: Vec<(&'static str, Prism)>,
    client: reqwest::Client,
}

async fn forward(State(front): State<Arc<Front>>, request: Request) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let Some((_, prism)) = front
        .routes
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
    else {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from("no spec covers this path"))
            .unwrap();
    };
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut outgoing = front
        .client
        .request(parts.method, format!("{}{path}", prism.address))
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = outgoing.send().await.expect("Prism answers");
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        if name != "transfer-encoding" && name != "content-length" {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from(answer.bytes().await.unwrap()))
        .unwrap()
}

/// The HubSpot stand-in behind one Prism per spec file the connector touches, behind one
/// front; the front's URL is the connector's base URL. None when Prism is not available.
async fn hubspot_behind_prism() -> Option<(FakeVendor<HubSpot>, String, Arc<Front>)> {
    let executable = prism_executable()?;
    let executable = executable.as_path();
    let hubspot = fake_hubspot::start(TOKEN).await;
    chatbridge::app::install_tls_provider();
    let upstream = hubspot.uri();
    let (contacts, notes, associations) = tokio::join!(
        start_prism(executable, "hubspot/contacts.json", &upstream),
        start_prism(executable, "hubspot/notes.json", &upstream),
        start_prism(executable, "hubspot/associations.json", &upstream),
    );
    let front = Arc::new(Front {
        routes: vec![
            ("/crm/v3/objects/contacts", contacts),
            ("/crm/v3/objects/notes", notes),
            ("/crm/v4/", associations),
        ],
        client: reqwest::Client::new(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let router = axum::Router::new()
        .fallback(forward)
        .with_state(front.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    Some((hubspot, address, front))
}

async fn app_via(base_url: &str, top: &str) -> TestApp {
    let settings = format!("access_token = \"{TOKEN}\"\nbase_url = \"{base_url}\"");
    spawn_app_with(Options {
        top: top.to_owned(),
        ..Options::only("crm", "hubspot", &settings)
    })
    .await
}

#[tokio::test]
async fn hubspot_requests_and_the_stand_in_answers_satisfy_hubspot_specs() {
    let Some((hubspot, front_url, _front)) = hubspot_behind_prism().await else {
        return;
    };
    let app = app_via(&front_url, "").await;

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let delivered = app.wait_for_deliveries(DeliveryState::Delivered, 1).await;

    // One attempt: no step met a 422 (request) or a 500 (stand-in answer off the spec).
    assert_eq!(delivered[0].attempts, 1);
    hubspot.with(|h| {
        assert_eq!(
            (h.contacts.len(), h.notes.len(), h.associations.len()),
            (1, 1, 1)
        );
    });
}

#[tokio::test]
async fn a_template_that_breaks_the_hubspot_spec_is_refused_before_hubspot() {
    let Some((hubspot, front_url, _front)) = hubspot_behind_prism().await else {
        return;
    };
    // A user's override that sends `input` where the API wants `inputs`.
    let templates = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(templates.path().join("hubspot")).unwrap();
    std::fs::write(
        templates.path().join("hubspot/contact.json.tera"),
        r#"{"input": [{"idProperty": "email", "id": "{{ conversation.visitor.email }}", "properties": {}}]}"#,
    )
    .unwrap();
    let app = app_via(
        &front_url,
        &format!("templates_dir = \"{}\"\n", templates.path().display()),
    )
    .await;

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let dead = app.wait_for_deliveries(DeliveryState::Dead, 1).await;

    let reason = dead[0].last_error.clone().unwrap_or_default();
    assert!(
        reason.contains("HTTP 422") && reason.contains("must have required property 'inputs'"),
        "{reason}"
    );
    assert!(hubspot.requests().is_empty(), "nothing reached HubSpot");
    eprintln!("refused as expected: {reason}");
}

const INTERCOM_TOKEN: &str = "dG9rOmludGVyY29tLWNvbnRyYWN0";

/// Intercom's 2.14 spec with its known defect patched in a temporary copy (the vendor file
/// is left as shipped): `create_conversation_request.from.id` is declared `format: uuid`
/// although contact ids are 24 hex digits, so a correct request would be refused.
fn patched_intercom_spec() -> tempfile::TempDir {
    let original = std::fs::read_to_string(spec(Path::new("intercom/api.intercom.io.yaml")))
        .expect("the Intercom spec is in tests/fixtures/specs");
    let defect = "              description: The identifier for the contact which is given by Intercom.\n              format: uuid\n";
    assert!(
        original.contains(defect),
        "the spec changed: recheck its defects"
    );
    let patched = original.replacen(
        defect,
        "              description: The identifier for the contact which is given by Intercom.\n",
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("api.intercom.io.yaml"), patched).unwrap();
    dir
}

/// The Intercom stand-in behind Prism with the patched spec; Prism's URL is the base URL.
async fn intercom_behind_prism() -> Option<(FakeVendor<Desk>, Prism, tempfile::TempDir)> {
    let executable = prism_executable()?;
    let intercom = fake_desks::start(Brand::Intercom, INTERCOM_TOKEN).await;
    let dir = patched_intercom_spec();
    let prism = start_prism(
        &executable,
        dir.path().join("api.intercom.io.yaml"),
        &intercom.uri(),
    )
    .await;
    Some((intercom, prism, dir))
}

async fn intercom_app(base_url: &str, top: &str) -> TestApp {
    let settings = format!(
        "access_token = \"{INTERCOM_TOKEN}\"\nadmin_id = \"991\"\nbase_url = \"{base_url}\""
    );
    spawn_app_with(Options {
        top: top.to_owned(),
        ..Options::only("messenger", "intercom", &settings)
    })
    .await
}

#[tokio::test]
async fn intercom_requests_for_a_chat_and_its_later_version_satisfy_intercoms_spec() {
    let Some((intercom, prism, _spec)) = intercom_behind_prism().await else {
        return;
    };
    let app = intercom_app(&prism.address, "").await;

    app.post_smartsupp(crate::helpers::seed_unrated()).await;
    app.wait_for_deliveries(DeliveryState::Delivered, 1).await;
    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let delivered = app.wait_for_deliveries(DeliveryState::Delivered, 2).await;

    // One attempt each: no step met a 422 from Prism.
    assert!(delivered.iter().all(|d| d.attempts == 1), "{delivered:?}");
    intercom.with(|d| {
        assert_eq!(
            (d.count("contact"), d.count("conversation"), d.count("note")),
            (1, 1, 1)
        );
    });
}

#[tokio::test]
async fn a_template_that_breaks_the_intercom_spec_is_refused_before_intercom() {
    let Some((intercom, prism, _spec)) = intercom_behind_prism().await else {
        return;
    };
    // A user's override that sends the e-mail as a list.
    let templates = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(templates.path().join("intercom")).unwrap();
    std::fs::write(
        templates.path().join("intercom/contact.json.tera"),
        r#"{"role": "lead", "email": ["{{ conversation.visitor.email }}"]}"#,
    )
    .unwrap();
    let app = intercom_app(
        &prism.address,
        &format!("templates_dir = \"{}\"\n", templates.path().display()),
    )
    .await;

    app.post_smartsupp(fixture("smartsupp/seed-example.json"))
        .await;
    let dead = app.wait_for_deliveries(DeliveryState::Dead, 1).await;

    let reason = dead[0].last_error.clone().unwrap_or_default();
    assert!(
        reason.contains("HTTP 422") && reason.contains("email must be string"),
        "{reason}"
    );
    intercom.with(|d| assert_eq!(d.count("contact"), 0, "nothing reached Intercom"));
    eprintln!("refused as expected: {reason}");
}
