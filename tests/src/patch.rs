//! The data-patch workflow on a replica stack, shared by the data-patch scenario tests
//! (`data_patch`, `patch_preview`, `audit_tamper`): its resources, the patch record, the signed
//! Slack approval click, the patch's CodeBuild builds and its audit trail.

use anyhow::{Context, Result};
use batchless_core::shared::audit::Trail;
use serde_json::Value;

use crate::{unique_name, Stack};

/// The environment variable that names the patch a (real, approved) build runs.
pub const PATCH_ID_VAR: &str = "BATCHLESS_PATCH_ID";

/// A stack's data-patch workflow: its state machine, patches and audit tables, logs bucket and
/// CodeBuild project.
pub struct Patches {
    pub stack: Stack,
    pub sm: String,
    pub table: String,
    pub audit_table: String,
    pub bucket: String,
    pub project: String,
}

impl Patches {
    /// The data-patch workflow of the stack named by `BATCHLESS_STACK`, its faults cleared.
    pub async fn setup() -> Result<Patches> {
        Patches::on(Stack::cleared().await?)
    }

    /// The data-patch workflow of `stack`.
    pub fn on(stack: Stack) -> Result<Patches> {
        Ok(Patches {
            sm: stack.state_machine("DataPatchStateMachine")?,
            table: stack.table("PatchesTable")?,
            audit_table: stack.table("AuditTable")?,
            bucket: stack.bucket("LogsBucket")?,
            project: stack.physical_id("PatchProject")?,
            stack,
        })
    }

    /// Submit a data patch named `<prefix>-<unique>` (the patch id) as its requester does
    /// ([`Stack::submit`]): its name and ARN.
    pub async fn start_named(&self, prefix: &str, input: &Value) -> Result<(String, String)> {
        let name = unique_name(prefix);
        let arn = self.stack.submit("data-patch", &name, input).await?;
        Ok((name, arn))
    }

    /// The patch's record in the patches table, if there is one.
    pub async fn find_record(&self, id: &str) -> Result<Option<Value>> {
        self.stack.get_item(&self.table, "patchId", id).await
    }

    /// The patch's record in the patches table; an error when there is none.
    pub async fn record(&self, id: &str) -> Result<Value> {
        self.find_record(id)
            .await?
            .with_context(|| format!("no patch record {id}"))
    }

    /// A Slack button click on a patch's approval request ([`Stack::approval_click`]).
    pub async fn click(
        &self,
        id: &str,
        user: &str,
        action: &str,
        extra: Value,
    ) -> Result<(u16, Value)> {
        self.stack.approval_click(id, user, action, extra).await
    }

    /// A build of the patch project started outside the workflow (its own buildspec) at
    /// `commit`, with `env` as plaintext variables: its id.
    pub async fn start_outside_build(&self, commit: &str, env: &[(&str, &str)]) -> Result<String> {
        use aws_sdk_codebuild::types::{EnvironmentVariable, EnvironmentVariableType};
        let mut req = self
            .stack
            .codebuild
            .start_build()
            .project_name(&self.project)
            .source_version(commit);
        for (k, v) in env {
            req = req.environment_variables_override(
                EnvironmentVariable::builder()
                    .name(*k)
                    .value(*v)
                    .r#type(EnvironmentVariableType::Plaintext)
                    .build()?,
            );
        }
        Ok(req
            .send()
            .await?
            .build_value()
            .and_then(|b| b.id())
            .context("no build id")?
            .to_string())
    }

    /// The project's builds whose environment sets `var` (e.g. [`PATCH_ID_VAR`]) to `id`.
    pub async fn builds_of(
        &self,
        id: &str,
        var: &str,
    ) -> Result<Vec<aws_sdk_codebuild::types::Build>> {
        Ok(self
            .stack
            .builds(&self.project)
            .await?
            .into_iter()
            .filter(|b| {
                b.environment().is_some_and(|e| {
                    e.environment_variables()
                        .iter()
                        .any(|v| v.name() == var && v.value() == id)
                })
            })
            .collect())
    }

    /// The audit chain `chain` in the stack's audit table and logs bucket.
    pub fn trail<'a>(&'a self, chain: &'a str) -> Trail<'a> {
        Trail {
            db: &self.stack.db,
            s3: &self.stack.s3,
            table: &self.audit_table,
            bucket: &self.bucket,
            chain,
        }
    }
}

/// `s` percent-encoded but for its unreserved characters (for a form body).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
