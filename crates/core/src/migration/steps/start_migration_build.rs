//! `start-migration-build` (the `StartBuild` and `StartApprovedBuild` states): CodeBuild
//! `StartBuild` on the migration project at the run's commit, with the run's environment
//! overrides, and the run recorded as `RUNNING` with its build.
//!
//! - The first build runs the pre-flight and, when its findings need an approval that is not
//!   there, stops before `db:migrate`.
//! - The approved build (`approval` approved, issue 19) starts only after this step has read
//!   the approval itself and found it holding up for this run, commit and pending set (the
//!   workflow's state is not trusted for it); the build gets the approved digest
//!   (`BATCHLESS_MIGRATION_APPROVED_DIGEST`, which the shim lets through only if its own
//!   pre-flight finds that very digest), writes its reports under `approved/`, and replaces
//!   the first build on the run record (kept as `preflightBuildId`).
//!
//! Idempotent: a retried step finds the build already recorded on the run, CodeBuild's
//! idempotency token (derived from the run id, and the approval for the approved build)
//! returns the same build within 5 minutes, and the record is written only once (a second
//! writer reads the first's build).

use std::collections::BTreeMap;

use aws_types::SdkConfig;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::migration::approval::{self, ApprovalState};
use crate::migration::preflight::{self, Settings};
use crate::migration::{self, MigrationRun};
use crate::platform::dynamo::Table;
use crate::platform::{aws, config};
use crate::shared::approval::record::ApprovalRecord;
use crate::shared::approval::{counted, Sealer};
use crate::shared::build::{self, StartedBuild};
use crate::shared::people::People;
use crate::shared::runs::Runs;

pub struct Deps {
    pub db: aws_sdk_dynamodb::Client,
    pub codebuild: aws_sdk_codebuild::Client,
    pub runs_table: String,
    pub approvals_table: String,
    pub people: People,
    pub project: String,
    /// Where the build's reports go (the logs bucket).
    pub bucket: String,
    pub settings: Settings,
    /// Verifies the decisions' seals (`DECISION_SIGNING_KEY`).
    pub sealer: Sealer,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        let environment = config::environment()?;
        Ok(Deps {
            db: aws::dynamodb(sdk),
            codebuild: aws::codebuild(sdk),
            runs_table: config::required("RUNS_TABLE")?,
            approvals_table: config::required("APPROVALS_TABLE")?,
            people: People::load(&environment)?,
            project: config::required("MIGRATION_PROJECT")?,
            bucket: config::required("LOGS_BUCKET")?,
            settings: Settings::from_env(&environment)?,
            sealer: Sealer::from_env(sdk)?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub run: MigrationRun,
    /// `$.approval`: `null`, or `AskApproval`'s reading (the approved build when approved).
    #[serde(default)]
    pub approval: Option<ApprovalState>,
}

pub type Output = StartedBuild;

/// CodeBuild's idempotency token for a run's build: the same for every retry of its step
/// (the approved build's is derived from the approval too).
pub fn idempotency_token(run_id: &str, approval_id: Option<&str>) -> String {
    let seed = match approval_id {
        Some(a) => format!("{run_id}\n{a}"),
        None => run_id.to_string(),
    };
    hex::encode(&Sha256::digest(seed.as_bytes())[..16])
}

/// The build's environment: the run's overrides, then `BATCHLESS_RUN_ID` and the migration
/// session's settings with the approved digest, if any (which win over any override).
pub fn build_environment(
    run: &MigrationRun,
    settings: &Settings,
    approved_digest: Option<&str>,
) -> BTreeMap<String, String> {
    let mut env = run.environment_overrides.clone();
    env.insert("BATCHLESS_RUN_ID".into(), run.run_id.clone());
    env.extend(settings.build_environment(approved_digest));
    env
}

/// The approval, read and re-counted here: the approvers, or `MigrationNeedsApproval`.
async fn verified(deps: &Deps, run: &MigrationRun, a: &ApprovalState) -> Result<(), Error> {
    let rec = Table::<ApprovalRecord>::new(deps.db.clone(), &deps.approvals_table)
        .get(&a.approval_id)
        .await?;
    let why = match &rec {
        None => format!("approval {} does not exist", a.approval_id),
        Some(rec) => match approval::holds_up(
            rec,
            run,
            &a.digest,
            &counted(&deps.sealer, &deps.people, rec).await?,
        ) {
            Ok(approvers) => {
                tracing::info!(approval = %a.approval_id, ?approvers, digest = %a.digest, "approval verified");
                return Ok(());
            }
            Err(why) => why,
        },
    };
    tracing::warn!(approval = %a.approval_id, %why, "refused to start the approved build");
    Err(Error::MigrationNeedsApproval(match &rec {
        Some(rec) => approval::not_approved_message(run, rec, &why),
        None => why,
    }))
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let Input { run, approval } = input;
    let approved = approval.filter(|a| a.approved);
    let runs = Runs::new(deps.db.clone(), &deps.runs_table);
    let existing = runs.get(&run.run_id).await?;
    if let Some(a) = &approved {
        verified(deps, &run, a).await?;
        if let Some(rec) = &existing {
            if rec.approval_id.as_deref() == Some(a.approval_id.as_str()) {
                if let Some(build_id) = &rec.build_id {
                    tracing::info!(%build_id, "approved build already started for this run");
                    return Ok(StartedBuild {
                        build_id: build_id.clone(),
                    });
                }
            }
        }
    } else if let Some(build_id) = existing.as_ref().and_then(|e| e.build_id.clone()) {
        tracing::info!(%build_id, "build already started for this run");
        return Ok(StartedBuild { build_id });
    }
    let buildspec = preflight::buildspec();
    let path = format!("{}/{}", preflight::REPORT_PREFIX, run.execution_name);
    let approval_id = approved.as_ref().map(|a| a.approval_id.as_str());
    let started = build::start(
        &deps.codebuild,
        build::StartRequest {
            project: &deps.project,
            source_version: &run.commit,
            environment: &build_environment(
                &run,
                &deps.settings,
                approved.as_ref().map(|a| a.digest.as_str()),
            ),
            idempotency_token: &idempotency_token(&run.run_id, approval_id),
            artifacts: Some((
                &deps.bucket,
                &path,
                preflight::report_name(approved.is_some()),
            )),
            buildspec: Some(buildspec),
            timeout_minutes: None,
        },
    )
    .await?;
    let build_id = match &approved {
        None => {
            let mut record = migration::running_record(&run, &started);
            record.buildspec_sha256 = Some(migration::buildspec_sha256());
            match runs.create(&record).await? {
                Some(existing) => existing.build_id.unwrap_or(started),
                None => started,
            }
        }
        Some(a) => {
            let first = existing.as_ref().and_then(|r| r.build_id.clone());
            let replaced = runs
                .set_fields(
                    &run.run_id,
                    &[
                        ("buildId", json!(started)),
                        ("approvalId", json!(a.approval_id)),
                        ("preflightBuildId", json!(first)),
                    ],
                    Some("attribute_not_exists(#approvalId)"),
                    &[],
                )
                .await?;
            match replaced {
                Some(_) => started,
                None => runs
                    .get(&run.run_id)
                    .await?
                    .and_then(|r| r.build_id)
                    .unwrap_or(started),
            }
        }
    };
    tracing::info!(%build_id, commit = %run.commit, project = %deps.project, approved = approved.is_some(), "migration build started");
    Ok(StartedBuild { build_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::dynamo;
    use crate::shared::runs::RunRecord;
    use aws_sdk_codebuild::operation::start_build::StartBuildOutput;
    use aws_sdk_codebuild::types::Build;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;

    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use serde_json::json;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
    const RUN: &str = "arn:aws:states:us-east-1:1:execution:batchless-staging-migration:e1";

    fn run() -> MigrationRun {
        let mut run = crate::migration::tests::validate_json(
            json!({"commit": SHA, "environmentOverrides": {"RAILS_LOG_LEVEL": "debug"}}),
            &crate::sfn::Execution {
                id: RUN.into(),
                name: "e1".into(),
                start_time: "2026-11-28T13:00:00Z".into(),
            },
            "staging",
        )
        .unwrap();
        run.started_by = "alice".into();
        run
    }

    /// The first build's input (no approval).
    fn first() -> Input {
        Input {
            run: run(),
            approval: None,
        }
    }

    fn deps(db: &[&Rule], cb: &[&Rule]) -> Deps {
        Deps {
            db: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, db),
            codebuild: mock_client!(aws_sdk_codebuild, RuleMode::MatchAny, cb),
            runs_table: "runs".into(),
            approvals_table: "approvals".into(),
            people: People::parse(crate::shared::people::EMBEDDED, "staging").unwrap(),
            project: "migrate".into(),
            bucket: "logs".into(),
            settings: Settings::from_values("staging", "", "5s", "30min", "3", "2").unwrap(),
            sealer: crate::shared::approval::seal::tests::sealer(true),
        }
    }

    fn stored(build_id: Option<&str>) -> Rule {
        let item = build_id.map(|b| dynamo::to_item(&migration::running_record(&run(), b)));
        mock!(aws_sdk_dynamodb::Client::get_item)
            .then_output(move || GetItemOutput::builder().set_item(item.clone()).build())
    }

    fn start(build_id: &'static str) -> Rule {
        mock!(aws_sdk_codebuild::Client::start_build)
            .match_requests(|r| {
                let env: BTreeMap<_, _> = r
                    .environment_variables_override()
                    .iter()
                    .map(|v| (v.name(), v.value()))
                    .collect();
                r.project_name() == Some("migrate")
                    && r.source_version() == Some(SHA)
                    && r.idempotency_token() == Some(idempotency_token(RUN, None).as_str())
                    && env.get("BATCHLESS_RUN_ID") == Some(&RUN)
                    && env.get("RAILS_LOG_LEVEL") == Some(&"debug")
                    && env.get("BATCHLESS_MIGRATION_POLICY") == Some(&"report")
                    && env.get("BATCHLESS_LOCK_TIMEOUT") == Some(&"5s")
                    && r.buildspec_override()
                        .is_some_and(|b| b.contains("bin/rails batchless:preflight"))
                    && r.artifacts_override().is_some_and(|a| {
                        a.location() == Some("logs")
                            && a.path() == Some("migrations/e1")
                            && a.name() == Some("report")
                    })
            })
            .then_output(move || {
                StartBuildOutput::builder()
                    .set_build(Some(Build::builder().id(build_id).build()))
                    .build()
            })
    }

    #[tokio::test]
    async fn starts_the_build_and_records_the_run_running() {
        let get = stored(None);
        let sb = start("migrate:new");
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                let rec: RunRecord = dynamo::from_item(r.item().unwrap()).unwrap();
                r.condition_expression() == Some("attribute_not_exists(#k)")
                    && rec.status == "RUNNING"
                    && rec.build_id.as_deref() == Some("migrate:new")
                    && rec.started_by == "alice"
                    && rec.commit.as_deref() == Some(SHA)
            })
            .then_output(|| PutItemOutput::builder().build());
        let d = deps(&[&get, &put], &[&sb]);
        let out = handle(&d, first()).await.unwrap();
        assert_eq!(out.build_id, "migrate:new");
        assert_eq!((sb.num_calls(), put.num_calls()), (1, 1));
        assert_eq!(
            serde_json::to_value(&out).unwrap(),
            json!({"buildId": "migrate:new"})
        );
    }

    #[tokio::test]
    async fn a_retried_step_returns_the_recorded_build_without_starting_another() {
        let get = stored(Some("migrate:first"));
        let sb = start("migrate:second");
        let d = deps(&[&get], &[&sb]);
        let out = handle(&d, first()).await.unwrap();
        assert_eq!(out.build_id, "migrate:first");
        assert_eq!(sb.num_calls(), 0);
    }

    #[tokio::test]
    async fn a_concurrent_writer_wins_and_its_build_is_returned() {
        // Nothing recorded at first; the conditional write loses; the winner's record is read.
        let empty = mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|_| true)
            .then_output(|| GetItemOutput::builder().build());
        let winner = stored(Some("migrate:winner"));
        let lost = crate::testing::put_item_exists();
        let sb = start("migrate:mine");
        let d = Deps {
            db: mock_client!(
                aws_sdk_dynamodb,
                RuleMode::Sequential,
                [&empty, &lost, &winner]
            ),
            ..deps(&[], &[&sb])
        };
        let out = handle(&d, first()).await.unwrap();
        assert_eq!(out.build_id, "migrate:winner");
        assert_eq!((lost.num_calls(), winner.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_full_build_queue_is_a_retryable_named_error() {
        let get = stored(None);
        let sb = mock!(aws_sdk_codebuild::Client::start_build).then_error(|| {
            aws_sdk_codebuild::operation::start_build::StartBuildError::AccountLimitExceededException(
                aws_sdk_codebuild::types::error::AccountLimitExceededException::builder()
                    .meta(crate::testing::meta("AccountLimitExceededException"))
                    .build(),
            )
        });
        let d = deps(&[&get], &[&sb]);
        let err = handle(&d, first()).await.unwrap_err();
        assert_eq!(err.kind().name(), "AccountLimitExceeded");
        assert!(err.is_retryable());
    }
}
