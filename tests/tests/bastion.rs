//! Scenario tests of the bastion watch (issue 6) on the local replica: real executions of
//! `statemachines/bastion-session.asl.json` started by the real EventBridge rule (a CloudTrail
//! `ExecuteCommand` envelope put with `PutEvents`), signed Slack Events requests through the
//! fake Slack to the real function URL, and CloudWatch Logs subscription payloads
//! (`{"awslogs": {"data": base64(gzip(json))}}`, exactly what a subscription delivers) invoked
//! on `command-watch`, plus one test through the replica's real subscription delivery. Run one at a time
//! (`--test-threads=1`): fault injection is per stack.
//!
//! Deadline paths start the state machine directly with the starter's input shape and a short
//! deadline (the workflow reads its deadline from its input; `watch-login` sets it from
//! `BASTION_APPROVAL_DEADLINE_SECONDS`, 24 h by default).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use batchless_core::bastion::login::{from_event, sample_event, WatchInput};
use batchless_core::bastion::subscription::{encode, LogEvent, LogsData};
use batchless_scenarios::bastion::{
    message_event, session_id, Sessions as Bastion, ALERTS_CHANNEL,
};
use batchless_scenarios::*;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(120);
const BASTION_CHANNEL: &str = "C0BASTION";
const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
const CAROL: &str = "arn:aws:iam::123456789012:user/carol";
const CAROL_SLACK: &str = "U0CAROL01";
const BOB_SLACK: &str = "U0BOB0001";

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What the bastion tests do beyond the shared bastion fixture.
trait Watch {
    fn time_scale(&self) -> f64;
    fn login_event(&self, sid: &str, principal: &str, task: &str) -> Value;
    async fn put_event(&self, envelope: &Value) -> Result<()>;
    fn execution_arn(&self, sid: &str) -> String;
    async fn start_short(&self, sid: &str, who: &str, task: &str, secs: f64) -> Result<String>;
    async fn items(&self, pk: &str) -> Result<Vec<Value>>;
    async fn approval_wait_registered(&self, sid: &str) -> Result<bool>;
    async fn waiting_session(&self, sid: &str) -> Result<Value>;
    async fn logged_in(&self, sid: &str, who: &str, task: &str) -> Result<Value>;
    async fn states(&self, arn: &str) -> Result<Vec<String>>;
    async fn wait_for_state(&self, arn: &str, state: &str) -> Result<()>;
    async fn thread(&self, session: &Value) -> Result<Vec<Value>>;
    async fn thread_post_containing(&self, session: &Value, needle: &str) -> Result<Value>;
    async fn stop(&self, arn: &str);
}

impl Watch for Bastion {
    fn time_scale(&self) -> f64 {
        self.stack.info["time_scale"].as_f64().unwrap_or(1.0)
    }

    fn login_event(&self, sid: &str, principal: &str, task: &str) -> Value {
        sample_event(sid, principal, &self.cluster, task, &now_rfc3339())
    }

    /// EventBridge PutEvents (JSON protocol) of an event envelope, as CloudTrail's would arrive.
    async fn put_event(&self, envelope: &Value) -> Result<()> {
        let entry = json!({
            "Source": envelope["source"],
            "DetailType": envelope["detail-type"],
            "Detail": envelope["detail"].to_string(),
            "Resources": [],
            "EventBusName": "default",
        });
        let resp = self
            .stack
            .aws_json(
                "events",
                "AWSEvents.PutEvents",
                &json!({ "Entries": [entry] }),
            )
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() || body["FailedEntryCount"].as_i64().unwrap_or(0) != 0 {
            bail!("PutEvents failed: {status} {body}");
        }
        Ok(())
    }

    fn execution_arn(&self, sid: &str) -> String {
        format!(
            "{}:{}",
            self.sm.replace(":stateMachine:", ":execution:"),
            batchless_core::bastion::login::execution_name(sid)
        )
    }

    /// Start the watch directly with the starter's input and a deadline of about `secs`
    /// seconds of wall time (scaled by the replica's time scale).
    async fn start_short(&self, sid: &str, who: &str, task: &str, secs: f64) -> Result<String> {
        let login = from_event(&self.login_event(sid, who, task))?.context("login")?;
        let deadline = ((secs * self.time_scale()).round() as u64).max(2);
        let input = WatchInput {
            login,
            deadline_seconds: deadline,
            reminder_before_seconds: deadline / 2,
        };
        self.stack
            .start(
                &self.sm,
                &batchless_core::bastion::login::execution_name(sid),
                &serde_json::to_value(&input)?,
            )
            .await
    }

    async fn items(&self, pk: &str) -> Result<Vec<Value>> {
        let out = self
            .stack
            .db
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :p")
            .expression_attribute_values(
                ":p",
                aws_sdk_dynamodb::types::AttributeValue::S(pk.into()),
            )
            .consistent_read(true)
            .send()
            .await?;
        Ok(out
            .items()
            .iter()
            .map(batchless_core::platform::dynamo::item_to_value)
            .collect())
    }

    /// Whether the session's approval wait has stored its task token (in the waits table).
    async fn approval_wait_registered(&self, sid: &str) -> Result<bool> {
        let wait = self.stack.wait(&format!("session-approval#{sid}")).await?;
        Ok(wait.is_some_and(|i| i.get("taskToken").is_some()))
    }

    /// A login by `who` into `task` (its CloudTrail event put), and its session once waiting.
    async fn logged_in(&self, sid: &str, who: &str, task: &str) -> Result<Value> {
        self.put_event(&self.login_event(sid, who, task)).await?;
        self.waiting_session(sid).await
    }

    /// The session once its wait has stored a task token (the watch is waiting).
    async fn waiting_session(&self, sid: &str) -> Result<Value> {
        eventually(
            &format!("session {sid} waiting for approval"),
            TIMEOUT,
            || async {
                let Some(session) = self.session(sid).await? else {
                    return Ok(None);
                };
                Ok((session.get("threadTs").is_some()
                    && self.approval_wait_registered(sid).await?)
                    .then_some(session))
            },
        )
        .await
    }

    async fn states(&self, arn: &str) -> Result<Vec<String>> {
        self.stack.states_entered(arn).await
    }

    async fn wait_for_state(&self, arn: &str, state: &str) -> Result<()> {
        eventually(&format!("state {state}"), TIMEOUT, || async {
            Ok(self
                .states(arn)
                .await?
                .iter()
                .any(|s| s == state)
                .then_some(()))
        })
        .await
    }

    async fn thread(&self, session: &Value) -> Result<Vec<Value>> {
        let ts = session["threadTs"].as_str().unwrap_or_default();
        Ok(self
            .stack
            .slack_messages(BASTION_CHANNEL)
            .await?
            .into_iter()
            .filter(|m| m["thread_ts"].as_str() == Some(ts))
            .collect())
    }

    async fn thread_post_containing(&self, session: &Value, needle: &str) -> Result<Value> {
        post_containing("a thread post", needle, || self.thread(session)).await
    }

    async fn stop(&self, arn: &str) {
        let _ = self
            .stack
            .sfn
            .stop_execution()
            .execution_arn(arn)
            .send()
            .await;
    }
}

fn payload(group: &str, stream: &str, messages: &[&str]) -> Value {
    let base = chrono::Utc::now().timestamp_millis();
    let data = LogsData {
        message_type: "DATA_MESSAGE".into(),
        owner: "123456789012".into(),
        log_group: group.into(),
        log_stream: stream.into(),
        subscription_filters: vec!["batchless".into()],
        log_events: messages
            .iter()
            .enumerate()
            .map(|(i, m)| LogEvent {
                id: format!("{}{:04}", base, i),
                timestamp: base + i as i64,
                message: m.to_string(),
            })
            .collect(),
    };
    json!({ "awslogs": { "data": encode(&data) } })
}

fn hook_line(task: &str, command: &str) -> String {
    json!({
        "batchless": "console-command",
        "v": 1,
        "taskId": task,
        "command": command,
        "time": now_rfc3339(),
        "pid": 42,
    })
    .to_string()
}

fn console_group(b: &Bastion) -> String {
    format!("/batchless/{}/bastion/console", b.stack.environment())
}

fn exec_group(b: &Bastion) -> String {
    format!("/batchless/{}/bastion/exec", b.stack.environment())
}

// --------------------------------------------------------------------------------- login

/// (all, errored) invocations of watch-login so far.
async fn watch_login_invocations(b: &Bastion) -> Result<(usize, usize)> {
    let inv = b
        .stack
        .replica_get("invocations?function=watch-login")
        .await?;
    let all = inv["invocations"].as_array().cloned().unwrap_or_default();
    let errored = all.iter().filter(|i| i["errored"] == true).count();
    Ok((all.len(), errored))
}

#[tokio::test]
async fn login_event_posts_and_records_and_a_redelivery_opens_no_second_watch() -> Result<()> {
    let b = Bastion::setup().await?;
    let sid = session_id("login");
    let task = format!("task{}", &sid[sid.len() - 8..]);
    let event = b.login_event(&sid, ALICE, &task);
    let before = watch_login_invocations(&b).await?;
    b.put_event(&event).await?;
    b.put_event(&event).await?; // EventBridge delivers at least once.
    let session = b.waiting_session(&sid).await?;
    assert_eq!(session["personId"], "alice");
    assert_eq!(session["cluster"], b.cluster);
    assert_eq!(session["taskId"], task);
    assert_eq!(session["container"], "app");
    assert_eq!(session["command"], "bin/rails console");
    assert_eq!(session["sourceIp"], "203.0.113.7");
    assert_eq!(session["status"], "open");
    assert!(
        session["loginAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{session}"
    );
    assert!(session["deadlineAt"].as_str().is_some(), "{session}");

    // Both deliveries reached watch-login (each ended without error); one execution exists,
    // named after the session.
    eventually("both watch-login invocations", TIMEOUT, || async {
        let n = watch_login_invocations(&b).await?;
        Ok((n.0 >= before.0 + 2).then_some(()))
    })
    .await?;
    let after = watch_login_invocations(&b).await?;
    assert_eq!(after.1, before.1, "no watch-login invocation errored");
    let list = b
        .stack
        .sfn
        .list_executions()
        .state_machine_arn(&b.sm)
        .send()
        .await?;
    let same: Vec<_> = list
        .executions()
        .iter()
        .filter(|e| e.name() == batchless_core::bastion::login::execution_name(&sid))
        .collect();
    assert_eq!(same.len(), 1, "one watch per session");
    let posts: Vec<Value> = b
        .stack
        .slack_messages(BASTION_CHANNEL)
        .await?
        .into_iter()
        .filter(|m| {
            m["thread_ts"].is_null() && m["text"].as_str().is_some_and(|t| t.contains(&sid))
        })
        .collect();
    assert_eq!(posts.len(), 1, "one login post: {posts:?}");
    let text = posts[0]["text"].as_str().unwrap_or_default();
    for needle in [
        "Alice Example (alice)",
        &task,
        "bin/rails console",
        "203.0.113.7",
        "in this thread",
        "<#C0ALERTS>",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    let arn = b.execution_arn(&sid);
    assert!(b
        .states(&arn)
        .await?
        .contains(&"WaitForApproval".to_string()));
    b.stop(&arn).await;
    Ok(())
}

// ------------------------------------------------------------------------------ approval

#[tokio::test]
async fn an_executives_signed_approval_ends_the_watch_without_an_alert() -> Result<()> {
    let b = Bastion::setup().await?;
    let sid = session_id("approve");
    let session = b.logged_in(&sid, ALICE, "taskapprove").await?;
    let (status, body) = b
        .reply(&session, CAROL_SLACK, "確認しました。承認します", 1)
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"]["verdict"], "evidence", "{body}");
    let arn = b.execution_arn(&sid);
    let end = b.stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    let states = b.states(&arn).await?;
    assert!(
        states.contains(&"ConfirmApproval".to_string()) && states.contains(&"Approved".to_string()),
        "{states:?}"
    );
    assert!(
        !states.contains(&"AlertNoApproval".to_string()),
        "{states:?}"
    );

    let rec = b.session(&sid).await?.context("session")?;
    assert_eq!(rec["status"], "approved");
    let approval = &rec["approval"];
    assert_eq!(approval["by"], "carol");
    assert_eq!(approval["slackUser"], CAROL_SLACK);
    assert_eq!(approval["text"], "確認しました。承認します");
    assert!(
        approval["permalink"]
            .as_str()
            .is_some_and(|p| p.starts_with("https://")),
        "{approval}"
    );
    assert!(approval["ts"].as_str().is_some() && approval["recordedAt"].as_str().is_some());
    b.thread_post_containing(&session, "Approval recorded: Carol Example")
        .await?;
    assert!(b.alerts_about(&sid).await?.is_empty(), "no alert");
    Ok(())
}

#[tokio::test]
async fn replies_by_a_non_executive_by_the_person_logged_in_or_without_a_phrase_are_not_evidence(
) -> Result<()> {
    let b = Bastion::setup().await?;
    // carol (an executive) logs in: her own approval does not count, nor bob's (not an executive).
    let sid_a = session_id("selfappr");
    let a = b.logged_in(&sid_a, CAROL, "taskselfappr").await?;
    let (s1, r1) = b.reply(&a, BOB_SLACK, "approved", 1).await?;
    let (s2, r2) = b.reply(&a, CAROL_SLACK, "承認します", 2).await?;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(r1["outcome"]["verdict"], "not_executive", "{r1}");
    assert_eq!(r2["outcome"]["verdict"], "self_approval", "{r2}");
    // alice logs in: carol's replies without an approval phrase (or negated) do not count.
    let sid_b = session_id("nophrase");
    let bs = b.logged_in(&sid_b, ALICE, "tasknophrase").await?;
    let (_, r3) = b
        .reply(&bs, CAROL_SLACK, "what is this session for?", 1)
        .await?;
    let (_, r4) = b.reply(&bs, CAROL_SLACK, "承認しません", 2).await?;
    assert_eq!(r3["outcome"]["verdict"], "no_approval_phrase", "{r3}");
    assert_eq!(r4["outcome"]["verdict"], "no_approval_phrase", "{r4}");

    for sid in [&sid_a, &sid_b] {
        let rec = b.session(sid).await?.context("session")?;
        assert_eq!(rec["status"], "open", "{rec}");
        assert!(rec.get("approval").is_none(), "{rec}");
        let replies: Vec<Value> = b
            .items(&format!("session#{sid}"))
            .await?
            .into_iter()
            .filter(|i| i["kind"] == "reply")
            .collect();
        assert_eq!(
            replies.len(),
            2,
            "every judged reply is recorded: {replies:?}"
        );
        let arn = b.execution_arn(sid);
        assert_eq!(
            b.stack.execution_status(&arn).await?,
            "RUNNING",
            "still waiting for evidence"
        );
        b.stop(&arn).await;
    }
    Ok(())
}

#[tokio::test]
async fn no_reply_gets_a_reminder_then_an_alert_after_the_deadline() -> Result<()> {
    let b = Bastion::setup().await?;
    let sid = session_id("deadline");
    let arn = b.start_short(&sid, ALICE, "taskdeadline", 8.0).await?;
    let end = b.stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.status, "FAILED", "{end:?}");
    assert_eq!(end.error.as_deref(), Some("ApprovalMissing"));
    let states = b.states(&arn).await?;
    for s in [
        "OpenSession",
        "WaitForApproval",
        "Remind",
        "WaitUntilDeadline",
        "AlertNoApproval",
        "Alerted?",
        "PublishAlert",
        "NoApproval",
    ] {
        assert!(states.iter().any(|x| x == s), "{s} not entered: {states:?}");
    }
    // The alert also went to the bastion-alerts SNS topic.
    let history = b.stack.history(&arn).await?;
    let published = history.iter().any(|e| {
        e.task_succeeded_event_details().is_some_and(|d| {
            d.resource_type() == "sns" && d.output().is_some_and(|o| o.contains("MessageId"))
        })
    });
    assert!(published, "SNS publish succeeded");
    let rec = b.session(&sid).await?.context("session")?;
    assert_eq!(rec["status"], "alerted");
    assert!(rec["remindedAt"].as_str().is_some(), "{rec}");
    assert_eq!(rec["alert"]["channel"], ALERTS_CHANNEL);
    let reminder = b.thread_post_containing(&rec, "Reminder").await?;
    let alerts = b.alerts_about(&sid).await?;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0]["text"]
        .as_str()
        .unwrap_or_default()
        .contains("No executive approval"));
    assert!(
        reminder["received_at"].as_f64() < alerts[0]["received_at"].as_f64(),
        "the reminder comes before the alert"
    );
    b.thread_post_containing(&rec, "passed without approval evidence")
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_slack_outage_at_the_reminder_does_not_stop_the_alert() -> Result<()> {
    let b = Bastion::setup().await?;
    let sid = session_id("outage");
    let arn = b.start_short(&sid, ALICE, "taskoutage", 10.0).await?;
    b.waiting_session(&sid).await?;
    // Remind makes 4 attempts; all fail.
    b.stack
        .slack_fail("chat.postMessage", "service_unavailable", 4)
        .await?;
    let end = b.stack.wait_end(&arn, TIMEOUT).await?;
    b.stack.clear_faults().await?;
    assert_eq!(end.error.as_deref(), Some("ApprovalMissing"), "{end:?}");
    let states = b.states(&arn).await?;
    assert!(
        states.iter().any(|s| s == "WaitUntilDeadline"),
        "{states:?}"
    );
    assert_eq!(b.alerts_about(&sid).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_broken_wait_alerts_instead_of_hanging() -> Result<()> {
    let b = Bastion::setup().await?;
    let sid = session_id("broken");
    // The first wait cannot store its token (a non-retryable DynamoDB error).
    b.stack
        .fault(json!({"service": "dynamodb", "operation": "PutItem", "error": "ValidationException", "count": 1, "match": format!("session-approval#{sid}")}))
        .await?;
    let arn = b.start_short(&sid, ALICE, "taskbroken", 600.0).await?;
    let end = b.stack.wait_end(&arn, TIMEOUT).await?;
    b.stack.clear_faults().await?;
    assert_eq!(end.error.as_deref(), Some("ApprovalMissing"), "{end:?}");
    let states = b.states(&arn).await?;
    assert!(!states.iter().any(|s| s == "Remind"), "{states:?}");
    assert_eq!(b.alerts_about(&sid).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn an_approval_recorded_while_the_alert_step_retries_wins() -> Result<()> {
    let b = Bastion::setup().await?;
    let sid = session_id("late");
    let arn = b.start_short(&sid, ALICE, "tasklate", 4.0).await?;
    let session = b.waiting_session(&sid).await?;
    // Keep the alert step failing with a retryable error (throttling: its ASL Retry retries it)
    // until the approval is recorded, then let it through: it finds the approval and confirms.
    // slack-events finds the session by its thread (a query), so the faulted GetItem of the
    // session record is the alert step's.
    b.stack
        .fault(json!({"service": "dynamodb", "operation": "GetItem", "error": "ThrottlingException", "count": 1000, "match": format!("session#{sid}")}))
        .await?;
    b.wait_for_state(&arn, "AlertNoApproval").await?;
    let (status, body) = b.reply(&session, CAROL_SLACK, "approved", 1).await?;
    assert_eq!(status, 200, "{body}");
    b.stack.clear_faults().await?;
    let end = b.stack.wait_end(&arn, TIMEOUT).await?;
    b.stack.clear_faults().await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    let states = b.states(&arn).await?;
    assert!(states.iter().any(|s| s == "ConfirmApproval"), "{states:?}");
    assert!(
        b.alerts_about(&sid).await?.is_empty(),
        "no alert once approved"
    );
    Ok(())
}

#[tokio::test]
async fn the_alert_step_finds_an_approval_the_confirmation_could_not_read() -> Result<()> {
    let b = Bastion::setup().await?;
    let sid = session_id("noread");
    let session = b.logged_in(&sid, ALICE, "tasknoread").await?;
    // ConfirmApproval cannot read the session record (denied: not retried), the alert step's
    // read goes through. slack-events finds the session by its thread (a query), so the
    // faulted GetItem of the record is the workflow's.
    b.stack
        .fault(fault::aws_matching(
            "dynamodb",
            "GetItem",
            &format!("session#{sid}"),
            "AccessDeniedException",
            1,
        ))
        .await?;
    let (status, body) = b.reply(&session, CAROL_SLACK, "approved", 1).await?;
    assert_eq!(status, 200, "{body}");
    let arn = b.execution_arn(&sid);
    let end = b.stack.wait_end(&arn, TIMEOUT).await;
    b.stack.clear_faults().await?;
    let end = end?;
    // The approval stands and nothing is alerted: the alert step re-read the record.
    Expect {
        entered: &["ConfirmApproval", "AlertNoApproval", "Alerted?", "Approved"],
        not_entered: &["PublishAlert", "Confirmed?"],
        ..Expect::succeeded()
    }
    .check(&b.stack, &arn, &end)
    .await?;
    let output = end.output.clone().unwrap_or_default();
    assert_eq!(
        output["confirmError"]["Error"], "AwsServiceError",
        "{output}"
    );
    assert_eq!(output["alert"]["alerted"], false, "{output}");
    assert!(
        b.alerts_about(&sid).await?.is_empty(),
        "no alert once approved"
    );
    assert_eq!(
        b.session(&sid).await?.context("session")?["approval"]["by"],
        "carol"
    );
    Ok(())
}

#[tokio::test]
async fn a_slack_outage_at_the_confirmation_keeps_the_approval() -> Result<()> {
    let b = Bastion::setup().await?;
    let sid = session_id("confirm");
    let session = b.logged_in(&sid, ALICE, "taskconfirm").await?;
    // ConfirmApproval makes 4 attempts; all fail. The approval stands.
    b.stack
        .slack_fail("chat.postMessage", "service_unavailable", 4)
        .await?;
    let (status, body) = b
        .reply(&session, CAROL_SLACK, "Approved, go ahead", 1)
        .await?;
    assert_eq!(
        (status, &body["outcome"]["verdict"]),
        (200, &json!("evidence")),
        "{body}"
    );
    let arn = b.execution_arn(&sid);
    let end = b.stack.wait_end(&arn, TIMEOUT).await?;
    b.stack.clear_faults().await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    let output = end.output.unwrap_or_default();
    assert!(output.get("confirmError").is_some(), "{output}");
    assert_eq!(
        b.session(&sid).await?.context("session")?["approval"]["by"],
        "carol"
    );
    Ok(())
}

#[tokio::test]
async fn an_invalid_watch_input_fails_fast_and_records_nothing() -> Result<()> {
    let b = Bastion::setup().await?;
    let sid = session_id("invalid");
    let login = from_event(&b.login_event(&sid, ALICE, "taskinvalid"))?.context("login")?;
    let mut input = serde_json::to_value(WatchInput {
        login,
        deadline_seconds: 600,
        reminder_before_seconds: 300,
    })?;
    input["login"]["shell"] = json!("/bin/bash"); // unknown field
    let arn = b
        .stack
        .start(&b.sm, &unique_name("invalid"), &input)
        .await?;
    let end = b.stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.error.as_deref(), Some("InvalidInput"), "{end:?}");
    assert!(
        end.cause.unwrap_or_default().contains("shell"),
        "the cause names the field"
    );
    assert_eq!(b.states(&arn).await?, vec!["OpenSession", "RejectInput"]);
    assert!(b.session(&sid).await?.is_none(), "nothing recorded");
    let posts = b.stack.slack_messages(BASTION_CHANNEL).await?;
    assert!(!posts
        .iter()
        .any(|m| m["text"].as_str().is_some_and(|t| t.contains(&sid))));
    Ok(())
}

// ------------------------------------------------------------------------- Slack security

#[tokio::test]
async fn forged_or_stale_slack_requests_get_401_and_nothing_is_recorded() -> Result<()> {
    let b = Bastion::setup().await?;
    let sid = session_id("forged");
    let session = b.logged_in(&sid, ALICE, "taskforged").await?;
    let event_id = format!("EvForged{}", sid);
    let body = message_event(&event_id, &session, CAROL_SLACK, "approved", "1.000001");
    let (forged, _) = b
        .send(&body, json!({"signing_secret": "not-the-secret"}))
        .await?;
    assert_eq!(forged, 401);
    let stale_ts = (chrono::Utc::now().timestamp() - 600).to_string();
    let (stale, _) = b.send(&body, json!({"timestamp": stale_ts})).await?;
    assert_eq!(stale, 401);
    let (unsigned, _) = b
        .send(&body, json!({"headers": {"X-Slack-Signature": "v0=00"}}))
        .await?;
    assert_eq!(unsigned, 401);
    // Nothing recorded: no reply judged, no dedupe entry, still open and waiting.
    let items = b.items(&format!("session#{sid}")).await?;
    assert_eq!(items.len(), 1, "only the session itself: {items:?}");
    assert!(b
        .items(&format!("slack-event#EvForged{sid}"))
        .await?
        .is_empty());
    assert_eq!(b.session(&sid).await?.context("session")?["status"], "open");

    let (status, answer) = b
        .send(&json!({"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}), json!({}))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(
        answer["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    b.stop(&b.execution_arn(&sid)).await;
    Ok(())
}

#[tokio::test]
async fn a_retried_slack_event_is_acknowledged_once() -> Result<()> {
    let b = Bastion::setup().await?;
    let sid = session_id("retry");
    let session = b.logged_in(&sid, CAROL, "taskretry").await?;
    let event_id = format!("EvRetry{}", &sid[sid.len() - 10..]);
    let body = message_event(&event_id, &session, BOB_SLACK, "approved", "2.000001");
    let (s1, first) = b.send(&body, json!({})).await?;
    let (s2, second) = b.send(&body, json!({"retry_num": 1})).await?;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(first["outcome"]["verdict"], "not_executive", "{first}");
    assert_eq!(second["duplicate"], true, "{second}");
    b.stop(&b.execution_arn(&sid)).await;
    Ok(())
}

// ------------------------------------------------------------------------ command watch

#[tokio::test]
async fn hook_lines_and_transcripts_with_dangerous_commands_post_in_the_right_thread() -> Result<()>
{
    let b = Bastion::setup().await?;
    let sid = session_id("cmds");
    let task = format!("taskcmds{}", &sid[sid.len() - 6..]);
    let session = b.logged_in(&sid, ALICE, &task).await?;
    // An unrelated session elsewhere must not get these posts.
    let other = session_id("other");
    let other_session = b.logged_in(&other, ALICE, "taskother").await?;

    let hook = payload(
        &console_group(&b),
        &format!("console/app/{task}"),
        &[
            &hook_line(&task, "User.find(1)"),
            &hook_line(&task, "# destroy_all later"),
            "Started GET \"/health\" for 10.0.0.1",
            &hook_line(&task, "User.where(active: false).destroy_all"),
            &hook_line(
                &task,
                "Redis.new(url: \"redis://:hunter2@redis.internal:6379/0\").flushall",
            ),
        ],
    );
    let out = b.stack.invoke("CommandWatchFunction", &hook).await?;
    assert_eq!(out["hits"], 2, "{out}");
    assert_eq!(out["posted"], 2, "{out}");
    assert_eq!(out["errors"], json!([]), "{out}");

    let transcript = payload(
        &exec_group(&b),
        &sid,
        &[
            "\x1b[1m\x1b[32mirb(main):001:0>\x1b[0m User.count\r\n=> 12\r\n",
            "irb(main):002:0> ActiveRecord::Base.connection.execute(\"DELETE FROM users WHERE id > 10\")\r\n",
            "root@ip-10-0-1-23:/app# rm -rf /app/storage\r\n",
            "irb(main):003:0> User.find(1)\r\n",
        ],
    );
    // Two dangerous commands, and two console commands the hook never reported (`User.count`
    // and the raw SQL; `User.find(1)` it did report).
    let out = b.stack.invoke("CommandWatchFunction", &transcript).await?;
    assert_eq!(out["hits"], 4, "{out}");
    assert_eq!(out["unhooked"], 2, "{out}");
    assert_eq!(out["posted"], 4, "{out}");
    let unhooked = b
        .thread_post_containing(&session, "Typed without the hook")
        .await?;
    assert!(unhooked.to_string().contains("User.count"), "{unhooked}");

    let destroy = b.thread_post_containing(&session, "destroy_all").await?;
    let text = destroy["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("Alice Example (alice)")
            && text.contains("(high)")
            && text.contains("[hook]"),
        "{text}"
    );
    let flush = b.thread_post_containing(&session, "redis_flush").await?;
    let text = flush["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("(critical)") && !text.contains("hunter2"),
        "redacted: {text}"
    );
    b.thread_post_containing(&session, "raw_sql_write").await?;
    let rm = b.thread_post_containing(&session, "rm_rf").await?;
    assert!(rm["text"]
        .as_str()
        .unwrap_or_default()
        .contains("[transcript]"));
    let thread = b.thread(&session).await?;
    assert!(
        !thread.iter().any(|m| m["text"]
            .as_str()
            .is_some_and(|t| t.contains("User.find(1)") || t.contains("# destroy_all later"))),
        "benign commands are not posted: {thread:?}"
    );
    assert!(
        b.thread(&other_session).await?.is_empty(),
        "nothing in another session's thread"
    );

    let rec = b.session(&sid).await?.context("session")?;
    assert_eq!(rec["flagged"], 6, "{rec}");
    let hits: Vec<Value> = b
        .items(&format!("session#{sid}"))
        .await?
        .into_iter()
        .filter(|i| i["kind"] == "hit")
        .collect();
    assert_eq!(hits.len(), 6);
    assert!(
        hits.iter().all(|h| h["postedTs"].as_str().is_some()),
        "{hits:?}"
    );

    // A redelivered batch posts nothing twice.
    let again = b.stack.invoke("CommandWatchFunction", &hook).await?;
    assert_eq!(
        (again["posted"].as_i64(), again["duplicates"].as_i64()),
        (Some(0), Some(2)),
        "{again}"
    );
    for s in [&sid, &other] {
        b.stop(&b.execution_arn(s)).await;
    }
    Ok(())
}

#[tokio::test]
async fn malformed_truncated_or_oversized_payloads_are_clear_errors_and_the_rest_is_processed(
) -> Result<()> {
    use base64::Engine;
    let b = Bastion::setup().await?;
    let sid = session_id("badpay");
    let task = format!("taskbad{}", &sid[sid.len() - 6..]);
    let session = b.logged_in(&sid, ALICE, &task).await?;

    let b64 = base64::engine::general_purpose::STANDARD;
    let good = payload(
        &console_group(&b),
        "console/app/x",
        &[&hook_line(&task, "Order.delete_all")],
    );
    let full = b64.decode(good["awslogs"]["data"].as_str().unwrap_or_default())?;
    let truncated = json!({"awslogs": {"data": b64.encode(&full[..full.len() / 2])}});
    let malformed = json!({"awslogs": {"data": "this is %% not base64"}});
    let oversized = {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&vec![b' '; 9 * 1024 * 1024])?;
        json!({"awslogs": {"data": b64.encode(gz.finish()?)}})
    };
    for (bad, needle) in [
        (&malformed, "not valid base64"),
        (&truncated, "truncated"),
        (&oversized, "larger than"),
    ] {
        let err = b
            .stack
            .invoke("CommandWatchFunction", bad)
            .await
            .expect_err("an error");
        let msg = err.to_string();
        assert!(
            msg.contains("InvalidInput") && msg.contains(needle),
            "{msg}"
        );
    }
    // A batch: the good payloads are processed around the bad ones; bad events inside a good
    // payload (a malformed hook line, an oversized event) are reported on their own.
    let huge = "x".repeat(300 * 1024);
    let mixed = payload(
        &console_group(&b),
        "console/app/y",
        &[
            "{\"batchless\":\"console-command\",\"v\":1,\"command\":\"oops\"",
            &huge,
            &hook_line(&task, "Sidekiq::RetrySet.new.clear"),
        ],
    );
    let batch = json!([good, malformed, truncated, mixed]);
    let out = b.stack.invoke("CommandWatchFunction", &batch).await?;
    assert_eq!(out["payloads"], 4, "{out}");
    assert_eq!(out["posted"], 2, "{out}");
    let errors = out["errors"].as_array().cloned().unwrap_or_default();
    assert_eq!(errors.len(), 4, "{out}");
    let all = json!(errors).to_string();
    for needle in [
        "not valid base64",
        "truncated",
        "malformed console hook line",
        "bytes",
    ] {
        assert!(all.contains(needle), "{needle} in {all}");
    }
    b.thread_post_containing(&session, "delete_all").await?;
    b.thread_post_containing(&session, "sidekiq_clear").await?;
    b.stop(&b.execution_arn(&sid)).await;
    Ok(())
}

/// A CloudWatch Logs JSON-protocol call on the replica.
async fn logs_call(b: &Bastion, op: &str, body: Value) -> Result<Value> {
    let resp = b
        .stack
        .aws_json("logs", &format!("Logs_20140328.{op}"), &body)
        .await?;
    let status = resp.status();
    let out: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{op} failed: {status} {out}");
    }
    Ok(out)
}

#[tokio::test]
async fn console_log_lines_reach_command_watch_through_the_subscription() -> Result<()> {
    let b = Bastion::setup().await?;
    let sid = session_id("sub");
    let task = format!("tasksub{}", &sid[sid.len() - 6..]);
    let session = b.logged_in(&sid, ALICE, &task).await?;
    let group = console_group(&b);
    let stream = format!("console/app/{task}");
    logs_call(
        &b,
        "CreateLogStream",
        json!({"logGroupName": group, "logStreamName": stream}),
    )
    .await?;
    let now = chrono::Utc::now().timestamp_millis();
    logs_call(
        &b,
        "PutLogEvents",
        json!({"logGroupName": group, "logStreamName": stream, "logEvents": [
            {"timestamp": now, "message": "Started GET \"/health\" for 10.0.0.1"},
            {"timestamp": now + 1, "message": hook_line(&task, "Payment.update_all(state: \"refunded\")")},
        ]}),
    )
    .await?;
    let post = b.thread_post_containing(&session, "update_all").await?;
    assert!(
        post["text"].as_str().unwrap_or_default().contains("[hook]"),
        "{post}"
    );
    b.stop(&b.execution_arn(&sid)).await;
    Ok(())
}

// --------------------------------------------------------------------------- the Ruby hook

/// A fake ECS task metadata endpoint (v4) on loopback (a plain thread: one request at a time).
fn fake_metadata(task_arn: &str) -> Result<String> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let task_arn = task_arn.to_string();
    std::thread::spawn(move || {
        for mut sock in listener.incoming().flatten() {
            let mut buf = vec![0u8; 4096];
            let n = sock.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
            let body = if path.ends_with("/task") {
                json!({"Cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/batchless-staging-bastion", "TaskARN": task_arn, "Family": "bastion"})
            } else {
                json!({"Name": "app", "DockerId": "abc"})
            }
            .to_string();
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes());
        }
    });
    Ok(format!("http://{addr}/v4/0123456789abcdef-1234"))
}

/// `messages` as awslogs ships them from the console log group of `task`, to command-watch.
async fn console_lines_to_command_watch(
    b: &Bastion,
    task: &str,
    messages: &[String],
) -> Result<Value> {
    let refs: Vec<&str> = messages.iter().map(String::as_str).collect();
    b.stack
        .invoke(
            "CommandWatchFunction",
            &payload(&console_group(b), &format!("console/app/{task}"), &refs),
        )
        .await
}

/// Debian's irb with the console hook loaded (`-r`), `script` typed into it, the hook writing to
/// this process's stdout; the finished process.
async fn irb_with_hook(
    metadata: &str,
    script: &str,
    env: &[(&str, &str)],
) -> Result<std::process::Output> {
    let hook = repo_root().join("infra/bastion/console_hook.rb");
    let mut child = tokio::process::Command::new("irb")
        .args(["--noprompt", "--noverbose", "-r"])
        .arg(&hook)
        .env("ECS_CONTAINER_METADATA_URI_V4", metadata)
        .env("BATCHLESS_CONSOLE_LOG", "-")
        .env("HOME", std::env::temp_dir())
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("irb")?;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().context("stdin")?;
        stdin.write_all(script.as_bytes()).await?;
    }
    Ok(tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await??)
}

/// Issue 16: the hook reports on itself. Heartbeats (every second here) are recorded on the
/// session; silencing the hook (`emit` redefined) and moving its destination
/// (`BATCHLESS_CONSOLE_LOG`) are each reported by the hook, and posted in the session's thread
/// as "console hook tampered with", although the command typed after it is not reported.
#[tokio::test]
async fn the_ruby_hook_reports_its_heartbeat_and_being_tampered_with() -> Result<()> {
    let b = Bastion::setup().await?;
    let sid = session_id("tamper");
    let task = format!("tampertask{}", &sid[sid.len() - 6..]);
    let session = b.logged_in(&sid, ALICE, &task).await?;
    let metadata = fake_metadata(&format!(
        "arn:aws:ecs:us-east-1:123456789012:task/batchless-staging-bastion/{task}"
    ))?;
    let script = "x = 1\nsleep 1.5\nBatchless::ConsoleHook.define_singleton_method(:emit) { |*a| nil }\nUser.delete_all rescue nil\nENV['BATCHLESS_CONSOLE_LOG'] = '/dev/null'\nsleep 2.5\n";
    let out = irb_with_hook(
        &metadata,
        script,
        &[("BATCHLESS_HOOK_HEARTBEAT_SECONDS", "1")],
    )
    .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with("{\"batchless\":\"console-"))
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()?;
    let of =
        |kind: &str| -> Vec<&Value> { lines.iter().filter(|l| l["batchless"] == kind).collect() };
    let beats: Vec<u64> = of("console-heartbeat")
        .iter()
        .filter_map(|l| l["seq"].as_u64())
        .collect();
    assert!(
        beats.len() >= 3 && beats.windows(2).all(|w| w[1] == w[0] + 1),
        "{stdout}"
    );
    let tampered: Vec<&str> = of("console-tamper")
        .iter()
        .filter_map(|l| l["what"].as_str())
        .collect();
    assert!(
        tampered.contains(&"Batchless::ConsoleHook.emit was redefined"),
        "{stdout}"
    );
    assert!(
        tampered
            .iter()
            .any(|w| w.starts_with("BATCHLESS_CONSOLE_LOG changed from \"-\" to \"/dev/null\"")),
        "{stdout}"
    );
    // Silenced: the command typed after the redefinition is not reported (only its trace is).
    assert!(
        !stdout.contains("\"command\":\"User.delete_all"),
        "{stdout}"
    );
    for l in &lines {
        assert_eq!(l["taskId"], task, "{l}");
    }

    let messages: Vec<String> = lines.iter().map(Value::to_string).collect();
    let out = console_lines_to_command_watch(&b, &task, &messages).await?;
    assert_eq!(
        out["heartbeats"].as_u64(),
        Some(beats.len() as u64),
        "{out}"
    );
    assert_eq!(out["hits"].as_u64(), Some(tampered.len() as u64), "{out}");
    assert_eq!(out["posted"], out["hits"], "{out}");
    let post = b
        .thread_post_containing(&session, "Batchless::ConsoleHook.emit was redefined")
        .await?;
    assert!(
        post.to_string().contains("Console hook tampered with"),
        "{post}"
    );
    b.thread_post_containing(&session, "BATCHLESS_CONSOLE_LOG changed")
        .await?;
    let rec = b.session(&sid).await?.context("the session record")?;
    assert!(
        rec["hookLastSeenAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{rec}"
    );
    assert!(rec["flagged"].as_i64().unwrap_or(0) >= 2, "{rec}");
    b.stop(&b.execution_arn(&sid)).await;
    Ok(())
}

#[tokio::test]
async fn the_ruby_hook_in_irb_emits_the_json_lines_command_watch_reads() -> Result<()> {
    let b = Bastion::setup().await?;
    if std::process::Command::new("irb")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!("irb is not installed: `make test` installs Debian's ruby (apt-get install -y ruby)");
    }
    let sid = session_id("irb");
    let task = format!("irbtask{}", &sid[sid.len() - 6..]);
    let session = b.logged_in(&sid, ALICE, &task).await?;

    let metadata = fake_metadata(&format!(
        "arn:aws:ecs:us-east-1:123456789012:task/batchless-staging-bastion/{task}"
    ))?;
    let script = "User = Struct.new(:id) unless defined?(User)\nUser.new(1)\n# destroy_all later\n[1, 2].sum\nputs :done\n";
    let started = Instant::now();
    let out = irb_with_hook(&metadata, script, &[]).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with("{\"batchless\":\"console-command\""))
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()?;
    let commands: Vec<&str> = lines.iter().filter_map(|l| l["command"].as_str()).collect();
    assert_eq!(
        commands,
        vec![
            "User = Struct.new(:id) unless defined?(User)",
            "User.new(1)",
            "# destroy_all later",
            "[1, 2].sum",
            "puts :done"
        ],
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for l in &lines {
        assert_eq!(l["taskId"], task, "{l}");
        assert_eq!(l["cluster"], "batchless-staging-bastion");
        assert_eq!(l["container"], "app");
        assert_eq!(l["v"], 1);
        assert!(l["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
    }
    assert!(started.elapsed() < Duration::from_secs(60));

    // The same lines, as awslogs ships them, plus a dangerous one typed in that console.
    let mut messages: Vec<String> = lines.iter().map(Value::to_string).collect();
    let mut dangerous = lines[1].clone();
    dangerous["command"] = json!("User.delete_all");
    messages.push(dangerous.to_string());
    let out = console_lines_to_command_watch(&b, &task, &messages).await?;
    assert_eq!(
        (out["hits"].as_i64(), out["posted"].as_i64()),
        (Some(1), Some(1)),
        "{out}"
    );
    b.thread_post_containing(&session, "User.delete_all")
        .await?;
    b.stop(&b.execution_arn(&sid)).await;
    Ok(())
}

/// "Console hook not reporting" (`hook-watch`): a session with no hook line after its login,
/// and one whose heartbeats stopped, are alerted in their threads, once per silence; a session
/// whose console ended (the real hook's `console-end` at irb's exit) is not.
#[tokio::test]
async fn a_session_the_console_hook_is_silent_on_is_alerted_once_and_an_ended_one_is_not(
) -> Result<()> {
    let b = Bastion::setup().await?;
    let tag = |p: &str| session_id(p);
    // A: never a hook line. B: the real hook in irb, which ends. C: one heartbeat, then silence.
    let (a, bb, c) = (tag("silent"), tag("ended"), tag("gap"));
    let task_of = |sid: &str, p: &str| format!("{p}task{}", &sid[sid.len() - 6..]);
    let (task_a, task_b, task_c) = (task_of(&a, "sil"), task_of(&bb, "end"), task_of(&c, "gap"));
    let session_a = b.logged_in(&a, ALICE, &task_a).await?;
    let _session_b = b.logged_in(&bb, ALICE, &task_b).await?;
    let session_c = b.logged_in(&c, ALICE, &task_c).await?;

    let metadata = fake_metadata(&format!(
        "arn:aws:ecs:us-east-1:123456789012:task/batchless-staging-bastion/{task_b}"
    ))?;
    let out = irb_with_hook(&metadata, "x = 1\n", &[]).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with("{\"batchless\":\"console-"))
        .map(String::from)
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("\"console-end\"")),
        "the hook says the console ended at exit: {stdout}"
    );
    let watched = console_lines_to_command_watch(&b, &task_b, &lines).await?;
    assert!(watched["heartbeats"].as_u64() >= Some(1), "{watched}");
    assert_eq!(watched["ends"].as_u64(), Some(1), "{watched}");
    let heartbeat = json!({"batchless": "console-heartbeat", "v": 1, "taskId": task_c,
        "time": now_rfc3339(), "seq": 1, "intervalSeconds": 60})
    .to_string();
    console_lines_to_command_watch(&b, &task_c, &[heartbeat]).await?;
    let rec_b = b.session(&bb).await?.context("session B")?;
    assert!(rec_b["hookEndedAt"].is_string(), "{rec_b}");

    // Past a grace and a gap of one second (the input may only shorten them).
    let watch = |grace: u64| {
        let stack = &b.stack;
        async move {
            stack
                .invoke(
                    "HookWatchFunction",
                    &json!({"graceSeconds": grace, "gapSeconds": 1}),
                )
                .await
        }
    };
    // Each run alerts what is silent by then; together they must alert A and C.
    let seen = std::cell::RefCell::new(Vec::<String>::new());
    let alerted = eventually("A and C alerted", TIMEOUT, || async {
        let out = watch(1).await?;
        let mut got = seen.borrow_mut();
        got.extend(
            out["alerted"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(String::from)),
        );
        Ok((got.contains(&a) && got.contains(&c)).then(|| got.clone()))
    })
    .await?;
    assert!(
        !alerted.contains(&bb),
        "an ended console is not silent: {alerted:?}"
    );
    let post = b
        .thread_post_containing(&session_a, "Console hook not reporting")
        .await?;
    assert!(
        post.to_string()
            .contains("no console hook line since the login"),
        "{post}"
    );
    let post = b
        .thread_post_containing(&session_c, "Console hook not reporting")
        .await?;
    assert!(post.to_string().contains("no heartbeat since"), "{post}");
    // Once per silence: the next run alerts neither again.
    let again = watch(1).await?;
    for sid in [&a, &bb, &c] {
        assert!(
            !again["alerted"]
                .as_array()
                .is_some_and(|v| v.iter().any(|s| s == sid.as_str())),
            "{sid} alerted twice: {again}"
        );
    }
    let rec_a = b.session(&a).await?.context("session A")?;
    assert_eq!(rec_a["hookAlertFor"], "never", "{rec_a}");
    for sid in [&a, &bb, &c] {
        b.stop(&b.execution_arn(sid)).await;
    }
    Ok(())
}
