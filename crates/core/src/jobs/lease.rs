//! The per-job lease that carries the concurrency policy: an item `job:<env>:<name>` in the
//! locks table (the same table and expiry-in-the-condition rule as every lock, so `cleanup`
//! releases it on abort/timeout). It also names the holder's ECS task, which `replace` stops.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::config::Concurrency;
use crate::error::Error;
use crate::platform::aws::{AwsResultExt, ConditionalExt};
use crate::platform::dynamo::s;
use crate::platform::time::rfc3339;

pub fn name(environment: &str, job: &str) -> String {
    format!("job:{environment}:{job}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobLease {
    pub lock_name: String,
    pub owner: String,
    pub acquired_at: String,
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_arn: Option<String>,
}

/// What `AcquireLease` tells the workflow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeaseResult {
    pub acquired: bool,
    pub policy: Concurrency,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by_occurrence: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_task: Option<String>,
}

pub struct Request<'a> {
    pub table: &'a str,
    pub lease: &'a str,
    pub owner: &'a str,
    pub owner_name: &'a str,
    pub occurrence_key: &'a str,
    pub policy: Concurrency,
    pub ttl: Duration,
    pub now: DateTime<Utc>,
}

async fn put(
    db: &aws_sdk_dynamodb::Client,
    req: &Request<'_>,
    previous_owner: Option<&str>,
) -> Result<bool, Error> {
    let item = JobLease {
        lock_name: req.lease.to_string(),
        owner: req.owner.to_string(),
        acquired_at: rfc3339(req.now),
        expires_at: rfc3339(req.now + req.ttl),
        occurrence_key: Some(req.occurrence_key.to_string()),
        task_arn: None,
    };
    crate::shared::lock::try_put(db, req.table, &item, req.owner, req.now, previous_owner).await
}

/// Apply the policy. `forbid`: not acquired while a live lease exists. `replace`: stop the
/// holder's task, then take the lease over (conditional on the same holder). `allow`: no lease.
pub async fn acquire(
    db: &aws_sdk_dynamodb::Client,
    ecs: &aws_sdk_ecs::Client,
    req: Request<'_>,
) -> Result<LeaseResult, Error> {
    let mut result = LeaseResult {
        policy: req.policy,
        ..Default::default()
    };
    if req.policy == Concurrency::Allow {
        result.acquired = true;
        return Ok(result);
    }
    if put(db, &req, None).await? {
        result.acquired = true;
        return Ok(result);
    }
    let Some(holder) = get(db, req.table, req.lease).await? else {
        // Released between our write and our read: the workflow retries LockHeld.
        return Err(held(&req, "(just released)", &rfc3339(req.now)));
    };
    result.held_by = Some(holder.owner.clone());
    result.held_by_occurrence = holder.occurrence_key.clone();
    if req.policy == Concurrency::Forbid {
        return Ok(result);
    }
    // replace
    if let Some(task) = &holder.task_arn {
        if crate::shared::task::stop(ecs, task, &format!("replaced by {}", req.owner_name)).await? {
            result.stopped_task = Some(task.clone());
        }
    }
    if put(db, &req, Some(&holder.owner)).await? {
        result.acquired = true;
        result.replaced = Some(holder.owner);
        Ok(result)
    } else {
        Err(held(&req, &holder.owner, &holder.expires_at))
    }
}

fn held(req: &Request<'_>, owner: &str, expires: &str) -> Error {
    Error::LockHeld {
        name: req.lease.to_string(),
        owner: owner.to_string(),
        expires_at: expires.to_string(),
    }
}

/// Name the holder's task on its lease; false when the lease is no longer ours (replaced).
pub async fn set_task(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    lease: &str,
    owner: &str,
    task_arn: &str,
) -> Result<bool, Error> {
    let res = db
        .update_item()
        .table_name(table)
        .key("lockName", s(lease))
        .update_expression("SET taskArn = :t")
        .condition_expression("#owner = :owner")
        .expression_attribute_names("#owner", "owner")
        .expression_attribute_values(":owner", s(owner))
        .expression_attribute_values(":t", s(task_arn))
        .send()
        .await
        .aws("UpdateItem")
        .conditional()?;
    Ok(res.is_some())
}

pub async fn get(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    lease: &str,
) -> Result<Option<JobLease>, Error> {
    crate::shared::lock::get_as(db, table, lease).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::dynamo;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};

    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn req(policy: Concurrency) -> Request<'static> {
        Request {
            table: "locks",
            lease: "job:staging:sync",
            owner: "exec-2",
            owner_name: "e2",
            occurrence_key: "sync#2026-11-28T13:15:00Z",
            policy,
            ttl: Duration::minutes(30),
            now: crate::platform::time::parse("t", "2026-11-28T13:15:01Z").unwrap(),
        }
    }

    fn ccf() -> PutItemError {
        crate::testing::put_item_failed()
    }

    fn holder() -> GetItemOutput {
        GetItemOutput::builder()
            .set_item(Some(dynamo::to_item(&JobLease {
                lock_name: "job:staging:sync".into(),
                owner: "exec-1".into(),
                acquired_at: "2026-11-28T13:00:01Z".into(),
                expires_at: "2026-11-28T13:30:01Z".into(),
                occurrence_key: Some("sync#2026-11-28T13:00:00Z".into()),
                task_arn: None,
            })))
            .build()
    }

    #[tokio::test]
    async fn forbid_reports_the_holder_and_expiry_is_in_the_condition() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.condition_expression()
                    .unwrap()
                    .contains("expiresAt < :now")
            })
            .then_error(ccf);
        let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(holder);
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &get]);
        let ecs = mock_client!(aws_sdk_ecs, []);
        let r = acquire(&db, &ecs, req(Concurrency::Forbid)).await.unwrap();
        assert!(!r.acquired);
        assert_eq!(r.held_by.as_deref(), Some("exec-1"));
        assert_eq!(
            r.held_by_occurrence.as_deref(),
            Some("sync#2026-11-28T13:00:00Z")
        );
    }

    #[tokio::test]
    async fn replace_takes_over_from_the_same_holder() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .sequence()
            .error(ccf)
            .output(|| PutItemOutput::builder().build())
            .build();
        let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(holder);
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &get]);
        let ecs = mock_client!(aws_sdk_ecs, []);
        let r = acquire(&db, &ecs, req(Concurrency::Replace)).await.unwrap();
        assert!(r.acquired);
        assert_eq!(r.replaced.as_deref(), Some("exec-1"));
    }

    #[tokio::test]
    async fn allow_writes_nothing() {
        let db = mock_client!(aws_sdk_dynamodb, []);
        let ecs = mock_client!(aws_sdk_ecs, []);
        assert!(
            acquire(&db, &ecs, req(Concurrency::Allow))
                .await
                .unwrap()
                .acquired
        );
    }
}
