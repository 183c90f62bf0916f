//! The one rule set for approving or rejecting a data patch, whether the decision comes from
//! a Slack button (the `approval` function) or `batchless patch approve|reject`:
//! the decider is a person in the people map with the `approver` role, is not the requester,
//! decides a pending patch once; the patch is approved when the required number of distinct
//! approvers is reached, rejected by the first rejection.
//! [`tally`] re-checks every recorded decision against the people map, so `start-patch-build`
//! trusts nothing it did not verify itself.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{PatchRun, Status};
use crate::shared::people::{People, Person, Role};

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

/// A decision as recorded on the patch (one per person).
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
}

/// Why a decision was refused (nothing is recorded on the patch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "refusal", rename_all = "snake_case")]
pub enum Refusal {
    UnknownPerson { identity: String },
    NotApprover { person: String },
    SelfApproval { person: String },
    NotPending { status: Status },
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
                write!(f, "{person} requested this patch and cannot decide it")
            }
            Refusal::NotPending { status } => {
                write!(f, "the patch is {status}, no longer pending approval")
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

/// May this person decide this patch now?
pub fn judge(
    run: &PatchRun,
    patch_status: Status,
    person: Option<&Person>,
    identity: &str,
) -> Result<(), Refusal> {
    let person = person.ok_or_else(|| Refusal::UnknownPerson {
        identity: identity.to_string(),
    })?;
    if !person.has_role(Role::Approver) {
        return Err(Refusal::NotApprover {
            person: person.id.clone(),
        });
    }
    if person.id == run.requester {
        return Err(Refusal::SelfApproval {
            person: person.id.clone(),
        });
    }
    if run.dry_run_only {
        return Err(Refusal::DryRunOnly {
            patch_id: run.patch_id.clone(),
        });
    }
    if patch_status != Status::PendingApproval {
        return Err(Refusal::NotPending {
            status: patch_status,
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
}

impl Tally {
    pub fn approved(&self) -> bool {
        self.rejected_by.is_none() && self.approvers.len() as u32 >= self.required
    }
}

/// Pure: count the decisions that hold up (decider exists now, is an approver, is not the
/// requester, decided this very request).
pub fn tally(
    run: &PatchRun,
    decisions: &BTreeMap<String, DecisionRecord>,
    people: &People,
) -> Tally {
    let mut t = Tally {
        approvers: Vec::new(),
        rejected_by: None,
        required: run.required_approvals,
        ignored: Vec::new(),
    };
    let mut ordered: Vec<&DecisionRecord> = decisions.values().collect();
    ordered.sort_by(|a, b| a.at.cmp(&b.at));
    for d in ordered {
        let person = people.by_id(&d.by);
        let valid = match person {
            None => Err(format!("{}: not in the people map", d.by)),
            Some(p) if !p.has_role(Role::Approver) => Err(format!("{}: not an approver", d.by)),
            Some(p) if p.id == run.requester => Err(format!("{}: the requester", d.by)),
            Some(_) if d.request_hash != run.request_hash => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::tests::{exec, people, request};
    use crate::patch::{validate, Policy};

    fn run(required: u32) -> PatchRun {
        let mut r = request();
        r["requiredApprovals"] = serde_json::json!(required);
        validate(r, &exec(), "staging", &people(), Policy::default()).unwrap()
    }

    fn decision(by: &str, d: Decision, hash: &str) -> DecisionRecord {
        DecisionRecord {
            decision: d,
            by: by.into(),
            by_name: by.into(),
            via: Via::Slack,
            at: format!("2026-11-28T13:00:0{}Z", by.len()),
            identity: "U".into(),
            request_hash: hash.into(),
            comment: None,
        }
    }

    #[test]
    fn who_may_decide() {
        let p = people();
        let r = run(1); // requested by bob
        let pending = Status::PendingApproval;
        assert_eq!(judge(&r, pending, p.by_id("alice"), "U0ALICE01"), Ok(()));
        assert_eq!(
            judge(&r, pending, p.by_id("bob"), "U0BOB0001"),
            Err(Refusal::SelfApproval {
                person: "bob".into()
            })
        );
        assert_eq!(
            judge(&r, pending, p.by_id("dave"), "U0DAVE001"),
            Err(Refusal::NotApprover {
                person: "dave".into()
            })
        );
        assert_eq!(
            judge(&r, pending, None, "U0NOBODY1").unwrap_err().code(),
            "unknown_person"
        );
        assert_eq!(
            judge(&r, Status::Approved, p.by_id("alice"), "U0ALICE01"),
            Err(Refusal::NotPending {
                status: Status::Approved
            })
        );
        let mut only = run(1);
        only.dry_run_only = true;
        assert_eq!(
            judge(&only, pending, p.by_id("alice"), "U0ALICE01")
                .unwrap_err()
                .code(),
            "dry_run_only"
        );
    }

    /// The tally of a run needing `required` approvals (requested by bob) over `list`: each
    /// person's decision, made on the run's own request hash unless another is given.
    fn tally_over(required: u32, list: &[(&str, Decision, Option<&str>)]) -> Tally {
        let r = run(required);
        let decisions = list
            .iter()
            .map(|(by, d, hash)| {
                let hash = hash.unwrap_or(&r.request_hash);
                (by.to_string(), decision(by, *d, hash))
            })
            .collect();
        tally(&r, &decisions, &people())
    }

    #[test]
    fn two_required_means_two_distinct_approvers() {
        let t = tally_over(2, &[("alice", Decision::Approve, None)]);
        assert!(!t.approved());
        assert_eq!(t.approvers, vec!["alice"]);
        let t = tally_over(
            2,
            &[
                ("alice", Decision::Approve, None),
                ("carol", Decision::Approve, None),
            ],
        );
        assert!(t.approved());
    }

    #[test]
    fn decisions_that_do_not_hold_up_are_ignored() {
        // Forged into the record: the requester, a non-approver, someone unknown, a stale hash.
        let t = tally_over(
            1,
            &[
                ("bob", Decision::Approve, None),
                ("dave", Decision::Approve, None),
                ("zed", Decision::Approve, None),
                ("alice", Decision::Approve, Some("stale")),
            ],
        );
        assert!(!t.approved(), "{t:?}");
        assert_eq!(t.ignored.len(), 4);
    }

    #[test]
    fn one_rejection_rejects() {
        let t = tally_over(
            2,
            &[
                ("alice", Decision::Approve, None),
                ("carol", Decision::Reject, None),
            ],
        );
        assert_eq!(t.rejected_by.as_deref(), Some("carol"));
        assert!(!t.approved());
    }
}
