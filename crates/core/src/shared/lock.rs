//! Leases in the locks table: a conditional write whose condition also compares the expiry,
//! so an abandoned lock frees itself without relying on DynamoDB TTL (which deletes lazily).
//! Re-acquiring by the same owner succeeds (a retried step is not a second holder).

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::platform::aws::{AwsResultExt, ConditionalExt};
use crate::platform::dynamo::{self, s};
use crate::platform::time::rfc3339;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub lock_name: String,
    pub owner: String,
    pub acquired_at: String,
    pub expires_at: String,
}

pub async fn acquire(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    name: &str,
    owner: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Lease, Error> {
    let lease = Lease {
        lock_name: name.to_string(),
        owner: owner.to_string(),
        acquired_at: rfc3339(now),
        expires_at: rfc3339(now + ttl),
    };
    if try_put(db, table, &lease, owner, now, None).await? {
        return Ok(lease);
    }
    Err(match get(db, table, name).await? {
        Some(h) => Error::LockHeld {
            name: name.to_string(),
            owner: h.owner,
            expires_at: h.expires_at,
        },
        // Released between our write and our read: report it as held so the caller's retry
        // takes it cleanly.
        None => Error::LockHeld {
            name: name.to_string(),
            owner: "(just released)".into(),
            expires_at: rfc3339(now),
        },
    })
}

/// Write `lease` (a record with `lockName`, `owner`, `expiresAt` and whatever else its user
/// keeps on the lease) if the lock is free, expired at `now`, already `owner`'s, or held by
/// `takeover_from` (a deliberate take-over). Returns whether it was written.
pub async fn try_put<T: Serialize>(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    lease: &T,
    owner: &str,
    now: DateTime<Utc>,
    takeover_from: Option<&str>,
) -> Result<bool, Error> {
    let mut condition =
        "attribute_not_exists(lockName) OR expiresAt < :now OR #owner = :owner".to_string();
    let mut put = db
        .put_item()
        .table_name(table)
        .set_item(Some(dynamo::to_item(lease)))
        .expression_attribute_names("#owner", "owner")
        .expression_attribute_values(":now", s(rfc3339(now)))
        .expression_attribute_values(":owner", s(owner));
    if let Some(previous) = takeover_from {
        condition.push_str(" OR #owner = :previous");
        put = put.expression_attribute_values(":previous", s(previous));
    }
    let written = put
        .condition_expression(condition)
        .send()
        .await
        .aws("PutItem")
        .conditional()?;
    Ok(written.is_some())
}

/// Release `name` if `owner` holds it. Returns whether this call released it.
pub async fn release(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    name: &str,
    owner: &str,
) -> Result<bool, Error> {
    let res = db
        .delete_item()
        .table_name(table)
        .key("lockName", s(name))
        .condition_expression("#owner = :owner")
        .expression_attribute_names("#owner", "owner")
        .expression_attribute_values(":owner", s(owner))
        .send()
        .await
        .aws("DeleteItem")
        .conditional()?;
    Ok(res.is_some())
}

pub async fn get(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    name: &str,
) -> Result<Option<Lease>, Error> {
    get_as(db, table, name).await
}

/// The lock item as its user's own record type (e.g. a lease with extra fields).
pub async fn get_as<T: serde::de::DeserializeOwned>(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    name: &str,
) -> Result<Option<T>, Error> {
    dynamo::get(db, table, &[("lockName", name)]).await
}

/// Every lock `owner` holds (the locks table is small: a scan with a filter).
pub async fn held_by(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    owner: &str,
) -> Result<Vec<Lease>, Error> {
    let mut leases = Vec::new();
    let mut start = None;
    loop {
        let out = db
            .scan()
            .table_name(table)
            .filter_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .aws("Scan")?;
        for item in out.items() {
            leases.push(dynamo::from_item(item)?);
        }
        start = out.last_evaluated_key().cloned();
        if start.is_none() {
            return Ok(leases);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn now() -> DateTime<Utc> {
        crate::platform::time::parse("t", "2026-11-28T13:00:00Z").unwrap()
    }

    #[tokio::test]
    async fn acquire_puts_with_expiry_in_the_condition() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.condition_expression()
                    .unwrap()
                    .contains("expiresAt < :now")
                    && r.expression_attribute_values().unwrap().get(":now")
                        == Some(&s("2026-11-28T13:00:00Z"))
                    && r.item().unwrap().get("expiresAt") == Some(&s("2026-11-28T15:00:00Z"))
            })
            .then_output(|| PutItemOutput::builder().build());
        let db = mock_client!(aws_sdk_dynamodb, [&put]);
        let lease = acquire(
            &db,
            "locks",
            "migration:staging",
            "exec-1",
            Duration::hours(2),
            now(),
        )
        .await
        .unwrap();
        assert_eq!(lease.owner, "exec-1");
        assert_eq!(put.num_calls(), 1);
    }

    #[tokio::test]
    async fn held_lock_names_its_holder() {
        let put = crate::testing::put_item_exists();
        let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
            GetItemOutput::builder()
                .set_item(Some(dynamo::to_item(&Lease {
                    lock_name: "migration:staging".into(),
                    owner: "exec-0".into(),
                    acquired_at: "2026-11-28T12:00:00Z".into(),
                    expires_at: "2026-11-28T14:00:00Z".into(),
                })))
                .build()
        });
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &get]);
        let err = acquire(
            &db,
            "locks",
            "migration:staging",
            "exec-1",
            Duration::hours(2),
            now(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.error_type(), "LockHeld");
        assert!(err.to_string().contains("exec-0"), "{err}");
    }

    #[tokio::test]
    async fn release_by_a_non_owner_is_a_no_op() {
        let del = crate::testing::delete_item_absent();
        let db = mock_client!(aws_sdk_dynamodb, [&del]);
        assert!(!release(&db, "locks", "migration:staging", "exec-9")
            .await
            .unwrap());
    }
}
