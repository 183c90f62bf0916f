//! Scenario tests of pause/resume and backfill (issue 20) on the local replica: the real CLI
//! (`batchless jobs pause|resume|backfill|list|claim|generate`, acting as IAM users of the
//! replica that the people map knows), the schedule on the replica's Scheduler, real deliveries
//! (`/_replica/scheduler/fire`), real executions and ECS tasks, CloudTrail's `UpdateSchedule`
//! records. Run one at a time (`--test-threads=1`). Each test leaves the schedules ENABLED.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use aws_sdk_dynamodb::types::AttributeValue;
use batchless_scenarios::*;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(180);
const SYNC: &str = "sync-exchange-rates";
const PURGE: &str = "purge-expired-sessions";

fn now_minute(minutes_ago: i64) -> String {
    let t = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    batchless_core::platform::time::rfc3339(batchless_core::platform::time::truncate_to_minute(t))
}

/// The CLI against the stack, as IAM user `who` (or the replica's default identity).
async fn batchless(stack: &Stack, who: Option<&str>, args: &[&str]) -> Result<(i32, String)> {
    let (code, out, err) = stack.cli_as(who, args).await?;
    Ok((code, format!("{out}{err}")))
}

/// The job's schedule as the replica's Scheduler returns it (GetSchedule, REST-JSON).
async fn schedule(stack: &Stack, job: &str) -> Result<Value> {
    let name = format!("batchless-{}-job-{job}", stack.environment());
    let v: Value = stack
        .http
        .get(format!("{}/schedules/{name}", stack.endpoint()))
        .header("authorization", "AWS4-HMAC-SHA256 Credential=testing/20261128/us-east-1/scheduler/aws4_request, SignedHeaders=host, Signature=0")
        .send()
        .await?
        .json()
        .await?;
    Ok(v)
}

/// Leave the job running: resume it on AWS if a failed run left it paused.
async fn ensure_resumed(stack: &Stack, job: &str) -> Result<()> {
    if schedule(stack, job).await?["State"] == "DISABLED" {
        let (code, out) = batchless(stack, None, &["jobs", "resume", job, "--aws-only"]).await?;
        anyhow::ensure!(code == 0, "{out}");
    }
    Ok(())
}

/// Copies of the jobs file and the template to record the pause in (the repository's stay
/// untouched).
fn scratch_files() -> Result<(PathBuf, PathBuf)> {
    let dir = std::env::temp_dir().join(unique_name("pause-files"));
    std::fs::create_dir_all(&dir)?;
    let jobs = dir.join("jobs.yaml");
    let template = dir.join("template.yaml");
    std::fs::copy(repo_root().join("infra/jobs.yaml"), &jobs)?;
    std::fs::copy(repo_root().join("infra/template.yaml"), &template)?;
    Ok((jobs, template))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

async fn occurrence(stack: &Stack, key: &str) -> Result<Option<Value>> {
    let table = stack.table("OccurrencesTable")?;
    stack.get_item(&table, "occurrenceKey", key).await
}

/// Recent minutes (within the job's catch-up window) with no occurrence of `job` yet.
async fn unclaimed_minutes(stack: &Stack, job: &str, n: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for minutes_ago in 1..=9 {
        let at = now_minute(minutes_ago);
        if occurrence(stack, &format!("{job}#{at}")).await?.is_none() {
            out.push(at);
            if out.len() == n {
                return Ok(out);
            }
        }
    }
    anyhow::bail!("fewer than {n} of the last 9 minutes have no occurrence of {job}")
}

fn job_entry<'a>(list: &'a Value, job: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == job)
        .unwrap()
}

async fn list_json(stack: &Stack) -> Result<Value> {
    let (code, out) = batchless(stack, None, &["jobs", "list", "--json"]).await?;
    anyhow::ensure!(code == 0, "{out}");
    Ok(serde_json::from_str(&out)?)
}

/// CloudTrail's UpdateSchedule records of a schedule: (user name, requested state).
async fn update_schedule_records(stack: &Stack, arn: &str) -> Result<Vec<(String, String)>> {
    let v: Value = stack
        .aws_json(
            "cloudtrail",
            "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents",
            &json!({"LookupAttributes": [{"AttributeKey": "ResourceName", "AttributeValue": arn}]}),
        )
        .await?
        .json()
        .await?;
    Ok(v["Events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["EventName"] == "UpdateSchedule")
        .map(|e| {
            let r: Value =
                serde_json::from_str(e["CloudTrailEvent"].as_str().unwrap_or("{}")).unwrap();
            (
                e["Username"].as_str().unwrap_or_default().to_string(),
                r["requestParameters"]["state"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect())
}

/// Resumes the job on AWS when dropped (`jobs resume --aws-only`; refused, harmlessly, when it
/// is not paused).
struct ResumeOnDrop<'a>(&'a Stack, &'static str);

impl Drop for ResumeOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.cli(&["jobs", "resume", self.1, "--aws-only"]);
    }
}

/// Pause → the schedule DISABLED (CloudTrail names alice), `jobs list` says who/when/why, the
/// file and template record it; a delivery meanwhile is claimed PAUSED and runs no task (nor does
/// a legacy claim); resume → ENABLED and the next delivery runs.
#[tokio::test]
async fn a_paused_job_records_its_deliveries_paused_and_runs_nothing_until_resumed() -> Result<()> {
    let (stack, _) = Stack::cleared_with("ScheduledJobStateMachine").await?;
    ensure_resumed(&stack, SYNC).await?;
    let (jobs_file, template) = scratch_files()?;
    let files = ["--file", path(&jobs_file), "--template", path(&template)];
    let note = "rates vendor down (INC-42)";
    let minutes = unclaimed_minutes(&stack, SYNC, 3).await?;
    let (paused_at, legacy_at, resumed_at) = (&minutes[0], &minutes[1], &minutes[2]);

    let mut args = vec!["jobs", "pause", SYNC, "--note", note];
    args.extend(files);
    let (code, out) = batchless(&stack, Some("alice"), &args).await?;
    // A failed assertion never leaves the shared stack's schedule paused.
    let _resume = ResumeOnDrop(&stack, SYNC);
    assert_eq!(code, 0, "{out}");
    let sched = schedule(&stack, SYNC).await?;
    let list = list_json(&stack).await?;
    let file = std::fs::read_to_string(&jobs_file)?;
    let tpl = std::fs::read_to_string(&template)?;
    let (live_code, live_out) =
        batchless(&stack, None, &["jobs", "generate", "--check", "--live"]).await?;
    let mut recorded = vec!["jobs", "generate", "--check", "--live"];
    recorded.extend(files);
    let (rec_code, rec_out) = batchless(&stack, None, &recorded).await?;
    let before = stack.job_tasks().await?.len();
    let arn = stack.fire_schedule(SYNC, paused_at, 1).await?.remove(0);
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    let states = stack.states_entered(&arn).await?;
    let after = stack.job_tasks().await?.len();
    let (legacy_code, legacy_out) =
        batchless(&stack, None, &["jobs", "claim", SYNC, "--at", legacy_at]).await?;

    // The schedule on AWS: DISABLED, with the pause in its description; CloudTrail names alice.
    assert_eq!(sched["State"], "DISABLED", "{sched}");
    let desc = sched["Description"].as_str().unwrap_or_default();
    assert!(
        desc.contains("[paused by alice at ") && desc.ends_with(&format!(": {note}]")),
        "{desc}"
    );
    // `jobs list`: who, when, why (the requester from alice's identity, never a flag).
    let entry = job_entry(&list, SYNC);
    assert_eq!(entry["paused"]["by"], "alice", "{entry}");
    assert_eq!(entry["paused"]["note"], note, "{entry}");
    assert!(
        batchless_core::platform::time::parse("at", entry["paused"]["at"].as_str().unwrap())
            .is_ok()
    );
    assert_eq!(entry["scheduleState"], "DISABLED");
    assert!(job_entry(&list, PURGE)["paused"].is_null());
    // The jobs file and the template carry it: the next deploy keeps it.
    assert!(file.contains("    paused:\n      by: 'alice'\n"), "{file}");
    let block = tpl
        .split("\n\n")
        .find(|b| b.contains("JobScheduleSyncExchangeRates:"))
        .unwrap();
    assert!(block.contains("State: DISABLED"), "{block}");
    // The repository's file (not paused) disagrees with AWS; the recorded one agrees.
    assert_eq!(live_code, 1, "{live_out}");
    assert!(live_out.contains(SYNC), "{live_out}");
    assert_eq!(rec_code, 0, "{rec_out}");

    // The delivery while paused: claimed PAUSED, ended `Paused`, nothing ran.
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    assert_eq!(end.output.as_ref().unwrap()["outcome"], "paused", "{end:?}");
    assert!(states.iter().any(|s| s == "Paused"), "{states:?}");
    for s in ["AcquireLease", "RunTask", "RecordJobRun"] {
        assert!(!states.iter().any(|x| x == s), "{s} entered: {states:?}");
    }
    assert_eq!(after, before, "no ECS task while paused");
    let occ = occurrence(&stack, &format!("{SYNC}#{paused_at}"))
        .await?
        .unwrap();
    assert_eq!(occ["status"], "PAUSED", "{occ}");
    assert_eq!(occ["claimedBy"], arn.as_str());
    assert!(stack.find_run(&arn).await?.is_none(), "no run recorded");
    // The legacy crontab's claim while paused: exit 5, claimed PAUSED.
    assert_eq!(legacy_code, 5, "{legacy_out}");
    let occ = occurrence(&stack, &format!("{SYNC}#{legacy_at}"))
        .await?
        .unwrap();
    assert_eq!(occ["status"], "PAUSED", "{occ}");

    // Resumed by bob: ENABLED, the file's pause removed, `jobs list` says who resumed.
    let mut resume = vec!["jobs", "resume", SYNC, "--note", "vendor back"];
    resume.extend(files);
    let (resume_code, resume_out) = batchless(&stack, Some("bob"), &resume).await?;
    assert_eq!(resume_code, 0, "{resume_out}");
    let sched = schedule(&stack, SYNC).await?;
    assert_eq!(sched["State"], "ENABLED");
    assert!(!std::fs::read_to_string(&jobs_file)?.contains("paused:"));
    let list = list_json(&stack).await?;
    let entry = job_entry(&list, SYNC);
    assert!(entry["paused"].is_null(), "{entry}");
    assert_eq!(entry["resumed"]["by"], "bob", "{entry}");
    assert_eq!(entry["resumed"]["note"], "vendor back", "{entry}");
    // CloudTrail: alice's DISABLED, then bob's ENABLED (newest first).
    let trail = update_schedule_records(&stack, sched["Arn"].as_str().unwrap()).await?;
    let alice = trail
        .iter()
        .position(|r| r == &("alice".into(), "DISABLED".into()));
    let bob = trail
        .iter()
        .position(|r| r == &("bob".into(), "ENABLED".into()));
    assert!(
        matches!((bob, alice), (Some(b), Some(a)) if b < a),
        "{trail:?}"
    );

    // The next delivery runs.
    let before = stack.job_tasks().await?.len();
    let arn = stack.fire_schedule(SYNC, resumed_at, 1).await?.remove(0);
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    let states = stack.states_entered(&arn).await?;
    assert!(states.iter().any(|s| s == "RunTask"), "{states:?} {end:?}");
    assert_eq!(stack.job_tasks().await?.len(), before + 1);
    let occ = occurrence(&stack, &format!("{SYNC}#{resumed_at}"))
        .await?
        .unwrap();
    assert_eq!(occ["status"], "CLAIMED", "{occ}");
    Ok(())
}

async fn backfill_executions(stack: &Stack, sm: &str) -> Result<Vec<String>> {
    let out = stack
        .sfn
        .list_executions()
        .state_machine_arn(sm)
        .max_results(1000)
        .send()
        .await?;
    Ok(out
        .executions()
        .iter()
        .filter(|e| e.name().starts_with(&format!("backfill-{PURGE}-")))
        .map(|e| e.execution_arn().to_string())
        .collect())
}

/// A range of three occurrences: one already ran (the legacy crontab claimed it), one the
/// missed-run check claimed MISSED, one never claimed. `--dry-run` lists them and changes
/// nothing; backfill runs exactly the two, through the same claim; a second backfill runs none.
#[tokio::test]
async fn backfill_runs_only_the_occurrences_that_never_ran() -> Result<()> {
    let (stack, sm) = Stack::cleared_with("ScheduledJobStateMachine").await?;
    ensure_resumed(&stack, PURGE).await?;
    let day = past_day();
    let (from, to) = (format!("{day}T10:00:00Z"), format!("{day}T12:59:00Z"));
    let at = |h: u32| format!("{day}T{h:02}:30:00Z");
    let key = |h: u32| format!("{PURGE}#{}", at(h));
    // 10:30 ran (claimed by the legacy crontab).
    let (code, out) = batchless(&stack, None, &["jobs", "claim", PURGE, "--at", &at(10)]).await?;
    assert_eq!(code, 0, "{out}");
    // 11:30 was claimed MISSED by the missed-run check.
    let table = stack.table("OccurrencesTable")?;
    let s = |v: &str| AttributeValue::S(v.to_string());
    stack
        .db
        .put_item()
        .table_name(&table)
        .item("occurrenceKey", s(&key(11)))
        .item("job", s(PURGE))
        .item("scheduledTime", s(&at(11)))
        .item("environment", s(stack.environment()))
        .item("claimedBy", s("missed-run-check"))
        .item("claimedAt", s(&at(13)))
        .item("source", s("missed-run-check"))
        .item("status", s("MISSED"))
        .send()
        .await?;
    let legacy = occurrence(&stack, &key(10)).await?.unwrap();

    // --dry-run: the plan, and nothing changes.
    let started = backfill_executions(&stack, &sm).await?.len();
    let before = stack.job_tasks().await?.len();
    let (code, out) = batchless(
        &stack,
        Some("alice"),
        &[
            "jobs",
            "backfill",
            PURGE,
            "--from",
            &from,
            "--to",
            &to,
            "--dry-run",
        ],
    )
    .await?;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{}  skip: already CLAIMED by legacy:", at(10))),
        "{out}"
    );
    assert!(
        out.contains(&format!("{}  run (was MISSED)", at(11))),
        "{out}"
    );
    assert!(out.contains(&format!("{}  run\n", at(12))), "{out}");
    assert!(out.contains("3 occurrences (2 to run"), "{out}");
    assert_eq!(backfill_executions(&stack, &sm).await?.len(), started);
    assert_eq!(stack.job_tasks().await?.len(), before);
    assert!(occurrence(&stack, &key(12)).await?.is_none());
    assert_eq!(
        occurrence(&stack, &key(11)).await?.unwrap()["status"],
        "MISSED"
    );

    // The backfill: 11:30 and 12:30 run, 10:30 does not.
    let backfill = ["jobs", "backfill", PURGE, "--from", &from, "--to", &to];
    let (code, out) = batchless(&stack, Some("alice"), &backfill).await?;
    assert!(code == 0 && out.contains("backfilled 2 of 3"), "{out}");
    let arns = backfill_executions(&stack, &sm).await?;
    assert_eq!(arns.len(), started + 2, "{arns:?}");
    assert_eq!(stack.job_tasks().await?.len(), before + 2);
    for h in [11, 12] {
        let occ = occurrence(&stack, &key(h)).await?.unwrap();
        assert_eq!(occ["status"], "CLAIMED", "{occ}");
        assert_eq!(occ["source"], "backfill", "{occ}");
        assert_eq!(occ["runStatus"], "SUCCEEDED", "{occ}");
        let exec = occ["claimedBy"].as_str().unwrap();
        assert!(arns.iter().any(|a| a == exec), "{exec} {arns:?}");
        let states = stack.states_entered(exec).await?;
        assert!(states.iter().any(|s| s == "RunTask"), "{states:?}");
        let run = stack.run_record(exec).await?;
        assert_eq!(run["startedBy"], "backfill:alice", "{run}");
    }
    // The one that ran is untouched.
    assert_eq!(occurrence(&stack, &key(10)).await?.unwrap(), legacy);

    // Again: nothing left to run.
    let (code, out) = batchless(&stack, Some("alice"), &backfill).await?;
    assert!(code == 0 && out.contains("backfilled 0 of 3"), "{out}");
    assert_eq!(backfill_executions(&stack, &sm).await?.len(), started + 2);
    Ok(())
}

/// The missed-run check over the first two of `SYNC`'s occurrences from 10 minutes after the
/// minute of `paused_at` that no earlier run claimed (checked as if their 10-minute catch-up
/// window had closed, so at least 20 minutes after the pause: past CloudTrail's lag, when a
/// pause it does not bear out is decided, not deferred), and what it returned.
async fn check_after(stack: &Stack, paused_at: chrono::DateTime<chrono::Utc>) -> Result<Value> {
    use batchless_core::platform::time::{rfc3339, truncate_to_minute};
    let minute = |n: i64| truncate_to_minute(paused_at) + chrono::Duration::minutes(n);
    let mut first = 10;
    while occurrence(stack, &format!("{SYNC}#{}", rfc3339(minute(first))))
        .await?
        .is_some()
        || occurrence(stack, &format!("{SYNC}#{}", rfc3339(minute(first + 1))))
            .await?
            .is_some()
    {
        first += 1;
        anyhow::ensure!(
            first < 60,
            "no two unclaimed minutes of {SYNC} within the hour"
        );
    }
    // The window closes at `at - 10m - 1s` and opens 2 minutes before.
    let at = minute(first + 1 + 10 + 1);
    let payload = json!({"at": rfc3339(at), "lookbackMinutes": 2});
    stack.invoke("MissedRunCheckFunction", &payload).await
}

/// The entries of `list` (the check's `missed` or `paused`) of `SYNC`.
fn of_sync(list: &Value) -> Vec<&Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["job"] == SYNC)
        .collect()
}

/// Issue 20, trust: a pause counts only when CloudTrail bears it out. alice's `jobs pause`: the
/// occurrences after it are claimed PAUSED, with the evidence (her UpdateSchedule's event), and
/// posted. The attack: bob, who may call UpdateSchedule, disables the schedule himself with a
/// description that says alice paused it. The check claims the occurrences MISSED and alerts,
/// naming bob as CloudTrail's caller; CloudTrail keeps bob's UpdateSchedule.
#[tokio::test]
async fn the_missed_run_check_counts_a_pause_only_when_cloudtrail_bears_it_out() -> Result<()> {
    use batchless_core::jobs::pause::{self, Change, Pause};
    const ALERTS: &str = "C0ALERTS";
    let (stack, _) = Stack::cleared_with("ScheduledJobStateMachine").await?;
    ensure_resumed(&stack, SYNC).await?;
    let _resume = ResumeOnDrop(&stack, SYNC);

    // alice pauses through the CLI.
    let paused_at = chrono::Utc::now();
    let note = "ledger freeze (CHG-7)";
    let (code, out) = batchless(
        &stack,
        Some("alice"),
        &["jobs", "pause", SYNC, "--note", note, "--aws-only"],
    )
    .await?;
    assert_eq!(code, 0, "{out}");
    let res = check_after(&stack, paused_at).await?;
    let paused = of_sync(&res["paused"]);
    assert_eq!(paused.len(), 2, "{res}");
    assert!(of_sync(&res["missed"]).is_empty(), "{res}");
    let at = paused[0]["scheduledTime"].as_str().unwrap();
    let item = occurrence(&stack, &format!("{SYNC}#{at}")).await?.unwrap();
    assert_eq!(item["status"], "PAUSED", "{item}");
    assert_eq!(item["pause"]["claimed"]["by"], "alice", "{item}");
    assert!(
        item["pause"]["corroboratedBy"]
            .as_str()
            .is_some_and(|c| c.starts_with("cloudtrail:")),
        "{item}"
    );
    assert!(item["pause"]["finding"].is_null(), "{item}");
    // Posted, not silent: who, why and CloudTrail's caller.
    let post = stack
        .slack_post_containing(ALERTS, &format!("`{SYNC}` at {at}: paused by alice"))
        .await?;
    let text = post["text"].as_str().unwrap_or_default();
    assert!(text.contains("Paused scheduled job occurrences"), "{text}");
    assert!(
        text.contains(&format!("{note} (cloudtrail:"))
            && text.contains("UpdateSchedule by arn:aws:iam::123456789012:user/alice"),
        "{text}"
    );
    let (code, out) = batchless(
        &stack,
        Some("alice"),
        &["jobs", "resume", SYNC, "--aws-only"],
    )
    .await?;
    assert_eq!(code, 0, "{out}");

    // The attack: bob's own UpdateSchedule, a pause in alice's name.
    let forged_at = chrono::Utc::now();
    let bob = aws_sdk_scheduler::Client::new(&stack.sdk_config_as("bob").await?);
    let forged = Pause {
        by: "alice".into(),
        at: batchless_core::platform::time::rfc3339(forged_at),
        note: "approved by alice".into(),
    };
    pause::set_state(&bob, stack.environment(), SYNC, &Change::Pause(forged)).await?;
    let sched = schedule(&stack, SYNC).await?;
    assert_eq!(sched["State"], "DISABLED", "{sched}");
    let res = check_after(&stack, forged_at).await?;
    let missed = of_sync(&res["missed"]);
    assert_eq!(missed.len(), 2, "{res}");
    assert!(of_sync(&res["paused"]).is_empty(), "{res}");
    let at = missed[0]["scheduledTime"].as_str().unwrap();
    let item = occurrence(&stack, &format!("{SYNC}#{at}")).await?.unwrap();
    assert_eq!(item["status"], "MISSED", "{item}");
    assert!(item["pause"]["corroboratedBy"].is_null(), "{item}");
    let finding = item["pause"]["finding"].as_str().unwrap_or_default();
    assert!(
        finding.contains("it names alice, but CloudTrail")
            && finding.contains("arn:aws:iam::123456789012:user/bob (bob) wrote it"),
        "{item}"
    );
    // The alert names the forgery and the real caller.
    let post = stack
        .slack_post_containing(ALERTS, &format!("`{SYNC}` at {at}: schedule DISABLED"))
        .await?;
    let text = post["text"].as_str().unwrap_or_default();
    assert!(text.contains("Missed scheduled job runs"), "{text}");
    assert!(text.contains("user/bob (bob) wrote it"), "{text}");
    // The trace: CloudTrail's UpdateSchedule by bob, DISABLED.
    let trail = update_schedule_records(&stack, sched["Arn"].as_str().unwrap()).await?;
    assert_eq!(
        trail.first(),
        Some(&("bob".to_string(), "DISABLED".to_string())),
        "{trail:?}"
    );
    Ok(())
}
