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
//! - Only the audit writer (the `audit-check` function's role) writes `audit/` and may call
//!   `kms:Sign` with the signing key: [`seal`] anchors every record not yet anchored (after
//!   checking it links to the anchored chain) and writes a signed checkpoint of the head
//!   (`audit/<chain>/checkpoints/<seq>.json`, ECDSA P-256 over [`checkpoint_message`]). Other
//!   functions append to DynamoDB and invoke the writer (`AUDIT_WRITER_FUNCTION`), so whoever
//!   can write the table still cannot re-anchor or re-sign a rewritten chain.
//! - [`verify_trail`] reads every S3 object *version* under the prefix (an overwritten or
//!   deleted anchor or checkpoint is a finding, delete markers included), checks each
//!   checkpoint's signature with `kms:Verify`, and cross-checks the chain with the patches
//!   table and the data-patch executions ([`CrossCheck`]).

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::platform::aws::AwsResultExt;
use crate::platform::dynamo::{self, s};
use crate::platform::signing::Signer;

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

/// The S3 object `key`'s current content, if it exists.
async fn current_object(t: &Trail<'_>, key: &str) -> Result<Option<Vec<u8>>, Error> {
    match t
        .s3
        .get_object()
        .bucket(t.bucket)
        .key(key)
        .send()
        .await
        .aws("GetObject")
    {
        Ok(out) => Ok(Some(
            out.body
                .collect()
                .await
                .map_err(|e| Error::Corrupt(format!("reading {key}: {e}")))?
                .into_bytes()
                .to_vec(),
        )),
        Err(e) if e.is_code("NoSuchKey") || e.is_code("NotFound") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Put an audit object: never over an existing one (a version history with one entry per key
/// is what `verify` expects), retained under Object Lock for `lock_days` when set.
async fn put_audit_object(
    t: &Trail<'_>,
    key: &str,
    body: Vec<u8>,
    lock_days: u32,
) -> Result<(), Error> {
    let mut put =
        t.s3.put_object()
            .bucket(t.bucket)
            .key(key)
            .content_type("application/json")
            .if_none_match("*")
            .body(body.into());
    if lock_days > 0 {
        let until = crate::platform::time::now() + chrono::Duration::days(lock_days as i64);
        put = put
            .object_lock_mode(aws_sdk_s3::types::ObjectLockMode::Compliance)
            .object_lock_retain_until_date(aws_smithy_types::DateTime::from_secs(
                until.timestamp(),
            ));
    }
    match put.send().await.aws("PutObject") {
        Ok(_) => Ok(()),
        // Written before (a retried step): the content is checked by the caller.
        Err(e) if e.is_code("PreconditionFailed") || e.is_code("ConditionalRequestConflict") => {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn anchor_body(r: &AuditRecord) -> Vec<u8> {
    serde_json::to_vec(&Anchor {
        seq: r.seq,
        hash: r.hash.clone(),
        at: r.at.clone(),
    })
    .expect("anchors serialize")
}

/// Write the S3 anchor of a record, once; an existing anchor with another hash is tampering
/// and is refused (nothing is overwritten).
async fn anchor(t: &Trail<'_>, r: &AuditRecord, lock_days: u32) -> Result<(), Error> {
    let key = anchor_key(t.chain, r.seq);
    if let Some(existing) = current_object(t, &key).await? {
        let a: Anchor = serde_json::from_slice(&existing)
            .map_err(|e| Error::Corrupt(format!("anchor {key} is not an anchor: {e}")))?;
        if a.hash != r.hash {
            return Err(Error::Corrupt(format!(
                "audit record {} of chain {} does not match its S3 anchor (the chain was rewritten); not anchoring",
                r.seq, t.chain
            )));
        }
        return Ok(());
    }
    put_audit_object(t, &key, anchor_body(r), lock_days).await
}

/// A signed checkpoint of the chain head (the object `audit/<chain>/checkpoints/<seq>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Checkpoint {
    pub chain: String,
    pub seq: u64,
    pub hash: String,
    pub at: String,
    /// The KMS key that signed it (as the writer named it).
    pub key_id: String,
    pub algorithm: String,
    /// Base64 of the DER ECDSA signature over [`checkpoint_message`].
    pub signature: String,
}

/// The one signing algorithm of checkpoints (the key is `ECC_NIST_P256`, `SIGN_VERIFY`).
pub const SIGNING_ALGORITHM: &str = "ECDSA_SHA_256";

/// What a checkpoint's signature covers.
pub fn checkpoint_message(chain: &str, seq: u64, hash: &str, at: &str) -> Vec<u8> {
    let body =
        canonical_json(&serde_json::json!({"chain": chain, "seq": seq, "hash": hash, "at": at}));
    format!("batchless-audit-checkpoint-v1\n{body}").into_bytes()
}

pub fn checkpoint_key(chain: &str, seq: u64) -> String {
    format!("audit/{chain}/checkpoints/{seq:012}.json")
}

pub fn checkpoint_prefix(chain: &str) -> String {
    format!("audit/{chain}/checkpoints/")
}

/// The audit writer: Object Lock retention of what it writes and the key it signs with.
#[derive(Debug, Clone)]
pub struct Writer {
    pub kms: Option<(aws_sdk_kms::Client, String)>,
    pub lock_days: u32,
}

impl Writer {
    /// `AUDIT_SIGNING_KEY` (the asymmetric key only the writer may sign with) and
    /// `AUDIT_LOCK_DAYS` (0: no Object Lock retention on what it writes).
    pub fn from_env(sdk: &aws_types::SdkConfig) -> Result<Self, Error> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let lock_days = match var("AUDIT_LOCK_DAYS") {
            None => 0,
            Some(v) => v.parse().map_err(|_| {
                Error::Config(format!(
                    "AUDIT_LOCK_DAYS must be a number of days, not {v:?}"
                ))
            })?,
        };
        Ok(Writer {
            kms: var("AUDIT_SIGNING_KEY").map(|k| (crate::platform::aws::kms(sdk), k)),
            lock_days,
        })
    }
}

/// How this process publishes (anchors and checkpoints) what it appended.
enum Publisher {
    /// Not the audit writer: invoke it (`AUDIT_WRITER_FUNCTION`).
    Invoke(aws_sdk_lambda::Client, String),
    /// The audit writer itself (`AUDIT_SIGNING_KEY`, `AUDIT_LOCK_DAYS`).
    Direct(Writer),
    /// Neither configured (unit tests, tools): anchor the appended record, sign nothing.
    Plain,
}

static PUBLISHER: tokio::sync::OnceCell<Publisher> = tokio::sync::OnceCell::const_new();

async fn publisher() -> Result<&'static Publisher, Error> {
    PUBLISHER
        .get_or_try_init(|| async {
            let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
            // The writer is the function that holds the signing key; every other one invokes it.
            if var("AUDIT_SIGNING_KEY").is_some() {
                let sdk = crate::platform::aws::load_config().await;
                return Ok(Publisher::Direct(Writer::from_env(&sdk)?));
            }
            match var("AUDIT_WRITER_FUNCTION") {
                Some(function) => {
                    let sdk = crate::platform::aws::load_config().await;
                    Ok(Publisher::Invoke(
                        crate::platform::aws::lambda(&sdk),
                        function,
                    ))
                }
                None => Ok(Publisher::Plain),
            }
        })
        .await
}

/// After an append: anchor and checkpoint the chain up to `r`, here or through the writer.
async fn publish(t: &Trail<'_>, r: &AuditRecord) -> Result<(), Error> {
    let seq = r.seq;
    match publisher().await? {
        Publisher::Plain => {
            t.s3.put_object()
                .bucket(t.bucket)
                .key(anchor_key(t.chain, seq))
                .content_type("application/json")
                .body(anchor_body(r).into())
                .send()
                .await
                .aws("PutObject")?;
            Ok(())
        }
        Publisher::Direct(w) => seal(t, w, seq).await.map(|_| ()),
        Publisher::Invoke(lambda, function) => {
            let payload = serde_json::json!({"mode": "seal", "chain": t.chain, "seq": seq});
            let out = lambda
                .invoke()
                .function_name(function)
                .payload(aws_smithy_types::Blob::new(payload.to_string()))
                .send()
                .await
                .aws("Invoke")?;
            if let Some(err) = out.function_error() {
                let body = out
                    .payload()
                    .map(|p| String::from_utf8_lossy(p.as_ref()).into_owned())
                    .unwrap_or_default();
                return Err(Error::Corrupt(format!(
                    "the audit writer could not seal chain {} at {seq}: {err}: {body}",
                    t.chain
                )));
            }
            Ok(())
        }
    }
}

/// What [`seal`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sealed {
    pub anchored: Vec<u64>,
    pub checkpoint: Option<u64>,
}

/// How far back [`seal`] looks for records not yet anchored.
const SEAL_LOOKBACK: u64 = 200;

/// The audit writer's step: anchor every record up to `seq` that is not anchored yet (each must
/// carry its own hash and link to the anchored record before it, else nothing is anchored),
/// then sign a checkpoint of `seq`. Idempotent.
pub async fn seal(t: &Trail<'_>, w: &Writer, seq: u64) -> Result<Sealed, Error> {
    let mut pending = Vec::new();
    let mut base: Option<AuditRecord> = None;
    let mut at = seq;
    while at >= 1 && pending.len() as u64 <= SEAL_LOOKBACK {
        let r = get_record(t, at).await?.ok_or_else(|| {
            Error::Corrupt(format!(
                "audit chain {}: record {at} is missing; not sealing",
                t.chain
            ))
        })?;
        if current_object(t, &anchor_key(t.chain, at)).await?.is_some() {
            base = Some(r);
            break;
        }
        pending.push(r);
        at -= 1;
    }
    pending.reverse();
    let mut prev = base;
    if let Some(b) = &prev {
        // Refuses when the anchored base no longer matches (the chain was rewritten).
        anchor(t, b, w.lock_days).await?;
    }
    for r in &pending {
        let expected_prev = prev.as_ref().map_or(GENESIS_HASH, |p| p.hash.as_str());
        if record_hash(r) != r.hash
            || (r.seq == 1 || prev.is_some()) && r.prev_hash != expected_prev
        {
            return Err(Error::Corrupt(format!(
                "audit chain {}: record {} does not carry its own hash or does not link to record {}; not sealing",
                t.chain,
                r.seq,
                r.seq - 1
            )));
        }
        prev = Some(r.clone());
    }
    let mut anchored = Vec::new();
    for r in &pending {
        anchor(t, r, w.lock_days).await?;
        anchored.push(r.seq);
    }
    let mut checkpoint = None;
    if let (Some((kms, key_id)), Some(head)) = (&w.kms, prev.as_ref().filter(|p| p.seq == seq)) {
        let key = checkpoint_key(t.chain, seq);
        if current_object(t, &key).await?.is_none() {
            let signature = Signer {
                kms: kms.clone(),
                key: key_id.clone(),
            }
            .sign(checkpoint_message(t.chain, head.seq, &head.hash, &head.at))
            .await?;
            let c = Checkpoint {
                chain: t.chain.to_string(),
                seq: head.seq,
                hash: head.hash.clone(),
                at: head.at.clone(),
                key_id: key_id.clone(),
                algorithm: SIGNING_ALGORITHM.into(),
                signature,
            };
            put_audit_object(
                t,
                &key,
                serde_json::to_vec(&c).expect("checkpoints serialize"),
                w.lock_days,
            )
            .await?;
            checkpoint = Some(seq);
        }
    }
    tracing::info!(chain = t.chain, seq, anchored = ?anchored, checkpoint = ?checkpoint, "audit chain sealed");
    Ok(Sealed {
        anchored,
        checkpoint,
    })
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
            // A crash between the write and the seal is healed by the retry.
            publish(t, &existing).await?;
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
                publish(t, &record).await?;
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

/// Every S3 anchor of the chain: every version of every anchor object.
pub async fn read_anchors(t: &Trail<'_>) -> Result<Vec<Anchor>, Error> {
    anchors_of(&read_history(t, &anchor_prefix(t.chain)).await?)
}

/// Every version of one S3 object, oldest first, and how many delete markers it has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub key: String,
    pub versions: Vec<Vec<u8>>,
    pub delete_markers: usize,
    /// The current version is a delete marker (or there is none).
    pub deleted: bool,
}

/// Every object version and delete marker under `prefix` (ListObjectVersions), each
/// version's content read with GetObject by version id.
pub async fn read_history(t: &Trail<'_>, prefix: &str) -> Result<Vec<History>, Error> {
    // Per key: version ids (newest first), delete markers, whether the latest is a marker.
    type Listed = (Vec<(String, bool)>, usize, bool);
    let mut by_key: BTreeMap<String, Listed> = BTreeMap::new();
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let out =
            t.s3.list_object_versions()
                .bucket(t.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker)
                .set_version_id_marker(version_marker)
                .send()
                .await
                .aws("ListObjectVersions")?;
        // Newest first within a key (as S3 lists them).
        for v in out.versions() {
            let (Some(key), Some(id)) = (v.key(), v.version_id()) else {
                continue;
            };
            let e = by_key.entry(key.to_string()).or_default();
            e.0.push((id.to_string(), v.is_latest().unwrap_or(false)));
        }
        for m in out.delete_markers() {
            let Some(key) = m.key() else { continue };
            let e = by_key.entry(key.to_string()).or_default();
            e.1 += 1;
            if m.is_latest().unwrap_or(false) {
                e.2 = true;
            }
        }
        if out.is_truncated() == Some(true) {
            key_marker = out.next_key_marker().map(str::to_string);
            version_marker = out.next_version_id_marker().map(str::to_string);
            if key_marker.is_none() {
                break;
            }
        } else {
            break;
        }
    }
    let mut out = Vec::new();
    for (key, (mut versions, delete_markers, deleted)) in by_key {
        versions.reverse();
        let mut h = History {
            key: key.clone(),
            delete_markers,
            deleted: deleted || versions.is_empty(),
            versions: Vec::new(),
        };
        for (id, _) in versions {
            let mut get = t.s3.get_object().bucket(t.bucket).key(&key);
            if id != "null" {
                get = get.version_id(&id);
            }
            let body = get
                .send()
                .await
                .aws("GetObject")?
                .body
                .collect()
                .await
                .map_err(|e| Error::Corrupt(format!("reading {key}: {e}")))?
                .into_bytes();
            h.versions.push(body.to_vec());
        }
        out.push(h);
    }
    Ok(out)
}

/// A checkpoint as read: its content and whether `kms:Verify` accepted its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadCheckpoint {
    pub checkpoint: Checkpoint,
    pub signature_valid: bool,
}

/// What [`verify_evidence`] reads besides the chain: S3 histories and the cross-check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    pub anchor_history: Vec<History>,
    pub checkpoint_history: Vec<History>,
    /// Every version of every checkpoint, signature checked. `None`: no signing key given.
    pub checkpoints: Option<Vec<ReadCheckpoint>>,
    pub cross: Option<CrossCheck>,
}

/// The patches table and the data-patch executions, to compare with the chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrossCheck {
    /// Every patch id in the patches table.
    pub patches: Vec<String>,
    /// Executions that must have audit records: (name, status).
    pub executions: Vec<(String, String)>,
}

fn seq_of(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.strip_suffix(".json")?.parse().ok()
}

/// Pure: the problems the S3 histories, the checkpoints and the cross-check show.
pub fn verify_evidence(records: &[AuditRecord], ev: &Evidence) -> Vec<Problem> {
    let mut problems = Vec::new();
    for h in ev.anchor_history.iter().chain(&ev.checkpoint_history) {
        if h.versions.len() > 1 {
            problems.push(Problem::Overwritten {
                key: h.key.clone(),
                versions: h.versions.len() as u64,
            });
        }
        if h.delete_markers > 0 || h.deleted {
            problems.push(Problem::Deleted {
                key: h.key.clone(),
                delete_markers: h.delete_markers as u64,
            });
        }
    }
    let by_seq: BTreeMap<u64, &AuditRecord> = records.iter().map(|r| (r.seq, r)).collect();
    let last_seq = by_seq.keys().next_back().copied().unwrap_or(0);
    if let Some(checkpoints) = &ev.checkpoints {
        let mut signed = BTreeSet::new();
        for c in checkpoints {
            let cp = &c.checkpoint;
            if !c.signature_valid {
                problems.push(Problem::BadSignature { seq: cp.seq });
                continue;
            }
            match by_seq.get(&cp.seq) {
                Some(r) if r.hash == cp.hash => {
                    signed.insert(cp.seq);
                }
                Some(r) => problems.push(Problem::CheckpointMismatch {
                    seq: cp.seq,
                    signed: cp.hash.clone(),
                    found: r.hash.clone(),
                }),
                None => problems.push(Problem::CheckpointAhead {
                    seq: cp.seq,
                    last_seq,
                }),
            }
        }
        if last_seq > 0 && !signed.contains(&last_seq) {
            problems.push(Problem::Unsigned { seq: last_seq });
        }
    }
    if let Some(cross) = &ev.cross {
        let audited: BTreeSet<&str> = records.iter().map(|r| r.patch_id.as_str()).collect();
        if records.is_empty() && !cross.patches.is_empty() {
            problems.push(Problem::ChainEmpty {
                patches: cross.patches.len() as u64,
            });
        }
        for p in &cross.patches {
            if !audited.contains(p.as_str()) {
                problems.push(Problem::PatchUnaudited {
                    patch_id: p.clone(),
                });
            }
        }
        for (name, status) in &cross.executions {
            if !audited.contains(name.as_str()) {
                problems.push(Problem::ExecutionUnaudited {
                    execution: name.clone(),
                    status: status.clone(),
                });
            }
        }
    }
    problems
}

/// How to verify a trail fully.
#[derive(Debug, Clone)]
pub struct Checks<'a> {
    pub kms: &'a aws_sdk_kms::Client,
    /// The signing key (`alias/batchless-<env>-audit-signing`): checkpoints signed by any other
    /// key do not verify.
    pub signing_key: &'a str,
    pub cross: Option<CrossCheck>,
}

async fn signature_valid(
    kms: &aws_sdk_kms::Client,
    key: &str,
    cp: &Checkpoint,
) -> Result<bool, Error> {
    Signer {
        kms: kms.clone(),
        key: key.to_string(),
    }
    .valid(
        checkpoint_message(&cp.chain, cp.seq, &cp.hash, &cp.at),
        Some(&cp.signature),
    )
    .await
}

/// Read everything (the chain, every S3 version, the checkpoints' signatures) and verify it.
pub async fn verify_full(t: &Trail<'_>, checks: &Checks<'_>) -> Result<Verification, Error> {
    let (records, head) = read_chain(t).await?;
    let anchor_history = read_history(t, &anchor_prefix(t.chain)).await?;
    let checkpoint_history = read_history(t, &checkpoint_prefix(t.chain)).await?;
    let mut checkpoints = Vec::new();
    for h in &checkpoint_history {
        for body in &h.versions {
            let Ok(cp) = serde_json::from_slice::<Checkpoint>(body) else {
                checkpoints.push(ReadCheckpoint {
                    checkpoint: Checkpoint {
                        chain: t.chain.into(),
                        seq: seq_of(&h.key).unwrap_or(0),
                        hash: String::new(),
                        at: String::new(),
                        key_id: String::new(),
                        algorithm: String::new(),
                        signature: String::new(),
                    },
                    signature_valid: false,
                });
                continue;
            };
            let valid = cp.chain == t.chain
                && seq_of(&h.key) == Some(cp.seq)
                && signature_valid(checks.kms, checks.signing_key, &cp).await?;
            checkpoints.push(ReadCheckpoint {
                checkpoint: cp,
                signature_valid: valid,
            });
        }
    }
    let anchors = anchors_of(&anchor_history)?;
    let mut v = verify(&records, head.as_ref(), &anchors);
    v.problems.extend(verify_evidence(
        &records,
        &Evidence {
            anchor_history,
            checkpoint_history,
            checkpoints: Some(checkpoints),
            cross: checks.cross.clone(),
        },
    ));
    Ok(v)
}

/// Every version of every anchor (a rewritten anchor's old version still counts).
fn anchors_of(history: &[History]) -> Result<Vec<Anchor>, Error> {
    let mut anchors = Vec::new();
    for h in history {
        for body in &h.versions {
            let a: Anchor = serde_json::from_slice(body)
                .map_err(|e| Error::Corrupt(format!("anchor {} is not an anchor: {e}", h.key)))?;
            anchors.push(a);
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
    /// An audit object (anchor or checkpoint) has more than one version: it was overwritten.
    Overwritten { key: String, versions: u64 },
    /// An audit object was deleted (a delete marker, or no version left).
    Deleted { key: String, delete_markers: u64 },
    /// A checkpoint's signature does not verify with the signing key: forged.
    BadSignature { seq: u64 },
    /// A validly signed checkpoint names another hash than the chain's record.
    CheckpointMismatch {
        seq: u64,
        signed: String,
        found: String,
    },
    /// A validly signed checkpoint is past the chain's last record: the tail was truncated.
    CheckpointAhead { seq: u64, last_seq: u64 },
    /// The chain's last record has no validly signed checkpoint.
    Unsigned { seq: u64 },
    /// The chain is empty while the patches table has patches.
    ChainEmpty { patches: u64 },
    /// A patch in the patches table has no audit records.
    PatchUnaudited { patch_id: String },
    /// A data-patch execution has no audit records.
    ExecutionUnaudited { execution: String, status: String },
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
            Problem::Overwritten { key, versions } => write!(
                f,
                "{key} was overwritten: S3 keeps {versions} versions of it"
            ),
            Problem::Deleted { key, delete_markers } => write!(
                f,
                "{key} was deleted ({delete_markers} delete marker(s))"
            ),
            Problem::BadSignature { seq } => write!(
                f,
                "the checkpoint of record {seq} is not signed by the audit writer's key (forged)"
            ),
            Problem::CheckpointMismatch { seq, signed, found } => write!(
                f,
                "record {seq} was rewritten: the signed checkpoint says {} but the chain has {}",
                short(signed),
                short(found)
            ),
            Problem::CheckpointAhead { seq, last_seq } => write!(
                f,
                "the chain was truncated: record {seq} has a signed checkpoint but the last record is {last_seq}"
            ),
            Problem::Unsigned { seq } => write!(
                f,
                "the chain head (record {seq}) has no checkpoint signed by the audit writer"
            ),
            Problem::ChainEmpty { patches } => write!(
                f,
                "the audit chain is empty but the patches table has {patches} patch(es): the chain was wiped"
            ),
            Problem::PatchUnaudited { patch_id } => {
                write!(f, "patch {patch_id} is in the patches table but has no audit records")
            }
            Problem::ExecutionUnaudited { execution, status } => write!(
                f,
                "data-patch execution {execution} ({status}) has no audit records"
            ),
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

/// Read the chain and every anchor version and verify them (no signatures, no cross-check:
/// [`verify_full`] adds those).
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

    /// The one problem `v` names (it must name exactly one).
    fn only_problem(v: Verification) -> Problem {
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        v.problems.into_iter().next().unwrap()
    }

    #[test]
    fn an_edited_record_is_named() {
        let (mut records, head, anchors) = chain(4);
        records[1].actor = "mallory".into();
        let problem = only_problem(verify(&records, Some(&head), &anchors));
        assert!(matches!(problem, Problem::Modified { seq: 2, .. }));
        assert!(problem.to_string().starts_with("record 2 was modified"));
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
        let problem = only_problem(verify(&records, Some(&rolled), &anchors));
        assert!(problem
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
