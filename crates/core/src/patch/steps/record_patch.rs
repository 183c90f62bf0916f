//! `record-patch`: the data-patch workflow's record keeper.
//! - `{"action": "request", "patch": {...}}` (`RecordRequest`): create the patch record
//!   (`PENDING_APPROVAL`, once: a retry finds it) and append `REQUESTED` to the audit trail.
//! - `{"action": "finish", "state": {...}}` (`RecordOutcome`): the final status (succeeded,
//!   failed, rejected, expired, cancelled, not approved, error) on the record, `FINISHED` in
//!   the audit trail, and what the workflow outputs or fails with, plus the Slack thread to
//!   post the result in.

use aws_types::SdkConfig;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::Error;
use crate::patch::store::{self, Backend};
use crate::patch::workflow::{self, PatchState, Recorded};
use crate::patch::{events, PatchRun, Status};
use crate::platform::{redact, time};
use crate::shared::audit;

pub struct Deps {
    pub backend: Backend,
}

impl Deps {
    /// `PATCHES_TABLE`, `AUDIT_TABLE`, `LOGS_BUCKET`.
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            backend: Backend::from_env(sdk)?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "action", rename_all = "lowercase")]
pub enum Input {
    Request { patch: Box<PatchRun> },
    Finish { state: Box<PatchState> },
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Output {
    /// `RecordRequest` (its result is discarded by the ASL).
    Requested { status: Status },
    /// `RecordOutcome`: `$.record`, which `Outcome?` routes on.
    Finished(Box<Recorded>),
}

/// The statuses a finish may end: the open ones, and the ones a decision already ended
/// (`REJECTED`, `CANCELLED`: kept, with the finish fields added).
const FINISHABLE: [Status; 5] = [
    Status::PendingApproval,
    Status::Approved,
    Status::Running,
    Status::Rejected,
    Status::Cancelled,
];

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let st = deps.backend.store();
    match input {
        Input::Request { patch } => {
            let rec = store::create(&st, &patch).await?;
            tracing::info!(patch = %rec.patch_id, requester = %patch.requester, "patch requested");
            Ok(Output::Requested { status: rec.status })
        }
        Input::Finish { state } => {
            let run = &state.patch;
            let rec = store::must_get(st.db, st.table, &run.patch_id).await?;
            let recorded = workflow::record(&state, &rec);
            let mut fields = vec![("finishedAt", json!(time::rfc3339(time::now())))];
            for (name, value) in [
                (
                    "failureCause",
                    recorded.failure_cause.as_ref().map(|v| json!(v)),
                ),
                ("logUri", recorded.output.log_uri.as_ref().map(|v| json!(v))),
                (
                    "logSha256",
                    recorded.output.log_sha256.as_ref().map(|v| json!(v)),
                ),
                ("verdict", recorded.verdict.map(|v| json!(v))),
            ] {
                if let Some(v) = value {
                    fields.push((name, v));
                }
            }
            store::transition(
                st.db,
                st.table,
                &run.patch_id,
                &FINISHABLE,
                recorded.status,
                &fields,
            )
            .await?;
            audit::append(
                &st.trail,
                &store::entry(
                    run,
                    format!("finished:{}", run.patch_id),
                    events::FINISHED,
                    "workflow",
                    json!({
                        "status": recorded.status,
                        "buildId": recorded.output.build_id,
                        "verdict": recorded.verdict,
                        "logUri": recorded.output.log_uri,
                        "logSha256": recorded.output.log_sha256,
                        "failureCause": recorded.failure_cause.as_deref().map(|c| redact::redact(c).into_owned()),
                        "executionArn": run.execution_arn,
                    }),
                ),
            )
            .await?;
            tracing::info!(patch = %run.patch_id, status = %recorded.status, "patch finished");
            Ok(Output::Finished(Box::new(recorded)))
        }
    }
}
