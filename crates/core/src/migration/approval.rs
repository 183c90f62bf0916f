//! A migration's approval (issue 19): when the pre-flight finds dangerous operations and the
//! environment's policy is `require-approval`, the run asks for the data-patch approval
//! (`shared::approval`: the same Slack endpoint, people map, N-of-M, expiry and audit trail)
//! bound to the run, its commit and the pending set's digest, waits for it, and only an
//! approval that still holds up lets the second build migrate exactly that digest.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::Error;
use crate::migration::report::MigrationReport;
use crate::migration::MigrationRun;
use crate::platform::slack::{escape, Message};
use crate::shared::approval::record::{
    migration_approval_id, migration_request_hash, ApprovalRecord, Finding, MigrationSubject,
    SubjectKind,
};
use crate::shared::approval::{self, MIGRATION_APPROVE_ACTION, MIGRATION_REJECT_ACTION, PENDING};

/// `$.approval` of the workflow: what `AskApproval` found (`null` until then).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApprovalState {
    pub approval_id: String,
    /// The approval holds up (re-counted now): the approved build may start.
    pub approved: bool,
    pub digest: String,
    #[serde(default)]
    pub approvers: Vec<String>,
    /// How long the wait may still last (until the approval's expiry).
    pub wait_seconds: u64,
    /// The build whose pre-flight asked for the approval.
    pub preflight_build_id: String,
}

/// The approval settings (template parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalSettings {
    pub timeout_seconds: u64,
    pub required_approvals: u32,
}

impl ApprovalSettings {
    /// `MIGRATION_APPROVAL_TIMEOUT_MINUTES` (default 240, 1..=420) and
    /// `MIGRATION_REQUIRED_APPROVALS` (default 1, 1..=5).
    pub fn from_values(timeout_minutes: &str, required: &str) -> Result<Self, Error> {
        let minutes: u64 = timeout_minutes
            .parse()
            .ok()
            .filter(|m| (1..=MAX_APPROVAL_TIMEOUT_MINUTES).contains(m))
            .ok_or_else(|| {
                Error::config(format!(
                    "MIGRATION_APPROVAL_TIMEOUT_MINUTES must be 1..={MAX_APPROVAL_TIMEOUT_MINUTES}"
                ))
            })?;
        let required_approvals: u32 = required
            .parse()
            .ok()
            .filter(|n| (1..=5).contains(n))
            .ok_or_else(|| Error::config("MIGRATION_REQUIRED_APPROVALS must be 1..=5"))?;
        Ok(ApprovalSettings {
            timeout_seconds: minutes * 60,
            required_approvals,
        })
    }

    pub fn from_env() -> Result<Self, Error> {
        use crate::platform::config::optional;
        ApprovalSettings::from_values(
            &optional("MIGRATION_APPROVAL_TIMEOUT_MINUTES").unwrap_or_else(|| "240".into()),
            &optional("MIGRATION_REQUIRED_APPROVALS").unwrap_or_else(|| "1".into()),
        )
    }
}

/// `MigrationApprovalTimeoutMinutes`' MaxValue in `infra/template.yaml` (the state machine's
/// timeout is derived from it: `timeout_tests`).
pub const MAX_APPROVAL_TIMEOUT_MINUTES: u64 = 420;

/// Pure: what an approval of this run's pending set approves; `None` when the pre-flight
/// could not complete (nothing to bind an approval to).
pub fn subject(
    run: &MigrationRun,
    report: &MigrationReport,
    build_id: &str,
) -> Option<MigrationSubject> {
    let p = report.preflight.as_ref()?;
    if p.error.is_some() {
        return None;
    }
    let digest = p.digest.clone()?;
    Some(MigrationSubject {
        run_id: run.run_id.clone(),
        execution_name: run.execution_name.clone(),
        commit: run.commit.clone(),
        digest,
        pending: p
            .pending
            .iter()
            .map(|m| format!("{} {}", m.version, m.class_name))
            .collect(),
        findings: p
            .findings
            .iter()
            .map(|f| Finding {
                rule: f.rule.clone(),
                version: f.version.clone(),
                class_name: f.class_name.clone(),
                file: f.file.clone(),
                line: f.line,
                message: f.message.clone(),
                recipe: f.recipe.clone(),
            })
            .collect(),
        pipeline: run.pipeline.as_ref().map(|p| p.name.clone()),
        started_by: run.started_by.clone(),
        preflight_build_id: build_id.to_string(),
    })
}

/// Pure: the record a run's approval starts as (`PENDING_APPROVAL`).
pub fn new_record(
    run: &MigrationRun,
    m: &MigrationSubject,
    settings: ApprovalSettings,
    now: chrono::DateTime<chrono::Utc>,
) -> ApprovalRecord {
    let at = crate::platform::time::rfc3339(now);
    ApprovalRecord {
        approval_id: migration_approval_id(&run.execution_name),
        subject: SubjectKind::Migration,
        environment: run.environment.clone(),
        status: PENDING.into(),
        created_at: at.clone(),
        updated_at: at,
        expires_at: crate::platform::time::rfc3339(
            now + chrono::Duration::seconds(settings.timeout_seconds as i64),
        ),
        required_approvals: settings.required_approvals,
        request_hash: migration_request_hash(&run.environment, m),
        details: serde_json::to_value(m).expect("serializes"),
        ..Default::default()
    }
}

/// Why an approval does not let this run migrate, if it does not: it is for another run,
/// commit or pending set, its hash does not match what it approves, or its decisions do not
/// add up: `t` is their [`approval::tally`] under today's people map, seals verified
/// ([`approval::counted`]). Pure; `Ok` carries the approvers.
pub fn holds_up(
    rec: &ApprovalRecord,
    run: &MigrationRun,
    digest: &str,
    t: &approval::Tally,
) -> Result<Vec<String>, String> {
    let m = rec.migration().map_err(|e| e.to_string())?;
    if m.run_id != run.run_id || m.commit != run.commit || rec.environment != run.environment {
        return Err(format!(
            "approval {} is for another run or commit ({} at {})",
            rec.approval_id, m.run_id, m.commit
        ));
    }
    if m.digest != digest {
        return Err(format!(
            "approval {} approved the pending set {}; the pre-flight now finds {digest}",
            rec.approval_id, m.digest
        ));
    }
    if rec.request_hash != migration_request_hash(&rec.environment, &m) {
        return Err(format!(
            "approval {} does not carry the hash of what it approves",
            rec.approval_id
        ));
    }
    if rec.status != approval::APPROVED || !t.approved() {
        let mut why = format!(
            "approval {} is {} with {}/{} approvals that hold up",
            rec.approval_id,
            rec.status,
            t.approvers.len(),
            t.required
        );
        if !t.ignored.is_empty() {
            why.push_str(&format!(" (ignored: {})", t.ignored.join("; ")));
        }
        return Err(why);
    }
    Ok(t.approvers.clone())
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// The approval request in the migrations channel (Block Kit, Approve / Reject).
pub fn request_message(rec: &ApprovalRecord, m: &MigrationSubject, channel: &str) -> Message {
    let id = &rec.approval_id;
    let text = format!(
        "Migration of {} on {} needs {} approval(s): its pre-flight found {} dangerous operation(s)",
        short(&m.commit),
        rec.environment,
        rec.required_approvals,
        m.findings.len()
    );
    let findings: Vec<String> = m
        .findings
        .iter()
        .take(10)
        .map(|f| {
            format!(
                "• *{}* {} {} ({}{}): {}\n  _safer:_ {}",
                escape(&f.rule),
                escape(&f.version),
                escape(&f.class_name),
                escape(&f.file),
                f.line.map(|l| format!(":{l}")).unwrap_or_default(),
                escape(&f.message),
                escape(&f.recipe)
            )
        })
        .collect();
    let more = m.findings.len().saturating_sub(10);
    let mut findings = findings.join("\n");
    if more > 0 {
        findings.push_str(&format!("\n… and {more} more (the run's report)"));
    }
    let pending = m
        .pending
        .iter()
        .take(20)
        .map(|p| format!("`{}`", escape(p)))
        .collect::<Vec<_>>()
        .join(", ");
    let blocks = json!([
        {"type": "header", "text": {"type": "plain_text", "text": format!("Migration approval: {}", rec.environment)}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": format!("*Commit*\n`{}`", short(&m.commit))},
            {"type": "mrkdwn", "text": format!("*Environment*\n{}", rec.environment)},
            {"type": "mrkdwn", "text": format!("*Started by*\n{}", escape(&m.started_by))},
            {"type": "mrkdwn", "text": format!("*Approvals needed*\n{}", rec.required_approvals)},
            {"type": "mrkdwn", "text": format!("*Expires*\n{}", rec.expires_at)},
            {"type": "mrkdwn", "text": format!("*Pipeline*\n{}", escape(m.pipeline.as_deref().unwrap_or("(none)")))},
        ]},
        {"type": "section", "text": {"type": "mrkdwn", "text": format!("*Pending*\n{pending}")}},
        {"type": "section", "text": {"type": "mrkdwn", "text": format!("*Findings*\n{findings}")}},
        {"type": "context", "elements": [
            {"type": "mrkdwn", "text": format!("approval `{}` · pending set `{}` · request hash `{}` · pre-flight build `{}`", id, short(&m.digest), short(&rec.request_hash), escape(&m.preflight_build_id))},
        ]},
        {"type": "actions", "block_id": "migration_decision", "elements": [
            {"type": "button", "action_id": MIGRATION_APPROVE_ACTION, "style": "primary", "value": id,
             "text": {"type": "plain_text", "text": "Approve"},
             "confirm": {"title": {"type": "plain_text", "text": "Approve these migrations?"},
                         "text": {"type": "mrkdwn", "text": format!("`db:migrate` will run on {} at `{}` with the findings above.", rec.environment, short(&m.commit))},
                         "confirm": {"type": "plain_text", "text": "Approve"},
                         "deny": {"type": "plain_text", "text": "Cancel"}}},
            {"type": "button", "action_id": MIGRATION_REJECT_ACTION, "style": "danger", "value": id,
             "text": {"type": "plain_text", "text": "Reject"}},
        ]},
    ]);
    Message {
        channel: channel.to_string(),
        text,
        blocks: Some(blocks),
        thread_ts: None,
    }
}

/// The `MigrationNeedsApproval` cause when the approval ended without letting the run migrate.
pub fn not_approved_message(run: &MigrationRun, rec: &ApprovalRecord, why: &str) -> String {
    format!(
        "Migration of {} on {} was not approved: {why}. db:migrate did not run; the schema is unchanged.\n\
         How to approve: re-run the stage and have an approver press Approve on the request in Slack \
         (approval {}, {} approval(s) needed within {}); or make the migrations safe (each finding's recipe) \
         and push a new commit.",
        short(&run.commit),
        run.environment,
        rec.approval_id,
        rec.required_approvals,
        rec.expires_at
    )
}

/// The audit entry of a new approval request.
pub fn requested_data(rec: &ApprovalRecord, m: &MigrationSubject) -> Value {
    json!({
        "status": rec.status,
        "commit": m.commit,
        "digest": m.digest,
        "runId": m.run_id,
        "pending": m.pending,
        "findings": m.findings.iter().map(|f| format!("{} {} {}", f.rule, f.version, f.class_name)).collect::<Vec<_>>(),
        "requiredApprovals": rec.required_approvals,
        "requestHash": rec.request_hash,
        "expiresAt": rec.expires_at,
        "startedBy": m.started_by,
        "pipeline": m.pipeline,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::migration::report::tests::preflight_with;
    use crate::shared::approval::Approvable;
    use crate::shared::people::People;

    fn people() -> People {
        People::parse(crate::shared::people::EMBEDDED, "production").unwrap()
    }

    /// A production run whose pre-flight found findings (`report`).
    pub(crate) fn run() -> MigrationRun {
        crate::migration::tests::validate_json(
            json!({"commit": "0123456789abcdef0123456789abcdef01234567"}),
            &crate::sfn::Execution {
                id: "arn:aws:states:us-east-1:1:execution:batchless-production-migration:e1".into(),
                name: "e1".into(),
                start_time: "2026-12-02T07:00:00Z".into(),
            },
            "production",
        )
        .unwrap()
    }

    pub(crate) fn report() -> MigrationReport {
        MigrationReport {
            policy: crate::migration::preflight::Policy::RequireApproval,
            gate: crate::migration::preflight::Gate::NeedsApproval,
            uri: "s3://logs/migrations/e1/report/".into(),
            preflight: Some(preflight_with(2)),
            migrate: None,
        }
    }

    fn approved(rec: &mut ApprovalRecord, by: &str, hash: &str) {
        rec.decisions.insert(
            by.into(),
            approval::tests::decision(by, approval::Decision::Approve, hash),
        );
        rec.status = approval::APPROVED.into();
        rec.approvers = vec![by.into()];
    }

    fn settings() -> ApprovalSettings {
        ApprovalSettings::from_values("240", "1").unwrap()
    }

    /// [`holds_up`] with every decision's seal taken as verified.
    fn held(
        rec: &ApprovalRecord,
        run: &MigrationRun,
        digest: &str,
        people: &People,
    ) -> Result<Vec<String>, String> {
        let subject = rec.subject().unwrap();
        let seals = approval::Seals::all(&rec.decisions);
        holds_up(
            rec,
            run,
            digest,
            &approval::tally(&subject, &rec.decisions, people, &seals),
        )
    }

    #[test]
    fn an_approval_holds_up_only_for_its_run_commit_and_pending_set() {
        let run = run();
        let m = subject(&run, &report(), "migrate:1").expect("a digest");
        let mut rec = new_record(&run, &m, settings(), chrono::Utc::now());
        let people = people();
        assert!(held(&rec, &run, &m.digest, &people)
            .unwrap_err()
            .contains("0/1 approvals"));
        let hash = rec.request_hash.clone();
        approved(&mut rec, "alice", &hash);
        assert_eq!(
            held(&rec, &run, &m.digest, &people),
            Ok(vec!["alice".to_string()])
        );
        // Another pending set, another commit, a record whose hash was edited.
        assert!(held(&rec, &run, "other", &people)
            .unwrap_err()
            .contains("now finds other"));
        let mut other = run.clone();
        other.commit = "f".repeat(40);
        assert!(held(&rec, &other, &m.digest, &people).is_err());
        let mut edited = rec.clone();
        edited.request_hash = "0".repeat(64);
        assert!(held(&edited, &run, &m.digest, &people)
            .unwrap_err()
            .contains("hash"));
        // Marked APPROVED by a write to the table, with a decision nobody in the map made.
        let mut forged = new_record(&run, &m, settings(), chrono::Utc::now());
        approved(&mut forged, "mallory", &hash);
        assert!(held(&forged, &run, &m.digest, &people)
            .unwrap_err()
            .contains("not in the people map"));
    }

    #[test]
    fn a_preflight_that_could_not_complete_has_nothing_to_approve() {
        let run = run();
        let mut r = report();
        r.preflight.as_mut().unwrap().error = Some("PG::ConnectionBad".into());
        assert!(subject(&run, &r, "migrate:1").is_none());
    }

    #[test]
    fn the_request_shows_each_finding_with_its_recipe_and_the_buttons() {
        let run = run();
        let m = subject(&run, &report(), "migrate:1").unwrap();
        let rec = new_record(&run, &m, settings(), chrono::Utc::now());
        let msg = request_message(&rec, &m, "C0MIGRATIONS");
        let blocks = serde_json::to_string(&msg.blocks).unwrap();
        for f in &m.findings {
            assert!(blocks.contains(&f.rule), "{blocks}");
        }
        assert!(blocks.contains(MIGRATION_APPROVE_ACTION));
        assert!(blocks.contains(&rec.approval_id));
        assert!(blocks.contains("safer"));
    }

    #[test]
    fn settings_are_bounded() {
        assert!(ApprovalSettings::from_values("0", "1").is_err());
        assert!(ApprovalSettings::from_values("421", "1").is_err());
        assert!(ApprovalSettings::from_values("60", "6").is_err());
        assert_eq!(settings().timeout_seconds, 14_400);
    }
}
