//! Occurrences: one item per (job, scheduled minute) in the occurrences table, created by a
//! DynamoDB conditional write. Whoever creates it runs the occurrence; everyone else is a
//! duplicate (recorded on the item). Keyed on the job and the scheduled time (UTC, to the
//! minute) — never on Scheduler's execution id, which differs per delivery attempt.
//!
//! The same claim serves the workflow (`claimedBy` = execution ARN), the legacy crontab during
//! the cut-over (`batchless jobs claim`, `claimedBy` = `legacy:<host>`) and the missed-run check
//! (`claimedBy` = `missed-run-check`: an occurrence past its catch-up window that nobody
//! claimed is claimed as missed, so it is alerted once and can never run late).

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::platform::aws::{AwsResultExt, ConditionalExt};
use crate::platform::dynamo::{self, s};
use crate::platform::time::{rfc3339, truncate_to_minute};

pub mod status {
    pub const CLAIMED: &str = "CLAIMED";
    pub const MISSED: &str = "MISSED";
}

/// `job#2026-11-28T18:00:00Z`: the job and its scheduled time truncated to the minute.
pub fn key(job: &str, scheduled: DateTime<Utc>) -> String {
    format!("{job}#{}", rfc3339(truncate_to_minute(scheduled)))
}

/// A manual run's own key: it can never equal a scheduled occurrence's.
pub fn manual_key(job: &str, execution_name: &str) -> String {
    format!("{job}#manual#{execution_name}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Occurrence {
    pub occurrence_key: String,
    pub job: String,
    /// RFC 3339 (scheduled) or `manual`.
    pub scheduled_time: String,
    pub environment: String,
    pub claimed_by: String,
    pub claimed_at: String,
    /// `scheduler`, `legacy`, `manual`, `missed-run-check`.
    pub source: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_status: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub duplicate_claimers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This claimant owns the occurrence (first claim, or its own retried claim).
    Won,
    /// Someone else owns it.
    Duplicate(Box<Occurrence>),
}

/// One conditional PutItem: create the occurrence unless it exists (a retry by the same
/// claimant wins again). On a lost claim, reads the owner for the record.
pub async fn claim(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    occurrence: &Occurrence,
) -> Result<Claim, Error> {
    let res = db
        .put_item()
        .table_name(table)
        .set_item(Some(dynamo::to_item(occurrence)))
        .condition_expression("attribute_not_exists(occurrenceKey) OR claimedBy = :me")
        .expression_attribute_values(":me", s(&occurrence.claimed_by))
        .send()
        .await
        .aws("PutItem")
        .conditional()?;
    if res.is_some() {
        return Ok(Claim::Won);
    }
    let owner = get(db, table, &occurrence.occurrence_key)
        .await?
        .ok_or_else(|| Error::Corrupt("occurrence vanished".into()))?;
    Ok(Claim::Duplicate(Box::new(owner)))
}

/// Record a duplicate delivery on the occurrence (a set: a retried record is not counted twice).
pub async fn record_duplicate(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    occurrence_key: &str,
    claimant: &str,
) -> Result<(), Error> {
    db.update_item()
        .table_name(table)
        .key("occurrenceKey", s(occurrence_key))
        .update_expression("ADD duplicateClaimers :c")
        .expression_attribute_values(":c", AttributeValue::Ss(vec![claimant.to_string()]))
        .return_values(ReturnValue::None)
        .send()
        .await
        .aws("UpdateItem")?;
    Ok(())
}

/// The run's final status on the occurrence (only by its owner).
pub async fn set_run_status(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    occurrence_key: &str,
    owner: &str,
    run_status: &str,
) -> Result<(), Error> {
    // Only the owner may set it: another claimant's attempt is a no-op.
    db.update_item()
        .table_name(table)
        .key("occurrenceKey", s(occurrence_key))
        .update_expression("SET runStatus = :s")
        .condition_expression("claimedBy = :me")
        .expression_attribute_values(":s", s(run_status))
        .expression_attribute_values(":me", s(owner))
        .send()
        .await
        .aws("UpdateItem")
        .conditional()?;
    Ok(())
}

pub async fn get(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    occurrence_key: &str,
) -> Result<Option<Occurrence>, Error> {
    dynamo::get(db, table, &[("occurrenceKey", occurrence_key)]).await
}

/// The newest occurrences of a job (index `byJob`: job, scheduledTime).
pub async fn list(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    job: &str,
    limit: i32,
) -> Result<Vec<Occurrence>, Error> {
    dynamo::query_newest(db, table, "byJob", "job", job, Some(limit))
        .await?
        .iter()
        .map(dynamo::from_item)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn occ(by: &str) -> Occurrence {
        Occurrence {
            occurrence_key: "report#2026-11-28T18:00:00Z".into(),
            job: "report".into(),
            scheduled_time: "2026-11-28T18:00:00Z".into(),
            environment: "staging".into(),
            claimed_by: by.into(),
            claimed_at: "2026-11-28T18:00:02Z".into(),
            source: "scheduler".into(),
            status: status::CLAIMED.into(),
            run_status: None,
            duplicate_claimers: vec![],
        }
    }

    #[test]
    fn keys_truncate_to_the_minute_in_utc() {
        let t = crate::platform::time::parse("t", "2026-11-29T03:00:59.9+09:00").unwrap();
        assert_eq!(key("report", t), "report#2026-11-28T18:00:00Z");
        assert_ne!(manual_key("report", "e1"), key("report", t));
    }

    #[tokio::test]
    async fn the_claim_is_one_conditional_put() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.condition_expression()
                    == Some("attribute_not_exists(occurrenceKey) OR claimedBy = :me")
            })
            .then_output(|| PutItemOutput::builder().build());
        let db = mock_client!(aws_sdk_dynamodb, [&put]);
        assert_eq!(claim(&db, "occ", &occ("exec-1")).await.unwrap(), Claim::Won);
        assert_eq!(put.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_lost_claim_names_the_owner() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item).then_error(|| {
            PutItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .meta(crate::testing::meta("ConditionalCheckFailedException"))
                    .build(),
            )
        });
        let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
            GetItemOutput::builder()
                .set_item(Some(dynamo::to_item(&occ("legacy:batch1"))))
                .build()
        });
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &get]);
        match claim(&db, "occ", &occ("exec-2")).await.unwrap() {
            Claim::Duplicate(o) => assert_eq!(o.claimed_by, "legacy:batch1"),
            other => panic!("{other:?}"),
        }
    }
}
