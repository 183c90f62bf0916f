//! The audit trail: an append-only, hash-chained log of everything that happened to a data
//! patch (requested, each decision, approved/rejected/expired, the build, the verdict).
//!
//! - Each record carries the previous record's hash; its own hash is SHA-256 over its
//!   canonical JSON (keys sorted), so editing, reordering or removing a record breaks the chain.
//! - Appends are serialized by one DynamoDB transaction: put the record (new seq), move the
//!   chain head (condition: the head is still where we read it), put a marker for the
//!   record's idempotency key (so a retried step appends nothing twice).
//! - Every record's hash is also anchored in S3 (`audit/<chain>/anchors/<seq>.json`; Object
//!   Lock in compliance mode on AWS), so deleting the newest record, or rewriting the whole
//!   chain with recomputed hashes, is detected by [`verify`].

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::platform::aws::AwsResultExt;
use crate::platform::dynamo::{self, s};

/// The chain every data-patch record goes to.
pub const PATCH_CHAIN: &str = "patches";
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// How often an append retries after losing the race for the head.
const APPEND_ATTEMPTS: usize = 8;

/// One record as stored (partition `chain`, sort `seq`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditRecord {
    pub chain: String,
    pub seq: u64,
    /// Idempotency key: the same key is appended once (`request:<id>`, `decision:<id>:<who>`).
    pub key: String,
    pub at: String,
    pub environment: String,
    pub patch_id: String,
    pub event: String,
    /// Who caused it: a person id from the people map, or the workflow.
    pub actor: String,
    pub data: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// What a caller appends; seq, links and hash are filled in by [`append`].
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub environment: String,
    pub patch_id: String,
    pub event: String,
    pub actor: String,
    pub data: Value,
}

/// Sorted-key JSON, so a record's hash does not depend on the order DynamoDB returns map keys.
pub fn canonical_json(v: &Value) -> String {
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                let sorted: BTreeMap<&String, &Value> = map.iter().collect();
                out.push('{');
                for (i, (k, v)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(v, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// The hash a record must carry: SHA-256 over its canonical JSON without `hash`.
pub fn record_hash(r: &AuditRecord) -> String {
    let mut v = serde_json::to_value(r).expect("records serialize");
    v.as_object_mut().expect("an object").remove("hash");
    hex::encode(Sha256::digest(canonical_json(&v).as_bytes()))
}

/// Pure: the record that follows `prev` (or starts the chain).
pub fn next_record(chain: &str, prev: Option<(u64, &str)>, entry: &Entry, at: &str) -> AuditRecord {
    let (seq, prev_hash) = match prev {
        Some((seq, hash)) => (seq + 1, hash.to_string()),
        None => (1, GENESIS_HASH.to_string()),
    };
    let mut r = AuditRecord {
        chain: chain.to_string(),
        seq,
        key: entry.key.clone(),
        at: at.to_string(),
        environment: entry.environment.clone(),
        patch_id: entry.patch_id.clone(),
        event: entry.event.clone(),
        actor: entry.actor.clone(),
        data: entry.data.clone(),
        prev_hash,
        hash: String::new(),
    };
    r.hash = record_hash(&r);
    r
}

/// The chain head item: where the next append goes (the item also carries its key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    pub head_seq: u64,
    pub head_hash: String,
}

/// An S3 anchor of one record (the object `audit/<chain>/anchors/<seq>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Anchor {
    pub seq: u64,
    pub hash: String,
    pub at: String,
}

fn head_pk(chain: &str) -> String {
    format!("head#{chain}")
}

fn marker_pk(chain: &str, key: &str) -> String {
    format!("key#{chain}#{key}")
}

pub fn anchor_key(chain: &str, seq: u64) -> String {
    format!("audit/{chain}/anchors/{seq:012}.json")
}

pub fn anchor_prefix(chain: &str) -> String {
    format!("audit/{chain}/anchors/")
}

/// Where the trail lives.
#[derive(Debug, Clone)]
pub struct Trail<'a> {
    pub db: &'a aws_sdk_dynamodb::Client,
    pub s3: &'a aws_sdk_s3::Client,
    pub table: &'a str,
    pub bucket: &'a str,
    pub chain: &'a str,
}

fn key_of(pk: &str, seq: u64) -> dynamo::Item {
    [
        ("chain".to_string(), s(pk)),
        ("seq".to_string(), AttributeValue::N(seq.to_string())),
    ]
    .into()
}

async fn get_item(t: &Trail<'_>, pk: &str, seq: u64) -> Result<Option<dynamo::Item>, Error> {
    dynamo::get_item(t.db, t.table, key_of(pk, seq)).await
}

async fn read_head(t: &Trail<'_>) -> Result<Option<Head>, Error> {
    get_item(t, &head_pk(t.chain), 0)
        .await?
        .as_ref()
        .map(dynamo::from_item)
        .transpose()
}

/// The seq of the record appended under `key`, if any.
async fn marker(t: &Trail<'_>, key: &str) -> Result<Option<u64>, Error> {
    Ok(get_item(t, &marker_pk(t.chain, key), 0)
        .await?
        .and_then(|i| {
            i.get("recordSeq")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
        }))
}

async fn get_record(t: &Trail<'_>, seq: u64) -> Result<Option<AuditRecord>, Error> {
    get_item(t, t.chain, seq)
        .await?
        .as_ref()
        .map(dynamo::from_item)
        .transpose()
}

/// Write the S3 anchor of a record (idempotent: same key, same content).
async fn anchor(t: &Trail<'_>, r: &AuditRecord) -> Result<(), Error> {
    let body = serde_json::to_vec(&Anchor {
        seq: r.seq,
        hash: r.hash.clone(),
        at: r.at.clone(),
    })
    .expect("anchors serialize");
    t.s3.put_object()
        .bucket(t.bucket)
        .key(anchor_key(t.chain, r.seq))
        .content_type("application/json")
        .body(body.into())
        .send()
        .await
        .aws("PutObject")?;
    Ok(())
}

/// The seq of the record appended under `key`, if there is one.
pub async fn appended(t: &Trail<'_>, key: &str) -> Result<Option<u64>, Error> {
    marker(t, key).await
}

/// Append an entry once. Returns the record and whether it is new (`false`: its key was
/// appended before, e.g. by a retried step). Losing the race for the head re-reads it and
/// retries.
pub async fn append(t: &Trail<'_>, entry: &Entry) -> Result<(AuditRecord, bool), Error> {
    for _ in 0..APPEND_ATTEMPTS {
        if let Some(seq) = marker(t, &entry.key).await? {
            let existing = get_record(t, seq).await?.ok_or_else(|| {
                Error::Corrupt(format!(
                    "audit key {} points at record {seq}, which is missing",
                    entry.key
                ))
            })?;
            // A crash between the write and the anchor is healed by the retry.
            anchor(t, &existing).await?;
            return Ok((existing, false));
        }
        let head = read_head(t).await?;
        let prev = head.as_ref().map(|h| (h.head_seq, h.head_hash.as_str()));
        let record = next_record(
            t.chain,
            prev,
            entry,
            &crate::platform::time::rfc3339(crate::platform::time::now()),
        );
        let put_record = Put::builder()
            .table_name(t.table)
            .set_item(Some(dynamo::to_item(&record)))
            .condition_expression("attribute_not_exists(chain)")
            .build()
            .expect("table and item are set");
        let mut head_item = dynamo::to_item(&Head {
            head_seq: record.seq,
            head_hash: record.hash.clone(),
        });
        head_item.extend(key_of(&head_pk(t.chain), 0));
        let put_head = match &head {
            Some(h) => Put::builder()
                .condition_expression("headSeq = :seq")
                .expression_attribute_values(":seq", AttributeValue::N(h.head_seq.to_string())),
            None => Put::builder().condition_expression("attribute_not_exists(chain)"),
        }
        .table_name(t.table)
        .set_item(Some(head_item))
        .build()
        .expect("table and item are set");
        let mut marker_item = key_of(&marker_pk(t.chain, &entry.key), 0);
        marker_item.insert(
            "recordSeq".into(),
            AttributeValue::N(record.seq.to_string()),
        );
        let put_marker = Put::builder()
            .table_name(t.table)
            .set_item(Some(marker_item))
            .condition_expression("attribute_not_exists(chain)")
            .build()
            .expect("table and item are set");
        let res =
            t.db.transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put_record).build())
                .transact_items(TransactWriteItem::builder().put(put_head).build())
                .transact_items(TransactWriteItem::builder().put(put_marker).build())
                .send()
                .await
                .aws("TransactWriteItems");
        match res {
            Ok(_) => {
                anchor(t, &record).await?;
                tracing::info!(chain = t.chain, seq = record.seq, event = %record.event, patch = %record.patch_id, "audit record appended");
                return Ok((record, true));
            }
            Err(e) if e.is_code("TransactionCanceledException") => {
                tracing::info!(
                    chain = t.chain,
                    "lost the race for the audit head; retrying"
                );
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Contention(format!(
        "audit chain {}: could not append after {APPEND_ATTEMPTS} attempts (contention)",
        t.chain
    )))
}

/// Every record of the chain, in seq order, plus the head.
pub async fn read_chain(t: &Trail<'_>) -> Result<(Vec<AuditRecord>, Option<Head>), Error> {
    let mut records = Vec::new();
    let mut start = None;
    loop {
        let out =
            t.db.query()
                .table_name(t.table)
                .key_condition_expression("chain = :c")
                .expression_attribute_values(":c", s(t.chain))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .aws("Query")?;
        for item in out.items() {
            records.push(dynamo::from_item::<AuditRecord>(item)?);
        }
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    records.sort_by_key(|r| r.seq);
    Ok((records, read_head(t).await?))
}

/// Every S3 anchor of the chain.
pub async fn read_anchors(t: &Trail<'_>) -> Result<Vec<Anchor>, Error> {
    let mut anchors = Vec::new();
    let mut token = None;
    loop {
        let out =
            t.s3.list_objects_v2()
                .bucket(t.bucket)
                .prefix(anchor_prefix(t.chain))
                .set_continuation_token(token)
                .send()
                .await
                .aws("ListObjectsV2")?;
        for obj in out.contents() {
            let Some(key) = obj.key() else { continue };
            let body =
                t.s3.get_object()
                    .bucket(t.bucket)
                    .key(key)
                    .send()
                    .await
                    .aws("GetObject")?
                    .body
                    .collect()
                    .await
                    .map_err(|e| Error::Corrupt(format!("reading {key}: {e}")))?
                    .into_bytes();
            let a: Anchor = serde_json::from_slice(&body)
                .map_err(|e| Error::Corrupt(format!("anchor {key} is not an anchor: {e}")))?;
            anchors.push(a);
        }
        match out.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    anchors.sort_by_key(|a| a.seq);
    Ok(anchors)
}

/// One thing wrong with the chain, named so an auditor can find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The record's content does not match its own hash: it was edited.
    Modified {
        seq: u64,
        stored: String,
        computed: String,
    },
    /// The record does not link to the one before it (reordered, inserted, or its
    /// predecessor was replaced).
    BrokenLink {
        seq: u64,
        expected_prev: String,
        found_prev: String,
    },
    /// A seq is missing from the chain: that record was deleted.
    Missing { seq: u64 },
    /// The head points past the last record (the newest records were deleted), or elsewhere.
    HeadMismatch {
        head_seq: u64,
        head_hash: String,
        last_seq: u64,
        last_hash: String,
    },
    /// S3 anchored a different hash for this seq: the chain was rewritten.
    AnchorMismatch {
        seq: u64,
        anchored: String,
        found: String,
    },
    /// A record is not anchored in S3.
    Unanchored { seq: u64 },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |h: &str| h.chars().take(12).collect::<String>();
        match self {
            Problem::Modified { seq, stored, computed } => write!(
                f,
                "record {seq} was modified: it carries hash {} but its content hashes to {}",
                short(stored),
                short(computed)
            ),
            Problem::BrokenLink { seq, expected_prev, found_prev } => write!(
                f,
                "record {seq} does not follow record {}: it links to {} but that record's hash is {} (reordered or replaced)",
                seq - 1,
                short(found_prev),
                short(expected_prev)
            ),
            Problem::Missing { seq } => write!(f, "record {seq} was deleted (the chain skips it)"),
            Problem::HeadMismatch { head_seq, head_hash, last_seq, last_hash } => {
                if head_seq > last_seq {
                    write!(
                        f,
                        "the newest record(s) {}..={head_seq} were deleted: the chain head says {head_seq} ({}) but the last record is {last_seq}",
                        last_seq + 1,
                        short(head_hash)
                    )
                } else {
                    write!(
                        f,
                        "the chain head ({head_seq}, {}) does not match the last record ({last_seq}, {})",
                        short(head_hash),
                        short(last_hash)
                    )
                }
            }
            Problem::AnchorMismatch { seq, anchored, found } => write!(
                f,
                "record {seq} was rewritten: S3 anchored hash {} but the chain has {}",
                short(anchored),
                short(found)
            ),
            Problem::Unanchored { seq } => write!(f, "record {seq} has no S3 anchor"),
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub records: u64,
    pub anchors: u64,
    pub last_seq: u64,
    pub last_hash: String,
    pub problems: Vec<Problem>,
}

impl Verification {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Pure: check a chain against itself, its head and its S3 anchors.
pub fn verify(records: &[AuditRecord], head: Option<&Head>, anchors: &[Anchor]) -> Verification {
    let mut problems = Vec::new();
    let by_seq: BTreeMap<u64, &AuditRecord> = records.iter().map(|r| (r.seq, r)).collect();
    let max_seq = by_seq
        .keys()
        .copied()
        .chain(anchors.iter().map(|a| a.seq))
        .chain(head.map(|h| h.head_seq))
        .max()
        .unwrap_or(0);
    let last = by_seq.values().next_back();
    for seq in 1..=max_seq {
        let Some(r) = by_seq.get(&seq) else {
            // The newest ones are reported through the head / anchors below.
            if seq <= last.map_or(0, |l| l.seq) {
                problems.push(Problem::Missing { seq });
            }
            continue;
        };
        let computed = record_hash(r);
        if computed != r.hash {
            problems.push(Problem::Modified {
                seq,
                stored: r.hash.clone(),
                computed,
            });
        }
        let expected_prev = if seq == 1 {
            Some(GENESIS_HASH.to_string())
        } else {
            by_seq.get(&(seq - 1)).map(|p| p.hash.clone())
        };
        if let Some(expected_prev) = expected_prev {
            if expected_prev != r.prev_hash {
                problems.push(Problem::BrokenLink {
                    seq,
                    expected_prev,
                    found_prev: r.prev_hash.clone(),
                });
            }
        }
    }
    let (last_seq, last_hash) = last
        .map(|l| (l.seq, l.hash.clone()))
        .unwrap_or((0, GENESIS_HASH.to_string()));
    match head {
        Some(h) if h.head_seq != last_seq || h.head_hash != last_hash => {
            problems.push(Problem::HeadMismatch {
                head_seq: h.head_seq,
                head_hash: h.head_hash.clone(),
                last_seq,
                last_hash: last_hash.clone(),
            })
        }
        None if last_seq > 0 => problems.push(Problem::HeadMismatch {
            head_seq: 0,
            head_hash: GENESIS_HASH.to_string(),
            last_seq,
            last_hash: last_hash.clone(),
        }),
        _ => {}
    }
    let anchored: BTreeMap<u64, &Anchor> = anchors.iter().map(|a| (a.seq, a)).collect();
    for a in anchors {
        match by_seq.get(&a.seq) {
            Some(r) if r.hash != a.hash => problems.push(Problem::AnchorMismatch {
                seq: a.seq,
                anchored: a.hash.clone(),
                found: r.hash.clone(),
            }),
            Some(_) => {}
            // Head and chain both rolled back: only the anchor remembers.
            None if a.seq > last_seq
                && !problems.iter().any(
                    |p| matches!(p, Problem::HeadMismatch { head_seq, .. } if *head_seq >= a.seq),
                ) =>
            {
                problems.push(Problem::HeadMismatch {
                    head_seq: a.seq,
                    head_hash: a.hash.clone(),
                    last_seq,
                    last_hash: last_hash.clone(),
                });
            }
            None => {} // reported as Missing above
        }
    }
    for r in records {
        if !anchored.contains_key(&r.seq) {
            problems.push(Problem::Unanchored { seq: r.seq });
        }
    }
    Verification {
        records: records.len() as u64,
        anchors: anchors.len() as u64,
        last_seq,
        last_hash,
        problems,
    }
}

/// Read everything and verify it.
pub async fn verify_trail(t: &Trail<'_>) -> Result<Verification, Error> {
    let (records, head) = read_chain(t).await?;
    let anchors = read_anchors(t).await?;
    Ok(verify(&records, head.as_ref(), &anchors))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(n: u64) -> Entry {
        Entry {
            key: format!("k{n}"),
            environment: "staging".into(),
            patch_id: "p1".into(),
            event: "REQUESTED".into(),
            actor: "alice".into(),
            data: json!({"n": n, "b": {"z": 1, "a": [1, 2]}}),
        }
    }

    fn chain(n: u64) -> (Vec<AuditRecord>, Head, Vec<Anchor>) {
        let mut records: Vec<AuditRecord> = Vec::new();
        for i in 1..=n {
            let prev = records.last().map(|r| (r.seq, r.hash.as_str()));
            let r = next_record("patches", prev, &entry(i), "2026-11-28T13:00:00Z");
            records.push(r);
        }
        let last = records.last().unwrap();
        let head = Head {
            head_seq: last.seq,
            head_hash: last.hash.clone(),
        };
        let anchors = records
            .iter()
            .map(|r| Anchor {
                seq: r.seq,
                hash: r.hash.clone(),
                at: r.at.clone(),
            })
            .collect();
        (records, head, anchors)
    }

    fn rechain(records: &mut [AuditRecord]) {
        let mut prev = GENESIS_HASH.to_string();
        for r in records.iter_mut() {
            r.prev_hash = prev.clone();
            r.hash = record_hash(r);
            prev = r.hash.clone();
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a = json!({"b": 1, "a": {"y": [true, null], "x": "é"}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":"é","y":[true,null]},"b":1}"#
        );
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (records, head, anchors) = chain(5);
        let v = verify(&records, Some(&head), &anchors);
        assert!(v.ok(), "{:?}", v.problems);
        assert_eq!((v.records, v.last_seq), (5, 5));
        assert_eq!(records[1].prev_hash, records[0].hash);
        assert_eq!(records[0].prev_hash, GENESIS_HASH);
    }

    #[test]
    fn an_edited_record_is_named() {
        let (mut records, head, anchors) = chain(4);
        records[1].actor = "mallory".into();
        let v = verify(&records, Some(&head), &anchors);
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        assert!(matches!(v.problems[0], Problem::Modified { seq: 2, .. }));
        assert!(v.problems[0]
            .to_string()
            .starts_with("record 2 was modified"));
    }

    #[test]
    fn a_deleted_middle_record_is_named() {
        let (mut records, head, anchors) = chain(4);
        records.remove(1);
        let v = verify(&records, Some(&head), &anchors);
        assert!(
            v.problems.contains(&Problem::Missing { seq: 2 }),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn deleting_the_newest_record_is_caught_by_the_head_and_by_the_anchor() {
        let (mut records, head, anchors) = chain(4);
        records.pop();
        let v = verify(&records, Some(&head), &anchors);
        assert!(
            v.problems.iter().any(|p| matches!(
                p,
                Problem::HeadMismatch {
                    head_seq: 4,
                    last_seq: 3,
                    ..
                }
            )),
            "{:?}",
            v.problems
        );
        // The head moved back too: the S3 anchor still remembers record 4.
        let rolled = Head {
            head_seq: 3,
            head_hash: records[2].hash.clone(),
        };
        let v = verify(&records, Some(&rolled), &anchors);
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        assert!(v.problems[0]
            .to_string()
            .contains("newest record(s) 4..=4 were deleted"));
    }

    #[test]
    fn reordering_is_named() {
        let (mut records, head, anchors) = chain(4);
        let (a, b) = (records[1].seq, records[2].seq);
        records[1].seq = b;
        records[2].seq = a;
        let v = verify(&records, Some(&head), &anchors);
        assert!(v
            .problems
            .iter()
            .any(|p| matches!(p, Problem::Modified { .. })));
        assert!(v
            .problems
            .iter()
            .any(|p| matches!(p, Problem::BrokenLink { .. })));
    }

    #[test]
    fn a_rewritten_chain_with_recomputed_hashes_is_caught_by_the_anchors() {
        let (mut records, _, anchors) = chain(4);
        records[1].data = json!({"n": 2, "approvedBy": "mallory"});
        rechain(&mut records);
        let last = records.last().unwrap();
        let head = Head {
            head_seq: 4,
            head_hash: last.hash.clone(),
        };
        let v = verify(&records, Some(&head), &anchors);
        // Internally consistent, but every record from 2 on differs from its anchor.
        assert!(v
            .problems
            .iter()
            .all(|p| matches!(p, Problem::AnchorMismatch { .. })));
        assert_eq!(v.problems.len(), 3, "{:?}", v.problems);
        assert!(v.problems[0]
            .to_string()
            .starts_with("record 2 was rewritten"));
    }

    #[test]
    fn an_unanchored_record_is_named() {
        let (records, head, mut anchors) = chain(3);
        anchors.pop();
        let v = verify(&records, Some(&head), &anchors);
        assert_eq!(v.problems, vec![Problem::Unanchored { seq: 3 }]);
    }

    #[test]
    fn an_empty_chain_verifies() {
        assert!(verify(&[], None, &[]).ok());
    }
}
