//! Scenario tests of the trust boundaries (issue 15, README "Trust model") on the local
//! replica: what an operator holding AWS permissions can forge, and that the workflows do not
//! take it as fact.
//!
//! - Callbacks wake a workflow, they never decide its outcome: a `SendTaskSuccess` with a
//!   stored task token (anyone who can read the waits table or the execution history has one)
//!   is followed by a re-read of the authoritative state (the session record, CodeBuild).
//! - A record planted ahead of an execution (a run record naming an old green build) does not
//!   silently stand in for the work.
//! - An assumed-role session is not a person because its session name is their e-mail.
//! - The starter of a run is the caller the decision endpoint authenticated: a run naming a
//!   person without its seal, or with a seal made for another input or execution, is refused;
//!   a run naming a pipeline is that pipeline's only if CodePipeline says its action started it.
//!
//! Run one at a time (`--test-threads=1`): the migration lock and fault injection are per stack.

use std::time::Duration;

use anyhow::{Context, Result};
use batchless_core::bastion::login::{execution_name, from_event, sample_event, WatchInput};
use batchless_scenarios::app::{camel, migrate_within, migration_report, suffix, version};
use batchless_scenarios::bastion::{session_id, Sessions as Bastion};
use batchless_scenarios::other::{OtherStack, Setup};
use batchless_scenarios::*;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(180);
const BASTION_CHANNEL: &str = "C0BASTION";
const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
const CAROL_SLACK: &str = "U0CAROL01";

/// The (forged) wake ended `ApprovalMissing` through every state of `path`, never `Approved`,
/// and the alert was published to SNS; the states entered.
async fn approval_missing_alerted(
    stack: &Stack,
    arn: &str,
    end: &Ended,
    path: &[&str],
) -> Result<Vec<String>> {
    let states = Expect {
        entered: path,
        not_entered: &["Approved"],
        ..Expect::error("ApprovalMissing")
    }
    .check(stack, arn, end)
    .await?;
    assert!(
        published_to_sns(stack, arn).await?,
        "the alert was published to SNS"
    );
    Ok(states)
}

/// Whether a task of the execution published to SNS (its output has the `MessageId`).
async fn published_to_sns(stack: &Stack, arn: &str) -> Result<bool> {
    Ok(stack.history(arn).await?.iter().any(|e| {
        e.task_succeeded_event_details().is_some_and(|d| {
            d.resource_type() == "sns" && d.output().is_some_and(|o| o.contains("MessageId"))
        })
    }))
}

fn has(states: &[String], name: &str) -> bool {
    states.iter().any(|s| s == name)
}

fn count(states: &[String], name: &str) -> usize {
    states.iter().filter(|s| *s == name).count()
}

/// The task token stored under `wait_key` in the waits table, once it is there.
async fn stored_token(stack: &Stack, wait_key: &str) -> Result<String> {
    let waits = stack.table("WaitsTable")?;
    eventually(&format!("a token under {wait_key}"), TIMEOUT, || async {
        Ok(stack
            .get_item(&waits, "waitKey", wait_key)
            .await?
            .and_then(|w| w["taskToken"].as_str().map(str::to_string)))
    })
    .await
}

/// A forged wake of the build wait of `build_id` (its token from the waits table): `output`.
async fn forge_build_end(stack: &Stack, build_id: &str, output: &Value) -> Result<()> {
    let key = batchless_core::sfn::waits::WaitKind::Codebuild.key(build_id);
    let token = stored_token(stack, &key).await?;
    forge_success(stack, &token, output).await
}

async fn forge_success(stack: &Stack, token: &str, output: &Value) -> Result<()> {
    stack
        .sfn
        .send_task_success()
        .task_token(token)
        .output(output.to_string())
        .send()
        .await
        .context("SendTaskSuccess")?;
    Ok(())
}

// ------------------------------------------------------------------------------- bastion

/// What the trust tests do with the shared bastion fixture.
trait Watch {
    async fn watch(&self, sid: &str, principal: &str) -> Result<String>;
}

impl Watch for Bastion {
    /// Start the watch of a login by `principal`, with a deadline far beyond the test (the
    /// replica scales it; a forged wake is the only thing that can end the wait early).
    async fn watch(&self, sid: &str, principal: &str) -> Result<String> {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let login = from_event(&sample_event(
            sid,
            principal,
            &self.cluster,
            "tasktrust",
            &now,
        ))?
        .context("login")?;
        let input = WatchInput {
            login,
            deadline_seconds: 72_000,
            reminder_before_seconds: 36_000,
        };
        self.stack
            .start(
                &self.sm,
                &execution_name(sid),
                &serde_json::to_value(&input)?,
            )
            .await
    }
}

/// `SendTaskSuccess` with the watch's stored token (and nothing recorded) must not approve the
/// session: the wake is checked against the session record and goes to the alert path.
#[tokio::test]
async fn a_forged_wake_of_the_bastion_watch_ends_approval_missing_alerted_and_published(
) -> Result<()> {
    let b = Bastion::setup().await?;
    for (prefix, forged) in [
        ("forgedempty", json!({})),
        // What slack-events would send, but nothing is recorded on the session.
        (
            "forgedlook",
            json!({"by": "carol", "byName": "Carol Example", "slackUser": CAROL_SLACK,
                   "text": "承認します", "ts": "1.6", "permalink": "", "recordedAt": "2026-12-01T00:00:00Z"}),
        ),
    ] {
        let sid = session_id(prefix);
        let arn = b.watch(&sid, ALICE).await?;
        let token = stored_token(&b.stack, &format!("session-approval#{sid}")).await?;
        forge_success(&b.stack, &token, &forged).await?;
        let end = b.stack.wait_end(&arn, TIMEOUT).await?;
        assert_eq!(end.status, "FAILED", "{forged}: {end:?}");
        let states = approval_missing_alerted(&b.stack, &arn, &end, &ALERT_PATH).await?;
        assert!(!has(&states, "Remind"), "woken long before the reminder");
        // Published to the SNS topic (asserted above), posted to the alert channel, and
        // recorded on the session.
        let alerts = b.alerts_about(&sid).await?;
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert!(
            alerts[0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("No executive approval")),
            "{alerts:?}"
        );
        let rec = b.session(&sid).await?.context("session")?;
        assert_eq!(rec["status"], "alerted", "{rec}");
        assert!(rec.get("approval").is_none(), "{rec}");
    }
    Ok(())
}

/// The alert path a forged or unproven wake of the watch takes.
const ALERT_PATH: [&str; 5] = [
    "ConfirmApproval",
    "Confirmed?",
    "AlertNoApproval",
    "PublishAlert",
    "NoApproval",
];

/// What an operator with write access to the bastion table can do: set `fields` (JSON, as
/// the record holds them) on the session record of `sid`, around batchless.
async fn plant_on_session(b: &Bastion, sid: &str, fields: &[(&str, Value)]) -> Result<()> {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    let s = |v: &str| A::S(v.to_string());
    let sets: Vec<String> = (0..fields.len())
        .map(|i| format!("#f{i} = :v{i}"))
        .collect();
    let mut req = b
        .stack
        .db
        .update_item()
        .table_name(&b.table)
        .key("pk", s(&format!("session#{sid}")))
        .key("sk", s("session"))
        .update_expression(format!("SET {}", sets.join(", ")));
    for (i, (name, value)) in fields.iter().enumerate() {
        req = req
            .expression_attribute_names(format!("#f{i}"), *name)
            .expression_attribute_values(
                format!(":v{i}"),
                batchless_core::platform::dynamo::to_attr(value),
            );
    }
    req.send()
        .await
        .context("UpdateItem (a planted session field)")?;
    Ok(())
}

/// An operator with write access to the bastion table plants an executive's approval evidence
/// on the session record (status `approved` and all) and wakes the watch with its token: the
/// evidence carries no seal of `slack-events`, so it is no evidence, and the watch alerts.
#[tokio::test]
async fn approval_evidence_planted_on_the_session_record_is_no_evidence() -> Result<()> {
    let b = Bastion::setup().await?;
    let sid = session_id("planted");
    let arn = b.watch(&sid, ALICE).await?;
    let token = stored_token(&b.stack, &format!("session-approval#{sid}")).await?;
    let evidence = json!({"by": "carol", "byName": "Carol Example", "slackUser": CAROL_SLACK,
        "text": "承認します", "ts": "1.6", "permalink": "", "recordedAt": "2026-12-01T00:00:00Z",
        "seal": "MEUCIQCplantedplantedplantedplantedplantedAiAplanted"});
    plant_on_session(
        &b,
        &sid,
        &[
            ("approval", evidence.clone()),
            ("status", json!("approved")),
        ],
    )
    .await?;
    forge_success(&b.stack, &token, &evidence).await?;
    let end = b.stack.wait_end(&arn, TIMEOUT).await?;
    approval_missing_alerted(&b.stack, &arn, &end, &ALERT_PATH).await?;
    let alerts = b.alerts_about(&sid).await?;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let rec = b.session(&sid).await?.context("session")?;
    assert_eq!(rec["status"], "alerted", "{rec}");
    assert!(rec.get("alert").is_some(), "{rec}");
    Ok(())
}

/// An operator plants an `alert` on the session record (as if the deadline's alert had gone
/// out) and wakes the watch: the alert was not sealed by `session-deadline`, so it does not
/// stop the real one, which is posted and recorded over it.
#[tokio::test]
async fn an_alert_planted_on_the_session_record_does_not_silence_the_real_one() -> Result<()> {
    let b = Bastion::setup().await?;
    let sid = session_id("plantedalert");
    let arn = b.watch(&sid, ALICE).await?;
    let token = stored_token(&b.stack, &format!("session-approval#{sid}")).await?;
    let planted = json!({"at": "2026-12-01T00:00:00Z", "channel": "C0ALERTS", "ts": "1.0",
        "deadlineAt": "2026-12-01T00:00:00Z"});
    plant_on_session(&b, &sid, &[("alert", planted)]).await?;
    forge_success(&b.stack, &token, &json!({})).await?;
    let end = b.stack.wait_end(&arn, TIMEOUT).await?;
    approval_missing_alerted(&b.stack, &arn, &end, &ALERT_PATH).await?;
    let alerts = b.alerts_about(&sid).await?;
    assert_eq!(alerts.len(), 1, "the real alert was posted: {alerts:?}");
    let rec = b.session(&sid).await?.context("session")?;
    assert_ne!(rec["alert"]["ts"], "1.0", "{rec}");
    assert!(rec["alert"]["seal"].is_string(), "{rec}");
    Ok(())
}

/// The same forged wake while Slack is down: the alert step fails after its retries, and the
/// alert still goes to the SNS topic; the watch still ends `ApprovalMissing`, never Approved.
#[tokio::test]
async fn a_forged_wake_while_slack_is_down_is_still_published_and_approval_missing() -> Result<()> {
    let b = Bastion::setup().await?;
    let sid = session_id("forgeddown");
    let arn = b.watch(&sid, ALICE).await?;
    let token = stored_token(&b.stack, &format!("session-approval#{sid}")).await?;
    eventually("the login posted", TIMEOUT, || async {
        Ok(b.session(&sid)
            .await?
            .filter(|s| s.get("threadTs").is_some()))
    })
    .await?;
    // Every post fails from now on (the alert step makes 9 attempts).
    b.stack
        .slack_fail("chat.postMessage", "service_unavailable", 50)
        .await?;
    let result = async {
        forge_success(&b.stack, &token, &json!({})).await?;
        b.stack.wait_end(&arn, TIMEOUT).await
    }
    .await;
    b.stack.clear_faults().await?;
    let end = result?;
    let path = [
        "Confirmed?",
        "AlertNoApproval",
        "PublishUnpostedAlert",
        "NoApproval",
    ];
    approval_missing_alerted(&b.stack, &arn, &end, &path).await?;
    Ok(())
}

/// An assumed-role session whose session name is an executive's e-mail is not that executive:
/// the login is by an unknown principal (alerted as such), so the executive's own approval
/// counts (were it mapped to her, it would be refused as self-approval).
#[tokio::test]
async fn an_assumed_role_named_after_an_executive_is_an_unknown_principal() -> Result<()> {
    let b = Bastion::setup().await?;
    let sid = session_id("assumed");
    let forged = "arn:aws:sts::123456789012:assumed-role/ci-runner/carol@example.com";
    let arn = b.watch(&sid, forged).await?;
    stored_token(&b.stack, &format!("session-approval#{sid}")).await?;
    let session = eventually("the login posted", TIMEOUT, || async {
        Ok(b.session(&sid)
            .await?
            .filter(|s| s.get("threadTs").is_some()))
    })
    .await?;
    assert!(session.get("personId").is_none(), "{session}");
    assert_eq!(session["principalArn"], forged);
    let alert = eventually("the unknown-principal alert", TIMEOUT, || async {
        Ok(b.alerts_about(&sid).await?.into_iter().next())
    })
    .await?["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for needle in ["unknown principal", forged, "carol's e-mail"] {
        assert!(alert.contains(needle), "{needle} not in {alert}");
    }
    let login_post = b
        .stack
        .slack_messages(BASTION_CHANNEL)
        .await?
        .into_iter()
        .find(|m| m["thread_ts"].is_null() && m["text"].as_str().is_some_and(|t| t.contains(&sid)))
        .context("the login post")?;
    assert!(
        !login_post["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Carol Example"),
        "{login_post}"
    );
    let (status, body) = b.reply(&session, CAROL_SLACK, "承認します", 1).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"]["verdict"], "evidence", "{body}");
    let end = b.stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    Ok(())
}

// ----------------------------------------------------------------------------- migration

struct Migration {
    stack: Stack,
    sm: String,
    runs: String,
    locks: String,
}

impl Migration {
    async fn setup() -> Result<Migration> {
        let (stack, sm) = Stack::cleared_with("MigrationStateMachine").await?;
        Ok(Migration {
            runs: stack.table("RunsTable")?,
            locks: stack.table("LocksTable")?,
            sm,
            stack,
        })
    }

    async fn lock_held(&self) -> Result<bool> {
        let lock = format!("migration:{}", self.stack.environment());
        Ok(self
            .stack
            .get_item(&self.locks, "lockName", &lock)
            .await?
            .is_some())
    }

    async fn run(&self, arn: &str) -> Result<Option<Value>> {
        self.stack.get_item(&self.runs, "runId", arn).await
    }

    async fn build_status(&self, build_id: &str) -> Result<String> {
        let out = self
            .stack
            .codebuild
            .batch_get_builds()
            .ids(build_id)
            .send()
            .await?;
        Ok(out
            .builds()
            .first()
            .and_then(|b| b.build_status())
            .map(|s| s.as_str().to_string())
            .unwrap_or_default())
    }
}

/// A forged `{"finished": true, "succeeded": true}` on the build's wait while the build runs:
/// the workflow re-reads the build, waits again, and records nothing and frees nothing early.
#[tokio::test]
async fn a_forged_build_outcome_on_the_migration_wait_is_rechecked_and_waited_out() -> Result<()> {
    let m = Migration::setup().await?;
    // 35 s of work: the build outlasts the forge, the re-check and the checks below even on a
    // loaded machine (20 s was not always enough on two busy cores), and ends inside the build
    // timeout (MigrationTimeoutMinutes 60: 60 s at time-scale 60; 60 s of work timed out).
    let input = migration_input(&m.stack.app_head()?, json!({"FAKE_SLEEP_SECONDS": "35"}));
    let arn = m
        .stack
        .submit("migration", &unique_name("forgedbuild"), &input)
        .await?;
    let build_id: String = eventually("the build", TIMEOUT, || async {
        Ok(m.run(&arn)
            .await?
            .and_then(|r| r["buildId"].as_str().map(str::to_string)))
    })
    .await?;
    forge_build_end(
        &m.stack,
        &build_id,
        &json!({"buildId": build_id, "finished": true, "succeeded": true, "status": "SUCCEEDED",
                "logGroup": "/forged", "logStream": "forged"}),
    )
    .await?;
    // The workflow moves on from the wake: to a re-check of the build (or, were the callback
    // taken as the outcome, to recording the run).
    eventually("the workflow to act on the wake", TIMEOUT, || async {
        let states = m.stack.states_entered(&arn).await?;
        Ok((has(&states, "RecheckBuild") || has(&states, "CollectLogs")).then_some(()))
    })
    .await?;
    // A moment after the forged wake, with the build still running: nothing is recorded and
    // the lock is held.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        m.build_status(&build_id).await?,
        "IN_PROGRESS",
        "the build outlasts the check (precondition)"
    );
    assert_eq!(
        m.run(&arn).await?.context("run")?["status"],
        "RUNNING",
        "not recorded while the build runs"
    );
    assert!(m.lock_held().await?, "the lock is not freed early");
    assert_eq!(m.stack.execution_status(&arn).await?, "RUNNING");
    let states = m.stack.states_entered(&arn).await?;
    assert!(has(&states, "RecheckBuild"), "{states:?}");
    assert!(!has(&states, "CollectLogs"), "{states:?}");
    assert!(!has(&states, "RecordRun"), "{states:?}");
    // The real end of the build ends the run.
    let end = m.stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    assert_eq!(m.build_status(&build_id).await?, "SUCCEEDED");
    let states = m.stack.states_entered(&arn).await?;
    assert!(count(&states, "WaitForBuild") >= 2, "{states:?}");
    let run = m.run(&arn).await?.context("run")?;
    assert_eq!(run["status"], "SUCCEEDED");
    assert_ne!(run["logUri"], json!(null), "the real build's log: {run}");
    assert!(!m.lock_held().await?);
    Ok(())
}

/// A run record written ahead of an execution, naming an old green build: the start step
/// would skip its build and the wait would end "succeeded" at once. The wait refuses a build
/// not started for the execution, so the run fails loudly (Corrupt) and nothing succeeds.
#[tokio::test]
async fn a_planted_run_record_with_an_old_build_fails_the_migration_loudly() -> Result<()> {
    let m = Migration::setup().await?;
    let input = migration_input(&m.stack.app_head()?, json!({}));
    let first = m
        .stack
        .submit("migration", &unique_name("green"), &input)
        .await?;
    let end = m.stack.wait_end(&first, TIMEOUT).await?;
    assert_eq!(end.status, "SUCCEEDED", "a green build to plant: {end:?}");
    let green = m.run(&first).await?.context("the green run")?;
    let build_id = green["buildId"].as_str().context("buildId")?.to_string();

    let name = unique_name("planted");
    let arn = format!("{}:{name}", m.sm.replace(":stateMachine:", ":execution:"));
    let mut planted = green.clone();
    for (k, v) in [
        ("runId", json!(arn)),
        ("executionName", json!(name)),
        ("status", json!("RUNNING")),
    ] {
        planted[k] = v;
    }
    m.stack
        .db
        .put_item()
        .table_name(&m.runs)
        .set_item(Some(batchless_core::platform::dynamo::to_item(&planted)))
        .send()
        .await?;
    let started = m.stack.submit("migration", &name, &input).await?;
    assert_eq!(started, arn);
    let end = m.stack.wait_end(&arn, TIMEOUT).await?;
    let states = m.stack.states_entered(&arn).await?;
    assert_eq!(end.status, "FAILED", "{end:?} {states:?}");
    assert_eq!(end.error.as_deref(), Some("Corrupt"), "{end:?}");
    assert!(!has(&states, "CollectLogs"), "{states:?}");
    let run = m.run(&arn).await?.context("run")?;
    assert_ne!(run["status"], "SUCCEEDED", "{run}");
    assert!(
        run.to_string().contains("not started for this execution"),
        "the record names why: {run}"
    );
    assert_eq!(run["buildId"], build_id);
    assert!(!m.lock_held().await?, "the lock is released");
    Ok(())
}

// ------------------------------------------------------------------------------- data patch

/// A forged `{"finished": true, "succeeded": true}` on the dry run's wait while the dry run
/// runs (issue 15): `RecheckDryRun` asks CodeBuild, the workflow waits again, and the preview is
/// recorded only from the build's real end; nothing is asked for approval early.
#[tokio::test]
async fn a_forged_wake_of_the_dry_run_wait_is_rechecked_and_waited_out() -> Result<()> {
    let p = batchless_scenarios::patch::Patches::setup().await?;
    let input = json!({
        "ticket": "OPS-15", "ref": "main", "commit": p.stack.app_head()?, "kind": "runner",
        "script": "script/patches/sleeps.rb", "args": ["20"], "reason": "forged dry-run wake",
        "requestedBy": "arn:aws:iam::123456789012:user/bob",
    });
    let (id, arn) = p.start_named("forgeddry", &input).await?;
    let build_id: String = eventually("the dry-run build", TIMEOUT, || async {
        Ok(p.find_record(&id)
            .await?
            .and_then(|r| r["previewBuildId"].as_str().map(str::to_string)))
    })
    .await?;
    forge_build_end(
        &p.stack,
        &build_id,
        &json!({"buildId": build_id, "finished": true, "succeeded": true, "status": "SUCCEEDED"}),
    )
    .await?;
    eventually("the workflow to act on the wake", TIMEOUT, || async {
        let states = p.stack.states_entered(&arn).await?;
        Ok((has(&states, "RecheckDryRun") || has(&states, "RecordPreview")).then_some(()))
    })
    .await?;
    let status = p
        .stack
        .build(&build_id)
        .await?
        .build_status()
        .map(|s| s.as_str().to_string());
    assert_eq!(
        status.as_deref(),
        Some("IN_PROGRESS"),
        "the dry run outlasts the forged wake (precondition)"
    );
    let states = p.stack.states_entered(&arn).await?;
    assert!(has(&states, "RecheckDryRun"), "{states:?}");
    assert!(!has(&states, "RecordPreview"), "{states:?}");
    let rec = p.record(&id).await?;
    assert!(
        rec.get("preview").is_none(),
        "no preview while it runs: {rec}"
    );
    assert!(
        rec.get("approvalMessage").is_none(),
        "nobody asked yet: {rec}"
    );
    // The real end records the real preview, then the approval request.
    let rec = eventually("the approval request", TIMEOUT, || async {
        Ok(p.find_record(&id)
            .await?
            .filter(|r| r.get("approvalMessage").is_some()))
    })
    .await?;
    assert_eq!(rec["preview"]["outcome"], "ok", "{rec}");
    assert_eq!(rec["preview"]["buildStatus"], "SUCCEEDED", "{rec}");
    let states = p.stack.states_entered(&arn).await?;
    assert!(count(&states, "WaitForDryRun") >= 2, "{states:?}");
    let (code, out, err) = p.stack.cli(&["patch", "cancel", &id])?;
    assert_eq!(code, 0, "{out}{err}");
    p.stack.wait_end(&arn, TIMEOUT).await?;
    Ok(())
}

// ---------------------------------------------------------------------------- submissions

/// Who started a run is the caller the decision endpoint authenticated (issue 15). A run
/// started from the "console" (a raw StartExecution) naming a person, a sealed input edited
/// after it was sealed (the requester swapped, an argument changed), and a sealed input started
/// under another execution name: each fails `InvalidInput` in the first state, before anything
/// is recorded or built, and its failed execution says why. The sealed input itself, under its
/// own name, passes the same state (the control that the seal is what the others lack).
#[tokio::test]
async fn a_run_naming_its_starter_without_a_seal_that_verifies_is_invalid_input() -> Result<()> {
    let stack = Stack::cleared().await?;
    let head = stack.app_head()?;
    let patches = stack.table("PatchesTable")?;
    let runs = stack.table("RunsTable")?;
    let occurrences = stack.table("OccurrencesTable")?;
    let builds_before = (
        stack.build_count("PatchProject").await?,
        stack.build_count("MigrationProject").await?,
    );
    let patch = json!({
        "ticket": "OPS-15", "ref": "main", "commit": head, "kind": "runner",
        "script": "script/patches/sleeps.rb", "args": ["1"], "reason": "who asks",
        "requestedBy": "arn:aws:iam::123456789012:user/bob",
    });
    // bob's request sealed for a name; a copy with one thing changed, started under it.
    let sealed_for = |name: String, change: Option<(&'static str, Value)>| {
        let (stack, patch) = (&stack, &patch);
        async move {
            let mut sealed = stack.sealed("bob", "data-patch", &name, patch).await?;
            assert_eq!(sealed["submission"]["person"], "bob", "{sealed}");
            if let Some((k, v)) = change {
                sealed[k] = v;
            }
            anyhow::Ok((name, sealed))
        }
    };
    let swapped = sealed_for(unique_name("swapped"), Some(("requestedBy", json!(ALICE)))).await?;
    let edited = sealed_for(unique_name("edited"), Some(("args", json!(["600"])))).await?;
    let (name, sealed) = sealed_for(unique_name("sealed"), None).await?;
    let cases = [
        (
            "data-patch",
            unique_name("console"),
            patch.clone(),
            "field `submission`",
        ),
        (
            "migration",
            unique_name("console"),
            migration_input(&head, json!({})),
            "field `startedBy`",
        ),
        (
            "scheduled-job",
            unique_name("console"),
            json!({"job": "sync-exchange-rates", "manual": {"requestedBy": "bob"}}),
            "field `submission`",
        ),
        ("data-patch", swapped.0, swapped.1, "does not verify"),
        ("data-patch", edited.0, edited.1, "does not verify"),
        // Replayed under another execution name.
        (
            "data-patch",
            unique_name("moved"),
            sealed.clone(),
            "does not verify",
        ),
    ];
    for (workflow, name, input, why) in cases {
        let (sm, first) = match workflow {
            "data-patch" => ("DataPatchStateMachine", "ValidateInput"),
            "migration" => ("MigrationStateMachine", "ValidateInput"),
            _ => ("ScheduledJobStateMachine", "ClaimOccurrence"),
        };
        let arn = stack
            .start(&stack.state_machine(sm)?, &name, &input)
            .await?;
        let end = stack.wait_end(&arn, TIMEOUT).await?;
        eprintln!("{workflow} {name}: {end:?}");
        Expect {
            path: Some(&[first, "RejectInput"]),
            cause_has: &[why],
            ..Expect::failed("InvalidInput")
        }
        .check(&stack, &arn, &end)
        .await?;
        assert!(
            stack.get_item(&patches, "patchId", &name).await?.is_none(),
            "{name}: no patch"
        );
        assert!(
            stack.get_item(&runs, "runId", &arn).await?.is_none(),
            "{name}: no run"
        );
        let manual = format!("sync-exchange-rates#manual#{name}");
        assert!(stack
            .get_item(&occurrences, "occurrenceKey", &manual)
            .await?
            .is_none());
    }
    assert_eq!(
        (
            stack.build_count("PatchProject").await?,
            stack.build_count("MigrationProject").await?,
        ),
        builds_before,
        "nothing was built"
    );
    // The control: bob's sealed input under its own name is recorded as his request.
    let sm = stack.state_machine("DataPatchStateMachine")?;
    let arn = stack.start(&sm, &name, &sealed).await?;
    let record = eventually("bob's patch record", TIMEOUT, || async {
        stack.get_item(&patches, "patchId", &name).await
    })
    .await?;
    assert_eq!(
        (
            &record["request"]["requester"],
            &record["request"]["requesterPrincipal"]
        ),
        (&json!("bob"), &json!("arn:aws:iam::123456789012:user/bob")),
        "{record}"
    );
    stack.stop(&arn).await?;
    Ok(())
}

/// What a bridge run's action asks for (its workflow input, without the bridge's seal) and the
/// name the bridge gives its execution.
fn asked(run: &Value) -> Result<(Value, String)> {
    let action = run["actionExecutionId"]
        .as_str()
        .context("actionExecutionId")?;
    let params = run["resolvedConfiguration"]["UserParameters"]
        .as_str()
        .context("UserParameters")?;
    Ok((
        batchless_core::migration::pipeline::workflow_input(params, action)?,
        batchless_core::migration::pipeline::execution_name(action),
    ))
}

/// The bridge's job for `run` (its first delivery) fails, naming execution `name` that already
/// holds the action's execution name.
async fn bridge_job_fails_naming(stack: &Stack, run: &Value, name: &str) -> Result<()> {
    let job = stack
        .invoke(
            "PipelineBridgeFunction",
            &bridge_job_event(run, "secret", "token", None),
        )
        .await?;
    assert_eq!(job["decision"], "failed", "{job}");
    let jobs = stack.replica_get("codepipeline/jobs").await?;
    let results = &jobs["jobs"][run["jobId"].as_str().context("jobId")?];
    assert_eq!(results[0]["kind"], "failure", "{results}");
    let message = results[0]["request"]["failureDetails"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains(&format!(
            "execution {name} already exists with a different input"
        )),
        "{results}"
    );
    Ok(())
}

/// The pipeline is at its Migrate stage; before the bridge starts its execution, an operator
/// takes the action's execution name with the action's very input (a race of milliseconds on
/// AWS, made certain here by starting first). That run is not the pipeline's: it carries no
/// seal of the bridge, so it fails `InvalidInput` at `ValidateInput` and nothing is recorded or
/// built; the bridge's own start then finds the name taken and fails the pipeline's job, naming
/// the execution (the trace, next to the refused execution's history).
#[tokio::test]
async fn the_pipelines_very_input_started_first_by_someone_else_is_not_the_pipelines_run(
) -> Result<()> {
    let stack = Stack::cleared().await?;
    let head = stack.app_head()?;
    let runs = stack.table("RunsTable")?;
    let builds_before = stack.build_count("MigrationProject").await?;
    let run = stack.bridge_run(&head).await?;
    let (input, name) = asked(&run)?;
    let sm = stack.state_machine("MigrationStateMachine")?;
    let arn = stack.start(&sm, &name, &input).await?;
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    Expect {
        path: Some(&["ValidateInput", "RejectInput"]),
        cause_has: &[
            "carries no seal of the bridge",
            "under the action's name",
            "`pipeline`",
        ],
        ..Expect::failed("InvalidInput")
    }
    .check(&stack, &arn, &end)
    .await?;
    assert!(
        stack.get_item(&runs, "runId", &arn).await?.is_none(),
        "no run recorded"
    );
    bridge_job_fails_naming(&stack, &run, &name).await?;
    assert_eq!(
        stack.build_count("MigrationProject").await?,
        builds_before,
        "nothing was built"
    );
    Ok(())
}

/// An operator starts migrations that name the deploy pipeline, to pass them off as the
/// pipeline's: with no pipeline execution to check, with one CodePipeline does not know, under the
/// action's own execution name with an override the pipeline did not ask for, the action's very
/// input a second time under another name, and another action's input replayed after that
/// action ended. Each fails `InvalidInput` at `ValidateInput` with the reason in the history;
/// nothing is recorded or built.
#[tokio::test]
async fn a_migration_naming_a_pipeline_that_did_not_start_it_is_invalid_input() -> Result<()> {
    let stack = Stack::cleared().await?;
    let head = stack.app_head()?;
    let runs = stack.table("RunsTable")?;
    let builds_before = stack.build_count("MigrationProject").await?;
    // The pipeline really is at its Migrate stage for head: what its action asks for, and the
    // name the bridge gives its execution.
    let run = stack.bridge_run(&head).await?;
    let (input, action_name) = asked(&run)?;
    let sm = stack.state_machine("MigrationStateMachine")?;
    let refused = |name: String, input: Value, why: &'static str| {
        let (stack, sm, runs) = (&stack, &sm, &runs);
        async move {
            let arn = stack.start(sm, &name, &input).await?;
            let end = stack.wait_end(&arn, TIMEOUT).await?;
            Expect {
                path: Some(&["ValidateInput", "RejectInput"]),
                cause_has: &[why, "`pipeline`"],
                ..Expect::failed("InvalidInput")
            }
            .check(stack, &arn, &end)
            .await?;
            assert!(
                stack.get_item(runs, "runId", &arn).await?.is_none(),
                "{name}: no run"
            );
            anyhow::Ok(())
        }
    };
    let mut no_execution = input.clone();
    no_execution["pipeline"]
        .as_object_mut()
        .context("pipeline")?
        .remove("executionId");
    refused(
        unique_name("console"),
        no_execution,
        "`pipeline.executionId` is missing",
    )
    .await?;
    let mut made_up = input.clone();
    made_up["pipeline"]["executionId"] = json!("made-up");
    refused(
        unique_name("codepipeline"),
        made_up,
        "knows no execution made-up",
    )
    .await?;
    // The pipeline's commit under its action's name (taken first, before the bridge), with an
    // override it did not ask for. (The name is then used: the bridge's own start would fail
    // the pipeline's job, which is seen, rather than run anything.)
    let mut overridden = input.clone();
    overridden["environmentOverrides"] = json!({"RAILS_LOG_LEVEL": "debug"});
    refused(action_name.clone(), overridden, "asked for another input").await?;
    // The pipeline's own job then fails, naming the execution that took the name: seen, and
    // nothing runs under the pipeline's name.
    bridge_job_fails_naming(&stack, &run, &action_name).await?;
    // The action's very input, a second time, under a name that is not the action's.
    refused(
        unique_name("codepipeline"),
        input.clone(),
        "no batchless invoke action of that pipeline execution starts execution name",
    )
    .await?;
    // Another run of the pipeline: its action ends (its job's final result, as the bridge
    // reports it), then its input is replayed under its name.
    let ended = stack.bridge_run(&head).await?;
    aws_sdk_codepipeline::Client::new(&stack.sdk_config_as("bridge").await?)
        .put_job_success_result()
        .job_id(ended["jobId"].as_str().context("jobId")?)
        .send()
        .await?;
    let (replayed, replayed_name) = asked(&ended)?;
    refused(replayed_name, replayed, "is Succeeded").await?;
    assert_eq!(
        stack.build_count("MigrationProject").await?,
        builds_before,
        "nothing was built"
    );
    Ok(())
}

/// A migration at a commit that is not on the deploy branch (`MigrationDeployBranch=main`, the
/// no-dry-run stack): whoever may submit a migration picks the commit, so one off `main` runs
/// code nobody merged. The build's first commands fetch `main` and check the commit against it
/// before any of the app's code runs: the off-branch commit's initializer never boots and its
/// migration never runs, the run ends `NotOnDeployBranch` and the refusal is recorded and posted.
/// The same initializer on `main` boots (the marker proves the check could see it run).
#[tokio::test]
async fn a_migration_at_a_commit_off_the_deploy_branch_runs_none_of_the_apps_code() -> Result<()> {
    let other = OtherStack::up(Setup::NoDryRun)?;
    let stack = other.stack().await?;
    let sfx = suffix();
    let dir = std::env::temp_dir().join(format!("batchless-deploy-branch-{sfx}"));
    std::fs::create_dir_all(&dir)?;
    let marker = |tag: &str| dir.join(format!("{tag}-booted"));
    // The one on main stays in this stack's app: it writes only while the test's directory
    // exists, so later boots of the app (other tests' builds) are unaffected.
    let initializer = |tag: &str| {
        let path = marker(tag).display().to_string();
        format!(
            "File.write({path:?}, \"booted\") if ENV[\"BATCHLESS_RUN_ID\"] && File.directory?(File.dirname({path:?}))\n"
        )
    };

    // On main: the check passes and the app boots.
    let on_main = stack.commit_to_app(
        "main",
        &[(
            &format!("config/initializers/deploy_branch_{sfx}_main.rb"),
            &initializer("main"),
        )],
        "an initializer on main",
    )?;
    let (arn, _, end) = migrate_within(&stack, &on_main, "onbranch", TIMEOUT).await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    assert!(
        marker("main").exists(),
        "the app booted for a commit on main"
    );
    let item = stack.run_record(&arn).await?;
    let log = String::from_utf8(
        stack
            .object(item["logUri"].as_str().context("logUri")?)
            .await?,
    )?;
    assert!(
        log.contains(&format!("commit {on_main} is on the deploy branch main")),
        "{log}"
    );

    // Off main: a migration and the same initializer on a branch nobody merged.
    let v = version();
    let column = format!("offbranch_{sfx}");
    let class = camel(&format!("add_{column}_to_users"));
    let off = stack.commit_to_app(
        &format!("unmerged-{sfx}"),
        &[
            (
                &format!("config/initializers/deploy_branch_{sfx}_off.rb"),
                &initializer("off"),
            ),
            (
                &format!("db/migrate/{v}_add_{column}_to_users.rb"),
                &format!(
                    "class {class} < ActiveRecord::Migration[6.1]\n  def change\n    add_column :users, :{column}, :string\n  end\nend\n"
                ),
            ),
        ],
        "an unmerged migration",
    )?;
    let (arn, name, end) = migrate_within(&stack, &off, "offbranch", TIMEOUT).await?;
    let short = &off[..12];
    Expect {
        entered: &["StartBuild", "ReadReport", "RecordRun"],
        not_entered: &["AskApproval", "StartApprovedBuild"],
        cause_has: &[&format!("commit {short} is not on the deploy branch main")],
        ..Expect::failed("NotOnDeployBranch")
    }
    .check(&stack, &arn, &end)
    .await?;
    assert!(
        !marker("off").exists(),
        "none of the off-branch app's code ran"
    );
    assert!(!stack.migration_versions()?.contains(&v), "{v} not applied");
    assert!(
        !stack.columns("users")?.contains(&column),
        "no users.{column}"
    );
    // The trace: the build's verdict, the run record and the post in the migrations channel.
    let source = migration_report(&stack, &name, "source.json").await?;
    assert_eq!(source["onDeployBranch"], json!(false), "{source}");
    assert_eq!(source["commit"], json!(off), "{source}");
    let item = stack.run_record(&arn).await?;
    assert_eq!(item["status"], "ERROR", "{item}");
    assert!(
        item["failureCause"]
            .as_str()
            .unwrap_or_default()
            .contains("NotOnDeployBranch"),
        "{item}"
    );
    let post = stack
        .slack_post_containing("C0MIGRATIONS", &format!("|{name}>"))
        .await?;
    assert!(
        post["text"]
            .as_str()
            .unwrap_or_default()
            .contains("could not complete: NotOnDeployBranch"),
        "{post}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
