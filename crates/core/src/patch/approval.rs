//! A data patch under the one approval rule set (`shared::approval`), whether the decision
//! comes from a Slack button (the `approval` function) or `batchless patch approve|reject`:
//! the decider is a person in the people map with the `approver` role, is not the requester,
//! decides a pending patch once (never a dry run only); the patch is approved when the
//! required number of distinct approvers is reached, rejected by the first rejection.
//! [`tally`] re-checks every recorded decision against the people map, so `start-patch-build`
//! trusts nothing it did not verify itself.

use std::collections::BTreeMap;

use crate::shared::approval::{self as shared, Seals, Subject};
pub use crate::shared::approval::{Decision, DecisionRecord, Refusal, Tally, Via};
use crate::shared::people::{People, Person};

use super::{PatchRun, Status};

/// What the shared rules need of a patch in `status`.
pub fn subject(run: &PatchRun, status: Status) -> Subject<'_> {
    Subject {
        noun: "patch",
        id: &run.patch_id,
        requester: Some(&run.requester),
        required: run.required_approvals,
        request_hash: &run.request_hash,
        status: status.as_str(),
        undecidable: run.dry_run_only.then(|| Refusal::DryRunOnly {
            patch_id: run.patch_id.clone(),
        }),
    }
}

/// May this person decide this patch now?
pub fn judge(
    run: &PatchRun,
    patch_status: Status,
    person: Option<&Person>,
    identity: &str,
) -> Result<(), Refusal> {
    shared::judge(&subject(run, patch_status), person, identity)
}

/// Pure: count the decisions that hold up (sealed, decider exists now, is an approver, is not
/// the requester, decided this very request from one of their own identities).
pub fn tally(
    run: &PatchRun,
    decisions: &BTreeMap<String, DecisionRecord>,
    people: &People,
    seals: &Seals,
) -> Tally {
    shared::tally(
        &subject(run, Status::PendingApproval),
        decisions,
        people,
        seals,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::tests::{exec, people, request};
    use crate::patch::{validate, Policy};
    use crate::shared::approval::tests::decision;

    fn run(required: u32) -> PatchRun {
        let mut r = request();
        r["requiredApprovals"] = serde_json::json!(required);
        validate(r, &exec(), "staging", &people(), Policy::default()).unwrap()
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
                status: "APPROVED".into()
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
        tally(&r, &decisions, &people(), &Seals::all(&decisions))
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
