//! The local outbox: writes each rendered delivery to a JSON file.
//!
//! It lets a new user see what chatbridge makes of a chat with no credentials at all, and
//! it is the connector of the default `config.toml`. The file name is derived from the
//! delivery (conversation and version), so a retry rewrites the same file rather than adding
//! one; the write goes to a temporary name first and is renamed into place, so a reader never
//! sees half a file.

use std::path::PathBuf;

use async_trait::async_trait;

use super::definition::Definition;
use super::{
    BuildContext, Checkpoint, Connector, DeliveryError, DeliveryJob, PlannedRequest, Receipt,
    Settings, StepOutcome, StepOutputs, StepReport,
};
use crate::config::Problem;
use crate::render::Reads;

/// The one step of a file delivery, as it appears in reports and checkpoints.
const STEP: &str = "write";

/// Writes deliveries to `settings.dir`.
#[derive(Debug)]
pub struct FileConnector {
    name: String,
    kind: String,
    dir: PathBuf,
    body: String,
    settings: Settings,
    /// What its template reads of what is costly to make.
    reads: Reads,
    cx: BuildContext,
}

impl FileConnector {
    /// # Errors
    /// When the definition has no body template or the instance no `dir`.
    pub fn build(
        name: &str,
        kind: &str,
        definition: &Definition,
        settings: Settings,
        cx: &BuildContext,
    ) -> Result<Self, Problem> {
        let dir = settings
            .get("dir")
            .filter(|d| !d.is_empty())
            .ok_or_else(|| Problem {
                key: format!("connectors.{name}.settings.dir"),
                message: "the folder to write deliveries to".into(),
            })?;
        let body = definition.body.clone().ok_or_else(|| Problem {
            key: format!("connectors/{kind}.toml: body"),
            message: "a file connector needs a body template".into(),
        })?;
        Ok(Self {
            name: name.to_owned(),
            kind: kind.to_owned(),
            dir: PathBuf::from(dir),
            reads: cx.renderer.reads([body.as_str()], kind),
            body,
            settings: settings.clone(),
            cx: cx.clone(),
        })
    }

    fn render(&self, job: &DeliveryJob<'_>) -> Result<(PathBuf, String), DeliveryError> {
        let context = job.render_context(
            &self.cx.renderer,
            &self.name,
            &self.kind,
            &self.settings,
            "",
            self.reads,
        )?;
        let body = self.cx.renderer.body(&self.body, &context)?;
        let file_name = format!(
            "{}-v{}.json",
            safe_file_name(job.conversation.id.as_str()),
            job.delivery.version
        );
        Ok((self.dir.join(file_name), body))
    }
}

/// The longest readable prefix of a file name; with the hash and the version suffix the
/// name stays well under the 255 bytes every common file system allows.
const READABLE: usize = 80;

/// A file name for a conversation id that every file system takes and that cannot leave the
/// folder: letters, digits, `-` and `_` are kept and anything else (`:` from ids, path
/// separators) becomes `_`. An id that was changed that way, or is long, gets a hash of the
/// whole id after at most [`READABLE`] characters, so two ids never share a file.
fn safe_file_name(id: &str) -> String {
    let readable: String = id
        .chars()
        .take(READABLE)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Ids of letters, digits and colons, as Smartsupp's (`smartsupp:208:55039`), are named
    // without a hash, as outbox files always were. Such a name has no `-` and every hashed
    // one has, and the colon is the only character turned into `_`: no two ids share a name.
    let plain = id.len() <= READABLE && id.chars().all(|c| c.is_ascii_alphanumeric() || c == ':');
    if plain && !readable.is_empty() {
        return readable;
    }
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(id.as_bytes());
    format!("{readable}-{}", hex::encode(&digest[..8]))
}

#[async_trait]
impl Connector for FileConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &str {
        &self.kind
    }

    fn reads(&self) -> Reads {
        self.reads
    }

    fn outbox(&self) -> Option<&std::path::Path> {
        Some(&self.dir)
    }

    async fn deliver(
        &self,
        job: &DeliveryJob<'_>,
        // Nothing to keep between steps: writing the same file again replaces it.
        _: &dyn Checkpoint,
    ) -> Result<Receipt, DeliveryError> {
        let (path, body) = self.render(job)?;
        let io = |what: &str, e: std::io::Error| {
            DeliveryError::io(&format!("{what} {}", path.display()), &e)
        };
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| io("cannot create folder for", e))?;
        let partial = path.with_extension("json.partial");
        tokio::fs::write(&partial, body.as_bytes())
            .await
            .map_err(|e| io("cannot write", e))?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(|e| io("cannot move into place", e))?;
        let outputs: StepOutputs = [(
            "path".to_owned(),
            serde_json::Value::String(path.display().to_string()),
        )]
        .into();
        Ok(Receipt {
            steps: vec![StepReport {
                step: STEP.into(),
                outcome: StepOutcome::Written,
                outputs,
            }],
            ledger: StepOutputs::new(),
        })
    }

    fn plan(&self, job: &DeliveryJob<'_>) -> Result<Vec<PlannedRequest>, DeliveryError> {
        let (path, body) = self.render(job)?;
        Ok(vec![PlannedRequest {
            step: STEP.into(),
            method: "WRITE".into(),
            target: path.display().to_string(),
            headers: Vec::new(),
            body: Some(body),
            depends_on_earlier: false,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_cannot_escape_the_folder() {
        assert_eq!(safe_file_name("smartsupp:208:55039"), "smartsupp_208_55039");
        let escaping = safe_file_name("../../etc/passwd");
        assert!(escaping.starts_with("______etc_passwd-"), "{escaping}");
        assert!(!escaping.contains('/') && !escaping.contains(".."));
    }

    #[test]
    fn long_or_unusual_ids_get_short_distinct_names() {
        let long = format!("smartsupp:208:{}", "9".repeat(400));
        let name = safe_file_name(&long);
        assert!(name.len() < 120, "{}", name.len());
        assert_ne!(name, safe_file_name(&format!("{long}8")));
        // Two ids that read the same once cleaned are still two files.
        assert_ne!(safe_file_name("a/b"), safe_file_name("a_b"));
        assert_ne!(safe_file_name("a b"), safe_file_name("a/b"));
        assert!(!safe_file_name("").is_empty());
    }
}
