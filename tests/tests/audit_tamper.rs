//! Scenario tests of the tamper-evident audit (issue 15) on the local replica: a forger with
//! write access to the audit table and the bucket (what an admin has) edits the evidence, and
//! `batchless audit verify` exits 1 naming what happened. The records are sealed by the real
//! audit writer (the `audit-check` function's `seal` mode: S3 anchors and KMS-signed
//! checkpoints with the stack's `alias/batchless-<env>-audit-signing` key). Each test but the
//! last works on a chain of its own; the wipe test wipes the data-patch chain and restores it.

use std::collections::HashMap;
use std::process::Command;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use batchless_core::shared::audit;
use batchless_scenarios::patch::Patches as T;
use batchless_scenarios::*;
use serde_json::json;

type Item = HashMap<String, AttributeValue>;

fn key(chain: &str, seq: u64) -> Item {
    [
        ("chain".to_string(), AttributeValue::S(chain.to_string())),
        ("seq".to_string(), AttributeValue::N(seq.to_string())),
    ]
    .into()
}

/// The forger's tools and the verifier, on the shared data-patch fixture.
trait Tamper {
    async fn append(&self, chain: &str, patch: &str, from: u64, to: u64) -> Result<()>;
    fn verify(&self, chain: &str) -> Result<(bool, String)>;
    fn refused(&self, chain: &str, needles: &[String]) -> Result<()>;
    async fn sealed_chain(&self, prefix: &str, n: u64) -> Result<String>;
    async fn sealed_record(&self, chain: &str, seq: u64) -> Result<audit::AuditRecord>;
    async fn put_record(&self, r: &audit::AuditRecord) -> Result<()>;
    async fn set_head(&self, chain: &str, seq: u64, hash: &str) -> Result<()>;
    async fn put_object(&self, key: &str, body: Vec<u8>) -> Result<()>;
    async fn versions(&self, prefix: &str) -> Result<Vec<(String, String, Option<Vec<u8>>)>>;
    async fn purge(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>>;
}

impl Tamper for T {
    /// Append `n` records for `patch` and have the audit writer seal each one.
    async fn append(&self, chain: &str, patch: &str, from: u64, to: u64) -> Result<()> {
        for n in from..=to {
            let (r, _) = audit::append(
                &self.trail(chain),
                &audit::Entry {
                    key: format!("{patch}:k{n}"),
                    environment: self.stack.environment().to_string(),
                    patch_id: patch.to_string(),
                    event: "REQUESTED".into(),
                    actor: "bob".into(),
                    data: json!({"n": n}),
                },
            )
            .await?;
            let sealed = self
                .stack
                .invoke(
                    "AuditCheckFunction",
                    &json!({"mode": "seal", "chain": chain, "seq": r.seq}),
                )
                .await?;
            assert!(sealed["checkpoint"].is_u64(), "{sealed}");
        }
        Ok(())
    }

    /// `audit verify` refuses the chain, naming each of `needles`.
    fn refused(&self, chain: &str, needles: &[String]) -> Result<()> {
        let (ok, out) = self.verify(chain)?;
        assert!(!ok, "{out}");
        for needle in needles {
            assert!(out.contains(needle.as_str()), "{needle:?} not in {out}");
        }
        Ok(())
    }

    /// A new chain (`<prefix>-<unique>`) of `n` sealed records that verifies; its name.
    async fn sealed_chain(&self, prefix: &str, n: u64) -> Result<String> {
        let chain = unique_name(prefix);
        self.append(&chain, "p", 1, n).await?;
        assert!(self.verify(&chain)?.0);
        Ok(chain)
    }

    fn verify(&self, chain: &str) -> Result<(bool, String)> {
        let out = Command::new(repo_root().join("target/debug/batchless"))
            .arg("--stack")
            .arg(&self.stack.name)
            .args(["audit", "verify", "--chain", chain])
            .env_remove("BATCHLESS_LOCAL_ACCESS_KEY_ID")
            .output()
            .context("running batchless")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        match out.status.code() {
            Some(0) => Ok((true, text)),
            Some(1) => Ok((false, text)),
            other => anyhow::bail!("audit verify exited {other:?}: {text}"),
        }
    }

    async fn sealed_record(&self, chain: &str, seq: u64) -> Result<audit::AuditRecord> {
        let out = self
            .stack
            .db
            .get_item()
            .table_name(&self.audit_table)
            .set_key(Some(key(chain, seq)))
            .consistent_read(true)
            .send()
            .await?;
        Ok(batchless_core::platform::dynamo::from_item(
            out.item().context("record")?,
        )?)
    }

    async fn put_record(&self, r: &audit::AuditRecord) -> Result<()> {
        self.stack
            .db
            .put_item()
            .table_name(&self.audit_table)
            .set_item(Some(batchless_core::platform::dynamo::to_item(r)))
            .send()
            .await?;
        Ok(())
    }

    async fn set_head(&self, chain: &str, seq: u64, hash: &str) -> Result<()> {
        let mut item = key(&format!("head#{chain}"), 0);
        item.insert("headSeq".into(), AttributeValue::N(seq.to_string()));
        item.insert("headHash".into(), AttributeValue::S(hash.to_string()));
        self.stack
            .db
            .put_item()
            .table_name(&self.audit_table)
            .set_item(Some(item))
            .send()
            .await?;
        Ok(())
    }

    async fn put_object(&self, key: &str, body: Vec<u8>) -> Result<()> {
        self.stack
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .send()
            .await?;
        Ok(())
    }

    /// Every version (and delete marker) of every object under `prefix`: (key, version id, body).
    async fn versions(&self, prefix: &str) -> Result<Vec<(String, String, Option<Vec<u8>>)>> {
        let out = self
            .stack
            .s3
            .list_object_versions()
            .bucket(&self.bucket)
            .prefix(prefix)
            .send()
            .await?;
        let mut all = Vec::new();
        for v in out.versions() {
            let (k, id) = (
                v.key().unwrap_or_default(),
                v.version_id().unwrap_or("null"),
            );
            let body = self
                .stack
                .s3
                .get_object()
                .bucket(&self.bucket)
                .key(k)
                .version_id(id)
                .send()
                .await?
                .body
                .collect()
                .await?
                .into_bytes()
                .to_vec();
            all.push((k.to_string(), id.to_string(), Some(body)));
        }
        for m in out.delete_markers() {
            all.push((
                m.key().unwrap_or_default().to_string(),
                m.version_id().unwrap_or("null").to_string(),
                None,
            ));
        }
        Ok(all)
    }

    /// Remove every version and delete marker under `prefix` (possible without Object Lock):
    /// what a forger with `s3:DeleteObjectVersion` does to leave no history.
    async fn purge(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut kept = Vec::new();
        for (k, id, body) in self.versions(prefix).await? {
            self.stack
                .s3
                .delete_object()
                .bucket(&self.bucket)
                .key(&k)
                .version_id(&id)
                .send()
                .await?;
            if let Some(b) = body {
                kept.push((k, b));
            }
        }
        Ok(kept)
    }
}

#[tokio::test]
async fn an_untouched_chain_verifies() -> Result<()> {
    let t = T::setup().await?;
    let chain = unique_name("intact");
    t.append(&chain, "p", 1, 3).await?;
    let (ok, out) = t.verify(&chain)?;
    assert!(ok && out.contains("audit chain OK: 3 records"), "{out}");
    Ok(())
}

#[tokio::test]
async fn an_overwritten_anchor_is_named() -> Result<()> {
    let t = T::setup().await?;
    let chain = t.sealed_chain("overwrite", 3).await?;
    // A new version of anchor 2 (the record is untouched: the anchor alone is forged).
    let forged = json!({"seq": 2, "hash": "f".repeat(64), "at": "2026-11-28T13:00:00Z"});
    t.put_object(
        &audit::anchor_key(&chain, 2),
        forged.to_string().into_bytes(),
    )
    .await?;
    t.refused(
        &chain,
        &[format!(
            "{} was overwritten: S3 keeps 2 versions",
            audit::anchor_key(&chain, 2)
        )],
    )?;
    Ok(())
}

#[tokio::test]
async fn a_truncated_tail_with_its_anchors_deleted_is_named() -> Result<()> {
    let t = T::setup().await?;
    let chain = t.sealed_chain("truncate", 4).await?;
    // Delete records 3 and 4, move the head back to 2, delete their anchors and checkpoints.
    for seq in [3, 4] {
        t.stack
            .db
            .delete_item()
            .table_name(&t.audit_table)
            .set_key(Some(key(&chain, seq)))
            .send()
            .await?;
        for k in [
            audit::anchor_key(&chain, seq),
            audit::checkpoint_key(&chain, seq),
        ] {
            t.stack
                .s3
                .delete_object()
                .bucket(&t.bucket)
                .key(k)
                .send()
                .await?;
        }
    }
    let two = t.sealed_record(&chain, 2).await?;
    t.set_head(&chain, 2, &two.hash).await?;
    t.refused(
        &chain,
        &[
            format!(
                "{} was deleted (1 delete marker(s))",
                audit::anchor_key(&chain, 4)
            ),
            "the chain was truncated: record 4 has a signed checkpoint but the last record is 2"
                .to_string(),
        ],
    )?;
    Ok(())
}

#[tokio::test]
async fn a_rewritten_and_reanchored_chain_cannot_be_resigned() -> Result<()> {
    let t = T::setup().await?;
    let chain = t.sealed_chain("rewrite", 3).await?;
    // Rewrite record 2, recompute the hashes of 2 and 3, move the head.
    let mut prev = t.sealed_record(&chain, 1).await?.hash;
    let mut last = None;
    for seq in [2, 3] {
        let mut r = t.sealed_record(&chain, seq).await?;
        if seq == 2 {
            r.actor = "mallory".into();
        }
        r.prev_hash = prev.clone();
        r.hash = audit::record_hash(&r);
        prev = r.hash.clone();
        t.put_record(&r).await?;
        last = Some(r);
    }
    let rewritten: Vec<audit::AuditRecord> = vec![
        t.sealed_record(&chain, 2).await?,
        t.sealed_record(&chain, 3).await?,
    ];
    let last = last.context("last")?;
    t.set_head(&chain, last.seq, &last.hash).await?;
    // Leave no S3 history: purge every anchor and checkpoint version, write new anchors...
    t.purge(&format!("audit/{chain}/")).await?;
    let one = t.sealed_record(&chain, 1).await?;
    for r in std::iter::once(&one).chain(&rewritten) {
        let a = json!({"seq": r.seq, "hash": r.hash, "at": r.at});
        t.put_object(
            &audit::anchor_key(&chain, r.seq),
            a.to_string().into_bytes(),
        )
        .await?;
    }
    // ...and sign the new head with a key of the forger's own (kms:Sign is not theirs on the
    // stack's signing key).
    let kms = kms_client(&t.stack).await;
    let own = kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await?;
    let own_id = own.key_metadata().context("key")?.key_id().to_string();
    let sig = kms
        .sign()
        .key_id(&own_id)
        .message(aws_smithy_types::Blob::new(audit::checkpoint_message(
            &chain, last.seq, &last.hash, &last.at,
        )))
        .message_type(aws_sdk_kms::types::MessageType::Raw)
        .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await?;
    let forged = audit::Checkpoint {
        chain: chain.clone(),
        seq: last.seq,
        hash: last.hash.clone(),
        at: last.at.clone(),
        key_id: "alias/batchless-staging-audit-signing".into(),
        algorithm: audit::SIGNING_ALGORITHM.into(),
        signature: base64::engine::general_purpose::STANDARD
            .encode(sig.signature().context("signature")?.as_ref()),
    };
    t.put_object(
        &audit::checkpoint_key(&chain, last.seq),
        serde_json::to_vec(&forged)?,
    )
    .await?;
    // The chain, its head and its anchors agree with each other; only the signature tells.
    t.refused(
        &chain,
        &[
            "the checkpoint of record 3 is not signed by the audit writer's key (forged)"
                .to_string(),
            "the chain head (record 3) has no checkpoint signed by the audit writer".to_string(),
        ],
    )?;
    Ok(())
}

#[tokio::test]
async fn a_wiped_chain_while_patches_exist_is_named() -> Result<()> {
    let t = T::setup().await?;
    let chain = audit::PATCH_CHAIN;
    // A patch with its records, as the workflow leaves it.
    let patch = unique_name("wiped");
    t.stack
        .db
        .put_item()
        .table_name(&t.table)
        .item("patchId", AttributeValue::S(patch.clone()))
        .item(
            "environment",
            AttributeValue::S(t.stack.environment().to_string()),
        )
        .item("status", AttributeValue::S("SUCCEEDED".into()))
        .send()
        .await?;
    t.append(chain, &patch, 1, 1).await?;
    let (_, before) = t.verify(chain)?;
    assert!(!before.contains(&patch), "{before}");
    // Wipe the chain: its records, head and key markers, every anchor and checkpoint version.
    let mut items: Vec<Item> = Vec::new();
    let mut start = None;
    loop {
        let page = t
            .stack
            .db
            .scan()
            .table_name(&t.audit_table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        for item in page.items() {
            let c = item
                .get("chain")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            if c == chain || c == format!("head#{chain}") || c.starts_with(&format!("key#{chain}#"))
            {
                items.push(item.clone());
            }
        }
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    for item in &items {
        let k: Item = ["chain", "seq"]
            .iter()
            .map(|f| (f.to_string(), item[*f].clone()))
            .collect();
        t.stack
            .db
            .delete_item()
            .table_name(&t.audit_table)
            .set_key(Some(k))
            .send()
            .await?;
    }
    let objects = t.purge(&format!("audit/{chain}/")).await?;
    let result = t.verify(chain);
    // Restore the data-patch chain for the other tests, whatever the verdict.
    for item in items {
        t.stack
            .db
            .put_item()
            .table_name(&t.audit_table)
            .set_item(Some(item))
            .send()
            .await?;
    }
    for (k, body) in objects {
        t.put_object(&k, body).await?;
    }
    t.stack
        .db
        .delete_item()
        .table_name(&t.table)
        .key("patchId", AttributeValue::S(patch.clone()))
        .send()
        .await?;
    let (ok, out) = result?;
    assert!(!ok, "{out}");
    assert!(
        out.contains("the audit chain is empty but the patches table has"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "patch {patch} is in the patches table but has no audit records"
        )),
        "{out}"
    );
    Ok(())
}

async fn kms_client(stack: &Stack) -> aws_sdk_kms::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(batchless_core::platform::aws::http_client())
        .endpoint_url(stack.endpoint())
        .region(aws_config::Region::new(
            stack.info["region"]
                .as_str()
                .unwrap_or("us-east-1")
                .to_string(),
        ))
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            "testing", "testing", None, None, "replica",
        ))
        .load()
        .await;
    aws_sdk_kms::Client::new(&config)
}
