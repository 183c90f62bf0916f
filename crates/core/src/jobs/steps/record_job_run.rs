//! `record-job-run`: the job's history record (job, occurrence, task, exit code, duration,
//! log), the run's status on its occurrence, the lease released (only if still ours), and what
//! the workflow ends with: the status, the `JobFailed`/`JobTimedOut` cause (redacted log tail)
//! and the Slack post for a failure (sent by the `notify` step).

use aws_types::SdkConfig;

use crate::error::Error;
use crate::jobs::occurrence::Occurrences;
use crate::jobs::workflow::{self, JobState, Recorded};
use crate::jobs::Concurrency;
use crate::platform::{aws, config, time};
use crate::shared::lock;
use crate::shared::people::People;
use crate::shared::runs::Runs;

pub struct Deps {
    pub db: aws_sdk_dynamodb::Client,
    pub runs: Runs,
    pub occurrences: Occurrences,
    pub locks_table: String,
    pub jobs_channel: String,
    /// For the failure post's mentions; without it the post names nobody.
    pub people: Option<People>,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        let db = aws::dynamodb(sdk);
        let environment = config::environment()?;
        Ok(Deps {
            db: db.clone(),
            runs: Runs::new(db.clone(), config::required("RUNS_TABLE")?),
            occurrences: Occurrences::new(db, config::required("OCCURRENCES_TABLE")?),
            locks_table: config::required("LOCKS_TABLE")?,
            jobs_channel: config::required("SLACK_JOBS_CHANNEL")?,
            people: People::load(&environment).ok(),
        })
    }
}

/// The whole workflow state (`$`).
pub type Input = JobState;

pub type Output = Recorded;

pub async fn handle(deps: &Deps, state: Input) -> Result<Output, Error> {
    let recorded = workflow::record(&state, &deps.jobs_channel, deps.people.as_ref());
    let ended_at = time::rfc3339(time::now());
    // The whole item: a retried step writes the same record again.
    deps.runs
        .put(&workflow::final_record(&state, &recorded, &ended_at))
        .await?;
    let run = &state.run;
    deps.occurrences
        .set_run_status(&run.occurrence_key, &run.run_id, recorded.status)
        .await?;
    // Release the lease only if this run took it (a skipped or stale run never held it).
    if state.lease.as_ref().is_some_and(|l| l.acquired) && run.concurrency != Concurrency::Allow {
        lock::release(&deps.db, &deps.locks_table, &run.lease, &run.run_id).await?;
    }
    tracing::info!(job = %run.job, status = %recorded.status, "job run recorded");
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::lease::LeaseResult;
    use crate::jobs::workflow::{ClaimOutcome, ClaimResult, TaskState};
    use crate::jobs::JobsFile;
    use crate::shared::runs::RunStatus;
    use crate::shared::task::TaskOutcome;
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use serde_json::json;

    const ARN: &str = "arn:aws:states:us-east-1:1:execution:batchless-staging-scheduled-job:e1";

    fn deps(rules: &[&Rule]) -> Deps {
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules);
        Deps {
            db: db.clone(),
            runs: Runs::new(db.clone(), "runs"),
            occurrences: Occurrences::new(db, "occ"),
            locks_table: "locks".into(),
            jobs_channel: "CJOBS".into(),
            people: None,
        }
    }

    fn state(job: &str, exit_code: i32, acquired: bool) -> JobState {
        let run = workflow::validate(
            json!({"job": job, "scheduledTime": "2026-11-28T18:00:00Z"}),
            &crate::sfn::Execution {
                id: ARN.into(),
                name: "e1".into(),
                start_time: "2026-11-28T18:00:01Z".into(),
            },
            "staging",
            &JobsFile::embedded(),
        )
        .unwrap();
        serde_json::from_value(json!({
            "run": run,
            "claim": ClaimResult {
                outcome: ClaimOutcome::Claimed,
                occurrence_key: run.occurrence_key.clone(),
                claimed_by: ARN.into(),
                stale: false,
                late_by_seconds: Some(1),
            },
            "lease": LeaseResult { acquired, policy: run.concurrency, ..Default::default() },
            "task": TaskState { task_arn: "arn:aws:ecs:us-east-1:1:task/jobs/t1".into(), ..Default::default() },
            "outcome": TaskOutcome {
                task_arn: "arn:aws:ecs:us-east-1:1:task/jobs/t1".into(),
                finished: true,
                last_status: "STOPPED".into(),
                exit_code: Some(exit_code),
                ..Default::default()
            },
        }))
        .unwrap()
    }

    /// The run record with `status` (and `exitCode`), the occurrence's `runStatus`, the lease.
    fn rules(status: &'static str, exit_code: Option<&'static str>) -> (Rule, Rule, Rule) {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(move |r| {
                let item = r.item().unwrap();
                let s = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str);
                r.table_name() == Some("runs")
                    && r.condition_expression().is_none()
                    && s("runId") == Some(ARN)
                    && s("status") == Some(status)
                    && s("job") == Some("nightly-billing-report")
                    && s("occurrence") == Some("2026-11-28T18:00:00Z")
                    && item
                        .get("exitCode")
                        .and_then(|v| v.as_n().ok())
                        .map(String::as_str)
                        == exit_code
                    && s("endedAt").is_some()
            })
            .then_output(|| PutItemOutput::builder().build());
        let run_status = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(move |r| {
                r.table_name() == Some("occ")
                    && r.condition_expression()
                        .unwrap_or_default()
                        .contains("#claimedBy = :me")
                    && r.expression_attribute_values().is_some_and(|v| {
                        v.values()
                            .any(|a| a.as_s().ok().map(String::as_str) == Some(status))
                    })
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let release = mock!(aws_sdk_dynamodb::Client::delete_item)
            .match_requests(|r| r.table_name() == Some("locks"))
            .then_output(|| DeleteItemOutput::builder().build());
        (put, run_status, release)
    }

    #[tokio::test]
    async fn a_failure_is_recorded_everywhere_and_posted() {
        let (put, status, release) = rules("FAILED", Some("3"));
        let d = deps(&[&put, &status, &release]);
        let out = handle(&d, state("nightly-billing-report", 3, true))
            .await
            .unwrap();
        assert_eq!(out.status, RunStatus::Failed);
        assert!(out.failure_cause.unwrap().contains("exit code 3"));
        assert_eq!(out.slack.map(|s| s.channel).as_deref(), Some("CJOBS"));
        assert_eq!(
            (put.num_calls(), status.num_calls(), release.num_calls()),
            (1, 1, 1)
        );
    }

    #[tokio::test]
    async fn a_lease_never_acquired_is_not_released() {
        let (put, status, release) = rules("SKIPPED_RUNNING", None);
        let d = deps(&[&put, &status, &release]);
        let mut s = state("nightly-billing-report", 3, false);
        s.outcome = None;
        s.task = None;
        let out = handle(&d, s).await.unwrap();
        assert_eq!(out.status, RunStatus::SkippedRunning);
        assert_eq!(
            (put.num_calls(), status.num_calls(), release.num_calls()),
            (1, 1, 0)
        );
        let wire = serde_json::to_value(&out).unwrap();
        assert_eq!(wire["status"], "SKIPPED_RUNNING");
        assert_eq!(wire["output"]["status"], "SKIPPED_RUNNING");
        assert!(wire["output"]["taskArn"].is_null(), "{wire}");
        assert!(wire["output"]["skippedBecause"].is_string(), "{wire}");
    }
}
