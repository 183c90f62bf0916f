//! Patch records (the patches table, key `patchId`) and the flows that change them: a
//! decision, a cancellation. Every change is a conditional write on the record's status and
//! is appended to the audit trail with an idempotency key, so a retried step, a double click
//! or a Slack retry changes nothing twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::approval::{self, Decision, DecisionRecord};
use super::check::Compliance;
use super::{events, PatchRun, Status};
use crate::error::Error;
use crate::platform::dynamo::{Once, Record, Table};
use crate::sfn::waits::WaitKind;
use crate::shared::approval::{self as shared, Approvable, Approvals, Subject};
pub use crate::shared::approval::{ApprovalMessage, Decider, DecisionOutcome, DecisionResult};
use crate::shared::audit::{self, Entry, Trail};
use crate::shared::people::{People, Person, Role};

pub const BY_ENVIRONMENT_INDEX: &str = "byEnvironment";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchRecord {
    pub patch_id: String,
    pub environment: String,
    pub status: Status,
    pub created_at: String,
    pub updated_at: String,
    pub request: Option<PatchRun>,
    /// Legacy: where versions before the waits table kept the approval wait's task token.
    /// Never written now; read so old records still parse, and so a patch that was pending
    /// approval while the stack was upgraded can still be woken (`Approvable::legacy_task_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_message: Option<ApprovalMessage>,
    /// Legacy: the approval window's end as 813c7b8..7d23136 stored it. Never read (a table
    /// writer could move it): the window is the execution's own (`request_approval`). Kept so
    /// those records still parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_expires_at: Option<String>,
    #[serde(default)]
    pub decisions: BTreeMap<String, DecisionRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<String>,
    #[serde(default)]
    pub approvers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_source_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Compliance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_cause: Option<String>,
    /// The dry run's build (issue 18), its preview, and the real run's measure beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_build_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<super::preview::Preview>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<super::preview::Measure>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preview_flags: Vec<String>,
}

impl Record for PatchRecord {
    const KEY: &'static str = "patchId";
    fn key(&self) -> &str {
        &self.patch_id
    }
}

impl PatchRecord {
    pub fn run(&self) -> Result<&PatchRun, Error> {
        self.request.as_ref().ok_or_else(|| {
            Error::Corrupt(format!("patch {} has no request recorded", self.patch_id))
        })
    }
}

/// Where patches live and where their audit trail goes.
#[derive(Debug, Clone)]
pub struct Store<'a> {
    pub db: &'a aws_sdk_dynamodb::Client,
    pub table: &'a str,
    pub trail: Trail<'a>,
}

impl Store<'_> {
    /// The patches table, typed.
    pub fn patches(&self) -> Table<PatchRecord> {
        Table::new(self.db.clone(), self.table)
    }
}

/// An audit entry about a patch.
pub fn entry(run: &PatchRun, key: String, event: &str, actor: &str, data: Value) -> Entry {
    Entry {
        key,
        environment: run.environment.clone(),
        patch_id: run.patch_id.clone(),
        event: event.to_string(),
        actor: actor.to_string(),
        data,
    }
}

pub async fn get(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    patch_id: &str,
) -> Result<Option<PatchRecord>, Error> {
    Table::<PatchRecord>::new(db.clone(), table)
        .get(patch_id)
        .await
}

pub async fn must_get(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    patch_id: &str,
) -> Result<PatchRecord, Error> {
    get(db, table, patch_id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("patch {patch_id}")))
}

/// Newest first.
pub async fn list(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    environment: &str,
    limit: i32,
) -> Result<Vec<PatchRecord>, Error> {
    Table::<PatchRecord>::new(db.clone(), table)
        .newest(
            BY_ENVIRONMENT_INDEX,
            "environment",
            environment,
            Some(limit),
        )
        .await
}

/// Create the record of a validated request (`PENDING_APPROVAL`) and append `REQUESTED`.
/// Idempotent: a second call finds the record and the audit key.
pub async fn create(st: &Store<'_>, run: &PatchRun) -> Result<PatchRecord, Error> {
    let now = crate::platform::time::rfc3339(crate::platform::time::now());
    let record = PatchRecord {
        patch_id: run.patch_id.clone(),
        environment: run.environment.clone(),
        status: Status::PendingApproval,
        created_at: run.requested_at.clone(),
        updated_at: now,
        request: Some(run.clone()),
        // Serialized as an empty map, which decisions are added to.
        decisions: BTreeMap::new(),
        ..Default::default()
    };
    let stored = match st.patches().put_once(&record).await? {
        Once::First => record,
        Once::Seen(existing) => {
            if existing.run()?.request_hash != run.request_hash {
                return Err(Error::Conflict(format!(
                    "patch {} already exists with a different request",
                    run.patch_id
                )));
            }
            existing
        }
    };
    audit::append(
        &st.trail,
        &entry(
            run,
            format!("request:{}", run.patch_id),
            events::REQUESTED,
            &run.requester,
            json!({
                "status": Status::PendingApproval,
                "ticket": run.ticket,
                "ref": run.git_ref,
                "commit": run.commit,
                "kind": run.kind,
                "command": run.command,
                "reason": crate::platform::redact::redact(&run.reason),
                "requester": run.requester,
                "requesterPrincipal": run.requester_principal,
                "requiredApprovals": run.required_approvals,
                "requestHash": run.request_hash,
                "executionArn": run.execution_arn,
            }),
        ),
    )
    .await?;
    Ok(stored)
}

/// `SET` top-level fields (and `updatedAt`) if `condition` holds; `None` when it did not or
/// there is no such patch.
pub async fn update(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    patch_id: &str,
    fields: &[(&str, Value)],
    condition: Option<&str>,
    values: &[(&str, Value)],
) -> Result<Option<PatchRecord>, Error> {
    let mut all = fields.to_vec();
    all.push((
        "updatedAt",
        json!(crate::platform::time::rfc3339(crate::platform::time::now())),
    ));
    Table::<PatchRecord>::new(db.clone(), table)
        .set_fields(patch_id, &all, condition, values)
        .await
}

/// Move a patch from one status to another; `None` when it was not in `from`.
pub async fn transition(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    patch_id: &str,
    from: &[Status],
    to: Status,
    fields: &[(&str, Value)],
) -> Result<Option<PatchRecord>, Error> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let records = Table::<PatchRecord>::new(db.clone(), table);
    shared::transition(&records, patch_id, &from, to.as_str(), fields).await
}

/// What ends a patch's approval wait (the output of its `.waitForTaskToken` step). It only
/// wakes the workflow: `start-patch-build` re-reads the record and trusts nothing in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum ApprovalDecided {
    Approved { approvers: Vec<String> },
    Rejected { by: Option<String> },
    Cancelled { by: Option<String> },
}

impl ApprovalDecided {
    /// What the record says was decided, if the approval is over.
    pub fn of(rec: &PatchRecord) -> Option<Self> {
        match rec.status {
            Status::Approved => Some(ApprovalDecided::Approved {
                approvers: rec.approvers.clone(),
            }),
            Status::Rejected => Some(ApprovalDecided::Rejected {
                by: rec.rejected_by.clone(),
            }),
            Status::Cancelled => Some(ApprovalDecided::Cancelled {
                by: rec.cancelled_by.clone(),
            }),
            _ => None,
        }
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a decision serializes")
    }
}

/// Where a patch's approval wait is kept: the waits table (key `patch-approval#<patchId>`,
/// [`WaitKind::PatchApproval`]) and the Step Functions client that ends it; and the sealer
/// of the decisions that end it.
#[derive(Debug, Clone, Copy)]
pub struct ApprovalWait<'a> {
    pub sfn: &'a aws_sdk_sfn::Client,
    pub table: &'a str,
    pub sealer: &'a shared::Sealer,
}

impl ApprovalWait<'_> {
    /// End the approval wait of `rec` with what its record says was decided.
    pub async fn end(
        &self,
        db: &aws_sdk_dynamodb::Client,
        rec: &PatchRecord,
    ) -> Result<bool, Error> {
        shared::end_wait(db, self.sfn, self.table, rec).await
    }
}

impl Store<'_> {
    /// The patches as approval subjects (`shared::approval`), with their wait.
    pub fn approvals<'s>(&'s self, wait: &ApprovalWait<'s>) -> Approvals<'s> {
        Approvals {
            db: self.db,
            table: self.table,
            trail: self.trail.clone(),
            sfn: wait.sfn,
            waits_table: wait.table,
            sealer: wait.sealer,
        }
    }
}

impl Approvable for PatchRecord {
    fn subject(&self) -> Result<Subject<'_>, Error> {
        Ok(approval::subject(self.run()?, self.status))
    }

    fn decisions(&self) -> &BTreeMap<String, DecisionRecord> {
        &self.decisions
    }

    fn thread(&self) -> Option<&ApprovalMessage> {
        self.approval_message.as_ref()
    }

    fn environment(&self) -> &str {
        &self.environment
    }

    fn wait_key(&self) -> String {
        WaitKind::PatchApproval.key(&self.patch_id)
    }

    fn decided(&self) -> Option<Value> {
        ApprovalDecided::of(self).map(|d| d.to_value())
    }

    fn legacy_task_token(&self) -> Option<&str> {
        // Legacy: versions before the waits table kept the token on the record.
        self.task_token.as_deref()
    }

    fn concluded_data(&self) -> Value {
        match self.run() {
            Ok(run) => json!({
                "requestHash": run.request_hash,
                "commit": run.commit,
                "command": run.command,
            }),
            Err(_) => json!({}),
        }
    }
}

/// Record a decision on a patch under the one rule set (`shared::approval::decide`).
pub async fn decide(
    st: &Store<'_>,
    wait: &ApprovalWait<'_>,
    people: &People,
    patch_id: &str,
    decider: &Decider<'_>,
    decision: Decision,
) -> Result<DecisionOutcome, Error> {
    shared::decide::<PatchRecord>(&st.approvals(wait), people, patch_id, decider, decision)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(format!("patch {patch_id}")),
            other => other,
        })
}

/// What `batchless patch cancel` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cancelled {
    pub patch_id: String,
    pub status: Status,
    pub build_stopped: bool,
    pub wait_ended: bool,
}

/// Cancel a patch: a pending one ends `CANCELLED` at once; an approved or running one is
/// marked and its build stopped (the workflow then records `CANCELLED`). The requester, an
/// approver or an operator may cancel.
pub async fn cancel(
    st: &Store<'_>,
    wait: &ApprovalWait<'_>,
    codebuild: &aws_sdk_codebuild::Client,
    patch_id: &str,
    person: &Person,
) -> Result<Cancelled, Error> {
    let rec = must_get(st.db, st.table, patch_id).await?;
    let run = rec.run()?.clone();
    if person.id != run.requester
        && !person.has_role(Role::Approver)
        && !person.has_role(Role::Operator)
    {
        return Err(Error::Forbidden(format!(
            "{} may not cancel patch {patch_id} (only its requester, an approver or an operator)",
            person.id
        )));
    }
    if rec.status.is_final() {
        return Err(Error::Conflict(format!(
            "patch {patch_id} already ended {}",
            rec.status
        )));
    }
    let now = crate::platform::time::rfc3339(crate::platform::time::now());
    let marked = update(
        st.db,
        st.table,
        patch_id,
        &[
            ("cancelledBy", json!(person.id)),
            ("cancelledAt", json!(now)),
        ],
        Some("attribute_not_exists(cancelledBy)"),
        &[],
    )
    .await?;
    audit::append(
        &st.trail,
        &entry(
            &run,
            format!("cancel:{patch_id}"),
            events::CANCEL_REQUESTED,
            &person.id,
            json!({"statusWhenCancelled": rec.status}),
        ),
    )
    .await?;
    let rec = match marked {
        Some(rec) => rec,
        None => must_get(st.db, st.table, patch_id).await?,
    };
    let mut out = Cancelled {
        patch_id: patch_id.into(),
        status: rec.status,
        build_stopped: false,
        wait_ended: false,
    };
    if let Some(ended) = transition(
        st.db,
        st.table,
        patch_id,
        &[Status::PendingApproval],
        Status::Cancelled,
        &[],
    )
    .await?
    {
        out.status = ended.status;
        out.wait_ended = wait.end(st.db, &ended).await?;
    } else if let Some(build_id) = &rec.build_id {
        out.build_stopped = crate::shared::build::stop(codebuild, build_id).await?;
    }
    Ok(out)
}

/// The clients and names every patch step needs (built once per process).
#[derive(Debug, Clone)]
pub struct Backend {
    pub db: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub patches_table: String,
    pub audit_table: String,
    pub bucket: String,
}

impl Backend {
    /// From `PATCHES_TABLE`, `AUDIT_TABLE` and `LOGS_BUCKET` (the audit anchors live there).
    pub fn from_env(sdk: &aws_types::SdkConfig) -> Result<Self, Error> {
        Ok(Backend {
            db: crate::platform::aws::dynamodb(sdk),
            s3: crate::platform::aws::s3(sdk),
            patches_table: crate::platform::config::required("PATCHES_TABLE")?,
            audit_table: crate::platform::config::required("AUDIT_TABLE")?,
            bucket: crate::platform::config::required("LOGS_BUCKET")?,
        })
    }

    pub fn trail(&self) -> Trail<'_> {
        Trail {
            db: &self.db,
            s3: &self.s3,
            table: &self.audit_table,
            bucket: &self.bucket,
            chain: audit::PATCH_CHAIN,
        }
    }

    pub fn store(&self) -> Store<'_> {
        Store {
            db: &self.db,
            table: &self.patches_table,
            trail: self.trail(),
        }
    }
}

/// The marker of a signed Slack request seen within the replay window (kept in the patches
/// table under `slack-request#<sha256(replay key)>`, removed by TTL later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SlackRequestSeen {
    pub patch_id: String,
    pub expires_at_epoch: i64,
}

impl Record for SlackRequestSeen {
    const KEY: &'static str = "patchId";
    fn key(&self) -> &str {
        &self.patch_id
    }
}

/// Remember a signed Slack request by its replay key (`slack::interaction_replay_key`: the
/// payload's own `trigger_id`, signed with it, never a header) for the replay window. Returns
/// `false` when it was seen before: a replay.
pub async fn remember_request(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    replay_key: &str,
) -> Result<bool, Error> {
    use sha2::Digest;
    let marker = SlackRequestSeen {
        patch_id: format!(
            "slack-request#{}",
            hex::encode(sha2::Sha256::digest(replay_key.as_bytes()))
        ),
        expires_at_epoch: crate::platform::time::now().timestamp()
            + 2 * crate::platform::slack::MAX_SKEW_SECONDS,
    };
    Ok(Table::new(db.clone(), table)
        .put_once(&marker)
        .await?
        .is_first())
}

/// An execution that ended without recording its outcome (stopped from the console, timed out):
/// the patch record ends `ABORTED` / `TIMED_OUT` and the audit trail says so. A patch that
/// already ended, or was never recorded (invalid input), is left alone. Returns whether the
/// record was ended here.
pub async fn end_unrecorded(
    st: &Store<'_>,
    patch_id: &str,
    execution_status: &str,
) -> Result<bool, Error> {
    let to = match execution_status {
        "ABORTED" => Status::Aborted,
        "TIMED_OUT" => Status::TimedOut,
        _ => return Ok(false),
    };
    let Some(rec) = get(st.db, st.table, patch_id).await? else {
        return Ok(false);
    };
    let run = rec.run()?.clone();
    let open = [Status::PendingApproval, Status::Approved, Status::Running];
    let now = crate::platform::time::rfc3339(crate::platform::time::now());
    let ended = transition(
        st.db,
        st.table,
        patch_id,
        &open,
        to,
        &[("finishedAt", json!(now))],
    )
    .await?
    .is_some();
    let rec = must_get(st.db, st.table, patch_id).await?;
    if rec.status == to {
        // Also when a retried event finds the record already ended here.
        audit::append(
            &st.trail,
            &entry(
                &run,
                format!("finished:{patch_id}"),
                events::FINISHED,
                "cleanup",
                json!({"status": to, "buildId": rec.build_id, "executionArn": run.execution_arn,
                       "failureCause": format!("the execution ended {execution_status} before it recorded an outcome")}),
            ),
        )
        .await?;
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::steps::fixtures;
    use crate::platform::dynamo;
    use crate::sfn::waits;
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;

    use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessOutput;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

    fn approved() -> PatchRecord {
        let mut rec = fixtures::record(Status::Approved);
        rec.approvers = vec!["alice".into()];
        rec
    }

    fn send(token: &'static str, output: Value) -> Rule {
        mock!(aws_sdk_sfn::Client::send_task_success)
            .match_requests(move |r| {
                r.task_token() == Some(token)
                    && r.output()
                        .and_then(|o| serde_json::from_str::<Value>(o).ok())
                        .as_ref()
                        == Some(&output)
            })
            .then_output(|| SendTaskSuccessOutput::builder().build())
    }

    #[tokio::test]
    async fn ending_an_approval_takes_its_wait_from_the_waits_table() {
        let take = mock!(aws_sdk_dynamodb::Client::delete_item)
            .match_requests(|r| {
                r.table_name() == Some("waits")
                    && crate::testing::attr_s(r.key(), "waitKey")
                        .is_some_and(|k| k == "patch-approval#patch-1")
            })
            .then_output(|| {
                DeleteItemOutput::builder()
                    .set_attributes(Some(dynamo::to_item(&waits::Waiter {
                        wait_key: "patch-approval#patch-1".into(),
                        task_token: "tok".into(),
                        execution_arn: "arn:e".into(),
                        registered_at: "2026-12-01T00:00:00Z".into(),
                        expires_at: "2027-12-01T00:00:00Z".into(),
                    })))
                    .build()
            });
        let sent = send(
            "tok",
            json!({"decision": "approved", "approvers": ["alice"]}),
        );
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&take]);
        let sfn = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, [&sent]);
        let sealer = crate::shared::approval::seal::tests::sealer(true);
        let wait = ApprovalWait {
            sfn: &sfn,
            table: "waits",
            sealer: &sealer,
        };
        assert!(wait.end(&db, &approved()).await.unwrap());
        assert_eq!((take.num_calls(), sent.num_calls()), (1, 1));
        // A pending patch has nothing to end.
        let pending = fixtures::record(Status::PendingApproval);
        assert!(!wait.end(&db, &pending).await.unwrap());
        assert_eq!(take.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_wait_registered_before_the_upgrade_is_ended_through_its_record() {
        let none = crate::testing::delete_item_absent();
        let sent = send("old-tok", json!({"decision": "rejected", "by": "carol"}));
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&none]);
        let sfn = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, [&sent]);
        let sealer = crate::shared::approval::seal::tests::sealer(true);
        let wait = ApprovalWait {
            sfn: &sfn,
            table: "waits",
            sealer: &sealer,
        };
        let mut rec = fixtures::record(Status::Rejected);
        rec.rejected_by = Some("carol".into());
        assert!(
            !wait.end(&db, &rec).await.unwrap(),
            "nobody waits, no legacy token"
        );
        rec.task_token = Some("old-tok".into());
        assert!(wait.end(&db, &rec).await.unwrap());
        assert_eq!(sent.num_calls(), 1);
    }

    #[test]
    fn statuses_keep_their_stored_names() {
        for s in [
            Status::PendingApproval,
            Status::NotApproved,
            Status::TimedOut,
            Status::Succeeded,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
            assert_eq!(format!("{s:<18}|"), format!("{:<18}|", s.as_str()));
        }
        assert!(Status::Rejected.is_final() && !Status::Running.is_final());
        let old: PatchRecord = serde_json::from_value(json!({
            "patchId": "p", "environment": "staging", "status": "EXPIRED", "createdAt": "t",
            "updatedAt": "t", "request": null, "taskToken": "legacy", "verdict": "VIOLATION",
        }))
        .unwrap();
        assert_eq!(old.status, Status::Expired);
        assert_eq!(old.verdict, Some(Compliance::Violation));
    }
}
