//! `record-migration-run` (the `RecordRun` state): writes the finished run to the migration
//! history in the runs table (commit, build, status, duration, log, started by, failure cause)
//! and returns what the workflow outputs (`Migrated`) or fails with (`MigrationFailed`,
//! `Errored`). Idempotent: the record is the run's final state, written whole.

use aws_types::SdkConfig;

use crate::error::Error;
use crate::migration::{self, MigrationState, Recorded};
use crate::platform::{aws, config, time};
use crate::shared::runs::Runs;

pub struct Deps {
    pub runs: Runs,
}

impl Deps {
    /// The runs table (`RUNS_TABLE`).
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            runs: Runs::new(aws::dynamodb(sdk), &config::required("RUNS_TABLE")?),
        })
    }
}

/// The whole workflow state (the ASL passes `$`).
pub type Input = MigrationState;

pub type Output = Recorded;

pub async fn handle(deps: &Deps, state: Input) -> Result<Output, Error> {
    let recorded = migration::record(&state);
    let record = migration::run_record(&state, &recorded, &time::rfc3339(time::now()));
    deps.runs.put(&record).await?;
    tracing::info!(run_id = %record.run_id, status = %record.status, "run recorded");
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lambda::invoke;
    use crate::migration::tests::{outcome, state};
    use crate::migration::MigrationStatus;
    use crate::platform::dynamo;
    use crate::shared::runs::RunRecord;
    use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use serde_json::json;

    fn deps(rules: &[&Rule]) -> Deps {
        Deps {
            runs: Runs::new(
                mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules),
                "runs",
            ),
        }
    }

    #[tokio::test]
    async fn a_failed_build_is_recorded_with_its_phase_and_log() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                let rec: RunRecord = dynamo::from_item(r.item().unwrap()).unwrap();
                r.table_name() == Some("runs")
                    && rec.status == "FAILED"
                    && rec.failed_phase.as_deref() == Some("BUILD")
                    && rec.build_status.as_deref() == Some("FAILED")
                    && rec.ended_at.is_some()
                    && rec
                        .log_uri
                        .as_deref()
                        .is_some_and(|u| u.starts_with("s3://"))
                    && rec
                        .failure_cause
                        .as_deref()
                        .is_some_and(|c| c.contains("in phase BUILD"))
            })
            .then_output(|| PutItemOutput::builder().build());
        let d = deps(&[&put]);
        let v = serde_json::to_value(state(Some(outcome(false)), None)).unwrap();
        let out = invoke(&d, &handle, v).await.unwrap();
        assert_eq!(put.num_calls(), 1);
        assert_eq!(out["status"], "FAILED");
        assert!(out["failureCause"]
            .as_str()
            .unwrap()
            .contains("relation \"widgets\" does not exist"));
    }

    #[tokio::test]
    async fn success_returns_the_workflow_output() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .then_output(|| PutItemOutput::builder().build());
        let out = handle(&deps(&[&put]), state(Some(outcome(true)), None))
            .await
            .unwrap();
        assert_eq!(out.status, MigrationStatus::Succeeded);
        assert_eq!(out.output.build_id.as_deref(), Some("migrate:1"));
        assert_eq!(out.failure_cause, None);
    }

    #[tokio::test]
    async fn a_throttled_write_is_retryable_and_unknown_state_is_refused() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .then_error(|| PutItemError::generic(crate::testing::meta("ThrottlingException")));
        let d = deps(&[&put]);
        let err = handle(&d, state(Some(outcome(true)), None))
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        let mut v = serde_json::to_value(state(Some(outcome(true)), None)).unwrap();
        v["surprise"] = json!(1);
        let err = invoke(&d, &handle, v).await.unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::InvalidInput);
    }
}
