//! `request-approval`: the body of the data-patch workflow's `.waitForTaskToken` approval step.
//! Posts the approval request to Slack once (Block Kit: ticket, requester, commit, exact
//! command, reason, links to the script at the commit and the diff against the deployed
//! commit, Approve / Reject), then registers the wait the one way every wait is registered
//! (`sfn::waits::register_then_recheck`, key `patch-approval#<patchId>`) and re-reads the
//! record: a decision that completed before the token was stored ends the wait here.
//!
//! Its second mode (`{"mode": "check", "patch": ...}`, the `CheckApproval` state after every
//! wake) re-reads the record and says where the workflow goes: the wake only woke it (issue
//! 15). A forged `SendTaskSuccess` on a pending patch finds it still pending and the workflow
//! waits again, for what is left of the approval window; `start-patch-build` still re-counts
//! the decisions of an approved one. The window opens when the `ApprovalWindow` state is
//! entered (`$$.State.EnteredTime`, which Step Functions writes into the state data: nobody
//! outside the execution can edit it) and lasts `approvalTimeoutSeconds` (sealed with the
//! input). Nothing in the patches table moves it, so a writer of that table can neither extend
//! a pending window nor cut one short.

use aws_types::SdkConfig;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::Error;
use crate::patch::message::{self, Links};
use crate::patch::store::{self, ApprovalDecided, Backend, PatchRecord};
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
#[serde(untagged)]
pub enum Input {
    /// The `.waitForTaskToken` body: post once, store the token, re-check.
    Wait(WaitInput),
    /// After a wake: what the record says.
    Check(CheckInput),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WaitInput {
    pub task_token: String,
    pub patch: PatchRun,
    /// When the approval window opened (`ApprovalWindow`'s `$$.State.EnteredTime`): the
    /// request says when it ends.
    pub window_opened_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CheckInput {
    pub mode: Mode,
    pub patch: PatchRun,
    /// When the approval window opened (`ApprovalWindow`'s `$$.State.EnteredTime`).
    pub window_opened_at: String,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Check,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Output {
    /// The wait's Lambda result (Step Functions waits for the token instead).
    Waiting(Waiting),
    Checked(Checked),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Waiting {
    pub status: Status,
    pub wait_key: String,
    pub wait_ended: bool,
}

/// Where the workflow goes after a wake (`Approved?` routes on `decision`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Checked {
    pub decision: Next,
    /// The status on the record.
    pub status: Status,
    /// What is left of the approval window (the next wait's timeout), in seconds.
    pub wait_seconds: i64,
    /// When the window opened, carried to the next check.
    pub opened_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Next {
    /// Approved on the record: `StartPatchBuild` re-counts the decisions.
    Approved,
    /// Nobody concluded (a forged or stray wake): wait again, for what is left of the window
    /// (1 s once it is over: that wait times out, the one way a patch ends `ApprovalExpired`).
    Pending,
    /// Rejected, cancelled or otherwise over: `RecordOutcome` reads why.
    Ended,
}

/// Pure: where a patch whose record is `rec` goes at `now`, its approval window having opened
/// at `opened_at` for `timeout_seconds`.
pub fn next(
    rec: &PatchRecord,
    opened_at: DateTime<Utc>,
    timeout_seconds: u64,
    now: DateTime<Utc>,
) -> Checked {
    let expires = opened_at + chrono::Duration::seconds(timeout_seconds as i64);
    let left = (expires - now).num_seconds();
    let decision = match (ApprovalDecided::of(rec), rec.status) {
        (Some(ApprovalDecided::Approved { .. }), _) => Next::Approved,
        (None, Status::PendingApproval) => Next::Pending,
        _ => Next::Ended,
    };
    Checked {
        decision,
        status: rec.status,
        wait_seconds: left.max(1),
        opened_at: time::rfc3339(opened_at),
    }
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
    match input {
        Input::Wait(w) => wait(deps, w).await.map(Output::Waiting),
        Input::Check(c) => {
            let rec = store::must_get(
                &deps.backend.db,
                &deps.backend.patches_table,
                &c.patch.patch_id,
            )
            .await?;
            let opened = time::parse("windowOpenedAt", &c.window_opened_at)?;
            let checked = next(&rec, opened, c.patch.approval_timeout_seconds, time::now());
            tracing::info!(patch = %c.patch.patch_id, decision = ?checked.decision, status = ?checked.status, wait_seconds = checked.wait_seconds, "approval checked after the wake");
            Ok(Output::Checked(checked))
        }
    }
}

async fn wait(deps: &Deps, input: WaitInput) -> Result<Waiting, Error> {
    let WaitInput {
        task_token,
        patch,
        window_opened_at,
    } = input;
    let db = &deps.backend.db;
    let table = &deps.backend.patches_table;
    let rec = store::must_get(db, table, &patch.patch_id).await?;
    if rec.approval_message.is_none() && rec.status == Status::PendingApproval {
        let expires = time::parse("windowOpenedAt", &window_opened_at)?
            + chrono::Duration::seconds(patch.approval_timeout_seconds as i64);
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
    Ok(Waiting {
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
        Input::Wait(WaitInput {
            task_token: "tok".into(),
            patch: fixtures::run(),
            window_opened_at: "2026-12-01T12:00:00Z".into(),
        })
    }

    fn waiting(out: Output) -> Waiting {
        match out {
            Output::Waiting(w) => w,
            other => panic!("not a wait: {other:?}"),
        }
    }

    /// The step run on `rec` as stored, with the waits table and Step Functions mocked: its
    /// output and how often it registered the token, took it back and sent the decision.
    async fn run_on(rec: PatchRecord) -> (Waiting, (usize, usize, usize)) {
        let (get, put, del, sfn) = (stored(rec), register(), take(), send());
        let d = deps(&[&get, &put, &del], &[&sfn]);
        let out = waiting(handle(&d, input()).await.unwrap());
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

    #[test]
    fn after_a_wake_the_record_decides_where_the_workflow_goes() {
        let t = |s: &str| time::parse("t", s).unwrap();
        let now = t("2026-12-01T12:00:00Z");
        // A window of 24 h that opened 23 h ago.
        let opened = t("2026-12-01T13:00:00Z") - chrono::Duration::seconds(86_400);
        let at = |status: Status| next(&posted(status), opened, 86_400, now);
        // A wake with nothing concluded on the record (forged, whatever it said): wait again,
        // for what is left of the window, never the whole window again.
        let pending = at(Status::PendingApproval);
        assert_eq!(
            (pending.decision, pending.wait_seconds),
            (Next::Pending, 3600)
        );
        assert_eq!(pending.opened_at, "2026-11-30T13:00:00Z");
        // Past it: one more second, then the wait times out (ApprovalExpired).
        let late = next(
            &posted(Status::PendingApproval),
            opened,
            86_400,
            t("2026-12-01T13:00:01Z"),
        );
        assert_eq!((late.decision, late.wait_seconds), (Next::Pending, 1));
        assert_eq!(at(Status::Approved).decision, Next::Approved);
        for s in [Status::Rejected, Status::Cancelled, Status::Expired] {
            assert_eq!(at(s).decision, Next::Ended, "{s:?}");
        }
        // Whatever a writer of the patches table stores about the window moves nothing.
        let mut edited = posted(Status::PendingApproval);
        edited.approval_expires_at = Some("2036-12-01T00:00:00Z".into());
        edited.created_at = "2036-12-01T00:00:00Z".into();
        assert_eq!(next(&edited, opened, 86_400, now), pending);
    }

    #[tokio::test]
    async fn the_check_mode_reads_the_record_and_registers_nothing() {
        let put = register();
        let get = stored(posted(Status::PendingApproval));
        let d = deps(&[&get, &put], &[]);
        let input: Input =
            serde_json::from_value(json!({"mode": "check", "patch": fixtures::run(), "windowOpenedAt": "2026-12-01T12:00:00.123456+00:00"}))
                .unwrap();
        let out = serde_json::to_value(handle(&d, input).await.unwrap()).unwrap();
        assert_eq!(out["status"], "PENDING_APPROVAL", "{out}");
        assert_eq!(out["decision"], "pending", "{out}");
        assert_eq!(put.num_calls(), 0);
        // Neither shape with anything else, or without the window, is an input.
        for bad in [
            json!({"mode": "approve", "patch": fixtures::run(), "windowOpenedAt": "2026-12-01T12:00:00Z"}),
            json!({"mode": "check", "patch": fixtures::run()}),
        ] {
            assert!(serde_json::from_value::<Input>(bad).is_err());
        }
    }
}
