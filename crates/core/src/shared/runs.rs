//! Run records: one item per workflow execution in the runs table (key `runId` = execution
//! ARN), listed per workflow through the `byWorkflow` index (`workflow`, `startedAt`). The
//! migration history is this table's `migration` partition of the index.

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::platform::aws::{AwsResultExt, ConditionalExt};
use crate::platform::dynamo::{self, s};

pub const BY_WORKFLOW_INDEX: &str = "byWorkflow";

/// Run statuses. `RUNNING` until the workflow records its end.
pub mod status {
    pub const RUNNING: &str = "RUNNING";
    pub const SUCCEEDED: &str = "SUCCEEDED";
    pub const FAILED: &str = "FAILED";
    pub const ERROR: &str = "ERROR";
    pub const ABORTED: &str = "ABORTED";
    pub const TIMED_OUT: &str = "TIMED_OUT";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub run_id: String,
    pub workflow: String,
    pub environment: String,
    pub execution_name: String,
    pub started_at: String,
    pub started_by: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<Value>,
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
}

/// Create the record unless it exists; returns the existing one if it does.
pub async fn create(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    record: &RunRecord,
) -> Result<Option<RunRecord>, Error> {
    let res = db
        .put_item()
        .table_name(table)
        .set_item(Some(dynamo::to_item(record)))
        .condition_expression("attribute_not_exists(runId)")
        .send()
        .await
        .aws("PutItem")
        .conditional()?;
    match res {
        Some(_) => Ok(None),
        None => get(db, table, &record.run_id)
            .await?
            .map(Some)
            .ok_or_else(|| Error::Corrupt(format!("run {} vanished", record.run_id))),
    }
}

/// Write the whole record (the final state of a run; idempotent).
pub async fn put(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    record: &RunRecord,
) -> Result<(), Error> {
    db.put_item()
        .table_name(table)
        .set_item(Some(dynamo::to_item(record)))
        .send()
        .await
        .aws("PutItem")?;
    Ok(())
}

pub async fn get(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    run_id: &str,
) -> Result<Option<RunRecord>, Error> {
    dynamo::get(db, table, &[("runId", run_id)]).await
}

/// The newest runs of a workflow first.
pub async fn list(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    workflow: &str,
    limit: i32,
) -> Result<Vec<RunRecord>, Error> {
    dynamo::query_newest(
        db,
        table,
        BY_WORKFLOW_INDEX,
        "workflow",
        workflow,
        Some(limit),
    )
    .await?
    .iter()
    .map(dynamo::from_item)
    .collect()
}

/// Mark a run ended with `status` if it is still `RUNNING` (abort/timeout cleanup); returns
/// whether it changed.
pub async fn end_if_running(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    run_id: &str,
    new_status: &str,
    ended_at: &str,
    error: &str,
) -> Result<bool, Error> {
    let res = db
        .update_item()
        .table_name(table)
        .key("runId", s(run_id))
        .update_expression("SET #status = :new, endedAt = :ended, #error = :error")
        .condition_expression("#status = :running")
        .expression_attribute_names("#status", "status")
        .expression_attribute_names("#error", "error")
        .expression_attribute_values(":new", s(new_status))
        .expression_attribute_values(":ended", s(ended_at))
        .expression_attribute_values(":error", AttributeValue::S(error.to_string()))
        .expression_attribute_values(":running", s(status::RUNNING))
        .send()
        .await
        .aws("UpdateItem")
        .conditional()?;
    Ok(res.is_some())
}

/// The ECS task a run started, from its record in the runs table (`taskArn`), for cleanup.
pub async fn task_arn(
    db: &aws_sdk_dynamodb::Client,
    runs_table: &str,
    run_id: &str,
) -> Result<Option<String>, Error> {
    let out = db
        .get_item()
        .table_name(runs_table)
        .key("runId", s(run_id))
        .projection_expression("taskArn")
        .consistent_read(true)
        .send()
        .await
        .aws("GetItem")?;
    Ok(out
        .item()
        .and_then(|i| i.get("taskArn"))
        .and_then(|v| v.as_s().ok())
        .cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
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
            status: status::RUNNING.into(),
            build_id: Some("proj:1".into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn create_returns_the_existing_record_on_a_second_call() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item).then_error(|| {
            PutItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .meta(crate::testing::meta("ConditionalCheckFailedException"))
                    .build(),
            )
        });
        let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
            GetItemOutput::builder()
                .set_item(Some(dynamo::to_item(&record())))
                .build()
        });
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &get]);
        let existing = create(&db, "runs", &record()).await.unwrap();
        assert_eq!(existing, Some(record()));
    }

    #[tokio::test]
    async fn create_writes_with_a_condition() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| r.condition_expression() == Some("attribute_not_exists(runId)"))
            .then_output(|| PutItemOutput::builder().build());
        let db = mock_client!(aws_sdk_dynamodb, [&put]);
        assert_eq!(create(&db, "runs", &record()).await.unwrap(), None);
        assert_eq!(put.num_calls(), 1);
    }
}
