//! Approvals, whatever is being approved (a data patch, a migration's pending set): the one
//! rule set and the one way a decision is recorded, used by the Slack buttons (the `approval`
//! function URL) for every subject.
//!
//! - [`judge`]: the decider is a person in the people map with the `approver` role, is not
//!   the requester, decides a pending subject once.
//! - [`tally`]: re-checks every recorded decision against the people map and the request
//!   hash, so a step that acts on an approval trusts nothing it did not verify itself; the
//!   subject is approved when the required number of distinct approvers is reached, rejected
//!   by the first rejection.
//! - [`decide`]: record a decision (a conditional write on the subject's status), append it
//!   to the subject's audit chain, conclude (`APPROVED` / `REJECTED`) and end the workflow's
//!   wait. A retried click, a double click or a Slack retry changes nothing twice.
//!
//! A subject's record implements [`Approvable`]: the data patch's `PatchRecord` (patches
//! table, chain `patches`) and the [`record::ApprovalRecord`] of every other subject
//! (approvals table, one chain per subject kind).

pub mod record;
pub mod seal;

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::Error;
use crate::platform::aws::{AwsResultExt, ConditionalExt};
use crate::platform::dynamo::{self, s, Record, Table};
use crate::platform::time;
use crate::sfn::waits;
use crate::shared::audit::{self, Entry, Trail};
use crate::shared::people::{People, Person, Role};
pub use seal::{Sealer, Seals};

/// The statuses every subject shares (stored as these strings).
pub const PENDING: &str = "PENDING_APPROVAL";
pub const APPROVED: &str = "APPROVED";
pub const REJECTED: &str = "REJECTED";
pub const EXPIRED: &str = "EXPIRED";

/// The audit events a decision appends (the same names on every chain).
pub mod events {
    pub const DECISION: &str = "DECISION";
    pub const DECISION_REFUSED: &str = "DECISION_REFUSED";
    /// A recorded decision whose seal does not verify: written by someone other than a
    /// decision endpoint (a forgery attempt), so it does not count.
    pub const DECISION_FORGED: &str = "DECISION_FORGED";
}

/// The Slack actions of a migration approval request (a data patch's are `patch::message`'s).
pub const MIGRATION_APPROVE_ACTION: &str = "migration_approve";
pub const MIGRATION_REJECT_ACTION: &str = "migration_reject";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Reject,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Slack,
    Cli,
}

/// A decision as recorded on the subject (one per person).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DecisionRecord {
    pub decision: Decision,
    pub by: String,
    pub by_name: String,
    pub via: Via,
    pub at: String,
    /// The Slack user id or the IAM principal the decision came from.
    pub identity: String,
    /// The request hash the decider saw: a decision binds to exactly that request.
    pub request_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The decision endpoint's KMS signature over all of the above ([`seal`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

/// Why a decision was refused (nothing is recorded on the subject).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum Refusal {
    UnknownPerson { identity: String },
    NotApprover { person: String },
    SelfApproval { person: String },
    NotPending { status: String },
    DryRunOnly { patch_id: String },
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::UnknownPerson { .. } => "unknown_person",
            Refusal::NotApprover { .. } => "not_approver",
            Refusal::SelfApproval { .. } => "self_approval",
            Refusal::NotPending { .. } => "not_pending",
            Refusal::DryRunOnly { .. } => "dry_run_only",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::UnknownPerson { identity } => {
                write!(f, "{identity} is nobody in the people map")
            }
            Refusal::NotApprover { person } => {
                write!(f, "{person} does not have the approver role")
            }
            Refusal::SelfApproval { person } => {
                write!(f, "{person} requested this and cannot decide it")
            }
            Refusal::NotPending { status } => {
                write!(f, "it is {status}, no longer pending approval")
            }
            Refusal::DryRunOnly { patch_id } => {
                write!(
                    f,
                    "{patch_id} is a dry run only: there is nothing to approve"
                )
            }
        }
    }
}

/// What the rules need to know of a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject<'a> {
    /// What it is, for people: `patch`, `migration`.
    pub noun: &'static str,
    pub id: &'a str,
    /// The person who asked (who may not decide); `None` when a pipeline asked.
    pub requester: Option<&'a str>,
    pub required: u32,
    pub request_hash: &'a str,
    pub status: &'a str,
    /// Why nobody may decide it whatever its status (a data patch that is a dry run only).
    pub undecidable: Option<Refusal>,
}

/// May this person decide this subject now?
pub fn judge(subject: &Subject, person: Option<&Person>, identity: &str) -> Result<(), Refusal> {
    let person = person.ok_or_else(|| Refusal::UnknownPerson {
        identity: identity.to_string(),
    })?;
    if !person.has_role(Role::Approver) {
        return Err(Refusal::NotApprover {
            person: person.id.clone(),
        });
    }
    if subject.requester == Some(person.id.as_str()) {
        return Err(Refusal::SelfApproval {
            person: person.id.clone(),
        });
    }
    if let Some(r) = &subject.undecidable {
        return Err(r.clone());
    }
    if subject.status != PENDING {
        return Err(Refusal::NotPending {
            status: subject.status.to_string(),
        });
    }
    Ok(())
}

/// The recorded decisions, each re-checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    pub approvers: Vec<String>,
    pub rejected_by: Option<String>,
    pub required: u32,
    /// Recorded decisions that do not count (and why).
    pub ignored: Vec<String>,
    /// The keys of recorded decisions whose seal does not verify: forgery attempts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forged: Vec<String>,
}

impl Tally {
    pub fn approved(&self) -> bool {
        self.rejected_by.is_none() && self.approvers.len() as u32 >= self.required
    }
}

/// Whether `identity` (a decision's `slack:<user id>` or IAM principal) is one of the person
/// `by`'s own: a decision recorded for one person from another's identity does not count.
fn identity_is(people: &People, by: &str, identity: &str, via: Via) -> bool {
    let who = match via {
        Via::Slack => identity
            .strip_prefix("slack:")
            .and_then(|u| people.by_slack_user(u)),
        Via::Cli => people.by_principal(identity),
    };
    who.is_some_and(|p| p.id == by)
}

/// Pure: count the decisions that hold up (sealed by a decision endpoint, recorded from one
/// of the decider's own identities, decider exists now, is an approver, is not the requester,
/// decided this very request).
pub fn tally(
    subject: &Subject,
    decisions: &BTreeMap<String, DecisionRecord>,
    people: &People,
    seals: &Seals,
) -> Tally {
    let mut t = Tally {
        approvers: Vec::new(),
        rejected_by: None,
        required: subject.required,
        ignored: Vec::new(),
        forged: Vec::new(),
    };
    let mut ordered: Vec<(&String, &DecisionRecord)> = decisions.iter().collect();
    ordered.sort_by(|a, b| a.1.at.cmp(&b.1.at));
    for (key, d) in ordered {
        if !seals.holds(key) {
            t.forged.push(key.clone());
            t.ignored.push(format!(
                "{}: its seal does not verify (not recorded by a decision endpoint)",
                d.by
            ));
            continue;
        }
        let valid = match people.by_id(&d.by) {
            _ if key != &d.by => Err(format!("{}: recorded under {key}", d.by)),
            None => Err(format!("{}: not in the people map", d.by)),
            Some(p) if !p.has_role(Role::Approver) => Err(format!("{}: not an approver", d.by)),
            Some(p) if subject.requester == Some(p.id.as_str()) => {
                Err(format!("{}: the requester", d.by))
            }
            Some(_) if !identity_is(people, &d.by, &d.identity, d.via) => Err(format!(
                "{}: decided as {}, which is not theirs",
                d.by, d.identity
            )),
            Some(_) if d.request_hash != subject.request_hash => {
                Err(format!("{}: decided a different request", d.by))
            }
            Some(_) => Ok(()),
        };
        match valid {
            Err(why) => t.ignored.push(why),
            Ok(()) => match d.decision {
                Decision::Approve => {
                    if !t.approvers.contains(&d.by) {
                        t.approvers.push(d.by.clone());
                    }
                }
                Decision::Reject => {
                    if t.rejected_by.is_none() {
                        t.rejected_by = Some(d.by.clone());
                    }
                }
            },
        }
    }
    t
}

/// Audit every forged decision `t` found on `rec` (once each: the key names the decision's
/// content), so a forgery attempt is on the subject's chain whoever notices it first.
pub async fn audit_forgeries<R: Approvable>(
    trail: &Trail<'_>,
    rec: &R,
    t: &Tally,
    noticed_by: &str,
) -> Result<(), Error> {
    use sha2::Digest;
    for key in &t.forged {
        let Some(d) = rec.decisions().get(key) else {
            continue;
        };
        let fingerprint =
            hex::encode(&sha2::Sha256::digest(serde_json::to_vec(d).expect("serializes"))[..8]);
        tracing::warn!(subject = %rec.key(), decision = %key, "a recorded decision's seal does not verify: ignored");
        audit::append(
            trail,
            &rec.entry(
                format!("forged:{}:{key}:{fingerprint}", rec.key()),
                events::DECISION_FORGED,
                noticed_by,
                json!({
                    "decisionKey": key,
                    "decision": d.decision.as_str(),
                    "by": d.by,
                    "identity": d.identity,
                    "via": d.via,
                    "at": d.at,
                    "requestHash": d.request_hash,
                    "sealed": d.seal.is_some(),
                }),
            ),
        )
        .await?;
    }
    Ok(())
}

/// The Slack message that asked for approval (the thread every later post goes to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApprovalMessage {
    pub channel: String,
    pub ts: String,
    #[serde(default)]
    pub permalink: String,
}

/// Post an approval request and say where it went (the thread every later post goes to); a
/// missing permalink is logged, not fatal.
pub async fn post_request(
    slack: &crate::platform::slack::SlackClient,
    msg: &crate::platform::slack::Message,
) -> Result<ApprovalMessage, Error> {
    let posted = slack.post_message(msg).await?;
    let permalink = slack
        .permalink(&posted.channel, &posted.ts)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no permalink for the approval request");
            String::new()
        });
    Ok(ApprovalMessage {
        channel: posted.channel,
        ts: posted.ts,
        permalink,
    })
}

/// A record that can be approved: where it is, what the rules need, where its trail and its
/// workflow's wait are.
pub trait Approvable: Record + Serialize + DeserializeOwned + Clone + Send + Sync {
    fn subject(&self) -> Result<Subject<'_>, Error>;
    fn decisions(&self) -> &BTreeMap<String, DecisionRecord>;
    fn thread(&self) -> Option<&ApprovalMessage>;
    fn environment(&self) -> &str;
    /// An audit entry about this subject (its environment and id: the record's key).
    fn entry(&self, key: String, event: &str, actor: &str, data: Value) -> Entry {
        Entry {
            key,
            environment: self.environment().to_string(),
            patch_id: self.key().to_string(),
            event: event.to_string(),
            actor: actor.to_string(),
            data,
        }
    }
    /// The waits-table key of the workflow waiting for the decision.
    fn wait_key(&self) -> String;
    /// What ends the wait, once the record says the approval is over.
    fn decided(&self) -> Option<Value>;
    /// A task token kept on the record itself (an old patch record); `None` for the rest.
    fn legacy_task_token(&self) -> Option<&str> {
        None
    }
    /// What the `APPROVED` / `REJECTED` audit entry says besides who decided.
    fn concluded_data(&self) -> Value;
}

/// Where a subject's records live, its audit chain, and the waits table with the Step
/// Functions client that ends a wait.
#[derive(Debug, Clone)]
pub struct Approvals<'a> {
    pub db: &'a aws_sdk_dynamodb::Client,
    pub table: &'a str,
    pub trail: Trail<'a>,
    pub sfn: &'a aws_sdk_sfn::Client,
    pub waits_table: &'a str,
    /// Seals the decisions recorded here and verifies every one before it counts.
    pub sealer: &'a Sealer,
}

impl Approvals<'_> {
    pub fn records<R: Approvable>(&self) -> Table<R> {
        Table::new(self.db.clone(), self.table)
    }

    /// [`tally`] of `rec`'s decisions, their seals verified first.
    pub async fn tally<R: Approvable>(&self, people: &People, rec: &R) -> Result<Tally, Error> {
        counted(self.sealer, people, rec).await
    }

    /// End the approval wait of `rec` ([`end_wait`]).
    pub async fn end_wait<R: Approvable>(&self, rec: &R) -> Result<bool, Error> {
        end_wait(self.db, self.sfn, self.waits_table, rec).await
    }
}

/// [`tally`] of `rec`'s decisions under the people map, each seal verified with `sealer`.
pub async fn counted<R: Approvable>(
    sealer: &Sealer,
    people: &People,
    rec: &R,
) -> Result<Tally, Error> {
    let seals = sealer
        .check(rec.environment(), rec.key(), rec.decisions())
        .await?;
    Ok(tally(&rec.subject()?, rec.decisions(), people, &seals))
}

/// End the approval wait of `rec` with what its record says was decided (the one
/// [`waits::complete`]). Returns whether a waiting execution was told.
pub async fn end_wait<R: Approvable>(
    db: &aws_sdk_dynamodb::Client,
    sfn: &aws_sdk_sfn::Client,
    waits_table: &str,
    rec: &R,
) -> Result<bool, Error> {
    let Some(decided) = rec.decided() else {
        return Ok(false);
    };
    if waits::complete(db, sfn, waits_table, &rec.wait_key(), &decided).await? {
        return Ok(true);
    }
    // Upgrade path: an execution that started waiting before the waits table held the
    // token has it on the record only.
    match rec.legacy_task_token() {
        Some(token) => waits::send_success(sfn, token, &decided).await,
        None => Ok(false),
    }
}

/// Who is deciding, as the caller established it (a verified Slack user or an STS identity).
#[derive(Debug, Clone)]
pub struct Decider<'p> {
    pub person: Option<&'p Person>,
    pub identity: String,
    pub via: Via,
    pub comment: Option<String>,
}

/// What a decision did: written now, written before by the same person, or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionResult {
    Recorded,
    /// This person decided before.
    Duplicate,
    Refused,
}

impl DecisionResult {
    pub const fn as_str(self) -> &'static str {
        match self {
            DecisionResult::Recorded => "recorded",
            DecisionResult::Duplicate => "duplicate",
            DecisionResult::Refused => "refused",
        }
    }
}

impl std::fmt::Display for DecisionResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What came of a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionOutcome {
    /// The subject's id (`patchId` for a patch, so the patch answers keep their shape).
    #[serde(rename = "patchId")]
    pub id: String,
    #[serde(skip)]
    pub noun: &'static str,
    pub outcome: DecisionResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    pub status: String,
    pub approvals: usize,
    pub required: u32,
    /// Whether the waiting workflow was told (approved or rejected now).
    pub wait_ended: bool,
    /// The approval request's Slack thread, for an answer there.
    #[serde(skip)]
    pub thread: Option<ApprovalMessage>,
}

impl DecisionOutcome {
    fn new<R: Approvable>(
        outcome: DecisionResult,
        refusal: Option<Refusal>,
        rec: &R,
        t: &Tally,
        wait_ended: bool,
    ) -> Result<Self, Error> {
        let subject = rec.subject()?;
        Ok(DecisionOutcome {
            id: subject.id.to_string(),
            noun: subject.noun,
            outcome,
            refusal,
            status: subject.status.to_string(),
            approvals: t.approvers.len(),
            required: t.required,
            wait_ended,
            thread: rec.thread().cloned(),
        })
    }

    /// One line for Slack or the terminal.
    pub fn summary(&self, who: &str, decision: Decision) -> String {
        let (noun, id) = (self.noun, &self.id);
        match (self.outcome, &self.refusal) {
            (_, Some(r)) => format!("{who} cannot {} {noun} {id}: {r}", decision.as_str()),
            (DecisionResult::Duplicate, _) => format!(
                "{who} already decided {noun} {id} (status {}, {}/{} approvals)",
                self.status, self.approvals, self.required
            ),
            _ => match self.status.as_str() {
                APPROVED => format!(
                    "{who} approved {noun} {id}: approved ({}/{}), it runs now",
                    self.approvals, self.required
                ),
                REJECTED => format!("{who} rejected {noun} {id}: it will not run"),
                _ => format!(
                    "{who} approved {noun} {id}: {}/{} approvals, waiting for more",
                    self.approvals, self.required
                ),
            },
        }
    }
}

/// Record a decision under the rule set ([`judge`]), finish the approval when it is complete
/// (`APPROVED` / `REJECTED`), and tell the waiting workflow.
pub async fn decide<R: Approvable>(
    st: &Approvals<'_>,
    people: &People,
    id: &str,
    decider: &Decider<'_>,
    decision: Decision,
) -> Result<DecisionOutcome, Error> {
    let records = st.records::<R>();
    let rec: R = records.must_get(id).await?;
    let actor = decider
        .person
        .map(|p| p.id.clone())
        .unwrap_or_else(|| decider.identity.clone());
    let already = decider
        .person
        .is_some_and(|p| rec.decisions().contains_key(&p.id));
    if !already {
        let subject = rec.subject()?;
        if let Err(refusal) = judge(&subject, decider.person, &decider.identity) {
            let key = format!(
                "refused:{id}:{actor}:{}:{}:{}",
                decision.as_str(),
                refusal.code(),
                subject.status
            );
            let data = json!({"decision": decision.as_str(), "via": decider.via, "identity": decider.identity, "refusal": refusal});
            audit::append(
                &st.trail,
                &rec.entry(key, events::DECISION_REFUSED, &actor, data),
            )
            .await?;
            let t = st.tally(people, &rec).await?;
            return DecisionOutcome::new(DecisionResult::Refused, Some(refusal), &rec, &t, false);
        }
    }
    let person = decider.person.expect("judged: a person");
    let mut record = DecisionRecord {
        decision,
        by: person.id.clone(),
        by_name: person.name.clone(),
        via: decider.via,
        at: time::rfc3339(time::now()),
        identity: decider.identity.clone(),
        request_hash: rec.subject()?.request_hash.to_string(),
        comment: decider
            .comment
            .as_deref()
            .map(|c| crate::platform::redact::redact(c).into_owned()),
        seal: None,
    };
    record.seal = Some(st.sealer.seal(rec.environment(), id, &record).await?);
    // Written only where this person has no decision yet, or (below) over one that is not
    // sealed: a decision planted under their name must not stand in for theirs.
    let write = |condition: &'static str, old: Option<&DecisionRecord>| {
        let mut req = st
            .db
            .update_item()
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .table_name(st.table)
            .key(R::KEY, s(id))
            .update_expression("SET decisions.#p = :d, #updatedAt = :now")
            .condition_expression(condition)
            .expression_attribute_names("#p", &person.id)
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#updatedAt", "updatedAt")
            .expression_attribute_values(
                ":d",
                dynamo::to_attr(&serde_json::to_value(&record).expect("serializes")),
            )
            .expression_attribute_values(":pending", s(PENDING))
            .expression_attribute_values(":now", s(record.at.clone()));
        if let Some(old) = old {
            // Still that very decision (compared by value field by field: map equality is
            // not something to lean on): its time, identity and seal, or its lack of one.
            req = req
                .expression_attribute_names("#at", "at")
                .expression_attribute_names("#identity", "identity")
                .expression_attribute_names("#seal", "seal")
                .expression_attribute_values(":oldAt", s(old.at.clone()))
                .expression_attribute_values(":oldIdentity", s(old.identity.clone()))
                .expression_attribute_values(":oldSeal", s(old.seal.clone().unwrap_or_default()));
        }
        req.send()
    };
    let mut written = write(
        "#status = :pending AND attribute_not_exists(decisions.#p)",
        None,
    )
    .await
    .aws("UpdateItem")
    .conditional()?;
    let mut rec: R = match written.as_ref().and_then(|out| out.attributes()) {
        Some(item) => dynamo::from_item(item)?,
        None => records.must_get(id).await?,
    };
    if written.is_none() {
        if let Some(planted) = rec.decisions().get(&person.id).cloned() {
            if !st.sealer.verifies(rec.environment(), id, &planted).await? {
                // Someone wrote a decision under this person's name: audit it, then record
                // theirs over it (only if it is still exactly that one).
                let t = st.tally(people, &rec).await?;
                audit_forgeries(&st.trail, &rec, &t, "decision").await?;
                written = write(
                    "#status = :pending AND decisions.#p.#at = :oldAt \
                     AND decisions.#p.#identity = :oldIdentity \
                     AND (attribute_not_exists(decisions.#p.#seal) OR decisions.#p.#seal = :oldSeal)",
                    Some(&planted),
                )
                .await
                .aws("UpdateItem")
                .conditional()?;
                rec = match written.as_ref().and_then(|out| out.attributes()) {
                    Some(item) => dynamo::from_item(item)?,
                    None => records.must_get(id).await?,
                };
            }
        }
    }
    let stored = match rec.decisions().get(&person.id).cloned() {
        Some(d) if written.is_some() || st.sealer.verifies(rec.environment(), id, &d).await? => d,
        _ => {
            // Not written (the subject left PENDING_APPROVAL meanwhile, or a planted decision
            // could not be replaced): nothing of this person's is recorded.
            let refusal = Refusal::NotPending {
                status: rec.subject()?.status.to_string(),
            };
            let t = st.tally(people, &rec).await?;
            return DecisionOutcome::new(DecisionResult::Refused, Some(refusal), &rec, &t, false);
        }
    };
    audit::append(
        &st.trail,
        &rec.entry(
            format!("decision:{id}:{}", person.id),
            events::DECISION,
            &person.id,
            json!({
                "decision": stored.decision.as_str(),
                "via": stored.via,
                "identity": stored.identity,
                "requestHash": stored.request_hash,
                "comment": stored.comment,
            }),
        ),
    )
    .await?;
    let (rec, t, wait_ended) = conclude(st, people, rec).await?;
    let outcome = if written.is_some() {
        DecisionResult::Recorded
    } else {
        DecisionResult::Duplicate
    };
    DecisionOutcome::new(outcome, None, &rec, &t, wait_ended)
}

/// Move a subject from one of `from` to `to` (with `fields`, and `updatedAt`); `None` when it
/// was in none of them.
pub async fn transition<R: Approvable>(
    records: &Table<R>,
    id: &str,
    from: &[&str],
    to: &str,
    fields: &[(&str, Value)],
) -> Result<Option<R>, Error> {
    let mut all = vec![("status", json!(to))];
    all.extend(fields.iter().cloned());
    all.push(("updatedAt", json!(time::rfc3339(time::now()))));
    let names: Vec<String> = (0..from.len()).map(|i| format!(":from{i}")).collect();
    let values: Vec<(&str, Value)> = names
        .iter()
        .zip(from)
        .map(|(n, s)| (n.as_str(), json!(s)))
        .collect();
    let cond = format!("#status IN ({})", names.join(", "));
    records.set_fields(id, &all, Some(&cond), &values).await
}

/// When the decisions add up, move the subject to `APPROVED` / `REJECTED`, audit it and end
/// the workflow's wait; a forged decision found on the way is audited. Safe to repeat.
/// Returns the record, its tally and whether the wait was ended.
pub async fn conclude<R: Approvable>(
    st: &Approvals<'_>,
    people: &People,
    rec: R,
) -> Result<(R, Tally, bool), Error> {
    let id = rec.subject()?.id.to_string();
    let t = st.tally(people, &rec).await?;
    audit_forgeries(&st.trail, &rec, &t, "workflow").await?;
    let now = time::rfc3339(time::now());
    let (to, fields) = if let Some(by) = &t.rejected_by {
        (REJECTED, vec![("rejectedBy", json!(by))])
    } else if t.approved() {
        (
            APPROVED,
            vec![
                ("approvers", json!(t.approvers)),
                ("approvedAt", json!(now)),
            ],
        )
    } else {
        return Ok((rec, t, false));
    };
    let records = st.records::<R>();
    let rec = match transition(&records, &id, &[PENDING], to, &fields).await? {
        Some(updated) => updated,
        None => records.must_get(&id).await?,
    };
    if rec.subject()?.status != to {
        return Ok((rec, t, false));
    }
    let mut data = json!({
        "approvers": t.approvers,
        "rejectedBy": t.rejected_by,
        "requiredApprovals": t.required,
    });
    if let (Some(d), Value::Object(extra)) = (data.as_object_mut(), rec.concluded_data()) {
        d.extend(extra);
    }
    audit::append(
        &st.trail,
        &rec.entry(format!("{}:{id}", to.to_lowercase()), to, "workflow", data),
    )
    .await?;
    let ended = st.end_wait(&rec).await?;
    Ok((rec, t, ended))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn people() -> People {
        People::parse(crate::shared::people::EMBEDDED, "staging").unwrap()
    }

    fn subject(required: u32) -> Subject<'static> {
        Subject {
            noun: "migration",
            id: "m1",
            requester: None,
            required,
            request_hash: "h1",
            status: PENDING,
            undecidable: None,
        }
    }

    /// A Slack decision by `by` on `hash` (its time orders decisions by the name's length).
    pub(crate) fn decision(by: &str, d: Decision, hash: &str) -> DecisionRecord {
        DecisionRecord {
            decision: d,
            by: by.into(),
            by_name: by.into(),
            via: Via::Slack,
            at: format!("2026-11-28T13:00:0{}Z", by.len()),
            identity: people()
                .by_id(by)
                .map(|p| format!("slack:{}", p.slack_user_id))
                .unwrap_or_else(|| "slack:U".into()),
            request_hash: hash.into(),
            comment: None,
            seal: None,
        }
    }

    #[test]
    fn a_subject_nobody_requested_may_be_decided_by_any_approver() {
        let p = people();
        let s = subject(1);
        assert_eq!(judge(&s, p.by_id("bob"), "U0BOB0001"), Ok(()));
        assert_eq!(judge(&s, p.by_id("alice"), "U0ALICE01"), Ok(()));
        assert_eq!(
            judge(&s, p.by_id("dave"), "U0DAVE001").unwrap_err().code(),
            "not_approver"
        );
        let done = Subject {
            status: APPROVED,
            ..subject(1)
        };
        assert_eq!(
            judge(&done, p.by_id("alice"), "U0ALICE01"),
            Err(Refusal::NotPending {
                status: APPROVED.into()
            })
        );
    }

    #[test]
    fn a_decision_on_another_request_hash_does_not_count() {
        let s = subject(1);
        let decisions = BTreeMap::from([
            (
                "alice".to_string(),
                decision("alice", Decision::Approve, "h0"),
            ),
            ("zed".to_string(), decision("zed", Decision::Approve, "h1")),
        ]);
        let t = tally(&s, &decisions, &people(), &Seals::all(&decisions));
        assert!(!t.approved(), "{t:?}");
        assert_eq!(t.ignored.len(), 2, "{t:?}");
        let decisions = BTreeMap::from([(
            "alice".to_string(),
            decision("alice", Decision::Approve, "h1"),
        )]);
        assert!(tally(&s, &decisions, &people(), &Seals::all(&decisions)).approved());
    }

    #[test]
    fn an_unsealed_decision_or_one_made_from_someone_elses_identity_does_not_count() {
        let s = subject(1);
        let p = people();
        let bob = decision("bob", Decision::Approve, "h1");
        let decisions = BTreeMap::from([("bob".to_string(), bob.clone())]);
        // Unsealed: forged, whatever it says.
        let t = tally(&s, &decisions, &p, &Seals::default());
        assert!(!t.approved(), "{t:?}");
        assert_eq!(t.forged, vec!["bob".to_string()]);
        assert!(t.ignored[0].contains("seal does not verify"), "{t:?}");
        // Sealed, but made from alice's Slack identity or an IAM principal that is not bob's.
        for (identity, via) in [
            ("slack:U0ALICE01", Via::Slack),
            ("U0BOB0001", Via::Slack),
            ("arn:aws:iam::123456789012:user/alice", Via::Cli),
            (
                "arn:aws:sts::123456789012:assumed-role/any/bob@example.com",
                Via::Cli,
            ),
        ] {
            let d = DecisionRecord {
                identity: identity.into(),
                via,
                ..bob.clone()
            };
            let decisions = BTreeMap::from([("bob".to_string(), d)]);
            let t = tally(&s, &decisions, &p, &Seals::all(&decisions));
            assert!(!t.approved(), "{identity}: {t:?}");
            assert!(t.forged.is_empty());
            assert!(t.ignored[0].contains("which is not theirs"), "{t:?}");
        }
        // bob's own IAM user through the CLI counts; a decision filed under another key does not.
        let cli = DecisionRecord {
            identity: "arn:aws:iam::123456789012:user/bob".into(),
            via: Via::Cli,
            ..bob.clone()
        };
        let decisions = BTreeMap::from([("bob".to_string(), cli.clone())]);
        assert!(tally(&s, &decisions, &p, &Seals::all(&decisions)).approved());
        let misfiled = BTreeMap::from([("carol".to_string(), cli)]);
        let t = tally(&s, &misfiled, &p, &Seals::all(&misfiled));
        assert!(
            !t.approved() && t.ignored[0].contains("recorded under carol"),
            "{t:?}"
        );
    }
}
