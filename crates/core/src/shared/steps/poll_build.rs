//! `poll-build`: the safety net. When a build's wait times out (its state-change event was
//! lost or is late), the workflow asks for the build's status directly: status, current phase,
//! the failed phase and its context, in the same [`BuildOutcome`] shape a completed wait gets.

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
}

pub type Output = BuildOutcome;

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let outcome = build::fetch_outcome(&deps.codebuild, &input.build_id).await?;
    tracing::info!(build_id = %input.build_id, status = %outcome.status, finished = outcome.finished, "polled build");
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
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::NotFound);
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
