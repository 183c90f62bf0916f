//! The state the data-patch workflow carries (the ASL's `$`) and how a finished state is
//! recorded: its final status, the cause a failed run shows, and what the execution outputs.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{Compliance, Verdict};
use super::store::{ApprovalMessage, PatchRecord};
use super::{PatchRun, Status};
use crate::sfn::StepError;
use crate::shared::build::BuildOutcome;
use crate::shared::build::StartedBuild;
use crate::shared::logs::CollectedLogs;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchState {
    pub patch: PatchRun,
    /// What a wait of an older version returned (the wake's payload, now discarded).
    #[serde(default)]
    pub approval: Option<Value>,
    /// `CheckApproval`'s reading of the record after the wake (`ApprovalWindow` before the
    /// first wait): where the workflow goes and the next wait's timeout.
    #[serde(default)]
    pub approval_check: Option<Value>,
    /// The approval wait timed out.
    #[serde(default)]
    pub expired: Option<StepError>,
    /// The dry run's build and how it ended (issue 18).
    #[serde(default)]
    pub preview_build: Option<StartedBuild>,
    #[serde(default)]
    pub preview_outcome: Option<BuildOutcome>,
    #[serde(default)]
    pub build: Option<StartedBuild>,
    #[serde(default)]
    pub outcome: Option<BuildOutcome>,
    #[serde(default)]
    pub logs: Option<CollectedLogs>,
    #[serde(default)]
    pub logs_error: Option<StepError>,
    #[serde(default)]
    pub check: Option<Verdict>,
    #[serde(default)]
    pub check_error: Option<StepError>,
    #[serde(default)]
    pub error: Option<StepError>,
    #[serde(default)]
    pub record: Option<Recorded>,
    #[serde(default)]
    pub notification: Option<Value>,
    #[serde(default)]
    pub notify_error: Option<StepError>,
}

/// What the execution outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchOutput {
    pub patch_id: String,
    pub status: Status,
    pub commit: String,
    pub command: String,
    pub approvers: Vec<String>,
    pub build_id: Option<String>,
    pub verdict: Option<Compliance>,
    pub log_uri: Option<String>,
    pub log_console_url: Option<String>,
    pub log_sha256: Option<String>,
    /// A dry-run-only request's preview ([`preview_lines`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Recorded {
    pub status: Status,
    /// When a build ran.
    pub verdict: Option<Compliance>,
    pub failure_cause: Option<String>,
    pub output: PatchOutput,
    pub thread: Option<ApprovalMessage>,
    /// The dry run's counts beside the real run's, and what differs beyond the configured
    /// factor (flags, not violations). Filled by `record-patch` when a build ran.
    #[serde(default)]
    pub comparison: Option<Comparison>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Comparison {
    pub preview: Vec<String>,
    pub actual: Vec<String>,
    pub flags: Vec<String>,
}

const NOT_APPROVED_ERROR: &str = "NotApproved";

/// Pure: the final status of a finished state, given the patch record as stored now.
pub fn final_status(state: &PatchState, rec: &PatchRecord) -> Status {
    if state.expired.is_some() {
        return Status::Expired;
    }
    if let Some(e) = &state.error {
        if e.error == NOT_APPROVED_ERROR {
            return if rec.cancelled_by.is_some() {
                Status::Cancelled
            } else {
                Status::NotApproved
            };
        }
        return Status::Error;
    }
    if state.patch.dry_run_only && state.outcome.is_none() {
        return Status::Previewed;
    }
    match &state.outcome {
        Some(o) if o.succeeded => Status::Succeeded,
        Some(_) if rec.cancelled_by.is_some() => Status::Cancelled,
        Some(_) => Status::Failed,
        // The wait ended without an approval: the record says why (or nobody decided at all).
        None => match rec.status {
            Status::Rejected => Status::Rejected,
            Status::Cancelled => Status::Cancelled,
            _ => Status::NotApproved,
        },
    }
}

/// Pure: how a finished state is recorded.
pub fn record(state: &PatchState, rec: &PatchRecord) -> Recorded {
    let run = &state.patch;
    let status = final_status(state, rec);
    let short = &run.commit[..12.min(run.commit.len())];
    let verdict = state.check.as_ref().map(|c| c.verdict);
    let mut cause = String::new();
    match status {
        Status::Succeeded | Status::Previewed => {}
        Status::Rejected => cause.push_str(&format!(
            "Patch {} was rejected by {}; nothing ran.\n",
            run.patch_id,
            rec.rejected_by.as_deref().unwrap_or("an approver")
        )),
        Status::Expired => cause.push_str(&format!(
            "Patch {} was not approved within {} s ({} of {} approvals); nothing ran.\n",
            run.patch_id,
            run.approval_timeout_seconds,
            rec.approvers.len().max(
                rec.decisions
                    .values()
                    .filter(|d| d.decision == super::approval::Decision::Approve)
                    .count()
            ),
            run.required_approvals
        )),
        Status::Cancelled => cause.push_str(&format!(
            "Patch {} was cancelled by {}{}.\n",
            run.patch_id,
            rec.cancelled_by.as_deref().unwrap_or("someone"),
            if state.outcome.is_some() {
                " while its build ran"
            } else {
                "; nothing ran"
            }
        )),
        Status::NotApproved => cause.push_str(&format!(
            "Patch {} did not run: {}\n",
            run.patch_id,
            state
                .error
                .as_ref()
                .map(|e| e.message())
                .unwrap_or_else(|| "the approval wait ended without an approval on record".into())
        )),
        Status::Failed => {
            let o = state.outcome.as_ref().expect("FAILED has an outcome");
            cause.push_str(&format!(
                "Patch {} (`{}` at {short}) failed: build {} ended {} in phase {}.\n",
                run.patch_id,
                run.command,
                o.build_id,
                o.status,
                o.failed_phase.as_deref().unwrap_or("(unknown)")
            ));
            if let Some(ctx) = &o.phase_context {
                cause.push_str(ctx);
                cause.push('\n');
            }
        }
        _ => {
            let e = state.error.as_ref().expect("ERROR has an error");
            cause.push_str(&format!(
                "Patch {} could not complete: {}: {}\n",
                run.patch_id,
                e.error,
                e.message()
            ));
        }
    }
    if let Some(c) = &state.check {
        if c.verdict != Compliance::Compliant {
            cause.push_str(&format!(
                "Audit check: {} ({})\n",
                c.verdict,
                c.findings.join("; ")
            ));
        }
    }
    if state.outcome.is_some() && status != Status::Succeeded {
        cause.push_str(&crate::shared::cause::log_section(
            state.logs.as_ref(),
            state.logs_error.as_ref(),
        ));
    }
    let violation = verdict == Some(Compliance::Violation);
    Recorded {
        status,
        verdict,
        failure_cause: (!matches!(status, Status::Succeeded | Status::Previewed) || violation)
            .then(|| crate::shared::cause::finish(&cause)),
        output: PatchOutput {
            patch_id: run.patch_id.clone(),
            status,
            commit: run.commit.clone(),
            command: run.command.clone(),
            approvers: rec.approvers.clone(),
            build_id: state.build.as_ref().map(|b| b.build_id.clone()),
            verdict,
            log_uri: state.logs.as_ref().map(|l| l.uri.clone()),
            log_console_url: state.logs.as_ref().map(|l| l.console_url.clone()),
            log_sha256: state.logs.as_ref().map(|l| l.sha256.clone()),
            preview: (status == Status::Previewed).then(|| preview_lines(rec)),
        },
        thread: rec.approval_message.clone(),
        comparison: None,
    }
}

/// A recorded preview for a reader: how the dry run ended (and why it is not a clean one),
/// then its counts.
pub fn preview_lines(rec: &PatchRecord) -> Vec<String> {
    let Some(p) = &rec.preview else {
        return vec!["no preview recorded".into()];
    };
    let mut lines = vec![format!(
        "dry run {} (build {}){}",
        p.outcome.describe(),
        p.build_id,
        p.problem
            .as_deref()
            .map(|x| format!(": {x}"))
            .unwrap_or_default()
    )];
    lines.extend(
        p.measure
            .as_ref()
            .map(super::preview::summary_lines)
            .unwrap_or_default(),
    );
    lines
}

/// The result posted in the request's thread.
pub fn result_text(state: &PatchState) -> String {
    let run = &state.patch;
    let Some(r) = &state.record else {
        return format!("Data patch {} ended.", run.patch_id);
    };
    let icon = match r.status {
        Status::Succeeded if r.verdict == Some(Compliance::Compliant) => ":white_check_mark:",
        Status::Succeeded => ":warning:",
        Status::Previewed => ":mag:",
        Status::Rejected | Status::Cancelled | Status::Expired => ":no_entry_sign:",
        _ => ":x:",
    };
    let mut text = format!(
        "{icon} Data patch {} ({}) {}: `{}` at `{}`",
        run.patch_id,
        run.ticket,
        r.status,
        run.command,
        &run.commit[..12.min(run.commit.len())]
    );
    if !r.output.approvers.is_empty() {
        text.push_str(&format!("\nApproved by: {}", r.output.approvers.join(", ")));
    }
    if let Some(v) = &r.verdict {
        text.push_str(&format!("\nAudit check: {v}"));
    }
    if let Some(lines) = &r.output.preview {
        text.push_str("\nDry run only: nobody was asked to approve and nothing ran for real.");
        for l in lines {
            text.push_str(&format!("\n• {}", super::message::escape(l)));
        }
    }
    if let Some(c) = &r.comparison {
        text.push_str(&format!(
            "\nPreview: {}\nActual: {}",
            super::message::escape(&c.preview.join("; ")),
            super::message::escape(&c.actual.join("; "))
        ));
        for f in &c.flags {
            text.push_str(&format!(
                "\n:triangular_flag_on_post: {}",
                super::message::escape(f)
            ));
        }
    }
    if let (Some(uri), Some(url)) = (&r.output.log_uri, &r.output.log_console_url) {
        text.push_str(&format!(
            "\nWork log: <{url}|{uri}> (sha256 {})",
            r.output.log_sha256.as_deref().unwrap_or("?")
        ));
    }
    if let Some(cause) = &r.failure_cause {
        text.push_str(&format!("\n```{cause}```"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::tests::{exec, people, request};
    use crate::patch::{validate, Policy};
    use serde_json::json;

    fn state() -> PatchState {
        let run = validate(request(), &exec(), "staging", &people(), Policy::default()).unwrap();
        serde_json::from_value(json!({"patch": run})).unwrap()
    }

    fn rec(status: Status) -> PatchRecord {
        PatchRecord {
            patch_id: "patch-1".into(),
            status,
            ..Default::default()
        }
    }

    fn outcome(succeeded: bool) -> BuildOutcome {
        serde_json::from_value(json!({
            "buildId": "p:1", "finished": true, "status": if succeeded {"SUCCEEDED"} else {"FAILED"},
            "succeeded": succeeded, "failedPhase": if succeeded {None} else {Some("BUILD")},
            "phaseContext": if succeeded {None} else {Some("COMMAND_EXECUTION_ERROR: exit status 3")},
        }))
        .unwrap()
    }

    #[test]
    fn a_dry_run_only_ends_previewed_with_its_preview_in_the_output_and_the_post() {
        let mut s = state();
        s.patch.dry_run_only = true;
        let mut r = rec(Status::PendingApproval);
        r.preview = Some(
            serde_json::from_value(json!({
                "buildId": "p:2", "buildStatus": "SUCCEEDED", "outcome": "ok",
                "measure": {"mode": "dry-run", "rolledBack": true, "outcome": "ok", "exitStatus": 0, "durationMs": 5,
                            "tables": {"public.users": {"inserted": 0, "updated": 2, "deleted": 0}}},
                "approvable": true, "digest": "d"
            }))
            .unwrap(),
        );
        assert_eq!(final_status(&s, &r), Status::Previewed);
        let recorded = record(&s, &r);
        assert!(recorded.failure_cause.is_none());
        let lines = recorded.output.preview.clone().unwrap();
        assert_eq!(lines[0], "dry run completed (build p:2)");
        assert_eq!(lines[1], "public.users: 0 inserted, 2 updated, 0 deleted");
        s.record = Some(recorded);
        let text = result_text(&s);
        assert!(
            text.contains("PREVIEWED") && text.contains("Dry run only"),
            "{text}"
        );
        assert!(
            text.contains("• public.users: 0 inserted, 2 updated"),
            "{text}"
        );
        // A dry run only whose dry run could not start is an error, not a preview.
        let mut s = state();
        s.patch.dry_run_only = true;
        s.error = Some(StepError {
            error: "AwsServiceError".into(),
            cause: "boom".into(),
        });
        assert_eq!(final_status(&s, &r), Status::Error);
    }

    #[test]
    fn every_ending_has_its_status() {
        let mut s = state();
        assert_eq!(final_status(&s, &rec(Status::Rejected)), Status::Rejected);
        assert_eq!(
            final_status(&s, &rec(Status::PendingApproval)),
            Status::NotApproved
        );
        s.expired = Some(StepError {
            error: "States.Timeout".into(),
            cause: String::new(),
        });
        assert_eq!(
            final_status(&s, &rec(Status::PendingApproval)),
            Status::Expired
        );
        let mut s = state();
        s.error = Some(StepError {
            error: "NotApproved".into(),
            cause: "{\"errorMessage\":\"forged\"}".into(),
        });
        assert_eq!(
            final_status(&s, &rec(Status::PendingApproval)),
            Status::NotApproved
        );
        assert!(record(&s, &rec(Status::PendingApproval))
            .failure_cause
            .unwrap()
            .contains("forged"));
        let mut s = state();
        s.outcome = Some(outcome(false));
        assert_eq!(final_status(&s, &rec(Status::Running)), Status::Failed);
        let r = record(&s, &rec(Status::Running));
        assert!(r
            .failure_cause
            .unwrap()
            .contains("ended FAILED in phase BUILD"));
        let mut cancelled = rec(Status::Running);
        cancelled.cancelled_by = Some("alice".into());
        assert_eq!(final_status(&s, &cancelled), Status::Cancelled);
        s.outcome = Some(outcome(true));
        assert_eq!(final_status(&s, &rec(Status::Running)), Status::Succeeded);
        assert!(record(&s, &rec(Status::Running)).failure_cause.is_none());
        let mut s = state();
        s.error = Some(StepError {
            error: "AwsServiceError".into(),
            cause: "boom".into(),
        });
        assert_eq!(final_status(&s, &rec(Status::Approved)), Status::Error);
    }
}
