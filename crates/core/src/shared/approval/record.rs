//! The approval record of every subject but the data patch (whose decisions live on its own
//! record): the approvals table (key `approvalId`), written by the workflow that asks (create,
//! message, expiry) and by the approval function (decisions, conclusion); every change is a
//! conditional write on `status` and goes to the subject's audit chain.
//!
//! A migration's approval (issue 19) is bound to the commit and the pending set's digest:
//! its request hash is SHA-256 over the subject, environment, run, commit and digest, and a
//! decision made on any other hash does not count ([`super::tally`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{Approvable, ApprovalMessage, DecisionRecord, Subject, APPROVED, EXPIRED, REJECTED};
use crate::error::Error;
use crate::platform::dynamo::Record;
use crate::sfn::waits::WaitKind;

/// The audit chain of migration approvals (`batchless audit verify --chain migrations`).
pub const MIGRATION_CHAIN: &str = "migrations";

/// What is being approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    /// A migration run's pending set, whose pre-flight found dangerous operations.
    #[default]
    Migration,
}

impl SubjectKind {
    pub const fn noun(self) -> &'static str {
        match self {
            SubjectKind::Migration => "migration",
        }
    }

    pub const fn wait(self) -> WaitKind {
        match self {
            SubjectKind::Migration => WaitKind::MigrationApproval,
        }
    }

    pub const fn chain(self) -> &'static str {
        match self {
            SubjectKind::Migration => MIGRATION_CHAIN,
        }
    }
}

/// One finding as the approvers see it (the pre-flight's lint, bounded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Finding {
    pub rule: String,
    pub version: String,
    pub class_name: String,
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub message: String,
    /// The safer way to write it.
    pub recipe: String,
}

/// What a migration approval approves: this run, at this commit, this pending set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MigrationSubject {
    pub run_id: String,
    pub execution_name: String,
    pub commit: String,
    /// SHA-256 over the pending migrations (version and file digest each), from the pre-flight.
    pub digest: String,
    /// The pending migrations, `version class` each.
    pub pending: Vec<String>,
    pub findings: Vec<Finding>,
    /// The pipeline that asked, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    pub started_by: String,
    /// The build whose pre-flight found them.
    pub preflight_build_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApprovalRecord {
    pub approval_id: String,
    pub subject: SubjectKind,
    pub environment: String,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: String,
    pub required_approvals: u32,
    pub request_hash: String,
    /// The subject's own facts (a [`MigrationSubject`] for a migration).
    pub details: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_message: Option<ApprovalMessage>,
    #[serde(default)]
    pub decisions: BTreeMap<String, DecisionRecord>,
    #[serde(default)]
    pub approvers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<String>,
}

impl Record for ApprovalRecord {
    const KEY: &'static str = "approvalId";
    fn key(&self) -> &str {
        &self.approval_id
    }
}

/// The id of a migration run's approval (one per run): `migration-<execution name>`.
pub fn migration_approval_id(execution_name: &str) -> String {
    format!("migration-{execution_name}")
}

/// Pure: the hash a migration approval binds to.
pub fn migration_request_hash(environment: &str, m: &MigrationSubject) -> String {
    let canonical = json!({
        "subject": "migration",
        "environment": environment,
        "runId": m.run_id,
        "commit": m.commit,
        "digest": m.digest,
    });
    hex::encode(Sha256::digest(
        crate::shared::audit::canonical_json(&canonical).as_bytes(),
    ))
}

/// What ends an approval wait: the decision the record holds. It only wakes the workflow,
/// whose next step re-reads the record and re-counts the decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum Decided {
    Approved { approvers: Vec<String> },
    Rejected { by: Option<String> },
}

impl ApprovalRecord {
    /// A migration subject's facts; `Corrupt` when the record holds something else.
    pub fn migration(&self) -> Result<MigrationSubject, Error> {
        serde_json::from_value(self.details.clone()).map_err(|e| {
            Error::Corrupt(format!(
                "approval {} does not hold a migration: {e}",
                self.approval_id
            ))
        })
    }
}

impl Approvable for ApprovalRecord {
    fn subject(&self) -> Result<Subject<'_>, Error> {
        Ok(Subject {
            noun: self.subject.noun(),
            id: &self.approval_id,
            requester: None,
            required: self.required_approvals,
            request_hash: &self.request_hash,
            status: &self.status,
            undecidable: None,
        })
    }

    fn decisions(&self) -> &BTreeMap<String, DecisionRecord> {
        &self.decisions
    }

    fn thread(&self) -> Option<&ApprovalMessage> {
        self.approval_message.as_ref()
    }

    fn environment(&self) -> &str {
        &self.environment
    }

    fn wait_key(&self) -> String {
        self.subject.wait().key(&self.approval_id)
    }

    fn decided(&self) -> Option<Value> {
        let d = match self.status.as_str() {
            APPROVED => Decided::Approved {
                approvers: self.approvers.clone(),
            },
            REJECTED => Decided::Rejected {
                by: self.rejected_by.clone(),
            },
            EXPIRED => Decided::Rejected { by: None },
            _ => return None,
        };
        Some(serde_json::to_value(d).expect("serializes"))
    }

    fn concluded_data(&self) -> Value {
        let m = self.migration().ok();
        json!({
            "requestHash": self.request_hash,
            "commit": m.as_ref().map(|m| m.commit.clone()),
            "digest": m.as_ref().map(|m| m.digest.clone()),
            "runId": m.as_ref().map(|m| m.run_id.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(digest: &str) -> MigrationSubject {
        MigrationSubject {
            run_id: "arn:run".into(),
            execution_name: "e1".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            digest: digest.into(),
            pending: vec!["20261201000000 AddIndex".into()],
            findings: vec![],
            pipeline: None,
            started_by: "pipeline".into(),
            preflight_build_id: "migrate:1".into(),
        }
    }

    #[test]
    fn the_request_hash_binds_the_commit_and_the_pending_set() {
        let a = migration_request_hash("production", &subject("d1"));
        assert_eq!(a, migration_request_hash("production", &subject("d1")));
        assert_ne!(a, migration_request_hash("production", &subject("d2")));
        assert_ne!(a, migration_request_hash("staging", &subject("d1")));
        let mut other = subject("d1");
        other.commit = "f".repeat(40);
        assert_ne!(a, migration_request_hash("production", &other));
    }
}
