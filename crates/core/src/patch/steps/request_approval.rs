//! `request-approval`: the body of the data-patch workflow's `.waitForTaskToken` approval step.
//! Posts the approval request to Slack once (Block Kit: ticket, requester, commit, exact
//! command, reason, links to the script at the commit and the diff against the deployed
//! commit, Approve / Reject), then registers the wait the one way every wait is registered
//! (`sfn::waits::register_then_recheck`, key `patch-approval#<patchId>`) and re-reads the
//! record: a decision that completed before the token was stored ends the wait here.

use aws_types::SdkConfig;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::Error;
use crate::patch::message::{self, Links};
use crate::patch::store::{self, ApprovalDecided, ApprovalMessage, Backend};
use crate::patch::{PatchRun, Status};
use crate::platform::slack::SlackClient;
use crate::platform::{aws, config, time};
use crate::sfn::waits::{self, WaitKind};
use crate::shared::runs;

/// The workflow whose succeeded runs say which commit production runs (the runs table's
/// `migration` partition; a workflow module does not import another).
const DEPLOYING_WORKFLOW: &str = "migration";

pub struct Deps {
    pub backend: Backend,
    pub sfn: aws_sdk_sfn::Client,
    pub slack: SlackClient,
    pub channel: String,
    pub links: Links,
    pub runs_table: String,
    pub waits_table: String,
}

impl Deps {
    /// The patch backend, `RUNS_TABLE`, `WAITS_TABLE`, Slack (`SLACK_PATCHES_CHANNEL`) and the
    /// link templates `PATCH_FILE_URL_TEMPLATE`, `PATCH_DIFF_URL_TEMPLATE`.
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            backend: Backend::from_env(sdk)?,
            sfn: aws::sfn(sdk),
            slack: config::slack_client(sdk).await?,
            channel: config::required("SLACK_PATCHES_CHANNEL")?,
            links: Links {
                file: config::required("PATCH_FILE_URL_TEMPLATE")?,
                diff: config::required("PATCH_DIFF_URL_TEMPLATE")?,
            },
            runs_table: config::required("RUNS_TABLE")?,
            waits_table: config::required("WAITS_TABLE")?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Input {
    pub task_token: String,
    pub patch: PatchRun,
}

/// The Lambda's own result (Step Functions waits for the token instead).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub status: Status,
    pub wait_key: String,
    pub wait_ended: bool,
}

/// The commit production runs: the newest migration that succeeded in this environment.
async fn deployed_commit(deps: &Deps, environment: &str) -> Result<Option<String>, Error> {
    let recent = runs::list(&deps.backend.db, &deps.runs_table, DEPLOYING_WORKFLOW, 50).await?;
    Ok(recent
        .into_iter()
        .find(|r| r.status == runs::status::SUCCEEDED && r.environment == environment)
        .and_then(|r| r.commit))
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let Input { task_token, patch } = input;
    let db = &deps.backend.db;
    let table = &deps.backend.patches_table;
    let rec = store::must_get(db, table, &patch.patch_id).await?;
    if rec.approval_message.is_none() && rec.status == Status::PendingApproval {
        let expires =
            time::now() + chrono::Duration::seconds(patch.approval_timeout_seconds as i64);
        let deployed = deployed_commit(deps, &patch.environment).await?;
        let msg = message::approval_request(
            &patch,
            &deps.channel,
            &deps.links,
            deployed.as_deref(),
            &time::rfc3339(expires),
        );
        let posted = deps.slack.post_message(&msg).await?;
        let permalink = deps
            .slack
            .permalink(&posted.channel, &posted.ts)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "no permalink for the approval request");
                String::new()
            });
        store::update(
            db,
            table,
            &patch.patch_id,
            &[(
                "approvalMessage",
                json!(ApprovalMessage {
                    channel: posted.channel.clone(),
                    ts: posted.ts.clone(),
                    permalink,
                }),
            )],
            Some("attribute_not_exists(approvalMessage)"),
            &[],
        )
        .await?;
        tracing::info!(patch = %patch.patch_id, channel = %posted.channel, ts = %posted.ts, "approval requested");
    }
    let mut status = rec.status;
    // A decision that concluded before the token was stored could not end the wait.
    let recheck = async || -> Result<Option<serde_json::Value>, Error> {
        let rec = store::must_get(db, table, &patch.patch_id).await?;
        status = rec.status;
        Ok(ApprovalDecided::of(&rec).map(|d| d.to_value()))
    };
    let registered = waits::register_then_recheck(
        db,
        &deps.sfn,
        &deps.waits_table,
        WaitKind::PatchApproval,
        &patch.patch_id,
        &task_token,
        &patch.execution_arn,
        time::now(),
        recheck,
    )
    .await?;
    tracing::info!(patch = %patch.patch_id, key = %registered.wait_key, completed_now = registered.completed_now, "approval wait registered");
    Ok(Output {
        status,
        wait_key: registered.wait_key,
        wait_ended: registered.completed_now,
    })
}
