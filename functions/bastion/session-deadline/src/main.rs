//! `session-deadline`: the bastion watch's steps around the approval deadline.
//! - `register` (the `.waitForTaskToken` step): store the task token on the session, then
//!   re-check once — an approval recorded before the token was stored ends the wait at once;
//! - `remind`: the reminder in the login thread;
//! - `alert`: no approval by the deadline → alert channel + a note in the thread, recorded
//!   (an approval recorded in the meantime wins: `{"alerted": false}`);
//! - `confirm`: confirm the recorded approval in the thread.

use batchless_core::bastion::session::{self, status};
use batchless_core::platform::input::parse_strict;
use batchless_core::platform::slack::SlackClient;
use batchless_core::{platform::aws, platform::config, platform::time, sfn::waits, Error};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use serde_json::{json, Value};

struct Deps {
    db: aws_sdk_dynamodb::Client,
    sfn: aws_sdk_sfn::Client,
    slack: SlackClient,
    table: String,
    alert_channel: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, tag = "action", rename_all = "lowercase")]
enum Action {
    #[serde(rename_all = "camelCase")]
    Register {
        task_token: String,
        session_id: String,
    },
    #[serde(rename_all = "camelCase")]
    Remind { session_id: String },
    #[serde(rename_all = "camelCase")]
    Alert { session_id: String },
    #[serde(rename_all = "camelCase")]
    Confirm { session_id: String },
}

async fn load(deps: &Deps, session_id: &str) -> Result<session::SessionRecord, Error> {
    session::get(&deps.db, &deps.table, session_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("bastion session {session_id}")))
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    match parse_strict::<Action>(event)? {
        Action::Register {
            task_token,
            session_id,
        } => {
            let rec = session::update(
                &deps.db,
                &deps.table,
                &session_id,
                &[("taskToken", json!(task_token))],
                None,
            )
            .await?
            .ok_or_else(|| Error::NotFound(format!("bastion session {session_id}")))?;
            // Re-check: an approval recorded before the token was stored ends the wait now.
            if let Some(approval) = &rec.approval {
                let sent = waits::send_success(&deps.sfn, &task_token, &json!(approval)).await?;
                tracing::info!(%session_id, sent, "approval already recorded: wait ended at once");
                return Ok(json!({ "registered": true, "alreadyApproved": true }));
            }
            Ok(json!({ "registered": true, "alreadyApproved": false }))
        }
        Action::Remind { session_id } => {
            let rec = load(deps, &session_id).await?;
            if rec.reminded_at.is_none() {
                if let Some(msg) = session::reminder_message(&rec) {
                    deps.slack.post_message(&msg).await?;
                }
                session::update(
                    &deps.db,
                    &deps.table,
                    &session_id,
                    &[("remindedAt", json!(time::rfc3339(time::now())))],
                    None,
                )
                .await?;
            }
            Ok(json!({ "reminded": true }))
        }
        Action::Alert { session_id } => {
            let rec = load(deps, &session_id).await?;
            if rec.approval.is_some() {
                tracing::info!(%session_id, "approval recorded in the meantime: no alert");
                return Ok(json!({ "alerted": false }));
            }
            if let Some(alert) = &rec.alert {
                return Ok(json!({ "alerted": true, "alert": alert }));
            }
            let posted = deps
                .slack
                .post_message(&session::alert_message(&rec, &deps.alert_channel))
                .await?;
            if let Some(channel) = &rec.channel {
                let note = batchless_core::platform::slack::Message {
                    channel: channel.clone(),
                    thread_ts: rec.thread_ts.clone(),
                    text: format!(
                        ":warning: Deadline {} passed without approval evidence: alerted <#{}>.",
                        rec.deadline_at, deps.alert_channel
                    ),
                    blocks: None,
                };
                if let Err(e) = deps.slack.post_message(&note).await {
                    tracing::warn!(error = %e, "could not note the alert in the login thread");
                }
            }
            let alert = json!({
                "at": time::rfc3339(time::now()),
                "channel": posted.channel,
                "ts": posted.ts,
                "deadlineAt": rec.deadline_at,
            });
            session::update(
                &deps.db,
                &deps.table,
                &session_id,
                &[("alert", alert.clone()), ("status", json!(status::ALERTED))],
                None,
            )
            .await?;
            tracing::warn!(%session_id, "no executive approval by the deadline: alerted");
            Ok(json!({ "alerted": true, "alert": alert }))
        }
        Action::Confirm { session_id } => {
            let rec = load(deps, &session_id).await?;
            let Some(approval) = &rec.approval else {
                return Err(Error::Conflict(format!(
                    "session {session_id} has no recorded approval to confirm"
                )));
            };
            if let Some(msg) = session::approved_message(&rec, approval) {
                deps.slack.post_message(&msg).await?;
            }
            Ok(json!({ "sessionId": session_id, "status": rec.status, "approval": approval }))
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        db: aws::dynamodb(&sdk),
        sfn: aws::sfn(&sdk),
        slack: config::slack_client(&sdk).await?,
        table: config::required("BASTION_TABLE")?,
        alert_channel: config::required("SLACK_ALERTS_CHANNEL")?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
