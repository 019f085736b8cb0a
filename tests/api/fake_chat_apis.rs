//! Local stand-ins for the chat products' REST APIs that the fetch stage reads: Smartsupp's
//! REST API v2, Crisp's REST API v1 (plugin tier), LiveChat's Agent Chat API v3.5
//! (`get_chat`) and the Tidio OpenAPI. Each checks the credentials the product takes, answers
//! its documented error shape when they are wrong, serves the conversation the webhook
//! fixtures name (from `tests/fixtures/api/`), answers 404 for any other, and plays
//! scripted failures on any request (`FakeVendor::script_reads`).

use base64::Engine;
use serde_json::{Value, json};
use wiremock::{Request, ResponseTemplate};

use crate::fake_vendor::{FakeVendor, Vendor, authorization, json_answer};
use crate::helpers::fixture;

/// The credentials every stand-in accepts, as `[sources.NAME.api]` gives them.
pub const SMARTSUPP_TOKEN: &str = "smartsupp-api-token";
pub const CRISP_IDENTIFIER: &str = "7c3ef21c-1e04-41ce-8c06-5605c346f73e";
pub const CRISP_KEY: &str = "crisp-plugin-key";
pub const LIVECHAT_ACCOUNT: &str = "b1f2c3d4-0a1b-4c2d-8e3f-123456789abc";
pub const LIVECHAT_PAT: &str = "dal:livechat-pat";
pub const TIDIO_CLIENT_ID: &str = "ci_tidio-test";
pub const TIDIO_CLIENT_SECRET: &str = "cs_tidio-test";

/// Which product a stand-in is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    SmartsuppV2,
    Crisp,
    LiveChat,
    Tidio,
}

pub struct ChatApi {
    product: Product,
    /// Whether the credentials are accepted (an operator revoking the token flips it).
    pub accepting: bool,
}

pub async fn start(product: Product) -> FakeVendor<ChatApi> {
    let api = FakeVendor::start(ChatApi {
        product,
        accepting: true,
    })
    .await;
    api.script_reads();
    api
}

/// The `[sources.NAME.api]` keys of `product` against `api`.
pub fn api_settings(product: Product, api: &FakeVendor<ChatApi>) -> String {
    let keys = match product {
        Product::SmartsuppV2 => format!("token = \"{SMARTSUPP_TOKEN}\""),
        Product::Crisp => format!("identifier = \"{CRISP_IDENTIFIER}\"\nkey = \"{CRISP_KEY}\""),
        Product::LiveChat => {
            format!("identifier = \"{LIVECHAT_ACCOUNT}\"\ntoken = \"{LIVECHAT_PAT}\"")
        }
        Product::Tidio => {
            format!("identifier = \"{TIDIO_CLIENT_ID}\"\nkey = \"{TIDIO_CLIENT_SECRET}\"")
        }
    };
    format!("{keys}\nbase_url = \"{}\"", api.uri())
}

fn basic(user: &str, password: &str) -> String {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {pair}")
}

fn header<'r>(request: &'r Request, name: &str) -> &'r str {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn document(name: &str) -> Value {
    serde_json::from_slice(&fixture(&format!("api/{name}"))).unwrap()
}

impl Vendor for ChatApi {
    fn authorized(&self, request: &Request) -> bool {
        self.accepting
            && match self.product {
                Product::SmartsuppV2 => {
                    authorization(request) == format!("Bearer {SMARTSUPP_TOKEN}")
                }
                Product::Crisp => {
                    authorization(request) == basic(CRISP_IDENTIFIER, CRISP_KEY)
                        && header(request, "x-crisp-tier") == "plugin"
                }
                Product::LiveChat => {
                    authorization(request) == basic(LIVECHAT_ACCOUNT, LIVECHAT_PAT)
                }
                Product::Tidio => {
                    header(request, "x-tidio-openapi-client-id") == TIDIO_CLIENT_ID
                        && header(request, "x-tidio-openapi-client-secret") == TIDIO_CLIENT_SECRET
                }
            }
    }

    fn unauthorized(&self) -> ResponseTemplate {
        match self.product {
            Product::SmartsuppV2 => json_answer(
                401,
                json!({"code": "unauthorized", "message": "The API Key was not authorised."}),
            ),
            Product::Crisp => json_answer(
                401,
                json!({"error": true, "reason": "invalid_session", "data": {}}),
            ),
            Product::LiveChat => json_answer(
                401,
                json!({"error": {"type": "authentication", "message": "Invalid access token"}}),
            ),
            Product::Tidio => json_answer(
                401,
                json!({"errors": [{"code": "unauthorized", "message": "Invalid client credentials"}]}),
            ),
        }
    }

    fn handle(&mut self, request: &Request) -> ResponseTemplate {
        let path = request.url.path();
        let method = request.method.as_str();
        let found = match (self.product, method, path) {
            (Product::SmartsuppV2, "GET", "/v2/conversations/cv8Zp3LkQ1") => {
                Some(document("smartsupp-v2/conversation.json"))
            }
            (Product::SmartsuppV2, "GET", "/v2/conversations/cv8Zp3LkQ1/messages") => {
                Some(document("smartsupp-v2/messages.json"))
            }
            (Product::SmartsuppV2, "GET", "/v2/contacts/ct4Rm9Qx2") => {
                Some(document("smartsupp-v2/contact.json"))
            }
            (
                Product::Crisp,
                "GET",
                "/v1/website/8c842203-7ed8-4e29-a608-7cf78a7d2fcc/conversation/session_700c65e1-85e2-465a-b9ac-ecb5ec2c9881",
            ) => Some(document("crisp/conversation.json")),
            (
                Product::Crisp,
                "GET",
                "/v1/website/8c842203-7ed8-4e29-a608-7cf78a7d2fcc/conversation/session_700c65e1-85e2-465a-b9ac-ecb5ec2c9881/messages",
            ) => {
                // One batch: older pages are empty.
                let earlier = request
                    .url
                    .query_pairs()
                    .any(|(k, _)| k == "timestamp_before");
                Some(if earlier {
                    json!({"error": false, "reason": "resolved", "data": []})
                } else {
                    document("crisp/messages.json")
                })
            }
            (Product::LiveChat, "POST", "/v3.5/agent/action/get_chat") => {
                let asked: Value = serde_json::from_slice(&request.body).unwrap_or_default();
                (asked == json!({"chat_id": "SF4KQ1L2ZC", "thread_id": "SF4KQ1L2ZD"}))
                    .then(|| document("livechat/get-chat.json"))
            }
            (Product::Tidio, "GET", "/contacts/0b9d6c3a-4e21-4f7a-9c58-3d2e1f0a9b87") => {
                Some(document("tidio/contact.json"))
            }
            (Product::Tidio, "GET", "/contacts/0b9d6c3a-4e21-4f7a-9c58-3d2e1f0a9b87/messages") => {
                Some(document("tidio/messages.json"))
            }
            _ => None,
        };
        match (found, self.product) {
            (Some(body), _) => json_answer(200, body),
            (None, Product::Crisp) => json_answer(
                404,
                json!({"error": true, "reason": "session_not_found", "data": {}}),
            ),
            (None, Product::LiveChat) => json_answer(
                404,
                json!({"error": {"type": "not_found", "message": "Chat not found"}}),
            ),
            (None, _) => json_answer(404, json!({"code": "not_found", "message": "Not found"})),
        }
    }
}
