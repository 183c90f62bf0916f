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
use crate::patch::store::{self, ApprovalDecided, Backend};
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
    let recent = runs::Runs::new(deps.backend.db.clone(), &deps.runs_table)
        .list(DEPLOYING_WORKFLOW, 50)
        .await?;
    Ok(recent
        .into_iter()
        .find(|r| r.status == runs::RunStatus::Succeeded && r.environment == environment)
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
            rec.preview.as_ref(),
        );
        let posted = crate::shared::approval::post_request(&deps.slack, &msg).await?;
        store::update(
            db,
            table,
            &patch.patch_id,
            &[("approvalMessage", json!(posted))],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::steps::fixtures::{self, backend, stored};
    use crate::patch::store::{ApprovalMessage, PatchRecord};
    use crate::platform::dynamo::to_item;
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessOutput;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

    const KEY: &str = "patch-approval#patch-1";

    /// The record with its approval request already posted (so no Slack call is made).
    fn posted(status: Status) -> PatchRecord {
        let mut rec = fixtures::record(status);
        rec.approval_message = Some(ApprovalMessage {
            channel: "CPATCH".into(),
            ts: "1.2".into(),
            permalink: String::new(),
        });
        rec
    }

    fn register() -> Rule {
        mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.table_name() == Some("waits")
                    && crate::testing::attr_s(r.item(), "waitKey") == Some(KEY)
                    && crate::testing::attr_s(r.item(), "taskToken") == Some("tok")
            })
            .then_output(|| PutItemOutput::builder().build())
    }

    fn take() -> Rule {
        mock!(aws_sdk_dynamodb::Client::delete_item)
            .match_requests(|r| {
                r.table_name() == Some("waits")
                    && crate::testing::attr_s(r.key(), "waitKey") == Some(KEY)
            })
            .then_output(|| {
                DeleteItemOutput::builder()
                    .set_attributes(Some(to_item(&waits::Waiter {
                        wait_key: KEY.into(),
                        task_token: "tok".into(),
                        execution_arn: "arn:e".into(),
                        registered_at: "2026-12-01T00:00:00Z".into(),
                        expires_at: "2027-12-01T00:00:00Z".into(),
                    })))
                    .build()
            })
    }

    fn send() -> Rule {
        mock!(aws_sdk_sfn::Client::send_task_success)
            .match_requests(|r| {
                r.task_token() == Some("tok")
                    && r.output()
                        .and_then(|o| serde_json::from_str::<serde_json::Value>(o).ok())
                        == Some(json!({"decision": "approved", "approvers": ["alice"]}))
            })
            .then_output(|| SendTaskSuccessOutput::builder().build())
    }

    fn deps(db: &[&Rule], sfn: &[&Rule]) -> Deps {
        Deps {
            backend: backend(
                mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, db),
                mock_client!(aws_sdk_s3, RuleMode::MatchAny, []),
            ),
            sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, sfn),
            slack: SlackClient::new("http://127.0.0.1:9/api", "t"),
            channel: "CPATCH".into(),
            links: Links {
                file: "https://git.example/{commit}/{path}".into(),
                diff: "https://git.example/{base}...{commit}".into(),
            },
            runs_table: "runs".into(),
            waits_table: "waits".into(),
        }
    }

    fn input() -> Input {
        Input {
            task_token: "tok".into(),
            patch: fixtures::run(),
        }
    }

    /// The step run on `rec` as stored, with the waits table and Step Functions mocked: its
    /// output and how often it registered the token, took it back and sent the decision.
    async fn run_on(rec: PatchRecord) -> (Output, (usize, usize, usize)) {
        let (get, put, del, sfn) = (stored(rec), register(), take(), send());
        let d = deps(&[&get, &put, &del], &[&sfn]);
        let out = handle(&d, input()).await.unwrap();
        (out, (put.num_calls(), del.num_calls(), sfn.num_calls()))
    }

    #[tokio::test]
    async fn a_decision_made_before_the_token_was_stored_ends_the_wait_at_once() {
        let mut rec = posted(Status::Approved);
        rec.approvers = vec!["alice".into()];
        let (out, calls) = run_on(rec).await;
        assert_eq!(out.wait_key, KEY);
        assert!(out.wait_ended);
        assert_eq!(out.status, Status::Approved);
        assert_eq!(calls, (1, 1, 1));
    }

    #[tokio::test]
    async fn a_pending_patch_leaves_its_token_in_the_waits_table() {
        let (out, calls) = run_on(posted(Status::PendingApproval)).await;
        assert!(!out.wait_ended);
        assert_eq!(out.status, Status::PendingApproval);
        assert_eq!(calls, (1, 0, 0));
    }

    #[tokio::test]
    async fn no_record_is_not_found_and_registers_nothing() {
        use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
        let get = mock!(aws_sdk_dynamodb::Client::get_item)
            .then_output(|| GetItemOutput::builder().build());
        let put = register();
        let d = deps(&[&get, &put], &[]);
        let err = handle(&d, input()).await.unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::NotFound);
        assert_eq!(put.num_calls(), 0);
    }
}
