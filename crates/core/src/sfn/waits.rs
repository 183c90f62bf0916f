//! Task-token waits: the one mechanism behind every `.waitForTaskToken` step (DESIGN.md
//! "Waiting for a build or a task"): a build, an ECS task, a patch's approval decision, a
//! bastion session's approval evidence. The waiting step stores its token in the waits table
//! under `<kind>#<id>` and re-checks once whether what it waits for already happened
//! ([`register_then_recheck`], closing the race with an event that came before the token was
//! stored); whoever observes the thing happen calls [`complete`]. Whoever completes a wait
//! first *takes* it (a conditional delete returning the old item), so a token is sent at most
//! once. A completion only wakes the workflow: the step after the wait re-reads the
//! authoritative state and routes on that.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::platform::aws::{AwsResultExt, ConditionalExt};
use crate::platform::dynamo::{self, s};
use crate::platform::time::rfc3339;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitKind {
    /// A CodeBuild build, by build id or ARN.
    Codebuild,
    /// An ECS task, by task ARN.
    Ecs,
    /// A data patch's approval decision, by patch id.
    PatchApproval,
    /// A migration's approval decision (`shared::approval`), by approval id.
    MigrationApproval,
    /// A bastion session's executive approval evidence, by session id.
    SessionApproval,
}

impl WaitKind {
    pub fn key(self, id: &str) -> String {
        match self {
            WaitKind::Codebuild => {
                format!("codebuild#{}", crate::platform::aws::normalize_build_id(id))
            }
            WaitKind::Ecs => format!("ecs#{id}"),
            WaitKind::PatchApproval => format!("patch-approval#{id}"),
            WaitKind::MigrationApproval => format!("migration-approval#{id}"),
            WaitKind::SessionApproval => format!("session-approval#{id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Waiter {
    pub wait_key: String,
    pub task_token: String,
    pub execution_arn: String,
    pub registered_at: String,
    pub expires_at: String,
}

/// Store (or replace: a new wait after a safety-net poll) the token for `key`.
pub async fn register(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &str,
    task_token: &str,
    execution_arn: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let waiter = Waiter {
        wait_key: key.to_string(),
        task_token: task_token.to_string(),
        execution_arn: execution_arn.to_string(),
        registered_at: rfc3339(now),
        // Tokens outlive nothing longer than a year (Step Functions' max); expired items are
        // garbage, removed by TTL eventually and never trusted before that.
        expires_at: rfc3339(now + Duration::days(366)),
    };
    db.put_item()
        .table_name(table)
        .set_item(Some(dynamo::to_item(&waiter)))
        .send()
        .await
        .aws("PutItem")?;
    Ok(())
}

/// Take the waiter for `key` if there is one: exactly one caller gets it.
pub async fn take(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &str,
) -> Result<Option<Waiter>, Error> {
    let res = db
        .delete_item()
        .table_name(table)
        .key("waitKey", s(key))
        .condition_expression("attribute_exists(waitKey)")
        .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
        .send()
        .await
        .aws("DeleteItem")
        .conditional()?;
    res.and_then(|out| out.attributes().map(dynamo::from_item))
        .transpose()
}

/// Send the outcome to a waiting execution. A token that is no longer valid (the wait timed
/// out and a poll took over, or the execution ended) is not an error: returns `false`.
pub async fn send_success(
    sfn: &aws_sdk_sfn::Client,
    task_token: &str,
    output: &Value,
) -> Result<bool, Error> {
    let res = sfn
        .send_task_success()
        .task_token(task_token)
        .output(output.to_string())
        .send()
        .await
        .aws("SendTaskSuccess");
    match res {
        Ok(_) => Ok(true),
        Err(e)
            if e.is_code("TaskTimedOut")
                || e.is_code("InvalidToken")
                || e.is_code("TaskDoesNotExist") =>
        {
            tracing::info!(
                code = e.code(),
                "task token no longer valid; nothing to complete"
            );
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Complete the wait for `key` with `output` if someone is waiting. Returns whether a
/// waiting execution was told.
pub async fn complete(
    db: &aws_sdk_dynamodb::Client,
    sfn: &aws_sdk_sfn::Client,
    table: &str,
    key: &str,
    output: &Value,
) -> Result<bool, Error> {
    match take(db, table, key).await? {
        Some(waiter) => send_success(sfn, &waiter.task_token, output).await,
        None => Ok(false),
    }
}

/// Register the token for `kind`/`id`, then ask `recheck` once whether what is awaited already
/// happened; if it did (`Some(output)`), complete the wait now. Returns the wait key and whether
/// this call completed it.
#[allow(clippy::too_many_arguments)]
pub async fn register_then_recheck(
    db: &aws_sdk_dynamodb::Client,
    sfn: &aws_sdk_sfn::Client,
    table: &str,
    kind: WaitKind,
    id: &str,
    task_token: &str,
    execution_arn: &str,
    now: DateTime<Utc>,
    recheck: impl AsyncFnOnce() -> Result<Option<Value>, Error>,
) -> Result<Registered, Error> {
    let key = kind.key(id);
    register(db, table, &key, task_token, execution_arn, now).await?;
    let completed_now = match recheck().await? {
        Some(output) => complete(db, sfn, table, &key, &output).await?,
        None => false,
    };
    Ok(Registered {
        wait_key: key,
        completed_now,
    })
}

/// What [`register_then_recheck`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    pub wait_key: String,
    pub completed_now: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;

    use aws_sdk_sfn::operation::send_task_success::{SendTaskSuccessError, SendTaskSuccessOutput};
    use aws_smithy_mocks::{mock, mock_client};
    use serde_json::json;

    fn waiter() -> Waiter {
        Waiter {
            wait_key: "codebuild#p:1".into(),
            task_token: "tok-1".into(),
            execution_arn: "arn:exec".into(),
            registered_at: "2026-11-28T13:00:00Z".into(),
            expires_at: "2027-11-29T13:00:00Z".into(),
        }
    }

    #[test]
    fn keys_are_normalized() {
        assert_eq!(
            WaitKind::Codebuild.key("arn:aws:codebuild:us-east-1:1:build/p:1"),
            "codebuild#p:1"
        );
        assert_eq!(WaitKind::Codebuild.key("p:1"), "codebuild#p:1");
    }

    #[tokio::test]
    async fn complete_sends_the_taken_token_once() {
        let del = mock!(aws_sdk_dynamodb::Client::delete_item)
            .sequence()
            .output(|| {
                DeleteItemOutput::builder()
                    .set_attributes(Some(dynamo::to_item(&waiter())))
                    .build()
            })
            .error(crate::testing::delete_item_failed)
            .build();
        let send = mock!(aws_sdk_sfn::Client::send_task_success)
            .match_requests(|r| r.task_token() == Some("tok-1"))
            .then_output(|| SendTaskSuccessOutput::builder().build());
        let db = mock_client!(aws_sdk_dynamodb, [&del]);
        let sfn = mock_client!(aws_sdk_sfn, [&send]);
        let out = json!({"status": "SUCCEEDED"});
        assert!(complete(&db, &sfn, "waits", "codebuild#p:1", &out)
            .await
            .unwrap());
        assert!(!complete(&db, &sfn, "waits", "codebuild#p:1", &out)
            .await
            .unwrap());
        assert_eq!(send.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_expired_token_is_not_an_error() {
        let send = mock!(aws_sdk_sfn::Client::send_task_success).then_error(|| {
            SendTaskSuccessError::TaskTimedOut(
                aws_sdk_sfn::types::error::TaskTimedOut::builder()
                    .meta(crate::testing::meta("TaskTimedOut"))
                    .build(),
            )
        });
        let sfn = mock_client!(aws_sdk_sfn, [&send]);
        assert!(!send_success(&sfn, "tok", &json!({})).await.unwrap());
    }
}
