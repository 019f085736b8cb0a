//! OAuth 2.0 client credentials: the token is fetched once and reused until it is about to
//! expire; a refused client pauses the connector instead of burning retries.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tera::Context;

use super::HttpConnector;
use crate::connectors::DeliveryError;
use crate::connectors::definition::{Auth, StatusRule, Step, snippet};

/// The step that fetches an OAuth 2.0 token, for errors and classification: a refused client
/// (400 `invalid_client`, 401) means the credentials are wrong, so the connector pauses.
pub(super) fn token_step() -> Step {
    let unhealthy = [
        ("400", StatusRule::Unhealthy),
        ("401", StatusRule::Unhealthy),
    ];
    Step {
        name: "access_token".into(),
        method: "POST".into(),
        url: String::new(),
        body: None,
        headers: BTreeMap::new(),
        when: None,
        lookup: true,
        search: None,
        success: vec![200],
        on_status: unhealthy
            .into_iter()
            .map(|(s, r)| (s.to_owned(), r))
            .collect(),
        outputs: BTreeMap::new(),
    }
}

impl HttpConnector {
    /// The access token for a client-credentials definition (none for other schemes): the
    /// cached one while it is fresh, else a new one from the token endpoint. The lock is held
    /// while fetching, so concurrent deliveries share one fetch.
    pub(super) async fn access_token(
        &self,
        context: &Context,
        renew: bool,
    ) -> Result<Option<String>, DeliveryError> {
        let Some(Auth::ClientCredentials { .. }) = &self.definition.auth else {
            return Ok(None);
        };
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && !renew
            && Instant::now() < *until
        {
            return Ok(Some(token.clone()));
        }
        let r = self.renderer();
        let field = |name| r.snippet(&snippet::auth(&self.kind, name), context);
        let token_url = field("token_url")?;
        let url = if token_url.starts_with('/') {
            format!("{}{token_url}", self.base_url)
        } else {
            token_url
        };
        let form = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            crate::render::url_encode(&field("client_id")?),
            crate::render::url_encode(&field("client_secret")?),
        );
        let step = token_step();
        let (_, _, answer) = self
            .exchange(
                &step,
                self.cx
                    .shared
                    .client
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("accept", "application/json")
                    .body(form),
            )
            .await?;
        let document: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
        let Some(token) = document["access_token"].as_str().filter(|t| !t.is_empty()) else {
            return Err(DeliveryError::Invalid {
                step: step.name,
                message: "the token endpoint's answer has no access_token".into(),
            });
        };
        // Renew a little before the target would refuse it: at 90% of its life.
        let lifetime = document["expires_in"].as_u64().unwrap_or(3600);
        let until = Instant::now() + Duration::from_secs(lifetime) * 9 / 10;
        *cached = Some((token.to_owned(), until));
        Ok(Some(token.to_owned()))
    }
}
