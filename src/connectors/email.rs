//! E-mail to a help desk's inbound address, over SMTP with lettre.
//!
//! Every help desk imports mail, so this reaches the ones without a connector of their own.
//! The message goes from the bridge's own address (sending "as" the visitor fails SPF and
//! DMARC) with `Reply-To` set to the visitor, so an agent's answer reaches them. Its
//! `Message-ID` is derived from the delivery key and version, the same on every attempt, so a
//! help desk that already imported it can skip the copy a retry sends after a lost answer;
//! a later version answers the first one (`In-Reply-To`, `References`) and joins its thread.
//!
//! SMTP replies are classified like HTTP statuses: 4xx is transient, 5xx permanent, and
//! 530/534/535/538 (authentication required, refused or too weak) mean the credentials are
//! wrong: the connector pauses.

use std::time::Instant;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::definition::{Definition, MessageTemplates, snippet};
use super::{
    BuildContext, Checkpoint, Connector, DeliveryError, DeliveryJob, Failure, PlannedRequest,
    Receipt, Settings, StepOutcome, StepOutputs, StepReport,
};
use crate::config::Problem;
use crate::render::{Reads, one_line};

/// The one step of an e-mail delivery, as it appears in reports and attempt logs.
const STEP: &str = "send";

/// SMTP replies that mean the credentials are wrong, not the message (RFC 4954 §6).
const AUTH_REPLIES: &[u16] = &[530, 534, 535, 538];

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    /// Submission on 587: plain connect, then STARTTLS, required.
    StartTls,
    /// Implicit TLS from the first byte (465).
    Tls,
    /// No TLS (a relay on loopback or a test server only).
    None,
}

/// Sends deliveries as e-mails.
pub struct EmailConnector {
    name: String,
    kind: String,
    settings: Settings,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    server: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    templates: MessageTemplates,
    /// What its templates read of what is costly to make.
    reads: Reads,
    cx: BuildContext,
}

impl std::fmt::Debug for EmailConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConnector")
            .field("name", &self.name)
            .field("server", &self.server)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A rendered message and the ids it carries.
struct Rendered {
    message: Message,
    message_id: String,
    subject: String,
    text: String,
    reply_to: Option<Mailbox>,
}

impl EmailConnector {
    /// Checks the settings and prepares the SMTP transport (which connects lazily).
    ///
    /// # Errors
    /// A setting that does not parse: port, tls mode, addresses.
    pub fn build(
        name: &str,
        kind: &str,
        definition: &Definition,
        settings: Settings,
        cx: &BuildContext,
    ) -> Result<Self, Problem> {
        let problem = |key: &str, message: String| Problem {
            key: format!("connectors.{name}.settings.{key}"),
            message,
        };
        let get = |key: &str| settings.get(key).unwrap_or_default().trim().to_owned();
        let templates = definition.message.clone().ok_or_else(|| Problem {
            key: format!("connectors/{kind}.toml: message"),
            message: "an email connector needs [message] templates".into(),
        })?;
        let host = get("smtp_host");
        let port: u16 = get("smtp_port")
            .parse()
            .map_err(|_| problem("smtp_port", format!("`{}` is not a port", get("smtp_port"))))?;
        let security = match get("tls").as_str() {
            "starttls" => Security::StartTls,
            "tls" => Security::Tls,
            "none" => Security::None,
            other => {
                return Err(problem(
                    "tls",
                    format!("`{other}` is not one of starttls, tls, none"),
                ));
            }
        };
        let mailbox = |key: &str, text: &str| {
            text.parse::<Mailbox>()
                .map_err(|e| problem(key, format!("`{text}` is not an address: {e}")))
        };
        let from = mailbox("from", &get("from"))?;
        let to = get("to")
            .split(',')
            .filter(|a| !a.trim().is_empty())
            .map(|a| mailbox("to", a.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(problem("to", "give at least one address".into()));
        }
        let builder = match security {
            Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&host),
            Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&host),
            Security::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                &host,
            )),
        }
        .map_err(|e| problem("smtp_host", format!("`{host}`: {e}")))?;
        let mut builder = builder.port(port).timeout(Some(cx.timeout));
        let username = get("username");
        if !username.is_empty() {
            let password = settings.get("password").unwrap_or_default().to_owned();
            builder = builder.credentials(Credentials::new(username, password));
        }
        Ok(Self {
            name: name.to_owned(),
            kind: kind.to_owned(),
            server: format!("smtp://{host}:{port}"),
            transport: builder.build(),
            from,
            to,
            reads: cx
                .renderer
                .reads([templates.text.as_str(), templates.html.as_str()], kind),
            templates,
            settings,
            cx: cx.clone(),
        })
    }

    /// `<KEY.vN@DOMAIN>`: the same for every attempt of one version, distinct per version.
    fn message_id(&self, key: &str, version: i64) -> String {
        let local: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '.'
                }
            })
            .collect();
        format!("<{local}.v{version}@{}>", self.from.email.domain())
    }

    fn render(&self, job: &DeliveryJob<'_>) -> Result<Rendered, DeliveryError> {
        let r = &self.cx.renderer;
        let context =
            job.render_context(r, &self.name, &self.kind, &self.settings, "", self.reads)?;
        let subject = r.snippet(&snippet::subject(&self.kind), &context)?;
        let subject = one_line(&subject);
        let text = r.document(&self.templates.text, &context)?;
        let html = r.document(&self.templates.html, &context)?;
        let message_id = self.message_id(&job.delivery.key, job.delivery.version);
        let reply_to = job.conversation.visitor.email.as_ref().and_then(|email| {
            let name = job
                .conversation
                .visitor
                .name
                .as_deref()
                .map(one_line)
                .filter(|n| !n.is_empty());
            email.as_str().parse().ok().map(|e| Mailbox::new(name, e))
        });
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject.clone())
            .message_id(Some(message_id.clone()));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        if let Some(reply_to) = &reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        if job.delivery.version > 1 {
            let first = self.message_id(&job.delivery.key, 1);
            builder = builder.in_reply_to(first.clone()).references(first);
        }
        let message = builder
            .multipart(MultiPart::alternative_plain_html(text.clone(), html))
            .map_err(|e| DeliveryError::Invalid {
                step: STEP.into(),
                message: format!("cannot build the message: {e}"),
            })?;
        Ok(Rendered {
            message,
            message_id,
            subject,
            text,
            reply_to,
        })
    }
}

/// Classifies a failed send by the server's reply, like [`super::http::classify`] does
/// statuses: no reply (connection, TLS, timeout) and 4xx are transient, 5xx permanent,
/// authentication replies pause the connector.
fn classify(error: &lettre::transport::smtp::Error) -> DeliveryError {
    let code = error
        .status()
        .and_then(|c| c.to_string().parse::<u16>().ok());
    let class = match code {
        Some(code) if AUTH_REPLIES.contains(&code) => Failure::Unhealthy,
        Some(400..=499) => Failure::Transient,
        Some(_) => Failure::Invalid,
        None if error.is_permanent() => Failure::Invalid,
        None => Failure::Transient,
    };
    let message = crate::render::error_chain(error);
    match code {
        Some(status) => DeliveryError::Status {
            step: STEP.into(),
            status,
            class,
            retry_after: None,
            excerpt: message,
        },
        None if class == Failure::Transient => DeliveryError::Transport {
            step: STEP.into(),
            message,
        },
        None => DeliveryError::Invalid {
            step: STEP.into(),
            message,
        },
    }
}

#[async_trait]
impl Connector for EmailConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &str {
        &self.kind
    }

    fn reads(&self) -> Reads {
        self.reads
    }

    async fn deliver(
        &self,
        job: &DeliveryJob<'_>,
        _: &dyn Checkpoint,
    ) -> Result<Receipt, DeliveryError> {
        let rendered = self.render(job)?;
        self.cx.throttle().await;
        let started = Instant::now();
        let result = self.transport.send(rendered.message).await;
        self.cx
            .shared
            .metrics
            .upstream(&self.name, STEP, started.elapsed());
        tracing::debug!(
            step = STEP,
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "server answered"
        );
        let response = result.map_err(|e| match classify(&e) {
            DeliveryError::Status {
                step,
                status,
                class,
                retry_after,
                excerpt,
            } => DeliveryError::Status {
                step,
                status,
                class,
                retry_after,
                excerpt: self.settings.mask(&excerpt),
            },
            other => other,
        })?;
        let status = response.code().to_string().parse().unwrap_or(250);
        let outputs: StepOutputs = [(
            "message_id".to_owned(),
            serde_json::Value::String(rendered.message_id),
        )]
        .into();
        Ok(Receipt {
            steps: vec![StepReport {
                step: STEP.into(),
                outcome: StepOutcome::Sent(status),
                outputs,
            }],
            ledger: job.ledger.clone(),
        })
    }

    fn plan(&self, job: &DeliveryJob<'_>) -> Result<Vec<PlannedRequest>, DeliveryError> {
        let rendered = self.render(job)?;
        let list = |boxes: &[Mailbox]| {
            boxes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut headers = vec![
            ("From".to_owned(), self.from.to_string()),
            ("To".to_owned(), list(&self.to)),
            ("Subject".to_owned(), rendered.subject),
            ("Message-ID".to_owned(), rendered.message_id),
        ];
        if let Some(reply_to) = rendered.reply_to {
            headers.push(("Reply-To".to_owned(), reply_to.to_string()));
        }
        Ok(vec![PlannedRequest {
            step: STEP.into(),
            method: "SMTP".into(),
            target: self.server.clone(),
            headers,
            body: Some(self.settings.mask(&rendered.text)),
            depends_on_earlier: false,
        }])
    }
}
