//! Occurrences: one item per (job, scheduled minute) in the occurrences table, created by a
//! DynamoDB conditional write. Whoever creates it runs the occurrence; everyone else is a
//! duplicate (recorded on the item). Keyed on the job and the scheduled time (UTC, to the
//! minute) — never on Scheduler's execution id, which differs per delivery attempt.
//!
//! The same claim serves the workflow (`claimedBy` = execution ARN), the legacy crontab during
//! the cut-over (`batchless jobs claim`, `claimedBy` = `legacy:<host>`) and the missed-run check
//! (`claimedBy` = `missed-run-check`: an occurrence past its catch-up window that nobody
//! claimed is claimed as missed, so it is alerted once and can never run late).
//!
//! A claim by batchless (the workflow, the missed-run check) is sealed with the occurrence
//! signing key (`OCCURRENCE_SIGNING_KEY`; only those two functions may `kms:Sign` with it), so
//! an item written into the table by anyone else (issue 15: a planted `CLAIMED` or `PAUSED`
//! item that would make a due run a "duplicate", or account for one that never ran) is no
//! claim: the next sealed claim of that occurrence replaces it and keeps it as `replaced`, the
//! trace. The legacy crontab's claims (`source` `legacy`, `batchless jobs claim` with the
//! caller's own credentials) cannot be sealed and are taken as they are.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::platform::aws::{AwsResultExt, ConditionalExt};
use crate::platform::dynamo::{self, s, Record, Table};
use crate::platform::signing::Signer;
use crate::platform::time::{rfc3339, truncate_to_minute};
use crate::shared::runs::RunStatus;

/// The occurrences table, typed.
pub type Occurrences = Table<Occurrence>;

/// The index of a job's occurrences (`job`, `scheduledTime`).
pub const BY_JOB_INDEX: &str = "byJob";

/// How an occurrence was claimed: to run it, by the missed-run check as missed, or while the
/// job was paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OccurrenceStatus {
    #[default]
    Claimed,
    Missed,
    /// Delivered while the job was paused (`batchless jobs pause`): recorded, never run.
    Paused,
}

impl OccurrenceStatus {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            OccurrenceStatus::Claimed => "CLAIMED",
            OccurrenceStatus::Missed => "MISSED",
            OccurrenceStatus::Paused => "PAUSED",
        }
    }
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
    /// `scheduler`, `legacy`, `manual`, `missed-run-check` (free text: the legacy crontab
    /// and tools name themselves).
    pub source: String,
    pub status: OccurrenceStatus,
    /// The status its run ended with (set by the owner's `RecordJobRun`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_status: Option<RunStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub duplicate_claimers: Vec<String>,
    /// The missed-run check's reading of the schedule's pause (`jobs::pause::PauseCheck`):
    /// what a `PAUSED` occurrence rests on, or why a claimed pause did not count (`MISSED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<crate::jobs::pause::PauseCheck>,
    /// The occurrence signing key's signature of [`seal_message`]: batchless made this claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
    /// The item this claim replaced because batchless had not written it (its seal did not
    /// verify), as it was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<Value>,
}

/// The occurrence signing key (`OCCURRENCE_SIGNING_KEY`): what seals batchless's claims.
pub fn claim_signer(sdk: &aws_types::SdkConfig) -> Result<Signer, Error> {
    Ok(Signer {
        kms: crate::platform::aws::kms(sdk),
        key: crate::platform::config::required("OCCURRENCE_SIGNING_KEY")?,
    })
}

/// The legacy crontab's claims (`batchless jobs claim`) carry no seal.
pub const LEGACY_SOURCE: &str = "legacy";

/// What a claim's seal covers: which occurrence, who claimed it, when, how and as what.
pub fn seal_message(o: &Occurrence) -> Vec<u8> {
    let fields = serde_json::json!([
        o.environment,
        o.occurrence_key,
        o.job,
        o.scheduled_time,
        o.claimed_by,
        o.claimed_at,
        o.source,
        o.status.as_str(),
    ]);
    format!("batchless-occurrence/1:{fields}").into_bytes()
}

impl Occurrence {
    /// Whether this item is a claim batchless made: sealed by the occurrence signing key over
    /// what it says; the legacy crontab's (which cannot be sealed); or, unsealed, one of an
    /// occurrence due before that key existed (claimed by a version without seals: KMS's
    /// `CreationDate` of the key says when, and no table writer can move it).
    pub async fn is_batchless_claim(&self, signer: &Signer) -> Result<bool, Error> {
        if self.source == LEGACY_SOURCE {
            return Ok(true);
        }
        if self.seal.is_some() {
            return signer.valid(seal_message(self), self.seal.as_deref()).await;
        }
        let Ok(due) = crate::platform::time::parse("scheduledTime", &self.scheduled_time) else {
            return Ok(false);
        };
        Ok(due < key_created(signer).await?)
    }
}

/// When the occurrence signing key was created (`DescribeKey`).
async fn key_created(signer: &Signer) -> Result<DateTime<Utc>, Error> {
    let out = signer
        .kms
        .describe_key()
        .key_id(&signer.key)
        .send()
        .await
        .aws("DescribeKey")?;
    let created = out
        .key_metadata()
        .and_then(|m| m.creation_date())
        .ok_or_else(|| Error::Corrupt(format!("KMS key {} has no creation date", signer.key)))?;
    DateTime::from_timestamp(created.secs(), 0)
        .ok_or_else(|| Error::Corrupt(format!("KMS key {} has no valid creation date", signer.key)))
}

impl Occurrence {
    /// `job`'s occurrence at `scheduled` (keyed to its minute, UTC) as `claimed_by` claims it
    /// now: `source` `scheduler`, status `CLAIMED` (change them with `..`).
    pub fn new(job: &str, scheduled: DateTime<Utc>, environment: &str, claimed_by: &str) -> Self {
        Occurrence {
            occurrence_key: key(job, scheduled),
            job: job.to_string(),
            scheduled_time: rfc3339(truncate_to_minute(scheduled)),
            environment: environment.to_string(),
            claimed_by: claimed_by.to_string(),
            claimed_at: rfc3339(crate::platform::time::now()),
            source: "scheduler".into(),
            status: OccurrenceStatus::Claimed,
            run_status: None,
            duplicate_claimers: vec![],
            pause: None,
            seal: None,
            replaced: None,
        }
    }
}

impl Record for Occurrence {
    const KEY: &'static str = "occurrenceKey";
    fn key(&self) -> &str {
        &self.occurrence_key
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This claimant owns the occurrence (first claim, or its own retried claim).
    Won,
    /// This claimant owns it, having replaced an item batchless did not write (kept on the
    /// claim as `replaced`; here as it was found).
    Replaced(Box<Occurrence>),
    /// Someone else owns it.
    Duplicate(Box<Occurrence>),
}

impl Claim {
    /// This claimant owns the occurrence.
    pub fn won(&self) -> bool {
        !matches!(self, Claim::Duplicate(_))
    }
}

impl Table<Occurrence> {
    /// The claim: [`Table::put_once`] — one conditional PutItem that creates the occurrence
    /// unless it exists. When it exists, what is stored decides: this claimant's own earlier
    /// claim (a retried step) wins again, anyone else's is a duplicate. Nothing already stored
    /// is ever written over (a retry keeps the `duplicateClaimers` and `runStatus` recorded
    /// meanwhile) — except, when batchless claims (`signer`: the claim is sealed), an item
    /// batchless did not write: it is replaced with one conditional write on exactly what was
    /// found, and kept as `replaced`.
    pub async fn claim(
        &self,
        occurrence: &Occurrence,
        signer: Option<&Signer>,
    ) -> Result<Claim, Error> {
        let mut occ = occurrence.clone();
        if let Some(s) = signer {
            occ.seal = Some(s.sign(seal_message(&occ)).await?);
        }
        // Twice at most: a forged item replaced under our feet by another claimant is read again.
        for _ in 0..2 {
            let stored = match self.put_once(&occ).await? {
                dynamo::Once::First => return Ok(Claim::Won),
                dynamo::Once::Seen(stored) if stored.claimed_by == occ.claimed_by => {
                    return Ok(Claim::Won)
                }
                dynamo::Once::Seen(stored) => stored,
            };
            let forged = match signer {
                Some(s) => !stored.is_batchless_claim(s).await?,
                None => false,
            };
            if !forged {
                return Ok(Claim::Duplicate(Box::new(stored)));
            }
            let mut replacement = occ.clone();
            replacement.replaced = Some(serde_json::to_value(&stored).expect("serializes"));
            if self.replace(&stored, &replacement).await? {
                return Ok(Claim::Replaced(Box::new(stored)));
            }
        }
        Err(Error::Corrupt(format!(
            "occurrence {} keeps changing while it is claimed",
            occ.occurrence_key
        )))
    }

    /// Write `with` over `found`, only if the item is still exactly what was found (its
    /// claimant and its seal, or the lack of one).
    async fn replace(&self, found: &Occurrence, with: &Occurrence) -> Result<bool, Error> {
        let mut put = self
            .client()
            .put_item()
            .table_name(self.name())
            .set_item(Some(dynamo::to_item(with)))
            .expression_attribute_names("#claimedBy", "claimedBy")
            .expression_attribute_names("#seal", "seal")
            .expression_attribute_values(":claimedBy", s(&found.claimed_by));
        put = match &found.seal {
            Some(seal) => put
                .condition_expression("#claimedBy = :claimedBy AND #seal = :seal")
                .expression_attribute_values(":seal", s(seal)),
            None => {
                put.condition_expression("#claimedBy = :claimedBy AND attribute_not_exists(#seal)")
            }
        };
        Ok(put.send().await.aws("PutItem").conditional()?.is_some())
    }

    /// Record a duplicate delivery on the occurrence (a string set: a retried record is not
    /// counted twice).
    pub async fn record_duplicate(
        &self,
        occurrence_key: &str,
        claimant: &str,
    ) -> Result<(), Error> {
        self.client()
            .update_item()
            .table_name(self.name())
            .key(Occurrence::KEY, s(occurrence_key))
            .update_expression("ADD duplicateClaimers :c")
            .expression_attribute_values(":c", AttributeValue::Ss(vec![claimant.to_string()]))
            .return_values(ReturnValue::None)
            .send()
            .await
            .aws("UpdateItem")?;
        Ok(())
    }

    /// The run's final status on the occurrence, only by its owner (another claimant's
    /// attempt changes nothing). Returns whether it was set.
    pub async fn set_run_status(
        &self,
        occurrence_key: &str,
        owner: &str,
        run_status: RunStatus,
    ) -> Result<bool, Error> {
        let set = self
            .set_fields(
                occurrence_key,
                &[("runStatus", Value::from(run_status.as_str()))],
                Some("#claimedBy = :me"),
                &[(":me", Value::from(owner))],
            )
            .await?;
        Ok(set.is_some())
    }

    /// Backfill (issue 20): take over an occurrence the missed-run check claimed `MISSED`, with
    /// one conditional write (`status = MISSED` → `CLAIMED`, the new claimant and source). A
    /// `CLAIMED` or `PAUSED` occurrence is never taken over. Returns whether it was taken.
    pub async fn take_over_missed(
        &self,
        occurrence: &Occurrence,
        signer: &Signer,
    ) -> Result<bool, Error> {
        let taken = Occurrence {
            status: OccurrenceStatus::Claimed,
            ..occurrence.clone()
        };
        let seal = signer.sign(seal_message(&taken)).await?;
        let set = self
            .set_fields(
                &occurrence.occurrence_key,
                &[
                    ("status", Value::from(OccurrenceStatus::Claimed.as_str())),
                    ("claimedBy", Value::from(occurrence.claimed_by.as_str())),
                    ("claimedAt", Value::from(occurrence.claimed_at.as_str())),
                    ("source", Value::from(occurrence.source.as_str())),
                    ("seal", Value::from(seal)),
                ],
                Some("#status = :missed"),
                &[(":missed", Value::from(OccurrenceStatus::Missed.as_str()))],
            )
            .await?;
        Ok(set.is_some())
    }

    /// The newest occurrences of a job.
    pub async fn of_job(&self, job: &str, limit: i32) -> Result<Vec<Occurrence>, Error> {
        self.newest(BY_JOB_INDEX, "job", job, Some(limit)).await
    }
}

// The same operations for callers that hold a client and the table's name (the CLI's
// `batchless jobs claim` / `list`, the claim benchmark).

/// See [`Table::<Occurrence>::claim`].
pub async fn claim(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    occurrence: &Occurrence,
) -> Result<Claim, Error> {
    Occurrences::new(db.clone(), table)
        .claim(occurrence, None)
        .await
}

/// See [`Table::<Occurrence>::record_duplicate`].
pub async fn record_duplicate(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    occurrence_key: &str,
    claimant: &str,
) -> Result<(), Error> {
    Occurrences::new(db.clone(), table)
        .record_duplicate(occurrence_key, claimant)
        .await
}

pub async fn get(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    occurrence_key: &str,
) -> Result<Option<Occurrence>, Error> {
    Occurrences::new(db.clone(), table)
        .get(occurrence_key)
        .await
}

/// The newest occurrences of a job.
pub async fn list(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    job: &str,
    limit: i32,
) -> Result<Vec<Occurrence>, Error> {
    Occurrences::new(db.clone(), table).of_job(job, limit).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
    use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    pub(crate) fn occ(by: &str) -> Occurrence {
        Occurrence {
            claimed_at: "2026-11-28T18:00:02Z".into(),
            ..Occurrence::new(
                "report",
                crate::platform::time::parse("t", "2026-11-28T18:00:00Z").unwrap(),
                "staging",
                by,
            )
        }
    }

    fn ccf() -> ConditionalCheckFailedException {
        crate::testing::conditional_check_failed()
    }

    #[test]
    fn keys_truncate_to_the_minute_in_utc() {
        let t = crate::platform::time::parse("t", "2026-11-29T03:00:59.9+09:00").unwrap();
        assert_eq!(key("report", t), "report#2026-11-28T18:00:00Z");
        assert_ne!(manual_key("report", "e1"), key("report", t));
    }

    #[test]
    fn stored_attributes_keep_their_names_and_values() {
        let item = dynamo::to_item(&Occurrence {
            status: OccurrenceStatus::Missed,
            run_status: Some(RunStatus::SkippedStale),
            ..occ("missed-run-check")
        });
        assert_eq!(item.get("status"), Some(&s("MISSED")));
        assert_eq!(OccurrenceStatus::Missed.as_str(), "MISSED");
        assert_eq!(OccurrenceStatus::Claimed.as_str(), "CLAIMED");
        assert_eq!(OccurrenceStatus::Paused.as_str(), "PAUSED");
        assert_eq!(item.get("runStatus"), Some(&s("SKIPPED_STALE")));
        assert_eq!(
            item.get("occurrenceKey"),
            Some(&s("report#2026-11-28T18:00:00Z"))
        );
        assert!(!item.contains_key("duplicateClaimers"));
        // What `ADD duplicateClaimers` stores (a string set) reads back as a list.
        let mut item = dynamo::to_item(&occ("a"));
        item.insert(
            "duplicateClaimers".into(),
            AttributeValue::Ss(vec!["b".into(), "c".into()]),
        );
        let back: Occurrence = dynamo::from_item(&item).unwrap();
        assert_eq!(back.duplicate_claimers, vec!["b", "c"]);
    }

    #[tokio::test]
    async fn the_claim_is_one_conditional_put() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.condition_expression() == Some("attribute_not_exists(#k)")
                    && r.expression_attribute_names().and_then(|n| n.get("#k"))
                        == Some(&"occurrenceKey".to_string())
            })
            .then_output(|| PutItemOutput::builder().build());
        let db = mock_client!(aws_sdk_dynamodb, [&put]);
        assert_eq!(claim(&db, "occ", &occ("exec-1")).await.unwrap(), Claim::Won);
        assert_eq!(put.num_calls(), 1);
    }

    /// Issue 16: a retried claim wins again by reading what is stored, never by writing the
    /// whole item over it (which erased the duplicates and run status recorded meanwhile).
    #[tokio::test]
    async fn a_retried_claim_wins_without_writing_over_what_was_recorded() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .then_error(|| PutItemError::ConditionalCheckFailedException(ccf()));
        let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
            GetItemOutput::builder()
                .set_item(Some(dynamo::to_item(&Occurrence {
                    duplicate_claimers: vec!["exec-2".into()],
                    ..occ("exec-1")
                })))
                .build()
        });
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &get]);
        assert_eq!(claim(&db, "occ", &occ("exec-1")).await.unwrap(), Claim::Won);
        // One conditional put that failed, one read; no second (unconditional) write.
        assert_eq!((put.num_calls(), get.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_lost_claim_names_the_owner() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .then_error(|| PutItemError::ConditionalCheckFailedException(ccf()));
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

    #[tokio::test]
    async fn only_the_owner_sets_the_run_status() {
        let update = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                r.condition_expression()
                    .unwrap_or_default()
                    .contains("#claimedBy = :me")
                    && r.expression_attribute_names()
                        .and_then(|n| n.get("#claimedBy"))
                        == Some(&"claimedBy".to_string())
                    && r.expression_attribute_values().and_then(|v| v.get(":me"))
                        == Some(&s("exec-1"))
                    && r.expression_attribute_values()
                        .is_some_and(|v| v.values().any(|a| a == &s("FAILED")))
            })
            .sequence()
            .output(|| {
                UpdateItemOutput::builder()
                    .set_attributes(Some(dynamo::to_item(&occ("exec-1"))))
                    .build()
            })
            .error(|| UpdateItemError::ConditionalCheckFailedException(ccf()))
            .build();
        let db = mock_client!(aws_sdk_dynamodb, [&update]);
        let t = Occurrences::new(db, "occ");
        let k = "report#2026-11-28T18:00:00Z";
        assert!(t
            .set_run_status(k, "exec-1", RunStatus::Failed)
            .await
            .unwrap());
        assert!(!t
            .set_run_status(k, "exec-1", RunStatus::Failed)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn only_a_sealed_legacy_or_pre_seal_item_is_batchless_claim() {
        let verifying = |valid| crate::shared::approval::seal::tests::sealer(valid);
        let at = crate::platform::time::parse("t", "2026-11-28T13:00:00Z").unwrap();
        let occ = Occurrence::new("job", at, "staging", "arn:e");
        let sealed = Occurrence {
            seal: Some("c2VhbGVk".into()),
            ..occ.clone()
        };
        assert!(sealed.is_batchless_claim(&verifying(true)).await.unwrap());
        assert!(!sealed.is_batchless_claim(&verifying(false)).await.unwrap());
        // Unsealed: not batchless's, unless the legacy crontab's or due before the key existed
        // (the test key was created on 2025-01-01).
        assert!(!occ.is_batchless_claim(&verifying(true)).await.unwrap());
        let legacy = Occurrence {
            source: LEGACY_SOURCE.into(),
            ..occ.clone()
        };
        assert!(legacy.is_batchless_claim(&verifying(false)).await.unwrap());
        let before = Occurrence::new(
            "job",
            crate::platform::time::parse("t", "2024-12-31T23:00:00Z").unwrap(),
            "staging",
            "arn:e",
        );
        assert!(before.is_batchless_claim(&verifying(false)).await.unwrap());
        // The seal binds every field it covers.
        let base = seal_message(&occ);
        for edit in [
            Occurrence {
                claimed_by: "arn:other".into(),
                ..occ.clone()
            },
            Occurrence {
                status: OccurrenceStatus::Paused,
                ..occ.clone()
            },
            Occurrence {
                source: "manual".into(),
                ..occ.clone()
            },
            Occurrence {
                claimed_at: "2026-11-28T13:01:00Z".into(),
                ..occ.clone()
            },
            Occurrence {
                environment: "production".into(),
                ..occ.clone()
            },
            Occurrence::new("job", at + chrono::Duration::minutes(1), "staging", "arn:e"),
        ] {
            assert_ne!(seal_message(&edit), base, "{edit:?}");
        }
    }
}
