//! CodeBuild: start a build, and read a build's outcome (status, failed phase and its
//! context, log location) in the one shape every waiting path returns.

use std::collections::BTreeMap;

use aws_sdk_codebuild::types::{Build, EnvironmentVariable, EnvironmentVariableType, StatusType};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::platform::aws::normalize_build_id;
use crate::platform::aws::AwsResultExt;

/// What a finished (or still running) build looks like to a workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildOutcome {
    pub build_id: String,
    pub finished: bool,
    pub status: String,
    pub succeeded: bool,
    #[serde(default)]
    pub current_phase: Option<String>,
    #[serde(default)]
    pub failed_phase: Option<String>,
    #[serde(default)]
    pub phase_context: Option<String>,
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub end_time: Option<String>,
    #[serde(default)]
    pub duration_seconds: Option<i64>,
    #[serde(default)]
    pub log_group: Option<String>,
    #[serde(default)]
    pub log_stream: Option<String>,
    #[serde(default)]
    pub resolved_source_version: Option<String>,
}

fn dt(t: &aws_smithy_types::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// Pure: a CodeBuild `Build` as a [`BuildOutcome`].
pub fn outcome(build: &Build) -> BuildOutcome {
    let status = build
        .build_status()
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|| "IN_PROGRESS".to_string());
    let finished = build.build_complete() || status != StatusType::InProgress.as_str();
    // The first phase that did not succeed is the one that failed the build; later phases
    // (post_build still runs after a failed build) may have succeeded.
    let failed = build.phases().iter().find(|p| {
        p.phase_status()
            .is_some_and(|s| !matches!(s.as_str(), "SUCCEEDED" | "IN_PROGRESS"))
    });
    let failed_phase = failed
        .and_then(|p| p.phase_type())
        .map(|t| t.as_str().to_string());
    let phase_context = failed.and_then(|p| {
        let msgs: Vec<String> = p
            .contexts()
            .iter()
            .filter_map(|c| {
                let code = c.status_code().unwrap_or_default();
                let msg = c.message().unwrap_or_default();
                (!code.is_empty() || !msg.is_empty()).then(|| format!("{code}: {msg}"))
            })
            .collect();
        (!msgs.is_empty()).then(|| crate::platform::redact::redact(&msgs.join("; ")).into_owned())
    });
    let start = build.start_time().and_then(dt);
    let end = build.end_time().and_then(dt);
    let logs = build.logs();
    BuildOutcome {
        build_id: build.id().unwrap_or_default().to_string(),
        finished,
        succeeded: status == StatusType::Succeeded.as_str(),
        status,
        current_phase: build.current_phase().map(str::to_string),
        failed_phase: if finished { failed_phase } else { None },
        phase_context: if finished { phase_context } else { None },
        start_time: start.map(crate::platform::time::rfc3339),
        end_time: end.map(crate::platform::time::rfc3339),
        duration_seconds: match (start, end) {
            (Some(s), Some(e)) => Some(crate::platform::time::seconds_between(s, e)),
            _ => None,
        },
        log_group: logs.and_then(|l| l.group_name()).map(str::to_string),
        log_stream: logs.and_then(|l| l.stream_name()).map(str::to_string),
        resolved_source_version: build.resolved_source_version().map(str::to_string),
    }
}

/// The build a `StartBuild` step started (its output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StartedBuild {
    pub build_id: String,
}

/// One build as CodeBuild describes it.
pub async fn fetch(codebuild: &aws_sdk_codebuild::Client, build_id: &str) -> Result<Build, Error> {
    let id = normalize_build_id(build_id);
    let out = codebuild
        .batch_get_builds()
        .ids(id)
        .send()
        .await
        .aws("BatchGetBuilds")?;
    out.builds()
        .first()
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("build {id}")))
}

pub async fn fetch_outcome(
    codebuild: &aws_sdk_codebuild::Client,
    build_id: &str,
) -> Result<BuildOutcome, Error> {
    Ok(outcome(&fetch(codebuild, build_id).await?))
}

#[derive(Debug, Clone)]
pub struct StartRequest<'a> {
    pub project: &'a str,
    pub source_version: &'a str,
    pub environment: &'a BTreeMap<String, String>,
    /// CodeBuild keeps it for 5 minutes: enough to make a retried step start one build.
    pub idempotency_token: &'a str,
    /// Where the buildspec's `artifacts` go: `(bucket, path, name)` in S3, unpackaged.
    pub artifacts: Option<(&'a str, &'a str, &'a str)>,
    /// The build's `buildspecOverride` (the migration workflow's own buildspec).
    pub buildspec: Option<&'a str>,
}

/// Start a build; returns its id (`project:uuid`).
pub async fn start(
    codebuild: &aws_sdk_codebuild::Client,
    req: StartRequest<'_>,
) -> Result<String, Error> {
    let env: Vec<EnvironmentVariable> = req
        .environment
        .iter()
        .map(|(k, v)| {
            EnvironmentVariable::builder()
                .name(k)
                .value(v)
                .r#type(EnvironmentVariableType::Plaintext)
                .build()
                .expect("name and value are set")
        })
        .collect();
    let out = codebuild
        .start_build()
        .project_name(req.project)
        .source_version(req.source_version)
        .set_environment_variables_override((!env.is_empty()).then_some(env))
        .idempotency_token(req.idempotency_token)
        .set_buildspec_override(req.buildspec.map(str::to_string))
        .set_artifacts_override(req.artifacts.map(|(bucket, path, name)| {
            aws_sdk_codebuild::types::ProjectArtifacts::builder()
                .r#type(aws_sdk_codebuild::types::ArtifactsType::S3)
                .location(bucket)
                .path(path)
                .name(name)
                .packaging(aws_sdk_codebuild::types::ArtifactPackaging::None)
                .namespace_type(aws_sdk_codebuild::types::ArtifactNamespace::None)
                .build()
                .expect("type is set")
        }))
        .send()
        .await
        .aws("StartBuild")?;
    out.build_value()
        .and_then(|b| b.id())
        .map(str::to_string)
        .ok_or_else(|| Error::NotFound("StartBuild returned no build id".into()))
}

/// Stop a build; a build that already ended is not an error. Returns whether it was running.
pub async fn stop(codebuild: &aws_sdk_codebuild::Client, build_id: &str) -> Result<bool, Error> {
    let current = fetch_outcome(codebuild, build_id).await?;
    if current.finished {
        return Ok(false);
    }
    codebuild
        .stop_build()
        .id(normalize_build_id(build_id))
        .send()
        .await
        .aws("StopBuild")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_codebuild::operation::batch_get_builds::BatchGetBuildsOutput;
    use aws_sdk_codebuild::operation::start_build::{StartBuildError, StartBuildOutput};
    use aws_sdk_codebuild::types::{BuildPhase, BuildPhaseType, LogsLocation, PhaseContext};
    use aws_smithy_mocks::{mock, mock_client};

    fn phase(t: BuildPhaseType, status: StatusType, ctx: Option<&str>) -> BuildPhase {
        let mut b = BuildPhase::builder().phase_type(t).phase_status(status);
        if let Some(m) = ctx {
            b = b.contexts(
                PhaseContext::builder()
                    .status_code("COMMAND_EXECUTION_ERROR")
                    .message(m)
                    .build(),
            );
        }
        b.build()
    }

    pub(crate) fn failed_build() -> Build {
        Build::builder()
            .id("migrate:1234")
            .build_status(StatusType::Failed)
            .build_complete(true)
            .current_phase("COMPLETED")
            .start_time(aws_smithy_types::DateTime::from_secs(1_700_000_000))
            .end_time(aws_smithy_types::DateTime::from_secs(1_700_000_042))
            .resolved_source_version("0123456789abcdef0123456789abcdef01234567")
            .phases(phase(BuildPhaseType::Install, StatusType::Succeeded, None))
            .phases(phase(
                BuildPhaseType::Build,
                StatusType::Failed,
                Some("Error while executing command: bin/rails db:migrate. Reason: exit status 1"),
            ))
            .phases(phase(
                BuildPhaseType::PostBuild,
                StatusType::Succeeded,
                None,
            ))
            .logs(
                LogsLocation::builder()
                    .group_name("/aws/codebuild/migrate")
                    .stream_name("1234")
                    .build(),
            )
            .build()
    }

    #[test]
    fn failed_phase_is_the_first_that_did_not_succeed() {
        let o = outcome(&failed_build());
        assert!(o.finished && !o.succeeded);
        assert_eq!(o.status, "FAILED");
        assert_eq!(o.failed_phase.as_deref(), Some("BUILD"));
        assert!(o.phase_context.unwrap().contains("exit status 1"));
        assert_eq!(o.duration_seconds, Some(42));
        assert_eq!(o.log_stream.as_deref(), Some("1234"));
    }

    #[test]
    fn running_build_is_not_finished() {
        let b = Build::builder()
            .id("migrate:1")
            .build_status(StatusType::InProgress)
            .current_phase("BUILD")
            .build();
        let o = outcome(&b);
        assert!(!o.finished && !o.succeeded);
        assert_eq!(o.failed_phase, None);
    }

    #[test]
    fn build_ids_normalize() {
        assert_eq!(
            normalize_build_id("arn:aws:codebuild:us-east-1:123456789012:build/migrate:1234"),
            "migrate:1234"
        );
        assert_eq!(normalize_build_id("migrate:1234"), "migrate:1234");
    }

    #[tokio::test]
    async fn fetch_outcome_reads_the_build() {
        let get = mock!(aws_sdk_codebuild::Client::batch_get_builds)
            .match_requests(|r| r.ids() == ["migrate:1234"])
            .then_output(|| {
                BatchGetBuildsOutput::builder()
                    .builds(failed_build())
                    .build()
            });
        let cb = mock_client!(aws_sdk_codebuild, [&get]);
        let o = fetch_outcome(&cb, "arn:aws:codebuild:us-east-1:1:build/migrate:1234")
            .await
            .unwrap();
        assert_eq!(o.build_id, "migrate:1234");
        let missing = mock!(aws_sdk_codebuild::Client::batch_get_builds).then_output(|| {
            BatchGetBuildsOutput::builder()
                .builds_not_found("x:1")
                .build()
        });
        let cb = mock_client!(aws_sdk_codebuild, [&missing]);
        assert_eq!(
            fetch_outcome(&cb, "x:1").await.unwrap_err().error_type(),
            "NotFound"
        );
    }

    #[tokio::test]
    async fn start_passes_commit_token_and_overrides() {
        let env: BTreeMap<String, String> =
            [("RAILS_LOG_LEVEL".to_string(), "debug".to_string())].into();
        let start_rule = mock!(aws_sdk_codebuild::Client::start_build)
            .match_requests(|r| {
                r.source_version() == Some("abc")
                    && r.idempotency_token() == Some("tok")
                    && r.environment_variables_override().len() == 1
            })
            .then_output(|| {
                StartBuildOutput::builder()
                    .build_value(Build::builder().id("migrate:9").build())
                    .build()
            });
        let cb = mock_client!(aws_sdk_codebuild, [&start_rule]);
        let id = start(
            &cb,
            StartRequest {
                project: "migrate",
                source_version: "abc",
                environment: &env,
                idempotency_token: "tok",
                artifacts: None,
                buildspec: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(id, "migrate:9");
    }

    #[tokio::test]
    async fn account_limit_is_named() {
        let rule = mock!(aws_sdk_codebuild::Client::start_build).then_error(|| {
            StartBuildError::AccountLimitExceededException(
                aws_sdk_codebuild::types::error::AccountLimitExceededException::builder()
                    .message("queue full")
                    .meta(crate::testing::meta("AccountLimitExceededException"))
                    .build(),
            )
        });
        let cb = mock_client!(aws_sdk_codebuild, [&rule]);
        let env = BTreeMap::new();
        let err = start(
            &cb,
            StartRequest {
                project: "p",
                source_version: "s",
                environment: &env,
                idempotency_token: "t",
                artifacts: None,
                buildspec: None,
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.error_type(), "AccountLimitExceeded");
    }
}
