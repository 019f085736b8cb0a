//! What every local vendor stand-in shares: a wiremock server whose one responder checks the
//! credentials, logs each request, plays scripted failures on writes (a status with headers,
//! or a write whose answer is lost) and otherwise hands the request to the vendor's own
//! stateful logic ([`Vendor`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// What the next write (any method but GET) does instead of the vendor's normal answer.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// Answer this status, headers and JSON body without doing anything.
    Fail {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Value,
    },
    /// Do the write, then answer so late that the client gives up: a lost answer.
    WriteAndLoseAnswer,
    /// Answer this write normally (to script a later one).
    Pass,
}

impl Scripted {
    /// A failure with a JSON body and no headers.
    pub fn status(status: u16, body: Value) -> Self {
        Self::Fail {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// A failure with one header (`Retry-After`, a vendor's wait header).
    pub fn with_header(status: u16, header: &'static str, value: &str, body: Value) -> Self {
        Self::Fail {
            status,
            headers: vec![(header, value.to_owned())],
            body,
        }
    }
}

/// A vendor's behaviour behind the shared harness.
pub trait Vendor: Send + 'static {
    /// Whether the request carries the right credentials.
    fn authorized(&self, request: &Request) -> bool;
    /// The vendor's answer to bad credentials.
    fn unauthorized(&self) -> ResponseTemplate;
    /// The vendor's answer to an authorized request that nothing scripted intercepted.
    fn handle(&mut self, request: &Request) -> ResponseTemplate;
}

struct Shared<V> {
    vendor: V,
    /// Scripted answers, each for any write or for writes to one path.
    script: VecDeque<(Option<String>, Scripted)>,
    requests: Vec<(Instant, Request)>,
    delay: Duration,
    /// Whether scripted answers apply to reads too (an API that is only read).
    script_reads: bool,
}

/// A running stand-in; `uri()` is the connector's `base_url`.
pub struct FakeVendor<V> {
    server: MockServer,
    shared: Arc<Mutex<Shared<V>>>,
}

impl<V: Vendor> FakeVendor<V> {
    pub async fn start(vendor: V) -> Self {
        let server = MockServer::start().await;
        let shared = Arc::new(Mutex::new(Shared {
            vendor,
            script: VecDeque::new(),
            requests: Vec::new(),
            delay: Duration::ZERO,
            script_reads: false,
        }));
        Mock::given(wiremock::matchers::any())
            .respond_with(Responder {
                shared: shared.clone(),
            })
            .mount(&server)
            .await;
        Self { server, shared }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Queues scripted answers for the next writes.
    pub fn script(&self, steps: impl IntoIterator<Item = Scripted>) {
        let mut shared = self.shared.lock().unwrap();
        shared.script.extend(steps.into_iter().map(|s| (None, s)));
    }

    /// Queues scripted answers for the next writes to paths starting with `path`.
    pub fn script_for(&self, path: &str, steps: impl IntoIterator<Item = Scripted>) {
        let mut shared = self.shared.lock().unwrap();
        let path = path.to_owned();
        shared
            .script
            .extend(steps.into_iter().map(|s| (Some(path.clone()), s)));
    }

    /// Makes scripted answers apply to every request, reads included: a stand-in for an
    /// API that is only read.
    pub fn script_reads(&self) {
        self.shared.lock().unwrap().script_reads = true;
    }

    /// Delays every answer from now on (writes happen before the delay).
    pub fn delay(&self, delay: Duration) {
        self.shared.lock().unwrap().delay = delay;
    }

    /// Reads the vendor's state.
    pub fn with<R>(&self, read: impl FnOnce(&V) -> R) -> R {
        read(&self.shared.lock().unwrap().vendor)
    }

    /// Changes the vendor's state (a token expiring).
    pub fn with_mut<R>(&self, change: impl FnOnce(&mut V) -> R) -> R {
        change(&mut self.shared.lock().unwrap().vendor)
    }

    /// Every request received, with when it arrived.
    pub fn requests(&self) -> Vec<(Instant, Request)> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// Requests with this method, in order.
    pub fn requests_with(&self, method: &str) -> Vec<(Instant, Request)> {
        self.requests()
            .into_iter()
            .filter(|(_, r)| r.method.as_str() == method)
            .collect()
    }
}

struct Responder<V> {
    shared: Arc<Mutex<Shared<V>>>,
}

impl<V: Vendor> Respond for Responder<V> {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut shared = self.shared.lock().unwrap();
        shared.requests.push((Instant::now(), request.clone()));
        if !shared.vendor.authorized(request) {
            return shared.vendor.unauthorized();
        }
        let path = request.url.path();
        let scripted = if request.method.as_str() == "GET" && !shared.script_reads {
            None
        } else {
            shared
                .script
                .iter()
                .position(|(only, _)| only.as_deref().is_none_or(|p| path.starts_with(p)))
                .and_then(|at| shared.script.remove(at))
                .map(|(_, scripted)| scripted)
        };
        match scripted {
            Some(Scripted::Fail {
                status,
                headers,
                body,
            }) => headers.into_iter().fold(
                ResponseTemplate::new(status).set_body_json(body),
                |response, (name, value)| response.insert_header(name, value.as_str()),
            ),
            Some(Scripted::WriteAndLoseAnswer) => shared
                .vendor
                .handle(request)
                .set_delay(Duration::from_secs(30)),
            Some(Scripted::Pass) | None => {
                let delay = shared.delay;
                shared.vendor.handle(request).set_delay(delay)
            }
        }
    }
}

/// `Authorization` of a request, or "".
pub fn authorization(request: &Request) -> &str {
    request
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// A JSON answer.
pub fn json_answer(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}
