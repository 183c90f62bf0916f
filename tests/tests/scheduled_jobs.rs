//! Scenario tests of the scheduled-job workflow on the local replica: real Scheduler deliveries
//! (`/_replica/scheduler/fire` renders the template's target input), real executions of
//! `statemachines/scheduled-job.asl.json`, the real functions, real (local) ECS tasks running
//! the sample app's `bin/rake` / `bin/rails runner`. Each test asserts the path taken and the
//! effects (occurrences, runs and locks tables, ECS tasks, S3 logs, Slack posts). Run one at a
//! time (`--test-threads=1`): fault injection is per stack. Every test uses its own occurrence
//! (a distinct minute), so reruns on the same stack do not collide after a minute.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use batchless_scenarios::*;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(120);
const JOBS_CHANNEL: &str = "C0JOBS";
const ALERTS_CHANNEL: &str = "C0ALERTS";

async fn setup() -> Result<(Stack, String)> {
    Stack::cleared_with("ScheduledJobStateMachine").await
}

fn now_minute(minutes_ago: i64) -> String {
    let t = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    batchless_core::platform::time::rfc3339(batchless_core::platform::time::truncate_to_minute(t))
}

/// A random minute-aligned occurrence `HH:MM` on a random past day (never used before).
fn past_day_at(hh: u32, mm: u32) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let days = 400 + (nanos / 1000 % 3000) as i64;
    let day = (chrono::Utc::now() - chrono::Duration::days(days)).date_naive();
    format!("{}T{hh:02}:{mm:02}:00Z", day.format("%Y-%m-%d"))
}

async fn manual(stack: &Stack, job: &str, manual: Value) -> Result<String> {
    let name = unique_name(&format!("manual-{job}"));
    stack
        .submit(
            "scheduled-job",
            &name,
            &json!({"job": job, "manual": manual}),
        )
        .await
}

async fn task(stack: &Stack, arn: &str) -> Result<Value> {
    stack
        .job_tasks()
        .await?
        .into_iter()
        .find(|t| t["taskArn"] == arn)
        .with_context(|| format!("no task {arn}"))
}

async fn occurrence(stack: &Stack, key: &str) -> Result<Option<Value>> {
    let table = stack.table("OccurrencesTable")?;
    stack.get_item(&table, "occurrenceKey", key).await
}

/// A recent minute (within every test job's catch-up window) at which `job` has no claimed
/// occurrence yet. Tests run one at a time, so two tests never pick the same occurrence, whatever
/// minute the wall clock shows.
async fn unclaimed_minute(stack: &Stack, job: &str) -> Result<String> {
    for minutes_ago in 1..=9 {
        let at = now_minute(minutes_ago);
        if occurrence(stack, &format!("{job}#{at}")).await?.is_none() {
            return Ok(at);
        }
    }
    anyhow::bail!("every minute of the last 9 has an occurrence of {job}")
}

async fn run_record(stack: &Stack, arn: &str) -> Result<Value> {
    let runs = stack.table("RunsTable")?;
    stack
        .get_item(&runs, "runId", arn)
        .await?
        .with_context(|| format!("no run record for {arn}"))
}

/// Wait until the run's task is RUNNING (its lease or record names it); the task ARN.
async fn running_task(stack: &Stack, execution_arn: &str) -> Result<String> {
    let arn = eventually("the run's task", Duration::from_secs(60), || async {
        Ok(run_record(stack, execution_arn)
            .await
            .ok()
            .and_then(|r| r["taskArn"].as_str().map(str::to_string)))
    })
    .await?;
    eventually("the task RUNNING", Duration::from_secs(60), || async {
        let t = task(stack, &arn).await?;
        Ok((t["lastStatus"] == "RUNNING").then_some(()))
    })
    .await?;
    Ok(arn)
}

fn has(states: &[String], name: &str) -> bool {
    states.iter().any(|s| s == name)
}

/// 50 concurrent Scheduler deliveries of one occurrence → one ECS task, 49 recorded duplicates.
///
/// Closing note: the exclusivity is the conditional write in `occurrence::claim`. Replace it with
/// read-then-write (`GetItem`, then `PutItem` if absent) and every overlapping delivery reads
/// "absent" before any writes: `bench/claim.rs` runs exactly that race next to the real claim and
/// gets 10 winners out of 10 and 100 out of 100 claimers (BENCHMARKS.md), so this test would see
/// up to 50 tasks and fail its `ran.len() == 1` assertion.
#[tokio::test]
async fn fifty_concurrent_deliveries_run_one_task_and_record_49_duplicates() -> Result<()> {
    let (stack, _) = setup().await?;
    let at = unclaimed_minute(&stack, "sync-exchange-rates").await?;
    let key = format!("sync-exchange-rates#{at}");
    let before = stack.job_tasks().await?.len();
    let arns = stack.fire_schedule("sync-exchange-rates", &at, 50).await?;
    assert_eq!(arns.len(), 50);
    let mut ran = Vec::new();
    let mut duplicates = 0;
    for arn in &arns {
        let end = stack.wait_end(arn, Duration::from_secs(240)).await?;
        assert_eq!(end.status, "SUCCEEDED", "{arn}: {end:?}");
        let out = end.output.clone().unwrap_or_default();
        if out["outcome"] == "duplicate" {
            duplicates += 1;
            assert_eq!(
                stack.states_entered(arn).await?,
                ["ClaimOccurrence", "Duplicate?", "Duplicate"]
            );
        } else {
            assert_eq!(out["status"], "SUCCEEDED", "{out}");
            ran.push((arn.clone(), out));
        }
    }
    assert_eq!(ran.len(), 1, "exactly one execution ran the occurrence");
    assert_eq!(duplicates, 49);
    let new_tasks: Vec<Value> = stack.job_tasks().await?.into_iter().skip(before).collect();
    assert!(new_tasks
        .iter()
        .any(|t| t["taskArn"] == ran[0].1["taskArn"]));
    assert_eq!(
        new_tasks
            .iter()
            .filter(|t| t["overrides"].to_string().contains("rates:sync"))
            .count(),
        1,
        "exactly one ECS task for the occurrence"
    );
    let occ = occurrence(&stack, &key).await?.context("occurrence item")?;
    assert_eq!(occ["claimedBy"], ran[0].0.as_str());
    assert_eq!(occ["runStatus"], "SUCCEEDED");
    let dups = occ["duplicateClaimers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        dups.len(),
        49,
        "every duplicate is recorded on the occurrence"
    );
    assert!(!dups.iter().any(|d| d == ran[0].0.as_str()));
    // The winner's record: job, occurrence, task, exit code, duration, log.
    let rec = run_record(&stack, &ran[0].0).await?;
    assert_eq!(rec["workflow"], "scheduled-job");
    assert_eq!(rec["job"], "sync-exchange-rates");
    assert_eq!(rec["occurrence"], at.as_str());
    assert_eq!(rec["exitCode"], 0);
    assert!(rec["durationSeconds"].as_i64().is_some(), "{rec}");
    let log = String::from_utf8(stack.object(rec["logUri"].as_str().unwrap()).await?)?;
    assert!(log.contains("Running task: rates:sync"), "{log}");
    assert_eq!(
        sha256_hex(log.as_bytes()),
        rec["logSha256"].as_str().unwrap()
    );
    Ok(())
}

#[tokio::test]
async fn a_legacy_claim_and_a_scheduler_delivery_of_one_occurrence_run_it_once() -> Result<()> {
    let (stack, _) = setup().await?;
    // The legacy crontab claims first: it runs; the scheduler's delivery is a duplicate.
    let t1 = past_day_at(10, 30);
    let (code, out, err) = stack.cli(&["jobs", "claim", "purge-expired-sessions", "--at", &t1])?;
    assert_eq!(code, 0, "{out}{err}");
    let before = stack.job_tasks().await?.len();
    let arns = stack
        .fire_schedule("purge-expired-sessions", &t1, 1)
        .await?;
    let end = stack.wait_end(&arns[0], TIMEOUT).await?;
    assert_eq!(end.status, "SUCCEEDED");
    let output = end.output.unwrap_or_default();
    assert_eq!(output["outcome"], "duplicate", "{output}");
    assert!(
        output["claimedBy"].as_str().unwrap().starts_with("legacy:"),
        "{output}"
    );
    assert_eq!(
        stack.job_tasks().await?.len(),
        before,
        "no ECS task for a legacy-claimed occurrence"
    );
    // A second legacy host (or a rerun) is told not to run.
    let (code, _, err) = stack.cli(&["jobs", "claim", "purge-expired-sessions", "--at", &t1])?;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("already claimed"), "{err}");

    // The scheduler first: the legacy claim of the same occurrence exits 3.
    let t2 = past_day_at(11, 30);
    let arns = stack
        .fire_schedule("purge-expired-sessions", &t2, 1)
        .await?;
    stack.wait_end(&arns[0], TIMEOUT).await?;
    let (code, _, err) = stack.cli(&["jobs", "claim", "purge-expired-sessions", "--at", &t2])?;
    assert_eq!(code, 3, "{err}");
    let occ = occurrence(&stack, &format!("purge-expired-sessions#{t2}"))
        .await?
        .unwrap();
    assert_eq!(occ["claimedBy"], arns[0].as_str());
    assert_eq!(occ["duplicateClaimers"].as_array().map(Vec::len), Some(1));
    // Not on the schedule: exit 4, nothing claimed.
    let (code, _, err) = stack.cli(&[
        "jobs",
        "claim",
        "purge-expired-sessions",
        "--at",
        &past_day_at(10, 31),
    ])?;
    assert_eq!(code, 4, "{err}");
    Ok(())
}

#[tokio::test]
async fn forbid_skips_and_records_while_a_previous_run_is_live() -> Result<()> {
    let (stack, _) = setup().await?;
    let job = "nightly-billing-report";
    let live = manual(
        &stack,
        job,
        json!({"environment": {"FAKE_SLEEP_SECONDS": "60"}, "requestedBy": "alice"}),
    )
    .await?;
    let live_task = running_task(&stack, &live).await?;
    // The job runs nightly, so no real occurrence is at hand: a second manual run meets the
    // same lease (manual runs honour the policy too).
    let arn = manual(&stack, job, json!({})).await?;
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    let out = end.output.unwrap();
    assert_eq!(out["status"], "SKIPPED_RUNNING", "{out}");
    assert!(
        out["skippedBecause"].as_str().unwrap().contains(&live),
        "{out}"
    );
    let states = stack.states_entered(&arn).await?;
    assert!(
        has(&states, "LeaseAcquired?") && has(&states, "Skipped") && !has(&states, "RunTask"),
        "{states:?}"
    );
    let rec = run_record(&stack, &arn).await?;
    assert_eq!(rec["status"], "SKIPPED_RUNNING");
    assert_eq!(
        task(&stack, &live_task).await?["lastStatus"],
        "RUNNING",
        "the live run goes on"
    );

    // `jobs cancel` stops the live run: cleanup stops its task and frees the lease.
    let (code, out, err) = stack.cli(&["jobs", "cancel", &live])?;
    assert_eq!(code, 0, "{out}{err}");
    let end = stack.wait_end(&live, TIMEOUT).await?;
    assert_eq!(end.status, "ABORTED");
    eventually(
        "cleanup to stop the task",
        Duration::from_secs(60),
        || async { Ok((task(&stack, &live_task).await?["lastStatus"] == "STOPPED").then_some(())) },
    )
    .await?;
    let locks = stack.table("LocksTable")?;
    eventually("the lease released", Duration::from_secs(30), || async {
        Ok(stack
            .get_item(
                &locks,
                "lockName",
                &format!("job:{}:{job}", stack.environment()),
            )
            .await?
            .is_none()
            .then_some(()))
    })
    .await?;
    let rec = run_record(&stack, &live).await?;
    assert_eq!(rec["status"], "ABORTED");
    Ok(())
}

#[tokio::test]
async fn replace_stops_the_previous_task_then_runs() -> Result<()> {
    let (stack, _) = setup().await?;
    let job = "sync-exchange-rates";
    let old = manual(
        &stack,
        job,
        json!({"environment": {"FAKE_SLEEP_SECONDS": "60"}}),
    )
    .await?;
    let old_task = running_task(&stack, &old).await?;
    let at = unclaimed_minute(&stack, job).await?;
    let arn = stack.fire_schedule(job, &at, 1).await?.remove(0);
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    let out = end.output.unwrap();
    assert_eq!(out["status"], "SUCCEEDED");
    assert_ne!(out["taskArn"], old_task.as_str());
    let t = task(&stack, &old_task).await?;
    assert_eq!(t["lastStatus"], "STOPPED");
    assert!(
        t["stoppedReason"]
            .as_str()
            .unwrap()
            .starts_with("replaced by"),
        "{t}"
    );
    let old_end = stack.wait_end(&old, TIMEOUT).await?;
    assert_eq!(old_end.status, "FAILED");
    assert_eq!(old_end.error.as_deref(), Some("JobReplaced"));
    assert_eq!(run_record(&stack, &old).await?["status"], "REPLACED");
    Ok(())
}

#[tokio::test]
async fn a_failing_command_fails_job_failed_with_exit_code_tail_and_a_slack_post() -> Result<()> {
    let (stack, _) = setup().await?;
    let arn = manual(&stack, "nightly-billing-report",
        json!({"environment": {"FAKE_EXIT_CODE": "3"}, "parameters": {"month": "2026-10"}, "requestedBy": "alice"}),
    )
    .await?;
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.status, "FAILED", "{end:?}");
    assert_eq!(end.error.as_deref(), Some("JobFailed"));
    let cause = end.cause.unwrap_or_default();
    assert!(cause.contains("failed with exit code 3"), "{cause}");
    assert!(
        cause.contains("runner script/nightly_billing_report.rb failed"),
        "the cause carries the log tail: {cause}"
    );
    assert!(!cause.contains(INFRA_SECRET), "{cause}");
    let rec = run_record(&stack, &arn).await?;
    assert_eq!(rec["status"], "FAILED");
    assert_eq!(rec["exitCode"], 3);
    assert_eq!(rec["trigger"], "manual");
    let log = String::from_utf8(stack.object(rec["logUri"].as_str().unwrap()).await?)?;
    assert!(log.contains("Arguments: --month 2026-10"), "{log}");
    let name = arn.rsplit(':').next().unwrap();
    let post = stack.slack_post_containing(JOBS_CHANNEL, name).await?;
    let text = post["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("*failed* with exit code 3") && text.contains("<@U0ALICE01>"),
        "{text}"
    );
    assert!(!text.contains(INFRA_SECRET));
    let states = stack.states_entered(&arn).await?;
    assert!(
        has(&states, "Notify") && has(&states, "JobFailed"),
        "{states:?}"
    );
    Ok(())
}

#[tokio::test]
async fn over_its_timeout_the_task_is_stopped_and_the_job_timed_out() -> Result<()> {
    let (stack, _) = setup().await?;
    let arn = manual(
        &stack,
        "purge-expired-sessions",
        json!({"environment": {"FAKE_SLEEP_SECONDS": "120"}, "timeoutSeconds": 120}),
    )
    .await?;
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.status, "FAILED", "{end:?}");
    assert_eq!(end.error.as_deref(), Some("JobTimedOut"));
    assert!(end
        .cause
        .unwrap_or_default()
        .contains("timed out after 120s"));
    let rec = run_record(&stack, &arn).await?;
    assert_eq!(rec["status"], "TIMED_OUT");
    let t = task(&stack, rec["taskArn"].as_str().unwrap()).await?;
    assert_eq!(t["lastStatus"], "STOPPED");
    assert!(
        t["stoppedReason"].as_str().unwrap().contains("timed out"),
        "{t}"
    );
    let states = stack.states_entered(&arn).await?;
    assert!(
        has(&states, "PollTask") && has(&states, "TaskStopped?"),
        "{states:?}"
    );
    stack
        .slack_post_containing(JOBS_CHANNEL, "*timed out*")
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_lost_stopped_event_is_caught_by_the_safety_net_poll() -> Result<()> {
    let (stack, _) = setup().await?;
    stack
        .fault(json!({"drop_events": {"source": "aws.ecs", "detail_type": "ECS Task State Change", "detail": {"lastStatus": "STOPPED"}, "count": 1}}))
        .await?;
    let arn = manual(
        &stack,
        "purge-expired-sessions",
        json!({"environment": {"FAKE_SLEEP_SECONDS": "2"}, "timeoutSeconds": 600}),
    )
    .await?;
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    let states = stack.states_entered(&arn).await?;
    assert!(
        has(&states, "PollTask") && has(&states, "UsePolledOutcome"),
        "{states:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_stale_occurrence_is_skipped_and_recorded() -> Result<()> {
    let (stack, _) = setup().await?;
    // purge runs at :30 with a 1h catch-up window: a real occurrence over an hour old that no
    // earlier run of this test claimed.
    let mut at = None;
    for hours in 2..48 {
        let t = chrono::Utc::now() - chrono::Duration::hours(hours);
        let t = format!("{}:30:00Z", t.format("%Y-%m-%dT%H"));
        if occurrence(&stack, &format!("purge-expired-sessions#{t}"))
            .await?
            .is_none()
        {
            at = Some(t);
            break;
        }
    }
    let at = at.context("no unclaimed occurrence of purge in the last two days")?;
    let before = stack.job_tasks().await?.len();
    let arn = stack
        .fire_schedule("purge-expired-sessions", &at, 1)
        .await?
        .remove(0);
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.status, "SUCCEEDED");
    let out = end.output.unwrap();
    assert_eq!(out["status"], "SKIPPED_STALE", "{out}");
    assert!(out["skippedBecause"]
        .as_str()
        .unwrap()
        .contains("catch-up window is 3600s"));
    assert_eq!(stack.job_tasks().await?.len(), before, "nothing ran late");
    let occ = occurrence(&stack, &format!("purge-expired-sessions#{at}"))
        .await?
        .unwrap();
    assert_eq!(occ["runStatus"], "SKIPPED_STALE");
    assert_eq!(run_record(&stack, &arn).await?["status"], "SKIPPED_STALE");
    Ok(())
}

#[tokio::test]
async fn a_missed_occurrence_raises_one_alert() -> Result<()> {
    let (stack, _) = setup().await?;
    // sync-exchange-rates runs every minute with a 10-minute catch-up window: checking at
    // 10:12 over 2 minutes covers its 10:00 and 10:01 occurrences.
    let day = past_day_at(10, 12);
    let (d, _) = day.split_once('T').unwrap();
    let claimed = format!("{d}T10:00:00Z");
    let missed = format!("{d}T10:01:00Z");
    let (code, out, err) =
        stack.cli(&["jobs", "claim", "sync-exchange-rates", "--at", &claimed])?;
    assert_eq!(code, 0, "{out}{err}");
    let payload = json!({"at": day, "lookbackMinutes": 2});
    let res = stack.invoke("MissedRunCheckFunction", &payload).await?;
    assert_eq!(
        res["missed"],
        json!([{"job": "sync-exchange-rates", "scheduledTime": missed}]),
        "{res}"
    );
    let post = stack.slack_post_containing(ALERTS_CHANNEL, &missed).await?;
    let text = post["text"].as_str().unwrap();
    assert!(
        text.contains("Missed scheduled job runs") && text.contains("`sync-exchange-rates`"),
        "{text}"
    );
    assert!(
        !text.contains(&claimed),
        "a claimed occurrence is not missed: {text}"
    );
    // Alerted once: the missed occurrence is claimed as MISSED (and can never run late).
    let again = stack.invoke("MissedRunCheckFunction", &payload).await?;
    assert_eq!(again["missed"], json!([]), "{again}");
    let occ = occurrence(&stack, &format!("sync-exchange-rates#{missed}"))
        .await?
        .unwrap();
    assert_eq!(occ["status"], "MISSED");
    Ok(())
}

#[tokio::test]
async fn a_malformed_jobs_file_is_rejected_naming_job_and_field() -> Result<()> {
    let stack = Stack::from_env().await?;
    let dir = std::env::temp_dir().join(unique_name("jobs"));
    std::fs::create_dir_all(&dir)?;
    let bad = dir.join("jobs.yaml");
    std::fs::write(
        &bad,
        "jobs:\n  - name: report\n    schedule: cron(0 3 * * *)\n    timezone: Asia/Tokyo\n    command: bin/rake report\n  - name: report\n    schedule: cron(0 4 * * ? *)\n    timezone: UTC\n    command: bin/rake report\n    retries: 3\n",
    )?;
    let path = bad.to_string_lossy().to_string();
    let (code, out, err) = stack.cli(&["jobs", "validate", "--file", &path])?;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("job \"report\": field `schedule`: cron(0 3 * * *) has 5 fields"),
        "{err}"
    );
    assert!(
        err.contains("job \"report\": unknown field `retries`"),
        "{err}"
    );
    let (code, _, err) = stack.cli(&["jobs", "claim", "report", "--now", "--file", &path])?;
    assert_eq!(code, 1, "{err}");
    // The shipped file is valid and the template agrees with it.
    let (code, out, err) = stack.cli(&["jobs", "generate", "--check"])?;
    assert_eq!(code, 0, "{out}{err}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn malformed_input_fails_invalid_input_and_claims_nothing() -> Result<()> {
    let (stack, sm) = setup().await?;
    let at = past_day_at(9, 15);
    for (i, input) in [
        json!({"job": "sync-exchange-rates", "scheduledTime": at, "priority": "high"}),
        json!({"job": "no-such-job", "scheduledTime": at}),
        json!({"job": "sync-exchange-rates", "scheduledTime": "yesterday"}),
        json!({"job": "sync-exchange-rates", "manual": {"environment": {"DATABASE_URL": "x"}}}),
    ]
    .into_iter()
    .enumerate()
    {
        // A person's (manual) run is submitted; the rest come as EventBridge Scheduler's do.
        let name = unique_name(&format!("bad{i}"));
        let arn = if input.get("manual").is_some() {
            stack.submit("scheduled-job", &name, &input).await?
        } else {
            stack.start(&sm, &name, &input).await?
        };
        let end = stack.wait_end(&arn, TIMEOUT).await?;
        assert_eq!(end.status, "FAILED", "{input}: {end:?}");
        assert_eq!(end.error.as_deref(), Some("InvalidInput"), "{input}");
        assert_eq!(
            stack.states_entered(&arn).await?,
            ["ClaimOccurrence", "RejectInput"]
        );
    }
    assert!(
        occurrence(&stack, &format!("sync-exchange-rates#{at}"))
            .await?
            .is_none(),
        "nothing claimed"
    );
    Ok(())
}

#[tokio::test]
async fn step_errors_are_recorded_alerted_and_leave_nothing_running() -> Result<()> {
    let (stack, _) = setup().await?;
    // RunTask rejected → Errored with the step's error, recorded, Slack; the lease is released.
    stack
        .fault(json!({"service": "ecs", "operation": "RunTask", "error": "ClientException", "count": 1}))
        .await?;
    let arn = manual(&stack, "weekly-digest", json!({})).await?;
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.error.as_deref(), Some("AwsServiceError"), "{end:?}");
    assert_eq!(run_record(&stack, &arn).await?["status"], "ERROR");
    let name = arn.rsplit(':').next().unwrap().to_string();
    stack.slack_post_containing(JOBS_CHANNEL, &name).await?;

    // The lease write fails → recorded as an error, nothing started.
    // (Only lease items carry `acquiredAt`.)
    stack
        .fault(json!({"service": "dynamodb", "operation": "PutItem", "match": "acquiredAt", "error": "ValidationException", "count": 1}))
        .await?;
    let arn = manual(&stack, "weekly-digest", json!({})).await?;
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.error.as_deref(), Some("AwsServiceError"), "{end:?}");
    let states = stack.states_entered(&arn).await?;
    assert!(
        has(&states, "AcquireLease") && !has(&states, "RunTask"),
        "{states:?}"
    );

    // The wait cannot be registered → the execution fails; cleanup stops the orphaned task.
    let waits = stack.table("WaitsTable")?;
    stack
        .fault(json!({"service": "dynamodb", "operation": "PutItem", "match": waits, "error": "ValidationException", "count": 1}))
        .await?;
    let arn = manual(
        &stack,
        "weekly-digest",
        json!({"environment": {"FAKE_SLEEP_SECONDS": "60"}}),
    )
    .await?;
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.status, "FAILED", "{end:?}");
    let task_arn = run_record(&stack, &arn).await?["taskArn"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(
        "cleanup to stop the orphaned task",
        Duration::from_secs(60),
        || async { Ok((task(&stack, &task_arn).await?["lastStatus"] == "STOPPED").then_some(())) },
    )
    .await?;

    // The safety-net poll fails → recorded as an error.
    stack
        .fault(json!({"service": "ecs", "operation": "DescribeTasks", "error": "ClientException", "after": 1, "count": 10}))
        .await?;
    let arn = manual(
        &stack,
        "weekly-digest",
        json!({"environment": {"FAKE_SLEEP_SECONDS": "30"}, "timeoutSeconds": 600}),
    )
    .await?;
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    stack.clear_faults().await?;
    assert_eq!(end.status, "FAILED", "{end:?}");
    assert!(has(&stack.states_entered(&arn).await?, "PollTask"));
    Ok(())
}

#[tokio::test]
async fn a_log_or_slack_outage_does_not_change_the_result() -> Result<()> {
    let (stack, _) = setup().await?;
    let marker = unique_name("nolog");
    stack
        .fault(json!({"service": "s3", "operation": "PutObject", "match": marker, "error": "InternalError", "count": 20}))
        .await?;
    stack
        .slack_fail("chat.postMessage", "channel_not_found", 5)
        .await?;
    let arn = manual(
        &stack,
        "weekly-digest",
        json!({"parameters": {"label": marker}, "environment": {"FAKE_EXIT_CODE": "2"}}),
    )
    .await?;
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    stack.clear_faults().await?;
    assert_eq!(end.error.as_deref(), Some("JobFailed"), "{end:?}");
    let cause = end.cause.unwrap_or_default();
    assert!(
        cause.contains("exit code 2") && cause.contains("could not be archived"),
        "{cause}"
    );
    let states = stack.states_entered(&arn).await?;
    assert!(
        has(&states, "Notify") && has(&states, "JobFailed"),
        "{states:?}"
    );
    let rec = run_record(&stack, &arn).await?;
    if rec.get("logUri").is_some_and(|v| !v.is_null()) {
        bail!("no log was archived, yet the record has one: {rec}");
    }
    Ok(())
}

/// Issue 16: a manual run gives only the parameters and variables its job declares. `db:drop`
/// appended, a rake option, an undeclared parameter, a value that would leave its task's
/// brackets, a variable off the job's allowlist or on the overrides denylist: each fails
/// `InvalidInput` naming the field, and nothing is claimed, recorded or run.
#[tokio::test]
async fn a_manual_run_cannot_append_tasks_or_set_forbidden_variables() -> Result<()> {
    let (stack, _) = setup().await?;
    let before = stack.job_tasks().await?.len();
    for (i, (job, manual, field)) in [
        (
            "purge-expired-sessions",
            json!({"arguments": ["db:drop"]}),
            "unknown field `arguments`",
        ),
        (
            "sync-exchange-rates",
            json!({"arguments": ["-E", "system('id')"]}),
            "unknown field `arguments`",
        ),
        (
            "purge-expired-sessions",
            json!({"parameters": {"task": "db:drop"}}),
            "`manual.parameters.task`",
        ),
        (
            "sync-exchange-rates",
            json!({"parameters": {"currency": "EUR,db:drop"}}),
            "`manual.parameters.currency`",
        ),
        (
            "nightly-billing-report",
            json!({"parameters": {"month": "-E"}}),
            "`manual.parameters.month`",
        ),
        (
            "sync-exchange-rates",
            json!({"environment": {"RAILS_LOG_LEVEL": "debug"}}),
            "`manual.environment.RAILS_LOG_LEVEL`",
        ),
        (
            "sync-exchange-rates",
            json!({"environment": {"RUBYOPT": "-r/tmp/x"}}),
            "RUBYOPT is reserved",
        ),
        (
            "nightly-billing-report",
            json!({"environment": {"BUNDLE_GEMFILE": "/tmp/Gemfile"}}),
            "BUNDLE_GEMFILE is reserved",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let name = unique_name(&format!("smuggle{i}"));
        let arn = stack
            .submit(
                "scheduled-job",
                &name,
                &json!({"job": job, "manual": manual}),
            )
            .await?;
        let end = stack.wait_end(&arn, TIMEOUT).await?;
        assert_eq!(end.status, "FAILED", "{manual}: {end:?}");
        assert_eq!(end.error.as_deref(), Some("InvalidInput"), "{manual}");
        let cause = end.cause.unwrap_or_default();
        assert!(cause.contains(field), "{manual}: {cause}");
        assert_eq!(
            stack.states_entered(&arn).await?,
            ["ClaimOccurrence", "RejectInput"],
            "{manual}"
        );
        assert!(
            occurrence(&stack, &format!("{job}#manual#{name}"))
                .await?
                .is_none(),
            "{manual}: nothing claimed"
        );
        assert!(
            run_record(&stack, &arn).await.is_err(),
            "{manual}: no record"
        );
    }
    assert_eq!(stack.job_tasks().await?.len(), before, "nothing ran");
    // A declared parameter reaches the task as the job's own argument.
    let arn = manual(
        &stack,
        "sync-exchange-rates",
        json!({"parameters": {"currency": "EUR"}}),
    )
    .await?;
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    let rec = run_record(&stack, &arn).await?;
    let ran: Vec<Value> = stack.job_tasks().await?.into_iter().skip(before).collect();
    assert!(
        ran.iter().any(|t| t["taskArn"] == rec["taskArn"]
            && t["overrides"].to_string().contains("rates:sync[EUR]")),
        "{ran:?}"
    );
    Ok(())
}

/// Issue 16: a console start with tomorrow's time (or a time off the schedule) is refused
/// before anything is written, so the real occurrence is never suppressed as its duplicate.
#[tokio::test]
async fn a_made_up_scheduled_time_fails_and_the_real_occurrence_later_runs() -> Result<()> {
    let (stack, sm) = setup().await?;
    let at = unclaimed_minute(&stack, "sync-exchange-rates").await?;
    let t = batchless_core::platform::time::parse("at", &at)?;
    let tomorrow = batchless_core::platform::time::rfc3339(t + chrono::Duration::days(1));
    let purge_off = past_day_at(10, 7); // purge runs at :30 only
    for (job, when, want) in [
        (
            "sync-exchange-rates",
            tomorrow.as_str(),
            "lies in the future",
        ),
        (
            "purge-expired-sessions",
            purge_off.as_str(),
            "is not an occurrence",
        ),
    ] {
        let arn = stack
            .start(
                &sm,
                &unique_name("forged"),
                &json!({"job": job, "scheduledTime": when}),
            )
            .await?;
        let end = stack.wait_end(&arn, TIMEOUT).await?;
        assert_eq!(
            end.error.as_deref(),
            Some("InvalidInput"),
            "{when}: {end:?}"
        );
        assert!(end.cause.unwrap_or_default().contains(want), "{when}");
        assert_eq!(
            stack.states_entered(&arn).await?,
            ["ClaimOccurrence", "RejectInput"]
        );
        assert!(
            occurrence(&stack, &format!("{job}#{when}"))
                .await?
                .is_none(),
            "{when}: nothing claimed"
        );
    }
    // The real occurrence, delivered by the Scheduler, runs (it is no one's duplicate).
    let arn = stack
        .fire_schedule("sync-exchange-rates", &at, 1)
        .await?
        .remove(0);
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    let out = end.output.unwrap();
    assert_eq!(out["status"], "SUCCEEDED", "{out}");
    let occ = occurrence(&stack, &format!("sync-exchange-rates#{at}"))
        .await?
        .context("the occurrence")?;
    assert_eq!(occ["claimedBy"], arn.as_str());
    Ok(())
}

/// When the occurrence signing key was created: an item of an occurrence due before it was
/// claimed by a version without seals and counts as it is.
async fn seals_since(stack: &Stack) -> Result<chrono::DateTime<chrono::Utc>> {
    let kms = aws_sdk_kms::Client::new(&stack.sdk_config_as("auditor").await?);
    let key = kms
        .describe_key()
        .key_id(format!(
            "alias/batchless-{}-occurrence-signing",
            stack.environment()
        ))
        .send()
        .await?;
    let created = key
        .key_metadata()
        .and_then(|m| m.creation_date())
        .context("the key's creation date")?;
    chrono::DateTime::from_timestamp(created.secs(), 0).context("a valid creation date")
}

/// An item written into the occurrences table by hand (an operator with write access), as if
/// `by` had claimed `key` with `status`.
async fn plant(stack: &Stack, job: &str, at: &str, by: &str, status: &str) -> Result<()> {
    let s = |v: &str| aws_sdk_dynamodb::types::AttributeValue::S(v.to_string());
    stack
        .db
        .put_item()
        .table_name(stack.table("OccurrencesTable")?)
        .item("occurrenceKey", s(&format!("{job}#{at}")))
        .item("job", s(job))
        .item("scheduledTime", s(at))
        .item("environment", s(stack.environment()))
        .item("claimedBy", s(by))
        .item("claimedAt", s(at))
        .item("source", s("scheduler"))
        .item("status", s(status))
        .item("runStatus", s("SUCCEEDED"))
        .send()
        .await?;
    Ok(())
}

/// Issue 15: an operator plants a `CLAIMED` item (run `SUCCEEDED`) for an occurrence before
/// the Scheduler delivers it, so the delivery would be a "duplicate" and the job silently not
/// run. The item carries no seal of the occurrence signing key: the delivery's claim replaces
/// it, keeps it as `replaced` (the trace), and the job runs.
#[tokio::test]
async fn a_planted_claim_does_not_stop_the_occurrence_from_running() -> Result<()> {
    let (stack, _) = setup().await?;
    let job = "sync-exchange-rates";
    let since = seals_since(&stack).await?;
    // A recent occurrence due after the key existed (the next minute, when the stack is younger
    // than this one).
    let at = eventually("a minute after the seals began", TIMEOUT, || async {
        let at = unclaimed_minute(&stack, job).await?;
        let due = batchless_core::platform::time::parse("at", &at)?;
        Ok((due > since).then_some(at))
    })
    .await?;
    let planted =
        "arn:aws:states:us-east-1:123456789012:execution:batchless-staging-scheduled-job:planted";
    plant(&stack, job, &at, planted, "CLAIMED").await?;
    let before = stack.job_tasks().await?.len();
    let arns = stack.fire_schedule(job, &at, 1).await?;
    let end = stack.wait_end(&arns[0], TIMEOUT).await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    let output = end.output.unwrap_or_default();
    assert_eq!(output["status"], "SUCCEEDED", "not a duplicate: {output}");
    assert_eq!(stack.job_tasks().await?.len(), before + 1, "the job ran");
    let occ = occurrence(&stack, &format!("{job}#{at}"))
        .await?
        .context("the occurrence")?;
    assert_eq!(occ["claimedBy"], arns[0].as_str(), "{occ}");
    assert!(occ["seal"].is_string(), "{occ}");
    assert_eq!(occ["replaced"]["claimedBy"], planted, "{occ}");
    Ok(())
}

/// Issue 15: an operator disables a job's schedule and plants `PAUSED` items for the
/// occurrences that then never run, so the missed-run check would take them as accounted for.
/// They carry no seal: the check counts them for nothing, claims the occurrence `MISSED` over
/// the planted item (kept as `replaced`) and its alert names what was planted.
#[tokio::test]
async fn planted_occurrence_items_are_missed_and_the_alert_names_them() -> Result<()> {
    let (stack, _) = setup().await?;
    let job = "purge-expired-sessions"; // cron(30 * * * ? *) UTC, catch-up 1h
                                        // A day no other test uses, in the future of the key (the check is asked about then).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let day = (chrono::Utc::now() + chrono::Duration::days(400 + (nanos / 1000 % 3000) as i64))
        .date_naive()
        .format("%Y-%m-%d");
    let at = format!("{day}T10:30:00Z");
    plant(&stack, job, &at, "mallory", "PAUSED").await?;
    let check = json!({"at": format!("{day}T11:32:00Z"), "lookbackMinutes": 5});
    let res = stack.invoke("MissedRunCheckFunction", &check).await?;
    let missed = res["missed"]
        .as_array()
        .context("missed")?
        .iter()
        .find(|m| m["scheduledTime"] == at.as_str())
        .with_context(|| format!("{at} is not missed: {res}"))?
        .clone();
    let replaced = missed["replaced"].as_str().unwrap_or_default();
    assert!(replaced.contains("PAUSED by mallory"), "{missed}");
    let post = stack.slack_post_containing(ALERTS_CHANNEL, &at).await?;
    let text = post["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("Missed scheduled job runs")
            && text.contains("replaced an item batchless did not write"),
        "{text}"
    );
    let occ = occurrence(&stack, &format!("{job}#{at}"))
        .await?
        .context("the occurrence")?;
    assert_eq!(
        (&occ["status"], &occ["claimedBy"]),
        (&json!("MISSED"), &json!("missed-run-check")),
        "{occ}"
    );
    assert_eq!(occ["replaced"]["claimedBy"], "mallory", "{occ}");
    // Alerted once: the next check finds the sealed MISSED claim.
    let again = stack.invoke("MissedRunCheckFunction", &check).await?;
    assert_eq!(again["missed"], json!([]), "{again}");
    Ok(())
}
