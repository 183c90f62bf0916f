//! The DB migration workflow's domain: its input, the run it becomes, how the run is recorded,
//! what the deploying engineer reads when it fails, and what Slack is told.

pub mod approval;
pub mod pipeline;
pub mod preflight;
pub mod report;
pub mod steps;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::migration::report::MigrationReport;
use crate::platform::input::{self, InputError};
use crate::platform::slack::{Message, Posted};
use crate::sfn::{execution_console_url, Execution, StepError};
use crate::shared::build::BuildOutcome;
use crate::shared::build::StartedBuild;
use crate::shared::logs::CollectedLogs;
use crate::shared::runs::{RunRecord, RunStatus};

pub const WORKFLOW: &str = "migration";
/// The state machine's `TimeoutSeconds` (`statemachines/migration.asl.json`): above two of
/// the largest builds the template allows (`MigrationTimeoutMinutes` MaxValue 480: the first
/// build and, when the findings need one, the approved build), the longest approval wait
/// (`MigrationApprovalTimeoutMinutes` MaxValue 420) and the workflow's own steps, within
/// CodePipeline's 24 hours for a Lambda invoke action; `timeout_tests` checks both files.
pub const STATE_MACHINE_TIMEOUT_SECONDS: u64 =
    2 * MAX_BUILD_TIMEOUT_MINUTES * 60 + approval::MAX_APPROVAL_TIMEOUT_MINUTES * 60 + 30 * 60;
/// `MigrationTimeoutMinutes`' MaxValue in `infra/template.yaml`.
pub const MAX_BUILD_TIMEOUT_MINUTES: u64 = 480;
/// Longer than the state machine's own timeout, so only an abandoned lock ever expires.
pub const LOCK_TTL_SECONDS: u64 = STATE_MACHINE_TIMEOUT_SECONDS + 30 * 60;
pub const MAX_OVERRIDES: usize = 20;
pub const MAX_OVERRIDE_VALUE: usize = 1024;

/// What starts a migration (console, CLI, CodePipeline). Documented in README.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MigrationRequest {
    pub commit: String,
    #[serde(default)]
    pub pipeline: Option<PipelineRef>,
    #[serde(default)]
    pub environment_overrides: BTreeMap<String, String>,
    #[serde(default)]
    pub started_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PipelineRef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_execution_id: Option<String>,
}

/// A validated migration run: everything later steps need, decided once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MigrationRun {
    pub run_id: String,
    pub workflow: String,
    pub environment: String,
    pub execution_name: String,
    pub started_at: String,
    pub started_by: String,
    pub commit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineRef>,
    #[serde(default)]
    pub environment_overrides: BTreeMap<String, String>,
    pub lock: String,
    pub lock_ttl_seconds: u64,
}

/// Validate a request strictly (its shape is already checked by serde); nothing is started or
/// written for a bad one.
pub fn validate(
    req: MigrationRequest,
    execution: &Execution,
    environment: &str,
) -> Result<MigrationRun, InputError> {
    let commit = input::commit_sha("commit", &req.commit)?;
    if req.environment_overrides.len() > MAX_OVERRIDES {
        return Err(InputError::field(
            "environmentOverrides",
            format!("at most {MAX_OVERRIDES} variables"),
        ));
    }
    for (name, value) in &req.environment_overrides {
        input::env_override_name("environmentOverrides", name)?;
        if name.starts_with("BATCHLESS_") {
            // The shim's settings (policy, timeouts, approval) come from configuration only.
            return Err(InputError::field(
                &format!("environmentOverrides.{name}"),
                "BATCHLESS_* variables are reserved for the migration's own settings",
            ));
        }
        input::visible_text(
            &format!("environmentOverrides.{name}"),
            value,
            MAX_OVERRIDE_VALUE,
        )?;
        if value.contains('\n') {
            return Err(InputError::field(
                &format!("environmentOverrides.{name}"),
                "must be a single line",
            ));
        }
    }
    if let Some(p) = &req.pipeline {
        input::identifier("pipeline.name", &p.name, 100)?;
        for (field, v) in [
            ("pipeline.executionId", &p.execution_id),
            ("pipeline.actionExecutionId", &p.action_execution_id),
        ] {
            if let Some(v) = v {
                input::identifier(field, v, 128)?;
            }
        }
    }
    let started_by = match (&req.started_by, &req.pipeline) {
        (Some(who), _) => {
            input::identifier("startedBy", who, 256)?;
            who.clone()
        }
        (None, Some(p)) => pipeline::pipeline_starter(&p.name),
        (None, None) => "unattributed".to_string(),
    };
    Ok(MigrationRun {
        run_id: execution.id.clone(),
        workflow: WORKFLOW.to_string(),
        environment: environment.to_string(),
        execution_name: execution.name.clone(),
        // Step Functions gives microseconds and `+00:00`; records use one sortable form.
        started_at: crate::platform::time::rfc3339(crate::platform::time::parse(
            "execution.startTime",
            &execution.start_time,
        )?),
        started_by,
        commit,
        pipeline: req.pipeline,
        environment_overrides: req.environment_overrides,
        lock: format!("migration:{environment}"),
        lock_ttl_seconds: LOCK_TTL_SECONDS,
    })
}

/// How a migration run ended, as recorded (the runs table's status strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MigrationStatus {
    /// The build succeeded.
    Succeeded,
    /// The build ran and failed (the migration itself failed).
    Failed,
    /// The workflow could not complete (a step errored before the build ended).
    Error,
}

impl MigrationStatus {
    /// The shared run status this ending is recorded as.
    pub fn run_status(self) -> RunStatus {
        match self {
            MigrationStatus::Succeeded => RunStatus::Succeeded,
            MigrationStatus::Failed => RunStatus::Failed,
            MigrationStatus::Error => RunStatus::Error,
        }
    }

    /// The runs table's status string.
    pub fn as_str(self) -> &'static str {
        self.run_status().as_str()
    }
}

/// What the workflow's execution outputs on success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MigrationOutput {
    pub commit: String,
    pub build_id: Option<String>,
    pub status: MigrationStatus,
    pub duration_seconds: Option<i64>,
    pub log_uri: Option<String>,
    pub log_console_url: Option<String>,
    pub log_sha256: Option<String>,
    /// Pre-flight, findings, per-migration duration, lock waits and retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<MigrationReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Recorded {
    pub status: MigrationStatus,
    #[serde(default)]
    pub failure_cause: Option<String>,
    pub output: MigrationOutput,
}

/// The input of a step that needs only the validated run (`{"run.$": "$.run"}`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunInput {
    pub run: MigrationRun,
}

/// The state the workflow carries from step to step (the ASL's `$`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MigrationState {
    pub run: MigrationRun,
    /// `AskApproval`'s reading of the run's approval (`null` from `ValidateInput` on).
    #[serde(default)]
    pub approval: Option<approval::ApprovalState>,
    #[serde(default)]
    pub build: Option<StartedBuild>,
    #[serde(default)]
    pub outcome: Option<BuildOutcome>,
    #[serde(default)]
    pub logs: Option<CollectedLogs>,
    #[serde(default)]
    pub logs_error: Option<StepError>,
    #[serde(default)]
    pub report: Option<MigrationReport>,
    #[serde(default)]
    pub report_error: Option<StepError>,
    #[serde(default)]
    pub error: Option<StepError>,
    #[serde(default)]
    pub record: Option<Recorded>,
    #[serde(default)]
    pub notification: Option<Posted>,
    #[serde(default)]
    pub notify_error: Option<StepError>,
}

/// A commit as the messages show it: its first 12 characters.
pub(crate) fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// Pure: how a finished state is recorded.
pub fn record(state: &MigrationState) -> Recorded {
    let status = if state.error.is_some() {
        MigrationStatus::Error
    } else if state.outcome.as_ref().is_some_and(|o| o.succeeded) {
        MigrationStatus::Succeeded
    } else {
        MigrationStatus::Failed
    };
    let failure_cause = match status {
        MigrationStatus::Succeeded => None,
        _ => Some(failure_cause(state)),
    };
    Recorded {
        status,
        failure_cause,
        output: MigrationOutput {
            commit: state.run.commit.clone(),
            build_id: state.build.as_ref().map(|b| b.build_id.clone()),
            status,
            duration_seconds: state.outcome.as_ref().and_then(|o| o.duration_seconds),
            log_uri: state.logs.as_ref().map(|l| l.uri.clone()),
            log_console_url: state.logs.as_ref().map(|l| l.console_url.clone()),
            log_sha256: state.logs.as_ref().map(|l| l.sha256.clone()),
            report: state.report.clone(),
        },
    }
}

/// What a CodePipeline user reads: the failed phase, its context, where the log is, and the
/// redacted tail.
pub fn failure_cause(state: &MigrationState) -> String {
    let run = &state.run;
    let mut text = String::new();
    if let Some(err) = &state.error {
        text.push_str(&format!(
            "Migration of {} could not complete: {}: {}\n",
            short(&run.commit),
            err.error,
            err.message()
        ));
    } else if let Some(o) = &state.outcome {
        let failing = state.report.as_ref().and_then(|r| r.failure());
        match failing {
            Some(f) => text.push_str(&format!(
                "Migration of {} failed: {} {} (build {} ended {} in phase {}).\n",
                short(&run.commit),
                f.version,
                f.class_name,
                o.build_id,
                o.status,
                o.failed_phase.as_deref().unwrap_or("(unknown)")
            )),
            None => text.push_str(&format!(
                "Migration of {} failed: build {} ended {} in phase {}.\n",
                short(&run.commit),
                o.build_id,
                o.status,
                o.failed_phase.as_deref().unwrap_or("(unknown)")
            )),
        }
        if let Some(ctx) = &o.phase_context {
            text.push_str(ctx);
            text.push('\n');
        }
    }
    let needs_approval = state
        .error
        .as_ref()
        .is_some_and(|e| e.error == crate::error::Kind::MigrationNeedsApproval.name());
    if let Some(r) = &state.report {
        if let Some(f) = r.failure_text() {
            text.push_str(&f);
        }
        // The pre-flight's own cause already holds the card; an approval's does not.
        if !needs_approval || state.approval.is_some() {
            text.push_str(&r.card(1800));
        }
    }
    // The log tail gets what is left of CodePipeline's 5,000 characters; the verdict, the
    // failing migration and the card come first and are kept.
    let head_chars = crate::platform::redact::redact(&text).chars().count();
    let budget = crate::shared::cause::MAX_CAUSE_CHARS.saturating_sub(head_chars + 200);
    let mut logs =
        crate::shared::cause::log_section(state.logs.as_ref(), state.logs_error.as_ref());
    if logs.chars().count() > budget {
        let chars: Vec<char> = logs.chars().collect();
        let (head, tail) = match logs.find("Last lines of the log:\n") {
            Some(i) => logs.split_at(i + "Last lines of the log:\n".len()),
            None => ("", logs.as_str()),
        };
        let keep = budget.saturating_sub(head.chars().count() + 2);
        let tail_chars: Vec<char> = tail.chars().collect();
        let kept: String = tail_chars[tail_chars.len().saturating_sub(keep)..]
            .iter()
            .collect();
        logs = if keep == 0 {
            chars.iter().take(budget).collect()
        } else {
            format!("{head}…{kept}")
        };
    }
    text.push_str(&logs);
    crate::shared::cause::finish(&text)
}

/// The fields every record of a run carries, from its start.
fn base_record(run: &MigrationRun, status: RunStatus) -> RunRecord {
    RunRecord {
        run_id: run.run_id.clone(),
        workflow: run.workflow.clone(),
        environment: run.environment.clone(),
        execution_name: run.execution_name.clone(),
        started_at: run.started_at.clone(),
        started_by: run.started_by.clone(),
        status,
        commit: Some(run.commit.clone()),
        lock: Some(run.lock.clone()),
        pipeline: run
            .pipeline
            .as_ref()
            .map(|p| serde_json::to_value(p).expect("serializes")),
        ..Default::default()
    }
}

/// SHA-256 (hex) of the buildspec every migration build gets (`preflight::buildspec`): the
/// sweep accepts that one, and only that one, as batchless's own.
pub fn buildspec_sha256() -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(preflight::buildspec().as_bytes()))
}

/// The history record of a run whose build has just started (`RUNNING`).
pub fn running_record(run: &MigrationRun, build_id: &str) -> RunRecord {
    RunRecord {
        build_id: Some(build_id.to_string()),
        ..base_record(run, RunStatus::Running)
    }
}

/// The history record for a finished state.
pub fn run_record(state: &MigrationState, recorded: &Recorded, ended_at: &str) -> RunRecord {
    let run = &state.run;
    RunRecord {
        build_id: recorded.output.build_id.clone(),
        ended_at: Some(ended_at.to_string()),
        duration_seconds: crate::platform::time::parse("startedAt", &run.started_at)
            .ok()
            .zip(crate::platform::time::parse("endedAt", ended_at).ok())
            .map(|(s, e)| crate::platform::time::seconds_between(s, e)),
        build_status: state.outcome.as_ref().map(|o| o.status.clone()),
        failed_phase: state.outcome.as_ref().and_then(|o| o.failed_phase.clone()),
        failure_cause: recorded.failure_cause.clone(),
        error: state.error.as_ref().map(|e| e.error.clone()),
        log_uri: state.logs.as_ref().map(|l| l.uri.clone()),
        log_console_url: state.logs.as_ref().map(|l| l.console_url.clone()),
        log_sha256: state.logs.as_ref().map(|l| l.sha256.clone()),
        log_bytes: state.logs.as_ref().map(|l| l.bytes),
        slack_ts: None,
        migration_report: report_value(state),
        // Every build batchless starts gets this buildspec (the sweep reads it from here).
        buildspec_sha256: recorded
            .output
            .build_id
            .as_ref()
            .map(|_| buildspec_sha256()),
        approval_id: state.approval.as_ref().map(|a| a.approval_id.clone()),
        preflight_build_id: state
            .approval
            .as_ref()
            .filter(|a| a.approved)
            .map(|a| a.preflight_build_id.clone()),
        ..base_record(run, recorded.status.run_status())
    }
}

/// The run's report as recorded: the report, or why it could not be read (ReadReport's
/// `reportError`: the run still ends on its build, and the gap is on the record).
fn report_value(state: &MigrationState) -> Option<serde_json::Value> {
    match (&state.report, &state.report_error) {
        (Some(r), _) => serde_json::to_value(r).ok(),
        (None, Some(e)) => Some(serde_json::json!({
            "unreadable": {"error": e.error, "cause": e.message()}
        })),
        (None, None) => None,
    }
}

/// The Slack message for a finished state (redacted).
pub fn slack_message(state: &MigrationState, channel: &str) -> Message {
    let run = &state.run;
    let recorded = state.record.clone().unwrap_or_else(|| record(state));
    let who = match &run.pipeline {
        Some(p) => format!("{} (pipeline {})", run.started_by, p.name),
        None => run.started_by.clone(),
    };
    let duration = recorded
        .output
        .duration_seconds
        .map(|s| format!(" in {s}s"))
        .unwrap_or_default();
    let log = match &state.logs {
        Some(l) => format!(
            "\nLog: <{}|{}> · <{}|CloudWatch> · sha256 `{}`",
            l.console_url,
            l.uri,
            l.log_console_url,
            &l.sha256[..l.sha256.len().min(16)]
        ),
        None => String::new(),
    };
    let head =
        match recorded.status {
            MigrationStatus::Succeeded => format!(
            ":white_check_mark: Migration of `{}` succeeded{duration} on *{}* — started by {who}.",
            short(&run.commit),
            run.environment
        ),
            MigrationStatus::Failed => {
                format!(
            ":x: Migration of `{}` *failed*{duration} on *{}* in phase {} — started by {who}.",
            short(&run.commit),
            run.environment,
            state.outcome.as_ref().and_then(|o| o.failed_phase.as_deref()).unwrap_or("(unknown)")
        )
            }
            MigrationStatus::Error => {
                format!(
            ":warning: Migration of `{}` on *{}* could not complete: {} — started by {who}.",
            short(&run.commit),
            run.environment,
            state.error.as_ref().map(|e| e.error.as_str()).unwrap_or("error")
        )
            }
        };
    let tail = match (recorded.status, &state.logs) {
        (MigrationStatus::Succeeded, _) | (_, None) => String::new(),
        (_, Some(l)) => {
            let lines: Vec<&str> = l.tail.lines().collect();
            let last = &lines[lines.len().saturating_sub(15)..];
            format!("\n```{}```", last.join("\n"))
        }
    };
    let run_link = format!(
        "\nRun: <{}|{}>",
        execution_console_url(&run.run_id),
        run.execution_name
    );
    let card = match (&state.report, &state.report_error) {
        (Some(r), _) => format!("\n{}", r.card(2500)),
        (None, Some(e)) => format!(
            "\nThe migration report could not be read ({}): see the build log.",
            e.error
        ),
        (None, None) => String::new(),
    };
    let failing = state
        .report
        .as_ref()
        .and_then(|r| r.failure_text())
        .map(|f| format!("\n{f}"))
        .unwrap_or_default();
    let redact = |t: &str| crate::platform::redact::redact(t).into_owned();
    let text = redact(&format!("{head}{run_link}{failing}{card}{log}{tail}"));
    let blocks = slack_blocks(
        state,
        &redact(&head),
        &redact(&run_link),
        &redact(&log),
        &redact(&tail),
    );
    Message {
        channel: channel.to_string(),
        text,
        blocks: Some(blocks),
        thread_ts: None,
    }
}

/// Slack mrkdwn: `&`, `<` and `>` escaped (user text never becomes a link or a mention).
fn escape_mrkdwn(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn section(text: &str) -> serde_json::Value {
    // A section's text may have at most 3,000 characters.
    let t: String = text.chars().take(2900).collect();
    serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": t}})
}

/// The result card as Block Kit: the verdict, the pending list with timings, lock waits and
/// retries, the findings with their recipes, the failing migration (statement and PG error),
/// then the log tail and links.
fn slack_blocks(
    state: &MigrationState,
    head: &str,
    run_link: &str,
    log: &str,
    tail: &str,
) -> serde_json::Value {
    let redact = |t: &str| escape_mrkdwn(&crate::platform::redact::redact(t));
    let mut blocks = vec![section(&format!("{head}{run_link}"))];
    if let Some(r) = &state.report {
        if let Some(p) = &r.preflight {
            let mut lines = vec![format!(
                "*Pre-flight* ({}, policy `{}`): {} pending, {} finding(s)",
                p.approach,
                r.policy.as_str(),
                p.pending.len(),
                p.findings.len()
            )];
            for m in &p.pending {
                let applied = r
                    .migrate
                    .as_ref()
                    .and_then(|x| x.migrations.iter().find(|a| a.version == m.version));
                lines.push(format!(
                    "• `{}` {}{}",
                    m.version,
                    redact(&m.class_name),
                    match applied {
                        Some(a) => format!(
                            " — {} in {} ms, {} lock wait(s), {} retr{}",
                            a.status,
                            a.duration_ms.unwrap_or_default(),
                            a.attempts.len(),
                            a.retries.unwrap_or_default(),
                            if a.retries == Some(1) { "y" } else { "ies" }
                        ),
                        None => " — not run".into(),
                    }
                ));
            }
            blocks.push(section(&lines.join("\n")));
            if !p.findings.is_empty() {
                let f: Vec<String> = p
                    .findings
                    .iter()
                    .take(10)
                    .map(|f| {
                        format!(
                            ":warning: *{}* `{}:{}` {} → _{}_",
                            f.rule,
                            redact(&f.file),
                            f.line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()),
                            redact(&f.message),
                            redact(&f.recipe)
                        )
                    })
                    .collect();
                blocks.push(section(&f.join("\n")));
            }
        }
        if let Some(f) = r.failure() {
            blocks.push(section(&format!(
                "*Failing migration* `{}` {}\n```{}```\n*PostgreSQL error*{}: ```{}```",
                f.version,
                redact(&f.class_name),
                redact(&f.statement),
                f.pg_code
                    .as_deref()
                    .map(|c| format!(" `{c}`"))
                    .unwrap_or_default(),
                redact(f.message.as_deref().unwrap_or(&f.pg_error))
            )));
        }
    }
    if !log.is_empty() || !tail.is_empty() {
        blocks.push(section(&format!("{}{}", log.trim_start(), tail)));
    }
    serde_json::Value::Array(blocks)
}

/// Issue 16: the state machine's timeout is derived from, and always above, the largest build
/// timeout the template allows; the lock outlives both.
#[cfg(test)]
mod timeout_tests {
    use super::*;

    const TEMPLATE: &str = include_str!("../../../../infra/template.yaml");
    const ASL: &str = include_str!("../../../../statemachines/migration.asl.json");

    /// A template parameter's `MaxValue` (within the parameter's own lines).
    fn parameter_max(name: &str) -> u64 {
        let start = TEMPLATE
            .find(&format!("\n  {name}:\n"))
            .unwrap_or_else(|| panic!("parameter {name}"));
        let line = TEMPLATE[start + 1..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
            .find(|l| l.trim_start().starts_with("MaxValue:"))
            .unwrap_or_else(|| panic!("{name} has no MaxValue"));
        line.trim_start()
            .trim_start_matches("MaxValue:")
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn the_state_machine_outlasts_the_longest_build_and_the_lock_outlasts_both() {
        let max_build_minutes = parameter_max("MigrationTimeoutMinutes");
        assert_eq!(
            max_build_minutes, MAX_BUILD_TIMEOUT_MINUTES,
            "MigrationTimeoutMinutes' MaxValue changed: derive STATE_MACHINE_TIMEOUT_SECONDS and the ASL's TimeoutSeconds from it"
        );
        let asl: serde_json::Value = serde_json::from_str(ASL).unwrap();
        let timeout = asl["TimeoutSeconds"].as_u64().unwrap();
        assert_eq!(
            timeout, STATE_MACHINE_TIMEOUT_SECONDS,
            "migration.asl.json TimeoutSeconds is derived from MigrationTimeoutMinutes' MaxValue"
        );
        let max_approval_minutes = parameter_max("MigrationApprovalTimeoutMinutes");
        assert_eq!(
            max_approval_minutes,
            approval::MAX_APPROVAL_TIMEOUT_MINUTES,
            "MigrationApprovalTimeoutMinutes' MaxValue changed: derive the timeouts from it"
        );
        // Two builds and the approval wait, plus room for validation, the lock wait (~10 min),
        // polling, logs and records.
        assert!(
            timeout >= 2 * max_build_minutes * 60 + max_approval_minutes * 60 + 20 * 60,
            "state machine timeout {timeout}s must stay above two builds and the approval wait + 20 min"
        );
        assert!(
            timeout <= 24 * 60 * 60,
            "CodePipeline fails a Lambda invoke action after 24 hours"
        );
        assert!(LOCK_TTL_SECONDS > timeout);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{json, Value};

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    /// What the validate step does: serde's strict parse, then the checks.
    pub(crate) fn validate_json(
        input: Value,
        execution: &Execution,
        environment: &str,
    ) -> Result<MigrationRun, InputError> {
        validate(input::parse_strict(input)?, execution, environment)
    }

    fn exec() -> Execution {
        Execution {
            id: "arn:aws:states:us-east-1:123456789012:execution:batchless-staging-migration:e1"
                .into(),
            name: "e1".into(),
            start_time: "2026-11-28T13:00:00Z".into(),
        }
    }

    #[test]
    fn a_valid_request_becomes_a_run() {
        let run = validate_json(
            json!({"commit": SHA, "environmentOverrides": {"RAILS_LOG_LEVEL": "debug"}, "startedBy": "alice"}),
            &exec(),
            "staging",
        )
        .unwrap();
        assert_eq!(run.lock, "migration:staging");
        assert_eq!(run.started_by, "alice");
        assert_eq!(run.run_id, exec().id);
        let exec_micros = Execution {
            start_time: "2026-11-28T13:51:23.023726+00:00".into(),
            ..exec()
        };
        let run = validate_json(json!({"commit": SHA}), &exec_micros, "staging").unwrap();
        assert_eq!(run.started_at, "2026-11-28T13:51:23Z");
        let from_pipeline = validate_json(
            json!({"commit": SHA, "pipeline": {"name": "app-deploy", "executionId": "abc-123"}}),
            &exec(),
            "staging",
        )
        .unwrap();
        assert_eq!(from_pipeline.started_by, "codepipeline:app-deploy");
    }

    #[test]
    fn bad_requests_name_the_field() {
        let cases = [
            (json!({"commit": "main"}), "`commit`"),
            (json!({"commit": SHA, "extra": 1}), "unknown field `extra`"),
            (json!({}), "missing field `commit`"),
            (
                json!({"commit": SHA, "environmentOverrides": {"AWS_REGION": "x"}}),
                "reserved",
            ),
            (
                // the deploy-branch check's branch is batchless's, never the caller's
                json!({"commit": SHA, "environmentOverrides": {"BATCHLESS_DEPLOY_BRANCH": "mine"}}),
                "BATCHLESS_* variables are reserved",
            ),
            (
                json!({"commit": SHA, "environmentOverrides": {"X": "a\nb"}}),
                "single line",
            ),
            (
                json!({"commit": SHA, "pipeline": {"name": "a b"}}),
                "`pipeline.name`",
            ),
            (
                json!({"commit": SHA, "pipeline": {"name": "p", "stage": "x"}}),
                "unknown field `stage`",
            ),
            (
                json!({"commit": SHA, "startedBy": "rm -rf /"}),
                "`startedBy`",
            ),
        ];
        for (input, expected) in cases {
            let err = validate_json(input.clone(), &exec(), "staging").unwrap_err();
            assert!(err.message.contains(expected), "{input} -> {err}");
        }
    }

    pub(crate) fn state(outcome: Option<BuildOutcome>, error: Option<StepError>) -> MigrationState {
        MigrationState {
            run: validate_json(json!({"commit": SHA, "startedBy": "alice"}), &exec(), "staging").unwrap(),
            approval: None,
            build: Some(StartedBuild { build_id: "migrate:1".into() }),
            outcome,
            logs: Some(CollectedLogs {
                uri: "s3://logs/logs/migration/e1/build.log".into(),
                console_url: "https://console/s3".into(),
                log_console_url: "https://console/cw".into(),
                sha256: "ab".repeat(32),
                bytes: 10,
                lines: 2,
                tail: "Connecting to postgres://app:[REDACTED]@db/app\nPG::UndefinedTable: relation \"widgets\" does not exist".into(),
            }),
            logs_error: None,
            report: None,
            report_error: None,
            error,
            record: None,
            notification: None,
            notify_error: None,
        }
    }

    pub(crate) fn outcome(succeeded: bool) -> BuildOutcome {
        BuildOutcome {
            build_id: "migrate:1".into(),
            finished: true,
            status: if succeeded { "SUCCEEDED" } else { "FAILED" }.into(),
            succeeded,
            current_phase: Some("COMPLETED".into()),
            failed_phase: (!succeeded).then(|| "BUILD".into()),
            phase_context: (!succeeded).then(|| "COMMAND_EXECUTION_ERROR: Error while executing command: bin/rails db:migrate. Reason: exit status 1".into()),
            start_time: Some("2026-11-28T13:00:05Z".into()),
            end_time: Some("2026-11-28T13:00:47Z".into()),
            duration_seconds: Some(42),
            log_group: Some("/aws/codebuild/migrate".into()),
            log_stream: Some("1".into()),
            resolved_source_version: Some(SHA.into()),
        }
    }

    #[test]
    fn failure_cause_names_the_phase_and_carries_the_tail() {
        let s = state(Some(outcome(false)), None);
        let r = record(&s);
        assert_eq!(r.status, MigrationStatus::Failed);
        let cause = r.failure_cause.unwrap();
        assert!(cause.contains("in phase BUILD"), "{cause}");
        assert!(cause.contains("exit status 1"));
        assert!(cause.contains("relation \"widgets\" does not exist"));
        assert!(cause.contains("s3://logs/logs/migration/e1/build.log"));
    }

    #[test]
    fn statuses_keep_the_stored_strings() {
        // The ASL's `Outcome?` compares `$.record.status` with "SUCCEEDED".
        for (status, text) in [
            (MigrationStatus::Succeeded, "SUCCEEDED"),
            (MigrationStatus::Failed, "FAILED"),
            (MigrationStatus::Error, "ERROR"),
        ] {
            assert_eq!(serde_json::to_value(status).unwrap(), json!(text));
            assert_eq!(status.as_str(), text);
        }
        let r = serde_json::to_value(record(&state(Some(outcome(true)), None))).unwrap();
        assert_eq!(r["status"], "SUCCEEDED");
        assert_eq!(r["output"]["status"], "SUCCEEDED");
    }

    #[test]
    fn success_has_no_cause_and_an_output() {
        let r = record(&state(Some(outcome(true)), None));
        assert_eq!(r.status, MigrationStatus::Succeeded);
        assert_eq!(r.failure_cause, None);
        assert_eq!(r.output.build_id.as_deref(), Some("migrate:1"));
        assert_eq!(r.output.duration_seconds, Some(42));
    }

    #[test]
    fn an_error_is_recorded_with_its_message() {
        let err = StepError {
            error: "AccountLimitExceeded".into(),
            cause: json!({"errorType": "AccountLimitExceeded", "errorMessage": "StartBuild: account limit exceeded: queue full"}).to_string(),
        };
        let r = record(&state(None, Some(err)));
        assert_eq!(r.status, MigrationStatus::Error);
        assert!(r
            .failure_cause
            .unwrap()
            .contains("AccountLimitExceeded: StartBuild: account limit exceeded: queue full"));
    }

    #[test]
    fn cause_is_bounded_and_keeps_its_first_line() {
        let mut s = state(Some(outcome(false)), None);
        s.logs.as_mut().unwrap().tail = "x".repeat(20_000);
        let cause = record(&s).failure_cause.unwrap();
        assert!(cause.chars().count() <= crate::shared::cause::MAX_CAUSE_CHARS);
        assert!(cause.starts_with("Migration of 0123456789ab failed"));
    }

    #[test]
    fn slack_message_is_redacted_and_says_what_happened() {
        let mut s = state(Some(outcome(false)), None);
        s.logs.as_mut().unwrap().tail = "DATABASE_URL=postgres://app:hunter2@db/app".into();
        let m = slack_message(&s, "C1");
        assert_eq!(m.channel, "C1");
        assert!(
            m.text.contains("*failed*") && m.text.contains("BUILD"),
            "{}",
            m.text
        );
        assert!(!m.text.contains("hunter2"));
        let ok = slack_message(&state(Some(outcome(true)), None), "C1");
        assert!(ok.text.contains("succeeded in 42s"), "{}", ok.text);
        assert!(
            ok.text.contains("#/v2/executions/details/arn:aws:states:us-east-1:123456789012:execution:batchless-staging-migration:e1|e1>"),
            "{}",
            ok.text
        );
    }

    #[test]
    fn state_rejects_unknown_keys() {
        let mut v = serde_json::to_value(state(Some(outcome(true)), None)).unwrap();
        v["surprise"] = json!(1);
        assert!(input::parse_strict::<MigrationState>(v).is_err());
    }

    #[test]
    fn run_record_carries_the_history_fields() {
        let s = state(Some(outcome(false)), None);
        let rec = run_record(&s, &record(&s), "2026-11-28T13:01:00Z");
        assert_eq!(rec.duration_seconds, Some(60));
        assert_eq!(rec.failed_phase.as_deref(), Some("BUILD"));
        assert_eq!(rec.commit.as_deref(), Some(SHA));
        assert_eq!(rec.log_sha256.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(rec.status, "FAILED");
        assert_eq!(rec.lock.as_deref(), Some("migration:staging"));
        let running = running_record(&s.run, "migrate:1");
        assert_eq!(running.status, "RUNNING");
        assert_eq!(running.build_id.as_deref(), Some("migrate:1"));
        assert_eq!(running.ended_at, None);
        assert_eq!(running.started_by, rec.started_by);
    }

    #[test]
    fn a_report_that_could_not_be_read_is_on_the_record_and_in_the_post() {
        let mut s = state(Some(outcome(true)), None);
        s.report_error = Some(StepError {
            error: "AwsServiceError".into(),
            cause: r#"{"errorMessage":"GetObject failed: AccessDenied: denied"}"#.into(),
        });
        let rec = run_record(&s, &record(&s), "2026-11-28T13:01:00Z");
        assert_eq!(rec.status, "SUCCEEDED");
        assert_eq!(
            rec.migration_report,
            Some(serde_json::json!({"unreadable": {
                "error": "AwsServiceError",
                "cause": "GetObject failed: AccessDenied: denied"
            }}))
        );
        let post = slack_message(&s, "C1").text;
        assert!(
            post.contains("report could not be read (AwsServiceError)"),
            "{post}"
        );
        s.report_error = None;
        assert_eq!(run_record(&s, &record(&s), "x").migration_report, None);
    }
}
