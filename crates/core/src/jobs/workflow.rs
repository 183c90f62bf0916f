//! The scheduled-job workflow's domain: its input (a Scheduler delivery or a manual run), the
//! run it becomes, how the state is recorded, what `JobFailed` says and what Slack is told.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::{Concurrency, Job, JobsFile};
use super::lease::LeaseResult;
use super::occurrence;
use crate::platform::input::{self, InputError};
use crate::sfn::{Execution, StepError};
use crate::shared::logs::CollectedLogs;
use crate::shared::runs::{RunRecord, RunStatus};
use crate::shared::task::TaskOutcome;

pub const WORKFLOW: &str = "scheduled-job";
/// The lease outlives the job's timeout by this much, so only an abandoned lease expires.
pub const LEASE_MARGIN_SECONDS: u64 = 15 * 60;
/// The safety-net poll asks ECS at least this often while waiting for the STOPPED event.
pub const POLL_EVERY_SECONDS: u64 = 300;
/// After a timeout stop, how long to wait for STOPPED before polling again.
pub const STOP_WAIT_SECONDS: u64 = 60;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// A Scheduler delivery of an occurrence.
    Scheduled,
    /// `batchless jobs run` or the console.
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Scheduled => "scheduled",
            Trigger::Manual => "manual",
        }
    }
}

/// Whether this execution owns its occurrence (`$.claim.outcome` in the ASL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimOutcome {
    Claimed,
    /// Another delivery (or the legacy crontab) owns it: the workflow ends `duplicate`.
    Duplicate,
    /// Delivered while the job was paused (`batchless jobs pause`): claimed `PAUSED`, nothing
    /// runs, the workflow ends `Paused`.
    Paused,
}

/// A manual run's parameters (`batchless jobs run`, or the console).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Manual {
    #[serde(default)]
    pub requested_by: Option<String>,
    /// Values of the job's declared `manual.parameters` (jobs file), each matched against its
    /// pattern. There are no free arguments.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Only the variables the job's `manual.environment` allows (and never a denylisted one).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Shorter (or longer, up to 24 h) than the job's timeout.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

/// The execution input. A Scheduler delivery: `{"job", "scheduledTime", "deliveryId"?}`
/// (generated into the template); a manual run: `{"job", "manual": {...}}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobRequest {
    pub job: String,
    #[serde(default)]
    pub scheduled_time: Option<String>,
    /// `<aws.scheduler.execution-id>`: recorded for tracing, never used as a key.
    #[serde(default)]
    pub delivery_id: Option<String>,
    #[serde(default)]
    pub manual: Option<Manual>,
    /// `batchless jobs backfill`: run this (past) occurrence through the same claim, bypassing
    /// only the catch-up window's staleness check (issue 20).
    #[serde(default)]
    pub backfill: Option<Backfill>,
}

/// A backfill's request: who asked, and the overlap policy for this run (default: the job's).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Backfill {
    pub requested_by: String,
    #[serde(default)]
    pub policy: Option<Concurrency>,
}

/// A validated run: everything later steps need, decided once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobRun {
    pub run_id: String,
    pub workflow: String,
    pub environment: String,
    pub execution_name: String,
    pub job: String,
    pub trigger: Trigger,
    #[serde(default)]
    pub occurrence: Option<String>,
    pub occurrence_key: String,
    #[serde(default)]
    pub delivery_id: Option<String>,
    pub started_by: String,
    pub started_at: String,
    pub command: String,
    #[serde(default)]
    pub environment_overrides: BTreeMap<String, String>,
    pub cpu: u32,
    pub memory: u32,
    pub timeout_seconds: u64,
    pub concurrency: Concurrency,
    pub lease: String,
    pub lease_ttl_seconds: u64,
    pub catch_up_seconds: u64,
    pub notify_channel: Option<String>,
    #[serde(default)]
    pub mention: Vec<String>,
    pub client_token: String,
    /// A `batchless jobs backfill` run: not stale past the catch-up window, and it may take
    /// over an occurrence the missed-run check claimed `MISSED`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backfill: bool,
}

/// What `ClaimOccurrence` adds to the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClaimResult {
    pub outcome: ClaimOutcome,
    pub occurrence_key: String,
    pub claimed_by: String,
    pub stale: bool,
    #[serde(default)]
    pub late_by_seconds: Option<i64>,
}

/// How far past its execution's start (Step Functions' clock, which a caller cannot set) a
/// delivered `scheduledTime` may lie: Scheduler delivers at or after the scheduled minute (with
/// its flexible time window OFF, as the template sets it), so one minute covers clock skew and
/// the minute truncation; anything later is a made-up time.
pub const FUTURE_TOLERANCE_SECONDS: i64 = 60;

/// Issue 16: a delivery is an occurrence the job's schedule implies, and not one in the future.
/// Otherwise a console start with tomorrow's time would run now and the real occurrence would
/// be suppressed as its duplicate.
fn real_occurrence(job: &Job, t: DateTime<Utc>, started: DateTime<Utc>) -> Result<(), InputError> {
    let schedule = job.parsed_schedule();
    // A rate's anchor is the schedule's creation, which we cannot know (see `Schedule::Rate`):
    // only cron schedules can be checked occurrence by occurrence.
    if matches!(schedule, super::schedule::Schedule::Cron(_)) && !schedule.is_occurrence(t) {
        return Err(InputError::field(
            "scheduledTime",
            format!(
                "{} is not an occurrence of job {:?} ({} in {})",
                crate::platform::time::rfc3339(t),
                job.name,
                job.schedule,
                job.timezone
            ),
        ));
    }
    if t > started + Duration::seconds(FUTURE_TOLERANCE_SECONDS) {
        return Err(InputError::field(
            "scheduledTime",
            format!(
                "{} lies in the future (the execution started at {}; Scheduler delivers an \
                 occurrence at or after its time)",
                crate::platform::time::rfc3339(t),
                crate::platform::time::rfc3339(started)
            ),
        ));
    }
    Ok(())
}

/// Validate a request strictly; nothing is claimed or written for a bad one.
pub fn validate(
    input: Value,
    execution: &Execution,
    environment: &str,
    jobs: &JobsFile,
) -> Result<JobRun, InputError> {
    let req: JobRequest = input::parse_strict(input)?;
    let job: &Job = jobs.get(&req.job).ok_or_else(|| {
        InputError::field(
            "job",
            format!(
                "{:?} is not in the jobs file (jobs: {})",
                input::truncate(&req.job, 60),
                jobs.jobs
                    .iter()
                    .map(|j| j.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let started = crate::platform::time::parse("execution.startTime", &execution.start_time)?;
    let started_at = crate::platform::time::rfc3339(started);
    let mut env = job.environment.clone();
    let mut command = job.command.clone();
    let mut timeout = job.timeout_seconds;
    let mut concurrency = job.concurrency;
    if req.backfill.is_some() && req.manual.is_some() {
        return Err(InputError::field(
            "backfill",
            "only for a scheduled occurrence (scheduledTime), not a manual run",
        ));
    }
    let (trigger, occurrence, key, started_by) = match (&req.scheduled_time, &req.manual) {
        (Some(t), None) => {
            let t = crate::platform::time::parse("scheduledTime", t)?;
            let t = crate::platform::time::truncate_to_minute(t);
            real_occurrence(job, t, started)?;
            if let Some(d) = &req.delivery_id {
                input::identifier("deliveryId", d, 128)?;
            }
            let started_by = match &req.backfill {
                Some(b) => {
                    input::identifier("backfill.requestedBy", &b.requested_by, 256)?;
                    if let Some(p) = b.policy {
                        concurrency = p;
                    }
                    format!("backfill:{}", b.requested_by)
                }
                None => "scheduler".to_string(),
            };
            (
                Trigger::Scheduled,
                Some(crate::platform::time::rfc3339(t)),
                occurrence::key(&job.name, t),
                started_by,
            )
        }
        (None, Some(m)) => {
            if req.delivery_id.is_some() {
                return Err(InputError::field(
                    "deliveryId",
                    "only for scheduled deliveries",
                ));
            }
            command = job.command_with(&m.parameters).map_err(|(k, e)| {
                InputError::field(&format!("manual.parameters.{}", input::truncate(&k, 60)), e)
            })?;
            for (k, v) in &m.environment {
                input::env_override_name("manual.environment", k)?;
                if !job.manual_environment.contains(k) {
                    return Err(InputError::field(
                        &format!("manual.environment.{k}"),
                        format!(
                            "{k} is not in job {:?}'s `manual.environment` allowlist ({})",
                            job.name,
                            if job.manual_environment.is_empty() {
                                "empty".to_string()
                            } else {
                                job.manual_environment.join(", ")
                            }
                        ),
                    ));
                }
                input::visible_text(&format!("manual.environment.{k}"), v, 1024)?;
                env.insert(k.clone(), v.clone());
            }
            if let Some(t) = m.timeout_seconds {
                if !(1..=86400).contains(&t) {
                    return Err(InputError::field(
                        "manual.timeoutSeconds",
                        "must be 1-86400",
                    ));
                }
                timeout = t;
            }
            let who = match &m.requested_by {
                Some(w) => {
                    input::identifier("manual.requestedBy", w, 256)?;
                    w.clone()
                }
                None => "unattributed".to_string(),
            };
            (
                Trigger::Manual,
                None,
                occurrence::manual_key(&job.name, &execution.name),
                who,
            )
        }
        (Some(_), Some(_)) => {
            return Err(InputError::field(
                "manual",
                "a run is either scheduled (scheduledTime) or manual, not both",
            ))
        }
        (None, None) => {
            return Err(InputError::field(
                "scheduledTime",
                "missing (or give `manual` for a run now)",
            ))
        }
    };
    let (cpu, memory) = job.task_size.cpu_memory();
    let token_src = format!("{environment}|{key}");
    let client_token = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(token_src.as_bytes()))
    };
    Ok(JobRun {
        run_id: execution.id.clone(),
        workflow: WORKFLOW.to_string(),
        environment: environment.to_string(),
        execution_name: execution.name.clone(),
        job: job.name.clone(),
        trigger,
        occurrence,
        occurrence_key: key,
        delivery_id: req.delivery_id,
        started_by,
        started_at,
        command,
        environment_overrides: env,
        cpu,
        memory,
        timeout_seconds: timeout,
        concurrency,
        lease: super::lease::name(environment, &job.name),
        lease_ttl_seconds: timeout + LEASE_MARGIN_SECONDS,
        catch_up_seconds: job.catch_up_seconds,
        notify_channel: job.notify_channel.clone(),
        mention: job.mention.clone(),
        client_token,
        backfill: req.backfill.is_some(),
    })
}

/// Pure: is the occurrence past its catch-up window at `now`? Returns (stale, late by).
pub fn lateness(run: &JobRun, now: DateTime<Utc>) -> (bool, Option<i64>) {
    match run
        .occurrence
        .as_deref()
        .and_then(|o| crate::platform::time::parse("occurrence", o).ok())
    {
        Some(t) => {
            let late = (now - t).num_seconds();
            (late > run.catch_up_seconds as i64, Some(late))
        }
        None => (false, None),
    }
}

/// The task as the workflow tracks it while waiting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaskState {
    pub task_arn: String,
    pub log_group: String,
    pub log_stream: String,
    /// The next wait's timeout (the safety-net poll runs when it passes).
    pub wait_seconds: u64,
    /// Seconds waited so far (by Step Functions' clock: the sum of wait timeouts).
    pub waited_seconds: u64,
    pub timed_out: bool,
    #[serde(default)]
    pub last_poll: Option<TaskOutcome>,
}

/// The next wait: the safety-net interval, but never past the job's timeout.
pub fn next_wait(run: &JobRun, waited: u64) -> u64 {
    let remaining = run.timeout_seconds.saturating_sub(waited);
    remaining.clamp(1, POLL_EVERY_SECONDS)
}

/// The state the workflow carries from step to step (the ASL's `$`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobState {
    pub run: JobRun,
    pub claim: ClaimResult,
    #[serde(default)]
    pub lease: Option<LeaseResult>,
    #[serde(default)]
    pub task: Option<TaskState>,
    #[serde(default)]
    pub outcome: Option<TaskOutcome>,
    #[serde(default)]
    pub logs: Option<CollectedLogs>,
    #[serde(default)]
    pub logs_error: Option<StepError>,
    #[serde(default)]
    pub error: Option<StepError>,
    #[serde(default)]
    pub record: Option<Recorded>,
    #[serde(default)]
    pub notification: Option<Value>,
    #[serde(default)]
    pub notify_error: Option<StepError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlackPost {
    pub channel: String,
    pub text: String,
}

/// What `RecordJobRun` adds to the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    pub status: RunStatus,
    #[serde(default)]
    pub failure_cause: Option<String>,
    #[serde(default)]
    pub slack: Option<SlackPost>,
    pub output: JobOutput,
}

/// What a succeeded or skipped execution ends with (`$.record.output`); every field is
/// present, `null` when it does not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JobOutput {
    pub job: String,
    pub status: RunStatus,
    pub trigger: Trigger,
    pub occurrence: Option<String>,
    pub occurrence_key: String,
    pub task_arn: Option<String>,
    pub exit_code: Option<i32>,
    pub duration_seconds: Option<i64>,
    pub log_uri: Option<String>,
    pub log_sha256: Option<String>,
    pub skipped_because: Option<String>,
}

/// Pure: the run's status.
pub fn status_of(state: &JobState) -> RunStatus {
    if state.error.is_some() {
        return RunStatus::Error;
    }
    if state.claim.stale {
        return RunStatus::SkippedStale;
    }
    if state.lease.as_ref().is_some_and(|l| !l.acquired) {
        return RunStatus::SkippedRunning;
    }
    if state.task.as_ref().is_some_and(|t| t.timed_out) {
        return RunStatus::TimedOut;
    }
    match &state.outcome {
        Some(o)
            if o.stopped_reason
                .as_deref()
                .is_some_and(|r| r.starts_with("replaced by")) =>
        {
            RunStatus::Replaced
        }
        Some(o) if o.exit_code == Some(0) => RunStatus::Succeeded,
        _ => RunStatus::Failed,
    }
}

fn what(run: &JobRun) -> String {
    match &run.occurrence {
        Some(o) => format!("Job {} (occurrence {o})", run.job),
        None => format!("Job {} (manual run by {})", run.job, run.started_by),
    }
}

/// What the console / CLI reads when the run did not succeed.
pub fn failure_cause(state: &JobState, status: RunStatus) -> String {
    let run = &state.run;
    let mut text = String::new();
    let o = state.outcome.as_ref();
    match status {
        RunStatus::Error => {
            let e = state.error.as_ref().expect("ERROR has an error");
            text.push_str(&format!(
                "{} could not complete: {}: {}\n",
                what(run),
                e.error,
                e.message()
            ));
        }
        RunStatus::TimedOut => text.push_str(&format!(
            "{} timed out after {}s: task {} was stopped (exit code {}).\n",
            what(run),
            run.timeout_seconds,
            state
                .task
                .as_ref()
                .map(|t| t.task_arn.as_str())
                .unwrap_or("?"),
            o.and_then(|o| o.exit_code)
                .map(|c| c.to_string())
                .unwrap_or("none".into())
        )),
        RunStatus::Replaced => text.push_str(&format!(
            "{} was replaced by a newer run: {}.\n",
            what(run),
            o.and_then(|o| o.stopped_reason.clone()).unwrap_or_default()
        )),
        _ => text.push_str(&format!(
            "{} failed with exit code {}: task {} ({}).\n",
            what(run),
            o.and_then(|o| o.exit_code)
                .map(|c| c.to_string())
                .unwrap_or("none".into()),
            o.map(|o| o.task_arn.as_str()).unwrap_or("?"),
            o.and_then(|o| o.stopped_reason.clone()).unwrap_or_default()
        )),
    }
    text.push_str(&crate::shared::cause::log_section(
        state.logs.as_ref(),
        state.logs_error.as_ref(),
    ));
    crate::shared::cause::finish(&text)
}

/// Pure: how a finished state is recorded, and the Slack post (failures only).
pub fn record(
    state: &JobState,
    jobs_channel: &str,
    people: Option<&crate::shared::people::People>,
) -> Recorded {
    let status = status_of(state);
    let run = &state.run;
    let failure_cause = match status {
        RunStatus::Succeeded | RunStatus::SkippedRunning | RunStatus::SkippedStale => None,
        _ => Some(failure_cause(state, status)),
    };
    let o = state.outcome.as_ref();
    let output = JobOutput {
        job: run.job.clone(),
        status,
        trigger: run.trigger,
        occurrence: run.occurrence.clone(),
        occurrence_key: run.occurrence_key.clone(),
        task_arn: state.task.as_ref().map(|t| t.task_arn.clone()),
        exit_code: o.and_then(|o| o.exit_code),
        duration_seconds: o.and_then(|o| o.duration_seconds),
        log_uri: state.logs.as_ref().map(|l| l.uri.clone()),
        log_sha256: state.logs.as_ref().map(|l| l.sha256.clone()),
        skipped_because: match status {
            RunStatus::SkippedRunning => Some(format!(
                "a previous run is live ({})",
                state
                    .lease
                    .as_ref()
                    .and_then(|l| l.held_by.clone())
                    .unwrap_or_default()
            )),
            RunStatus::SkippedStale => Some(format!(
                "delivered {}s after the occurrence; the catch-up window is {}s",
                state.claim.late_by_seconds.unwrap_or_default(),
                run.catch_up_seconds
            )),
            _ => None,
        },
    };
    let slack = match status {
        RunStatus::Failed | RunStatus::TimedOut | RunStatus::Error => {
            Some(slack_message(state, status, jobs_channel, people))
        }
        _ => None,
    };
    Recorded {
        status,
        failure_cause,
        slack,
        output,
    }
}

fn slack_message(
    state: &JobState,
    status: RunStatus,
    jobs_channel: &str,
    people: Option<&crate::shared::people::People>,
) -> SlackPost {
    let run = &state.run;
    let head = match status {
        RunStatus::TimedOut => format!(
            ":hourglass: Job `{}` *timed out* after {}s on *{}*",
            run.job, run.timeout_seconds, run.environment
        ),
        RunStatus::Error => format!(
            ":warning: Job `{}` on *{}* could not complete: {}",
            run.job,
            run.environment,
            state
                .error
                .as_ref()
                .map(|e| e.error.as_str())
                .unwrap_or("error")
        ),
        _ => format!(
            ":x: Job `{}` *failed* with exit code {} on *{}*",
            run.job,
            state
                .outcome
                .as_ref()
                .and_then(|o| o.exit_code)
                .map(|c| c.to_string())
                .unwrap_or("none".into()),
            run.environment
        ),
    };
    let when = match &run.occurrence {
        Some(o) => format!(" — occurrence {o}"),
        None => format!(" — manual run by {}", run.started_by),
    };
    let mentions: Vec<String> = run
        .mention
        .iter()
        .filter_map(|id| people.and_then(|p| p.by_id(id)))
        .map(|p| format!("<@{}>", p.slack_user_id))
        .collect();
    let mentions = if mentions.is_empty() {
        String::new()
    } else {
        format!(" {}", mentions.join(" "))
    };
    let log = match &state.logs {
        Some(l) => format!(
            "\nLog: <{}|{}> · <{}|CloudWatch>",
            l.console_url, l.uri, l.log_console_url
        ),
        None => String::new(),
    };
    let tail = match &state.logs {
        Some(l) => {
            let lines: Vec<&str> = l.tail.lines().collect();
            format!(
                "\n```{}```",
                lines[lines.len().saturating_sub(15)..].join("\n")
            )
        }
        None => String::new(),
    };
    let link = format!(
        "\nRun: <{}|{}>",
        crate::sfn::execution_console_url(&run.run_id),
        run.execution_name
    );
    SlackPost {
        channel: run
            .notify_channel
            .clone()
            .unwrap_or_else(|| jobs_channel.to_string()),
        text: crate::platform::redact::redact(&format!("{head}{when}.{mentions}{link}{log}{tail}"))
            .into_owned(),
    }
}

/// The run's record while it runs: one item per execution in the runs table
/// (`workflow` = scheduled-job), created once by the claim's winner.
pub fn running_record(run: &JobRun) -> RunRecord {
    RunRecord {
        run_id: run.run_id.clone(),
        workflow: run.workflow.clone(),
        environment: run.environment.clone(),
        execution_name: run.execution_name.clone(),
        started_at: run.started_at.clone(),
        started_by: run.started_by.clone(),
        status: RunStatus::Running,
        job: Some(run.job.clone()),
        trigger: Some(run.trigger.as_str().to_string()),
        occurrence: run.occurrence.clone(),
        occurrence_key: Some(run.occurrence_key.clone()),
        lock: (run.concurrency != Concurrency::Allow).then(|| run.lease.clone()),
        ..Default::default()
    }
}

/// The job history record of a finished state (the whole item: a retried record writes the
/// same one).
pub fn final_record(state: &JobState, recorded: &Recorded, ended_at: &str) -> RunRecord {
    let run = &state.run;
    let o = state.outcome.as_ref();
    RunRecord {
        status: recorded.status,
        task_arn: state.task.as_ref().map(|t| t.task_arn.clone()),
        exit_code: o.and_then(|o| o.exit_code),
        stopped_reason: o.and_then(|o| o.stopped_reason.clone()),
        ended_at: Some(ended_at.to_string()),
        duration_seconds: crate::platform::time::parse("startedAt", &run.started_at)
            .ok()
            .zip(crate::platform::time::parse("endedAt", ended_at).ok())
            .map(|(s, e)| crate::platform::time::seconds_between(s, e)),
        failure_cause: recorded.failure_cause.clone(),
        error: state.error.as_ref().map(|e| e.error.clone()),
        log_uri: state.logs.as_ref().map(|l| l.uri.clone()),
        log_console_url: state.logs.as_ref().map(|l| l.console_url.clone()),
        log_sha256: state.logs.as_ref().map(|l| l.sha256.clone()),
        ..running_record(run)
    }
}

/// Occurrences of enabled jobs due in `[from, to]` (the missed-run check's candidates).
pub fn due_between(
    jobs: &JobsFile,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(String, DateTime<Utc>)> {
    let mut out = Vec::new();
    for j in jobs.jobs.iter().filter(|j| j.enabled) {
        for t in j.parsed_schedule().occurrences(from, to, 500) {
            out.push((j.name.clone(), t));
        }
    }
    out
}

/// The missed-run check's window at `now`: occurrences whose catch-up window has closed,
/// within `lookback`.
pub fn missed_window(
    job: &Job,
    now: DateTime<Utc>,
    lookback: Duration,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let to = now - job.catch_up() - Duration::seconds(1);
    (to - lookback, to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exec() -> Execution {
        Execution {
            id:
                "arn:aws:states:us-east-1:123456789012:execution:batchless-staging-scheduled-job:e1"
                    .into(),
            name: "e1".into(),
            start_time: "2026-11-28T13:15:02.123+00:00".into(),
        }
    }

    fn jobs() -> JobsFile {
        JobsFile::embedded()
    }

    #[test]
    fn a_delivery_becomes_a_run_keyed_on_the_minute() {
        let run = validate(
            json!({"job": "sync-exchange-rates", "scheduledTime": "2026-11-28T13:15:00Z", "deliveryId": "d-1"}),
            &exec(),
            "staging",
            &jobs(),
        )
        .unwrap();
        assert_eq!(
            run.occurrence_key,
            "sync-exchange-rates#2026-11-28T13:15:00Z"
        );
        assert_eq!(run.trigger, Trigger::Scheduled);
        assert_eq!(run.started_at, "2026-11-28T13:15:02Z");
        assert_eq!(run.concurrency, Concurrency::Replace);
        assert_eq!(run.lease, "job:staging:sync-exchange-rates");
        assert_eq!(run.client_token.len(), 64);
        // Another delivery (another execution, another delivery id) has the same key and token.
        let other = Execution {
            id: "arn:x:e2".into(),
            name: "e2".into(),
            ..exec()
        };
        let run2 = validate(
            json!({"job": "sync-exchange-rates", "scheduledTime": "2026-11-28T13:15:00.5Z", "deliveryId": "d-2"}),
            &other,
            "staging",
            &jobs(),
        )
        .unwrap();
        assert_eq!(run2.occurrence_key, run.occurrence_key);
        assert_eq!(run2.client_token, run.client_token);
    }

    #[test]
    fn a_manual_run_has_its_own_key_and_only_declared_parameters() {
        let run = validate(
            json!({"job": "purge-expired-sessions", "manual": {"requestedBy": "alice", "environment": {"FAKE_EXIT_CODE": "3"}, "timeoutSeconds": 60}}),
            &exec(),
            "staging",
            &jobs(),
        )
        .unwrap();
        assert_eq!(run.occurrence_key, "purge-expired-sessions#manual#e1");
        assert_eq!(run.command, "bin/rake sessions:purge");
        assert_eq!(run.environment_overrides["FAKE_EXIT_CODE"], "3");
        assert_eq!(run.environment_overrides["PURGE_BATCH_SIZE"], "5000");
        assert_eq!(run.timeout_seconds, 60);
        assert_eq!(run.started_by, "alice");
        let runner = validate(
            json!({"job": "nightly-billing-report", "manual": {"parameters": {"month": "2026-10"}}}),
            &exec(),
            "staging",
            &jobs(),
        )
        .unwrap();
        assert_eq!(
            runner.command,
            "bin/rails runner script/nightly_billing_report.rb --month '2026-10'"
        );
        let rake = validate(
            json!({"job": "sync-exchange-rates", "manual": {"parameters": {"currency": "EUR"}}}),
            &exec(),
            "staging",
            &jobs(),
        )
        .unwrap();
        assert_eq!(rake.command, "bin/rake 'rates:sync[EUR]'");
    }

    /// Issue 16: nothing a manual run gives can become another rake task, a rake or Ruby
    /// option, or a variable the job does not allow.
    #[test]
    fn a_manual_run_cannot_smuggle_tasks_options_or_variables() {
        let cases = [
            // Free arguments are gone: `db:drop` appended, `-E '<ruby>'`.
            (
                json!({"job": "purge-expired-sessions", "manual": {"arguments": ["db:drop"]}}),
                "unknown field `arguments`",
            ),
            (
                json!({"job": "sync-exchange-rates", "manual": {"arguments": ["-E", "system('id')"]}}),
                "unknown field `arguments`",
            ),
            // Undeclared parameter.
            (
                json!({"job": "purge-expired-sessions", "manual": {"parameters": {"task": "db:drop"}}}),
                "`manual.parameters.task`: \"task\" is not a parameter of job \"purge-expired-sessions\" (declared: none)",
            ),
            // Declared, but the value does not match, or would be read as a task or an option.
            (
                json!({"job": "sync-exchange-rates", "manual": {"parameters": {"currency": "EUR] db:drop"}}}),
                "`manual.parameters.currency`",
            ),
            (
                json!({"job": "sync-exchange-rates", "manual": {"parameters": {"currency": "usd"}}}),
                "does not match the pattern",
            ),
            (
                json!({"job": "nightly-billing-report", "manual": {"parameters": {"month": "-E"}}}),
                "starts with `-`",
            ),
            (
                json!({"job": "nightly-billing-report", "manual": {"parameters": {"month": "2026-10 --x"}}}),
                "does not match the pattern",
            ),
            // Variables: allowed ones only, and never a denylisted one.
            (
                json!({"job": "sync-exchange-rates", "manual": {"environment": {"RAILS_LOG_LEVEL": "debug"}}}),
                "`manual.environment.RAILS_LOG_LEVEL`: RAILS_LOG_LEVEL is not in job \"sync-exchange-rates\"'s `manual.environment` allowlist",
            ),
            (
                json!({"job": "sync-exchange-rates", "manual": {"environment": {"RUBYOPT": "-r/tmp/x"}}}),
                "RUBYOPT is reserved",
            ),
            (
                json!({"job": "sync-exchange-rates", "manual": {"environment": {"RAKEOPT": "db:drop"}}}),
                "RAKEOPT is reserved",
            ),
        ];
        for (input, want) in cases {
            let err = validate(input.clone(), &exec(), "staging", &jobs()).unwrap_err();
            assert!(err.message.contains(want), "{input} -> {err}");
        }
    }

    #[test]
    fn rake_values_can_never_leave_their_brackets() {
        let job = Job {
            parameters: vec![super::super::config::Parameter {
                name: "x".into(),
                pattern: ".*".into(),
            }],
            ..jobs().get("sync-exchange-rates").unwrap().clone()
        };
        for bad in [
            "a,b", "a]", "a[b", "a b", "A=1", "it's", "\"x\"", "-T", "a\tb",
        ] {
            let p = BTreeMap::from([("x".to_string(), bad.to_string())]);
            assert!(job.command_with(&p).is_err(), "{bad:?} passed");
        }
        let p = BTreeMap::from([("x".to_string(), "2026-11-01".to_string())]);
        assert_eq!(
            job.command_with(&p).unwrap(),
            "bin/rake 'rates:sync[2026-11-01]'"
        );
    }

    #[test]
    fn the_console_example_is_valid() {
        let mut example: Value = serde_json::from_str(include_str!(
            "../../../../infra/examples/scheduled-job-manual-input.json"
        ))
        .unwrap();
        // What `run --seal-only` makes of it: the decision endpoint writes in who asks.
        use crate::shared::submission::{fill, Workflow};
        fill(
            Workflow::ScheduledJob,
            &mut example,
            "arn:aws:iam::123456789012:user/alice",
            "alice",
        )
        .unwrap();
        let run = validate(example, &exec(), "staging", &jobs()).unwrap();
        assert_eq!(run.trigger, Trigger::Manual);
        assert_eq!(run.started_by, "alice");
    }

    #[test]
    fn bad_requests_name_the_field() {
        let cases = [
            (
                json!({"job": "nope", "scheduledTime": "2026-11-28T13:15:00Z"}),
                "`job`",
            ),
            (
                json!({"job": "sync-exchange-rates", "scheduledTime": "soon"}),
                "`scheduledTime`",
            ),
            (
                json!({"job": "sync-exchange-rates"}),
                "`scheduledTime`: missing",
            ),
            (
                json!({"job": "sync-exchange-rates", "scheduledTime": "2026-11-28T13:15:00Z", "extra": 1}),
                "unknown field `extra`",
            ),
            (
                json!({"job": "sync-exchange-rates", "manual": {"environment": {"DATABASE_URL": "x"}}}),
                "reserved",
            ),
            (
                json!({"job": "sync-exchange-rates", "manual": {"colour": 1}}),
                "unknown field `colour`",
            ),
            (
                json!({"job": "sync-exchange-rates", "manual": {}, "scheduledTime": "2026-11-28T13:15:00Z"}),
                "not both",
            ),
            (
                json!({"scheduledTime": "2026-11-28T13:15:00Z"}),
                "missing field `job`",
            ),
        ];
        for (input, want) in cases {
            let err = validate(input.clone(), &exec(), "staging", &jobs()).unwrap_err();
            assert!(err.message.contains(want), "{input} -> {err}");
        }
    }

    /// Issue 16: only real, non-future occurrences are accepted.
    #[test]
    fn deliveries_are_real_occurrences() {
        // exec() started 2026-11-28T13:15:02Z.
        let ok = |t: &str| {
            validate(
                json!({"job": "sync-exchange-rates", "scheduledTime": t}),
                &exec(),
                "staging",
                &jobs(),
            )
        };
        ok("2026-11-28T13:15:00Z").unwrap();
        // Within Scheduler's precision of the execution's start.
        let early = Execution {
            start_time: "2026-11-28T13:14:30Z".into(),
            ..exec()
        };
        validate(
            json!({"job": "sync-exchange-rates", "scheduledTime": "2026-11-28T13:15:00Z"}),
            &early,
            "staging",
            &jobs(),
        )
        .unwrap();
        ok("2026-11-27T13:00:00Z").unwrap(); // an old one (the claim decides: stale)
                                             // purge-expired-sessions runs at :30 past each hour.
        let off = validate(
            json!({"job": "purge-expired-sessions", "scheduledTime": "2026-11-28T13:07:00Z"}),
            &exec(),
            "staging",
            &jobs(),
        )
        .unwrap_err();
        assert!(
            off.message
                .contains("`scheduledTime`: 2026-11-28T13:07:00Z is not an occurrence"),
            "{off}"
        );
        let future = ok("2026-11-29T13:15:00Z").unwrap_err();
        assert!(future.message.contains("lies in the future"), "{future}");
        let soon = ok("2026-11-28T13:30:00Z").unwrap_err();
        assert!(soon.message.contains("lies in the future"), "{soon}");
        // In the job's own time zone: 03:00 Asia/Tokyo is 18:00Z, not 03:00Z.
        let report = |t: &str| {
            validate(
                json!({"job": "nightly-billing-report", "scheduledTime": t}),
                &exec(),
                "staging",
                &jobs(),
            )
        };
        report("2026-11-27T18:00:00Z").unwrap();
        assert!(report("2026-11-28T03:00:00Z").is_err());
    }

    #[test]
    fn staleness_and_waits() {
        let run = validate(
            json!({"job": "sync-exchange-rates", "scheduledTime": "2026-11-28T13:15:00Z"}),
            &exec(),
            "staging",
            &jobs(),
        )
        .unwrap();
        let t = |s| crate::platform::time::parse("t", s).unwrap();
        assert_eq!(
            lateness(&run, t("2026-11-28T13:20:00Z")),
            (false, Some(300))
        );
        assert_eq!(lateness(&run, t("2026-11-28T13:25:01Z")), (true, Some(601)));
        assert_eq!(next_wait(&run, 0), 300);
        assert_eq!(next_wait(&run, 500), 100);
        assert_eq!(next_wait(&run, 600), 1);
    }

    fn state(outcome: Option<TaskOutcome>) -> JobState {
        let run = validate(
            json!({"job": "nightly-billing-report", "scheduledTime": "2026-11-27T18:00:00Z"}),
            &exec(),
            "staging",
            &jobs(),
        )
        .unwrap();
        JobState {
            claim: ClaimResult {
                outcome: ClaimOutcome::Claimed,
                occurrence_key: run.occurrence_key.clone(),
                claimed_by: run.run_id.clone(),
                stale: false,
                late_by_seconds: Some(2),
            },
            run,
            lease: Some(LeaseResult {
                acquired: true,
                policy: Concurrency::Forbid,
                ..Default::default()
            }),
            task: Some(TaskState {
                task_arn: "arn:aws:ecs:us-east-1:1:task/c/t1".into(),
                ..Default::default()
            }),
            outcome,
            logs: Some(CollectedLogs {
                uri: "s3://b/logs/scheduled-job/e1/task.log".into(),
                console_url: "https://console/s3".into(),
                log_console_url: "https://console/cw".into(),
                sha256: "ab".repeat(32),
                bytes: 10,
                lines: 2,
                tail: "Connecting to postgres://app:hunter2@db/app\nrake aborted!".into(),
            }),
            logs_error: None,
            error: None,
            record: None,
            notification: None,
            notify_error: None,
        }
    }

    fn ended(code: i32, reason: &str) -> TaskOutcome {
        TaskOutcome {
            task_arn: "arn:aws:ecs:us-east-1:1:task/c/t1".into(),
            finished: true,
            last_status: "STOPPED".into(),
            exit_code: Some(code),
            stopped_reason: Some(reason.into()),
            ..Default::default()
        }
    }

    #[test]
    fn failure_is_recorded_with_exit_code_redacted_tail_and_a_mention() {
        let people =
            crate::shared::people::People::parse(crate::shared::people::EMBEDDED, "staging")
                .unwrap();
        let r = record(
            &state(Some(ended(3, "Essential container in task exited"))),
            "CJOBS",
            Some(&people),
        );
        assert_eq!(r.status, "FAILED");
        let cause = r.failure_cause.unwrap();
        assert!(cause.contains("failed with exit code 3"), "{cause}");
        assert!(
            cause.contains("rake aborted!") && !cause.contains("hunter2"),
            "{cause}"
        );
        let slack = r.slack.unwrap();
        assert_eq!(slack.channel, "CJOBS");
        assert!(
            slack.text.contains("*failed* with exit code 3") && slack.text.contains("<@U0ALICE01>"),
            "{}",
            slack.text
        );
        assert!(!slack.text.contains("hunter2"));
    }

    #[test]
    fn statuses() {
        assert_eq!(status_of(&state(Some(ended(0, "x")))), "SUCCEEDED");
        assert_eq!(
            status_of(&state(Some(ended(143, "replaced by e2")))),
            "REPLACED"
        );
        let mut s = state(Some(ended(143, "x")));
        s.task.as_mut().unwrap().timed_out = true;
        assert_eq!(status_of(&s), "TIMED_OUT");
        let mut s = state(None);
        s.lease = Some(LeaseResult {
            acquired: false,
            policy: Concurrency::Forbid,
            held_by: Some("e0".into()),
            ..Default::default()
        });
        let r = record(&s, "C", None);
        assert_eq!(r.status, "SKIPPED_RUNNING");
        assert!(r.slack.is_none() && r.failure_cause.is_none());
        let mut s = state(None);
        s.claim.stale = true;
        assert_eq!(status_of(&s), "SKIPPED_STALE");
    }

    #[test]
    fn missed_window_ends_where_catch_up_ends() {
        let j = jobs().get("sync-exchange-rates").unwrap().clone();
        let now = crate::platform::time::parse("t", "2026-11-28T14:00:00Z").unwrap();
        let (from, to) = missed_window(&j, now, Duration::hours(1));
        let occ = j.parsed_schedule().occurrences(from, to, 100);
        assert_eq!(
            occ.last()
                .map(|t| crate::platform::time::rfc3339(*t))
                .as_deref(),
            Some("2026-11-28T13:49:00Z")
        );
        assert_eq!(occ.len(), 60);
    }
}
