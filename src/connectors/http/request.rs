//! Building a step's request: URL, headers, auth and body rendered from the definition's
//! templates, and the body signed when the definition asks.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;
use tera::Context;

use super::HttpConnector;
use crate::connectors::DeliveryError;
use crate::connectors::definition::snippet::{self, StepSnippets};
use crate::connectors::definition::{Auth, Step};
use crate::render::JSON_SUFFIX;

/// A request ready to send (or to print).
pub(super) struct Prepared {
    pub(super) method: reqwest::Method,
    /// Parsed once: reqwest takes it as it is.
    pub(super) url: reqwest::Url,
    /// The URL as rendered, before parsing normalized it: what the dry run masks secrets in.
    pub(super) rendered_url: String,
    pub(super) headers: HeaderMap,
    pub(super) body: Option<String>,
}

impl HttpConnector {
    pub(super) fn prepare(
        &self,
        step: &Step,
        names: &StepSnippets,
        context: &Context,
        token: Option<&str>,
    ) -> Result<Prepared, DeliveryError> {
        let invalid = |message: String| DeliveryError::Invalid {
            step: step.name.clone(),
            message,
        };
        let r = self.renderer();
        let path = r.snippet(&names.url, context)?;
        let rendered_url = format!("{}{}", self.base_url, path.trim());
        let url =
            reqwest::Url::parse(&rendered_url).map_err(|e| invalid(format!("bad URL: {e}")))?;
        let method = reqwest::Method::from_bytes(step.method.as_bytes())
            .map_err(|_| invalid(format!("bad method `{}`", step.method)))?;

        let body = step
            .body
            .as_deref()
            .map(|template| r.body(template, context))
            .transpose()?;
        let mut headers = HeaderMap::new();
        let mut put = |name: &str, value: String| -> Result<(), DeliveryError> {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("bad header name `{name}`")))?;
            // Chat text in a header (a subject, a name) is made one line, as in e-mail.
            let value = HeaderValue::from_str(&crate::render::one_line(&value)).map_err(|_| {
                invalid(format!(
                    "header `{name}` has characters a header cannot carry"
                ))
            })?;
            headers.insert(header, value);
            Ok(())
        };
        if step
            .body
            .as_deref()
            .is_some_and(|t| t.ends_with(JSON_SUFFIX))
        {
            put("content-type", "application/json".into())?;
        }
        put("accept", "application/json".into())?;
        for name in self.definition.headers.keys() {
            put(
                name,
                r.snippet(&snippet::header(&self.kind, name), context)?,
            )?;
        }
        for (name, template) in &names.headers {
            put(name, r.snippet(template, context)?)?;
        }
        match &self.definition.auth {
            Some(Auth::Basic { .. }) => {
                let user = r.snippet(&snippet::auth(&self.kind, "username"), context)?;
                let password = r.snippet(&snippet::auth(&self.kind, "password"), context)?;
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                put("authorization", format!("Basic {encoded}"))?;
            }
            Some(Auth::Bearer { .. }) => {
                put(
                    "authorization",
                    format!(
                        "Bearer {}",
                        r.snippet(&snippet::auth(&self.kind, "token"), context)?
                    ),
                )?;
            }
            Some(Auth::Header { name, .. }) => put(
                name,
                r.snippet(&snippet::auth(&self.kind, "value"), context)?,
            )?,
            // A dry run has no token: it shows where one would go.
            Some(Auth::ClientCredentials { .. }) => put(
                "authorization",
                format!("Bearer {}", token.unwrap_or("(client-credentials token)")),
            )?,
            None => {}
        }
        if let Some(signature) = &self.definition.signature {
            let secret = r.snippet(&snippet::signature_secret(&self.kind), context)?;
            if !secret.is_empty() {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                    .map_err(|_| invalid("signature secret unusable".into()))?;
                mac.update(body.as_deref().unwrap_or_default().as_bytes());
                let digest = hex::encode(mac.finalize().into_bytes());
                put(&signature.header, format!("{}{digest}", signature.prefix))?;
            }
        }
        Ok(Prepared {
            method,
            url,
            rendered_url,
            headers,
            body,
        })
    }
}
