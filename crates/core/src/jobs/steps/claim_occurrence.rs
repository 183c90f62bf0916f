//! `claim-occurrence`: the first step of the scheduled-job workflow. Parses the input strictly
//! (a bad one fails `InvalidInput` and claims nothing), then claims the occurrence (job +
//! scheduled minute) with one conditional write. The winner's run is recorded RUNNING (once: a
//! retried claim finds it there); a duplicate delivery is recorded on the occurrence and the
//! workflow ends `duplicate`. A claim past the catch-up window is still taken (so the
//! occurrence can never run late) but marked stale.
//!
//! Pause (issue 20): a scheduled delivery first reads the job's schedule (`GetSchedule`, the
//! authoritative state: see [`crate::jobs::pause`]); while the job is paused the occurrence is
//! claimed `PAUSED` and the workflow ends `Paused` with nothing run. Backfill
//! (`batchless jobs backfill`): the same claim and key, never stale, and it may take over an
//! occurrence the missed-run check claimed `MISSED` (conditionally; never a `CLAIMED` or
//! `PAUSED` one).
//!
//! The claim is sealed (`OCCURRENCE_SIGNING_KEY`, `jobs::occurrence`): an item in the way that
//! batchless did not write (planted to make this delivery a "duplicate") is replaced, kept on
//! the claim as `replaced`, and the occurrence runs.

use aws_types::SdkConfig;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Error;
use crate::jobs::occurrence::{self, Claim, Occurrence, OccurrenceStatus, Occurrences};
use crate::jobs::pause;
use crate::jobs::workflow::{self, ClaimOutcome, ClaimResult, JobRun, Trigger};
use crate::jobs::JobsFile;
use crate::platform::signing::Signer;
use crate::platform::{aws, config, time};
use crate::shared::approval::Sealer;
use crate::shared::runs::Runs;
use crate::shared::submission;

pub struct Deps {
    pub occurrences: Occurrences,
    pub runs: Runs,
    pub environment: String,
    pub jobs: JobsFile,
    /// `scheduler:GetSchedule` on the jobs' schedules: is the job paused?
    pub scheduler: aws_sdk_scheduler::Client,
    /// Verifies a manual run's submission seal (`DECISION_SIGNING_KEY`).
    pub sealer: Sealer,
    /// Seals the claim and verifies one in the way (`OCCURRENCE_SIGNING_KEY`).
    pub claims: Signer,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        let db = aws::dynamodb(sdk);
        Ok(Deps {
            occurrences: Occurrences::new(db.clone(), config::required("OCCURRENCES_TABLE")?),
            runs: Runs::new(db, config::required("RUNS_TABLE")?),
            environment: config::environment()?,
            jobs: JobsFile::embedded(),
            scheduler: aws::scheduler(sdk),
            sealer: Sealer::from_env(sdk)?,
            claims: occurrence::claim_signer(sdk)?,
        })
    }

    /// Whether the job is paused now (its schedule's state on AWS).
    async fn paused(&self, job: &str) -> Result<bool, Error> {
        let Some(j) = self.jobs.get(job) else {
            return Ok(false);
        };
        Ok(pause::live(&self.scheduler, &self.environment, job)
            .await?
            .is_paused(j))
    }
}

/// The execution input as it came (validated here, strictly) and the execution it started.
pub type Input = crate::sfn::execution::StartInput;

/// The workflow's state from here on: the validated run and the claim.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub run: JobRun,
    pub claim: ClaimResult,
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let (request, _) = submission::open(
        &deps.sealer,
        &deps.environment,
        submission::Workflow::ScheduledJob,
        &input.execution.name,
        input.input,
    )
    .await?;
    let run = workflow::validate(request, &input.execution, &deps.environment, &deps.jobs)?;
    claim(deps, run, time::now()).await
}

/// Who claims what: the occurrence as this execution writes it.
fn occurrence(run: &JobRun, now: DateTime<Utc>) -> Occurrence {
    Occurrence {
        occurrence_key: run.occurrence_key.clone(),
        job: run.job.clone(),
        scheduled_time: run.occurrence.clone().unwrap_or_else(|| "manual".into()),
        environment: run.environment.clone(),
        claimed_by: run.run_id.clone(),
        claimed_at: time::rfc3339(now),
        source: match run.trigger {
            Trigger::Manual => "manual",
            Trigger::Scheduled if run.backfill => "backfill",
            Trigger::Scheduled => "scheduler",
        }
        .into(),
        status: OccurrenceStatus::Claimed,
        run_status: None,
        duplicate_claimers: vec![],
        pause: None,
        seal: None,
        replaced: None,
    }
}

async fn claim(deps: &Deps, run: JobRun, now: DateTime<Utc>) -> Result<Output, Error> {
    let (stale, late_by_seconds) = workflow::lateness(&run, now);
    // Backfill bypasses the catch-up window's staleness check, and nothing else.
    let stale = stale && !run.backfill;
    // A manual run is not a schedule's occurrence: a pause does not stop it.
    let paused = run.trigger == Trigger::Scheduled && deps.paused(&run.job).await?;
    let mut occ = occurrence(&run, now);
    if paused {
        occ.status = OccurrenceStatus::Paused;
    }
    let claimed = deps.occurrences.claim(&occ, Some(&deps.claims)).await?;
    if let Claim::Replaced(forged) = &claimed {
        tracing::warn!(key = %occ.occurrence_key, forged_claimed_by = %forged.claimed_by, forged_status = %forged.status.as_str(), "an occurrence item batchless did not write was in the way: replaced (kept as `replaced`)");
    }
    let (outcome, claimed_by) = match claimed {
        Claim::Won | Claim::Replaced(_) if paused => (ClaimOutcome::Paused, run.run_id.clone()),
        Claim::Won | Claim::Replaced(_) => {
            // RUNNING until RecordJobRun; cleanup ends it on abort.
            deps.runs.put_once(&workflow::running_record(&run)).await?;
            (ClaimOutcome::Claimed, run.run_id.clone())
        }
        Claim::Duplicate(owner)
            if run.backfill
                && !paused
                && owner.status == OccurrenceStatus::Missed
                && deps
                    .occurrences
                    .take_over_missed(&occ, &deps.claims)
                    .await? =>
        {
            deps.runs.put_once(&workflow::running_record(&run)).await?;
            (ClaimOutcome::Claimed, run.run_id.clone())
        }
        Claim::Duplicate(owner) => {
            deps.occurrences
                .record_duplicate(&run.occurrence_key, &run.run_id)
                .await?;
            (ClaimOutcome::Duplicate, owner.claimed_by)
        }
    };
    let claim = ClaimResult {
        outcome,
        occurrence_key: run.occurrence_key.clone(),
        claimed_by,
        stale,
        late_by_seconds,
    };
    tracing::info!(key = %claim.occurrence_key, outcome = ?claim.outcome, stale, "occurrence claim");
    if run.trigger == Trigger::Scheduled {
        use crate::jobs::ledger::metric;
        let (env, job) = (&run.environment, &run.job);
        match claim.outcome {
            ClaimOutcome::Claimed => metric::count(env, job, metric::CLAIMED, None),
            ClaimOutcome::Duplicate => metric::count(env, job, metric::DUPLICATES, None),
            ClaimOutcome::Paused => metric::count(env, job, metric::SKIPPED, Some("paused")),
        }
        if stale && claim.outcome == ClaimOutcome::Claimed {
            metric::count(env, job, metric::SKIPPED, Some("stale"));
        }
    }
    Ok(Output { run, claim })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::dynamo;
    use crate::sfn::Execution;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemInput, PutItemOutput};
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use serde_json::Value;

    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput;
    use aws_sdk_scheduler::types::ScheduleState;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

    use serde_json::json;

    const ARN: &str =
        "arn:aws:states:us-east-1:123456789012:execution:batchless-staging-scheduled-job:e1";

    fn deps(rules: &[&Rule]) -> Deps {
        deps_with(rules, ScheduleState::Enabled)
    }

    /// The job's schedule reads `state` (GetSchedule).
    fn deps_with(rules: &[&Rule], state: ScheduleState) -> Deps {
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules);
        let get = mock!(aws_sdk_scheduler::Client::get_schedule)
            .match_requests(|r| r.name() == Some("batchless-staging-job-sync-exchange-rates"))
            .then_output(move || GetScheduleOutput::builder().state(state.clone()).build());
        Deps {
            occurrences: Occurrences::new(db.clone(), "occ"),
            runs: Runs::new(db, "runs"),
            environment: "staging".into(),
            jobs: JobsFile::embedded(),
            scheduler: mock_client!(aws_sdk_scheduler, [&get]),
            sealer: crate::shared::approval::seal::tests::sealer(true),
            claims: crate::shared::approval::seal::tests::sealer(true),
        }
    }

    fn input(body: Value) -> Input {
        Input {
            input: body,
            execution: Execution {
                id: ARN.into(),
                name: "e1".into(),
                start_time: "2026-11-28T13:15:02Z".into(),
            },
        }
    }

    /// `body` as the decision endpoint submits it (the seal is whatever the mocked KMS likes).
    fn submitted(mut body: Value) -> Value {
        body["submission"] = json!({"by": "arn:aws:iam::123456789012:user/alice", "person": "alice", "at": "2026-11-28T13:15:00Z", "seal": "c2VhbGVk"});
        body
    }

    fn scheduled() -> Input {
        input(json!({"job": "sync-exchange-rates", "scheduledTime": "2026-11-28T13:15:00Z"}))
    }

    fn ccf() -> PutItemError {
        crate::testing::put_item_failed()
    }

    /// A PutItem into `table` (the two tables share one mocked client).
    macro_rules! put_into {
        ($table:literal) => {
            put_into!($table, |_r: &PutItemInput| true)
        };
        ($table:literal, $cond:expr) => {{
            let cond = $cond;
            mock!(aws_sdk_dynamodb::Client::put_item)
                .match_requests(move |r| r.table_name() == Some($table) && cond(r))
        }};
    }

    fn attr<'a>(r: &'a PutItemInput, k: &str) -> Option<&'a str> {
        r.item()
            .and_then(|i| i.get(k))
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    }

    #[tokio::test]
    async fn the_winner_claims_then_records_its_run_once() {
        let claim = put_into!("occ", |r: &PutItemInput| {
            r.condition_expression() == Some("attribute_not_exists(#k)")
                && attr(r, "occurrenceKey") == Some("sync-exchange-rates#2026-11-28T13:15:00Z")
                && attr(r, "claimedBy") == Some(ARN)
                && attr(r, "source") == Some("scheduler")
                && attr(r, "status") == Some("CLAIMED")
        })
        .then_output(|| PutItemOutput::builder().build());
        let run = put_into!("runs", |r: &PutItemInput| {
            r.condition_expression() == Some("attribute_not_exists(#k)")
                && attr(r, "runId") == Some(ARN)
                && attr(r, "status") == Some("RUNNING")
                && attr(r, "workflow") == Some("scheduled-job")
                && attr(r, "job") == Some("sync-exchange-rates")
                && attr(r, "trigger") == Some("scheduled")
                && attr(r, "occurrenceKey") == Some("sync-exchange-rates#2026-11-28T13:15:00Z")
                && attr(r, "lock") == Some("job:staging:sync-exchange-rates")
        })
        .then_output(|| PutItemOutput::builder().build());
        let d = deps(&[&claim, &run]);
        let out = handle(&d, scheduled()).await.unwrap();
        assert_eq!((claim.num_calls(), run.num_calls()), (1, 1));
        assert_eq!(out.claim.outcome, ClaimOutcome::Claimed);
        assert_eq!(out.claim.claimed_by, ARN);
        let wire = serde_json::to_value(&out).unwrap();
        assert_eq!(wire["claim"]["outcome"], "claimed");
        assert_eq!(wire["run"]["trigger"], "scheduled");
        assert_eq!(wire["run"]["concurrency"], "replace");
    }

    #[tokio::test]
    async fn a_retried_claim_finds_its_run_already_recorded() {
        let claim = put_into!("occ").then_output(|| PutItemOutput::builder().build());
        let run = put_into!("runs").then_error(ccf);
        let stored = mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| r.table_name() == Some("runs"))
            .then_output(|| {
                let run = workflow::validate(
                    scheduled().input,
                    &scheduled().execution,
                    "staging",
                    &JobsFile::embedded(),
                )
                .unwrap();
                GetItemOutput::builder()
                    .set_item(Some(dynamo::to_item(&workflow::running_record(&run))))
                    .build()
            });
        let d = deps(&[&claim, &run, &stored]);
        let out = handle(&d, scheduled()).await.unwrap();
        assert_eq!(out.claim.outcome, ClaimOutcome::Claimed);
        assert_eq!(run.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_duplicate_is_recorded_on_the_occurrence_and_runs_nothing() {
        let claim = put_into!("occ").then_error(ccf);
        let owner = mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| r.table_name() == Some("occ"))
            .then_output(|| {
                GetItemOutput::builder()
                    .set_item(Some(dynamo::to_item(&Occurrence {
                        claimed_at: "2026-11-28T13:15:00Z".into(),
                        source: "legacy".into(),
                        status: OccurrenceStatus::Claimed,
                        ..stored("legacy:batch1", OccurrenceStatus::Claimed)
                    })))
                    .build()
            });
        let dup = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                r.update_expression() == Some("ADD duplicateClaimers :c")
                    && r.expression_attribute_values().and_then(|v| v.get(":c"))
                        == Some(&AttributeValue::Ss(vec![ARN.into()]))
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let run = put_into!("runs").then_output(|| PutItemOutput::builder().build());
        let d = deps(&[&claim, &owner, &dup, &run]);
        let out = handle(&d, scheduled()).await.unwrap();
        assert_eq!(out.claim.outcome, ClaimOutcome::Duplicate);
        assert_eq!(out.claim.claimed_by, "legacy:batch1");
        assert_eq!((dup.num_calls(), run.num_calls()), (1, 0));
    }

    /// Issue 15: an item in the way that batchless did not write (no seal, or one that does
    /// not verify) is no owner: the claim replaces it on exactly what was found, keeps it as
    /// `replaced`, and the occurrence runs.
    #[tokio::test]
    async fn a_planted_item_in_the_way_is_replaced_and_the_occurrence_runs() {
        let planted = || Occurrence {
            seal: None,
            ..stored(
                "arn:aws:states:us-east-1:1:execution:x:planted",
                OccurrenceStatus::Claimed,
            )
        };
        let claim = put_into!("occ", |r: &PutItemInput| r.condition_expression()
            == Some("attribute_not_exists(#k)"))
        .then_error(ccf);
        let owner = mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| r.table_name() == Some("occ"))
            .then_output(move || {
                GetItemOutput::builder()
                    .set_item(Some(dynamo::to_item(&planted())))
                    .build()
            });
        let replace = put_into!("occ", |r: &PutItemInput| {
            r.condition_expression()
                == Some("#claimedBy = :claimedBy AND attribute_not_exists(#seal)")
                && attr(r, "claimedBy") == Some(ARN)
                && attr(r, "seal") == Some("c2VhbGVkLWJ5LXRlc3Q=")
                && r.item()
                    .and_then(|i| i.get("replaced"))
                    .and_then(|v| v.as_m().ok())
                    .and_then(|m| m.get("claimedBy"))
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|c| c.ends_with(":planted"))
        })
        .then_output(|| PutItemOutput::builder().build());
        let run = put_into!("runs").then_output(|| PutItemOutput::builder().build());
        let d = deps(&[&claim, &owner, &replace, &run]);
        let out = handle(&d, scheduled()).await.unwrap();
        assert_eq!(out.claim.outcome, ClaimOutcome::Claimed);
        assert_eq!(out.claim.claimed_by, ARN);
        assert_eq!((replace.num_calls(), run.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_late_delivery_is_claimed_but_stale() {
        let claim = put_into!("occ").then_output(|| PutItemOutput::builder().build());
        let run = put_into!("runs").then_output(|| PutItemOutput::builder().build());
        let d = deps(&[&claim, &run]);
        let r = workflow::validate(
            scheduled().input,
            &scheduled().execution,
            "staging",
            &d.jobs,
        )
        .unwrap();
        let late = time::parse("t", "2026-11-28T13:45:00Z").unwrap();
        let out = claim_at(&d, r, late).await;
        assert!(out.claim.stale);
        assert_eq!(out.claim.late_by_seconds, Some(1800));
        assert_eq!(claim.num_calls(), 1);
    }

    async fn claim_at(d: &Deps, run: JobRun, now: DateTime<Utc>) -> Output {
        claim(d, run, now).await.unwrap()
    }

    #[tokio::test]
    async fn a_bad_input_claims_nothing() {
        let d = deps(&[]);
        let err = handle(
            &d,
            input(json!({"job": "nope", "scheduledTime": "2026-11-28T13:15:00Z"})),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::InvalidInput);
        let manual = handle(
            &d,
            input(submitted(
                json!({"job": "sync-exchange-rates", "manual": {"colour": 1}}),
            )),
        )
        .await
        .unwrap_err();
        assert!(manual.to_string().contains("colour"), "{manual}");
        // A manual run or a backfill started without the endpoint names its starter itself.
        for body in [
            json!({"job": "sync-exchange-rates", "manual": {"requestedBy": "bob"}}),
            backfill()
                .input
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.remove("submission");
                    Value::Object(o)
                })
                .unwrap(),
        ] {
            let err = handle(&d, input(body)).await.unwrap_err();
            assert_eq!(err.kind(), crate::error::Kind::InvalidInput);
            assert!(err.to_string().contains("field `submission`"), "{err}");
        }
    }

    fn stored(by: &str, status: OccurrenceStatus) -> Occurrence {
        let at = time::parse("t", "2026-11-28T13:15:00Z").unwrap();
        Occurrence {
            claimed_at: "2026-11-28T13:45:00Z".into(),
            source: "missed-run-check".into(),
            status,
            // What the test KMS takes for batchless's seal.
            seal: Some("c2VhbGVk".into()),
            ..Occurrence::new("sync-exchange-rates", at, "staging", by)
        }
    }

    fn backfill() -> Input {
        input(submitted(
            json!({"job": "sync-exchange-rates", "scheduledTime": "2026-11-28T13:15:00Z",
                     "backfill": {"requestedBy": "alice"}}),
        ))
    }

    /// Issue 20: a delivery while the job is paused is claimed PAUSED; nothing else is written
    /// (no RUNNING run) and the workflow ends `Paused`.
    #[tokio::test]
    async fn a_delivery_while_paused_is_claimed_paused_and_runs_nothing() {
        let claim = put_into!("occ", |r: &PutItemInput| {
            r.condition_expression() == Some("attribute_not_exists(#k)")
                && attr(r, "status") == Some("PAUSED")
                && attr(r, "claimedBy") == Some(ARN)
        })
        .then_output(|| PutItemOutput::builder().build());
        let run = put_into!("runs").then_output(|| PutItemOutput::builder().build());
        let d = deps_with(&[&claim, &run], ScheduleState::Disabled);
        let out = handle(&d, scheduled()).await.unwrap();
        assert_eq!(out.claim.outcome, ClaimOutcome::Paused);
        assert_eq!((claim.num_calls(), run.num_calls()), (1, 0));
        assert_eq!(
            serde_json::to_value(&out).unwrap()["claim"]["outcome"],
            "paused"
        );
        // A manual run is no occurrence of the schedule: the pause does not stop it.
        let manual = put_into!("occ", |r: &PutItemInput| attr(r, "status")
            == Some("CLAIMED"))
        .then_output(|| PutItemOutput::builder().build());
        let run = put_into!("runs").then_output(|| PutItemOutput::builder().build());
        let d = deps_with(&[&manual, &run], ScheduleState::Disabled);
        let out = handle(
            &d,
            input(submitted(
                json!({"job": "sync-exchange-rates", "manual": {"requestedBy": "alice"}}),
            )),
        )
        .await
        .unwrap();
        assert_eq!(out.claim.outcome, ClaimOutcome::Claimed);
        assert_eq!((manual.num_calls(), run.num_calls()), (1, 1));
    }

    /// Backfill: never stale (it bypasses the catch-up window only), source `backfill`.
    #[tokio::test]
    async fn a_backfill_is_claimed_and_not_stale() {
        let claim = put_into!("occ", |r: &PutItemInput| attr(r, "source")
            == Some("backfill"))
        .then_output(|| PutItemOutput::builder().build());
        let run = put_into!("runs").then_output(|| PutItemOutput::builder().build());
        let d = deps(&[&claim, &run]);
        let mut body = backfill().input;
        body.as_object_mut().unwrap().remove("submission");
        let r = workflow::validate(body, &backfill().execution, "staging", &d.jobs).unwrap();
        assert_eq!(r.started_by, "backfill:alice");
        let late = time::parse("t", "2026-11-29T13:45:00Z").unwrap();
        let out = claim_at(&d, r, late).await;
        assert!(!out.claim.stale);
        assert_eq!(out.claim.outcome, ClaimOutcome::Claimed);
        assert_eq!((claim.num_calls(), run.num_calls()), (1, 1));
    }

    /// Backfill takes over a MISSED occurrence with a conditional write (status = MISSED).
    #[tokio::test]
    async fn a_backfill_takes_over_a_missed_occurrence_conditionally() {
        let claim = put_into!("occ").then_error(ccf);
        let owner = mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| r.table_name() == Some("occ"))
            .then_output(|| {
                GetItemOutput::builder()
                    .set_item(Some(dynamo::to_item(&stored(
                        "missed-run-check",
                        OccurrenceStatus::Missed,
                    ))))
                    .build()
            });
        let take = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                r.condition_expression()
                    .unwrap_or_default()
                    .contains("#status = :missed")
                    && r.expression_attribute_values()
                        .and_then(|v| v.get(":missed"))
                        == Some(&AttributeValue::S("MISSED".into()))
                    && r.expression_attribute_values()
                        .is_some_and(|v| v.values().any(|a| a == &AttributeValue::S(ARN.into())))
            })
            .then_output(|| {
                UpdateItemOutput::builder()
                    .set_attributes(Some(dynamo::to_item(&stored(
                        ARN,
                        OccurrenceStatus::Claimed,
                    ))))
                    .build()
            });
        let run = put_into!("runs").then_output(|| PutItemOutput::builder().build());
        let d = deps(&[&claim, &owner, &take, &run]);
        let out = handle(&d, backfill()).await.unwrap();
        assert_eq!(out.claim.outcome, ClaimOutcome::Claimed);
        assert_eq!((take.num_calls(), run.num_calls()), (1, 1));
    }

    /// ... but never a CLAIMED (it ran) or PAUSED one: those are duplicates, nothing runs.
    #[tokio::test]
    async fn a_backfill_never_takes_over_a_claimed_or_paused_occurrence() {
        for status in [OccurrenceStatus::Claimed, OccurrenceStatus::Paused] {
            let claim = put_into!("occ").then_error(ccf);
            let owner = mock!(aws_sdk_dynamodb::Client::get_item)
                .match_requests(|r| r.table_name() == Some("occ"))
                .then_output(move || {
                    GetItemOutput::builder()
                        .set_item(Some(dynamo::to_item(&stored("exec-0", status))))
                        .build()
                });
            let dup = mock!(aws_sdk_dynamodb::Client::update_item)
                .match_requests(|r| r.update_expression() == Some("ADD duplicateClaimers :c"))
                .then_output(|| UpdateItemOutput::builder().build());
            let take = mock!(aws_sdk_dynamodb::Client::update_item)
                .match_requests(|r| r.condition_expression().is_some())
                .then_output(|| UpdateItemOutput::builder().build());
            let run = put_into!("runs").then_output(|| PutItemOutput::builder().build());
            let d = deps(&[&claim, &owner, &dup, &take, &run]);
            let out = handle(&d, backfill()).await.unwrap();
            assert_eq!(out.claim.outcome, ClaimOutcome::Duplicate, "{status:?}");
            assert_eq!(
                (dup.num_calls(), take.num_calls(), run.num_calls()),
                (1, 0, 0)
            );
        }
    }
}
