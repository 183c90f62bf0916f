//! Run records: one item per workflow execution in the runs table (key `runId` = execution
//! ARN), listed per workflow through the `byWorkflow` index (`workflow`, `startedAt`). The
//! migration history is this table's `migration` partition of the index. This module is the
//! table's one writer: every workflow's record is a [`RunRecord`] written through
//! `Table<RunRecord>` (created once with `put_once`, ended with a whole-record `put`).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::platform::dynamo::{Once, Record, Table};

pub const BY_WORKFLOW_INDEX: &str = "byWorkflow";

/// The runs table, typed.
pub type Runs = Table<RunRecord>;

/// A run's status, stored (and shown to Step Functions) as its upper-case name. `Running`
/// until the workflow records its end; `cleanup` ends an aborted or timed-out run with the
/// execution's own status (`ABORTED`, `TIMED_OUT`, `FAILED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    #[default]
    Running,
    Succeeded,
    Failed,
    /// The workflow could not complete (a step failed, not the build or task it ran).
    Error,
    Aborted,
    TimedOut,
    /// A scheduled job's task was stopped by a newer run (`replace`).
    Replaced,
    /// A scheduled job not run: a previous run is live (`forbid`).
    SkippedRunning,
    /// A scheduled job not run: delivered after its catch-up window.
    SkippedStale,
}

impl RunStatus {
    pub const ALL: [RunStatus; 9] = [
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Error,
        RunStatus::Aborted,
        RunStatus::TimedOut,
        RunStatus::Replaced,
        RunStatus::SkippedRunning,
        RunStatus::SkippedStale,
    ];

    /// The stored name, e.g. `SKIPPED_RUNNING`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Succeeded => "SUCCEEDED",
            RunStatus::Failed => "FAILED",
            RunStatus::Error => "ERROR",
            RunStatus::Aborted => "ABORTED",
            RunStatus::TimedOut => "TIMED_OUT",
            RunStatus::Replaced => "REPLACED",
            RunStatus::SkippedRunning => "SKIPPED_RUNNING",
            RunStatus::SkippedStale => "SKIPPED_STALE",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RunStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        RunStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| Error::Corrupt(format!("{s:?} is not a run status")))
    }
}

impl PartialEq<str> for RunStatus {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for RunStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One run of any workflow. The common part comes first; the rest is what a workflow keeps
/// (a migration's commit and build, a scheduled job's occurrence and task), absent otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub run_id: String,
    pub workflow: String,
    pub environment: String,
    pub execution_name: String,
    pub started_at: String,
    pub started_by: String,
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<Value>,
    /// Scheduled jobs: the job, `scheduled` or `manual`, the occurrence (RFC 3339, scheduled
    /// runs only) and its key in the occurrences table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence_key: Option<String>,
    /// The ECS task the run started (`cleanup` stops it on abort).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_console_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_ts: Option<String>,
    /// A migration's report (pre-flight, findings, timings, failure; `migration::report`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_report: Option<Value>,
    /// SHA-256 (hex) of the `buildspecOverride` batchless sent with the run's build: the sweep
    /// accepts that buildspec, and only that one, as batchless's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buildspec_sha256: Option<String>,
    /// A migration that needed an approval: the approval (`approvals` table) and, once the
    /// approved build started, the first build (whose pre-flight asked for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight_build_id: Option<String>,
}

impl Record for RunRecord {
    const KEY: &'static str = "runId";
    fn key(&self) -> &str {
        &self.run_id
    }
}

impl Table<RunRecord> {
    /// Create the record unless it exists (a retried step); returns the existing one if it does.
    pub async fn create(&self, record: &RunRecord) -> Result<Option<RunRecord>, Error> {
        Ok(match self.put_once(record).await? {
            Once::First => None,
            Once::Seen(stored) => Some(stored),
        })
    }

    /// The newest runs of a workflow first.
    pub async fn list(&self, workflow: &str, limit: i32) -> Result<Vec<RunRecord>, Error> {
        self.newest(BY_WORKFLOW_INDEX, "workflow", workflow, Some(limit))
            .await
    }

    /// Mark a run ended with `new_status` if it is still `RUNNING` (abort/timeout cleanup);
    /// returns whether it changed.
    pub async fn end_if_running(
        &self,
        run_id: &str,
        new_status: &str,
        ended_at: &str,
        error: &str,
    ) -> Result<bool, Error> {
        let new_status: RunStatus = new_status.parse()?;
        let ended = self
            .set_fields(
                run_id,
                &[
                    ("status", Value::from(new_status.as_str())),
                    ("endedAt", Value::from(ended_at)),
                    ("error", Value::from(error)),
                ],
                Some("#status = :running"),
                &[(":running", Value::from(RunStatus::Running.as_str()))],
            )
            .await?;
        Ok(ended.is_some())
    }

    /// Name the ECS task a run started on its record; false when the record does not exist.
    pub async fn set_task_arn(&self, run_id: &str, task_arn: &str) -> Result<bool, Error> {
        let named = self
            .set_fields(run_id, &[("taskArn", Value::from(task_arn))], None, &[])
            .await?;
        Ok(named.is_some())
    }

    /// The ECS task a run started (`taskArn`), for cleanup.
    pub async fn task_arn(&self, run_id: &str) -> Result<Option<String>, Error> {
        Ok(self.get(run_id).await?.and_then(|r| r.task_arn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::dynamo;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
    use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn record() -> RunRecord {
        RunRecord {
            run_id: "arn:aws:states:us-east-1:123456789012:execution:m:e1".into(),
            workflow: "migration".into(),
            environment: "staging".into(),
            execution_name: "e1".into(),
            started_at: "2026-11-28T13:00:00Z".into(),
            started_by: "alice".into(),
            status: RunStatus::Running,
            build_id: Some("proj:1".into()),
            ..Default::default()
        }
    }

    fn ccf() -> ConditionalCheckFailedException {
        crate::testing::conditional_check_failed()
    }

    #[test]
    fn statuses_keep_their_stored_names() {
        for st in RunStatus::ALL {
            let json = serde_json::to_value(st).unwrap();
            assert_eq!(json, Value::from(st.as_str()));
            assert_eq!(st.as_str().parse::<RunStatus>().unwrap(), st);
            assert_eq!(serde_json::from_value::<RunStatus>(json).unwrap(), st);
        }
        assert_eq!(RunStatus::SkippedRunning.as_str(), "SKIPPED_RUNNING");
        assert_eq!(RunStatus::TimedOut.to_string(), "TIMED_OUT");
        assert!(RunStatus::Succeeded == "SUCCEEDED");
        assert_eq!(
            "running".parse::<RunStatus>().unwrap_err().kind(),
            crate::error::Kind::Corrupt
        );
    }

    #[tokio::test]
    async fn create_returns_the_existing_record_on_a_second_call() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .then_error(|| PutItemError::ConditionalCheckFailedException(ccf()));
        let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
            GetItemOutput::builder()
                .set_item(Some(dynamo::to_item(&record())))
                .build()
        });
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &get]);
        let existing = Runs::new(db, "runs").create(&record()).await.unwrap();
        assert_eq!(existing, Some(record()));
    }

    #[tokio::test]
    async fn create_is_a_put_once_on_the_run_id() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.condition_expression() == Some("attribute_not_exists(#k)")
                    && r.expression_attribute_names().and_then(|n| n.get("#k"))
                        == Some(&"runId".to_string())
                    && crate::testing::attr_s(r.item(), "status") == Some("RUNNING")
            })
            .then_output(|| PutItemOutput::builder().build());
        let db = mock_client!(aws_sdk_dynamodb, [&put]);
        let runs = Runs::new(db, "runs");
        assert_eq!(runs.create(&record()).await.unwrap(), None);
        assert_eq!(put.num_calls(), 1);
    }

    #[tokio::test]
    async fn end_if_running_is_conditional_on_running() {
        let update = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                let cond = r.condition_expression().unwrap_or_default();
                let values = r.expression_attribute_values().unwrap();
                cond.contains("#status = :running")
                    && values.get(":running").and_then(|v| v.as_s().ok())
                        == Some(&"RUNNING".to_string())
                    && values
                        .values()
                        .any(|v| v.as_s().ok() == Some(&"ABORTED".to_string()))
            })
            .sequence()
            .output(|| {
                UpdateItemOutput::builder()
                    .set_attributes(Some(dynamo::to_item(&RunRecord {
                        status: RunStatus::Aborted,
                        ..record()
                    })))
                    .build()
            })
            .error(|| UpdateItemError::ConditionalCheckFailedException(ccf()))
            .build();
        let db = mock_client!(aws_sdk_dynamodb, [&update]);
        let runs = Runs::new(db, "runs");
        let end = || {
            runs.end_if_running(
                "arn:e1",
                "ABORTED",
                "2026-11-28T14:00:00Z",
                "execution ABORTED",
            )
        };
        assert!(end().await.unwrap());
        assert!(!end().await.unwrap(), "already ended: unchanged");
        assert_eq!(update.num_calls(), 2);
        let err = runs
            .end_if_running("arn:e1", "aborted", "t", "e")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::Corrupt);
        assert_eq!(update.num_calls(), 2, "a bad status writes nothing");
    }

    #[tokio::test]
    async fn task_arn_reads_the_record() {
        let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
            GetItemOutput::builder()
                .set_item(Some(dynamo::to_item(&RunRecord {
                    task_arn: Some("arn:aws:ecs:us-east-1:1:task/c/t1".into()),
                    ..record()
                })))
                .build()
        });
        let db = mock_client!(aws_sdk_dynamodb, [&get]);
        assert_eq!(
            Runs::new(db, "runs")
                .task_arn("arn:e1")
                .await
                .unwrap()
                .as_deref(),
            Some("arn:aws:ecs:us-east-1:1:task/c/t1")
        );
    }
}
