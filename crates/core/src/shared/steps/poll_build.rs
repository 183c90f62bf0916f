//! `poll-build`: the build's status straight from CodeBuild (status, current phase, the failed
//! phase and its context) in the one [`BuildOutcome`] shape. Two states call it:
//! - `RecheckBuild`, right after every wake of a build's `.waitForTaskToken` (`woken: true`):
//!   a callback only wakes the workflow, it never decides the outcome (README "Trust model"),
//!   so the workflow routes on what CodeBuild says, never on what the callback carried. A wake
//!   while the build still runs (a forged or stray `SendTaskSuccess`: `complete-wait` sends only
//!   for a final status) is logged as such and the workflow waits again;
//!   `RecheckDryRun` does the same for a data patch's dry run (`dryRun: true`);
//! - `PollBuild`, the safety net when the wait times out (the state-change event was lost or is
//!   late).

use aws_types::SdkConfig;
use serde::Deserialize;

use crate::error::Error;
use crate::platform::aws;
use crate::shared::build::{self, BuildOutcome};

pub struct Deps {
    pub codebuild: aws_sdk_codebuild::Client,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            codebuild: aws::codebuild(sdk),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Input {
    /// The build id or ARN.
    pub build_id: String,
    /// Whether a callback woke the wait (`RecheckBuild`) rather than its timeout.
    #[serde(default)]
    pub woken: bool,
    /// The build is a data patch's dry run (`RecheckDryRun`); only logged, and what tells the
    /// two re-checks apart in the execution history.
    #[serde(default)]
    pub dry_run: bool,
}

pub type Output = BuildOutcome;

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let outcome = build::fetch_outcome(&deps.codebuild, &input.build_id).await?;
    if input.woken && !outcome.finished {
        tracing::warn!(
            build_id = %input.build_id,
            status = %outcome.status,
            dry_run = input.dry_run,
            "the build's wait was woken while the build still runs (a forged or stray SendTaskSuccess): waiting again"
        );
    } else {
        tracing::info!(build_id = %input.build_id, status = %outcome.status, finished = outcome.finished, woken = input.woken, dry_run = input.dry_run, "polled build");
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_codebuild::operation::batch_get_builds::BatchGetBuildsOutput;
    use aws_sdk_codebuild::types::{Build, BuildPhase, BuildPhaseType, StatusType};
    use aws_smithy_mocks::{mock, mock_client};

    #[tokio::test]
    async fn asks_codebuild_for_the_bare_build_id_and_reports_the_failed_phase() {
        let get = mock!(aws_sdk_codebuild::Client::batch_get_builds)
            .match_requests(|r| r.ids() == ["migrate:1".to_string()])
            .then_output(|| {
                BatchGetBuildsOutput::builder()
                    .builds(
                        Build::builder()
                            .id("migrate:1")
                            .build_status(StatusType::Failed)
                            .build_complete(true)
                            .phases(
                                BuildPhase::builder()
                                    .phase_type(BuildPhaseType::Build)
                                    .phase_status(StatusType::Failed)
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            });
        let deps = Deps {
            codebuild: mock_client!(aws_sdk_codebuild, [&get]),
        };
        let input = crate::platform::input::parse_strict::<Input>(serde_json::json!({
            "buildId": "arn:aws:codebuild:us-east-1:123456789012:build/migrate:1"
        }))
        .unwrap();
        let out = handle(&deps, input).await.unwrap();
        assert!(out.finished && !out.succeeded);
        assert_eq!(out.status, "FAILED");
        assert_eq!(out.failed_phase.as_deref(), Some("BUILD"));
        assert_eq!(get.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_unknown_build_is_not_found() {
        let get = mock!(aws_sdk_codebuild::Client::batch_get_builds)
            .then_output(|| BatchGetBuildsOutput::builder().build());
        let deps = Deps {
            codebuild: mock_client!(aws_sdk_codebuild, [&get]),
        };
        let err = handle(
            &deps,
            Input {
                build_id: "migrate:404".into(),
                woken: false,
                dry_run: false,
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::NotFound);
    }

    #[tokio::test]
    async fn a_wake_while_the_build_runs_reports_it_running() {
        // What a forged `{"finished": true, "succeeded": true}` callback is answered with:
        // the build as CodeBuild has it.
        let get = mock!(aws_sdk_codebuild::Client::batch_get_builds).then_output(|| {
            BatchGetBuildsOutput::builder()
                .builds(
                    Build::builder()
                        .id("migrate:2")
                        .build_status(StatusType::InProgress)
                        .build(),
                )
                .build()
        });
        let deps = Deps {
            codebuild: mock_client!(aws_sdk_codebuild, [&get]),
        };
        let input = crate::platform::input::parse_strict::<Input>(
            serde_json::json!({"buildId": "migrate:2", "woken": true}),
        )
        .unwrap();
        let out = handle(&deps, input).await.unwrap();
        assert!(!out.finished && !out.succeeded, "{out:?}");
        assert_eq!(out.status, "IN_PROGRESS");
    }

    #[test]
    fn input_is_strict() {
        let err = crate::platform::input::parse_strict::<Input>(
            serde_json::json!({"buildId": "b:1", "status": "x"}),
        )
        .unwrap_err();
        assert!(err.message.contains("unknown field `status`"), "{err}");
    }
}
