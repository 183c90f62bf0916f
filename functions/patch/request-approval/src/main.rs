//! `request-approval`: the body of the data-patch workflow's `.waitForTaskToken` approval step.
//! Stores the task token on the patch record, posts the approval request to Slack (Block Kit:
//! ticket, requester, commit, exact command, reason, links to the script at the commit and the
//! diff against the deployed commit, Approve / Reject) once, then re-checks the record: a
//! decision that completed before the token was stored ends the wait here.

use batchless_core::patch::message::{self, Links};
use batchless_core::patch::store::{self, ApprovalMessage, Backend};
use batchless_core::patch::{status, PatchRun};
use batchless_core::platform::input::parse_strict;
use batchless_core::platform::slack::SlackClient;
use batchless_core::{
    platform::aws, platform::config, platform::time, sfn::waits, shared::runs, Error,
};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use serde_json::{json, Value};

struct Deps {
    backend: Backend,
    sfn: aws_sdk_sfn::Client,
    slack: SlackClient,
    channel: String,
    links: Links,
    runs_table: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Event {
    task_token: String,
    patch: PatchRun,
}

/// The commit production runs: the newest migration that succeeded in this environment.
async fn deployed_commit(deps: &Deps, environment: &str) -> Result<Option<String>, Error> {
    let recent = runs::list(
        &deps.backend.db,
        &deps.runs_table,
        batchless_core::migration::WORKFLOW,
        50,
    )
    .await?;
    Ok(recent
        .into_iter()
        .find(|r| r.status == runs::status::SUCCEEDED && r.environment == environment)
        .and_then(|r| r.commit))
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let Event { task_token, patch } = parse_strict(event)?;
    let db = &deps.backend.db;
    let table = &deps.backend.patches_table;
    let rec = store::update(
        db,
        table,
        &patch.patch_id,
        &[("taskToken", json!(task_token))],
        None,
        &[],
    )
    .await?
    .ok_or_else(|| Error::NotFound(format!("patch {}", patch.patch_id)))?;
    if rec.approval_message.is_none() && rec.status == status::PENDING_APPROVAL {
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
    // A decision that concluded before the token was stored could not end the wait.
    let rec = store::must_get(db, table, &patch.patch_id).await?;
    let decided = match rec.status.as_str() {
        status::APPROVED => Some(json!({"decision": "approved", "approvers": rec.approvers})),
        status::REJECTED => Some(json!({"decision": "rejected", "by": rec.rejected_by})),
        status::CANCELLED => Some(json!({"decision": "cancelled", "by": rec.cancelled_by})),
        _ => None,
    };
    let ended = match decided {
        Some(output) => waits::send_success(&deps.sfn, &task_token, &output).await?,
        None => false,
    };
    Ok(json!({ "status": rec.status, "waitEnded": ended }))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        backend: Backend::from_env(&sdk)?,
        sfn: aws::sfn(&sdk),
        slack: config::slack_client(&sdk).await?,
        channel: config::required("SLACK_PATCHES_CHANNEL")?,
        links: Links {
            file: config::required("PATCH_FILE_URL_TEMPLATE")?,
            diff: config::required("PATCH_DIFF_URL_TEMPLATE")?,
        },
        runs_table: config::required("RUNS_TABLE")?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
