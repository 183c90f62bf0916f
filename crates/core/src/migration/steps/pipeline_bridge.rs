//! `pipeline-bridge`: the CodePipeline Lambda invoke action. Finds its own action execution
//! (`ListActionExecutions` of the pipeline execution its `UserParameters` name: the one
//! in-progress Lambda action on this function with the job's parameters), starts the migration
//! workflow named after it with its input sealed as the pipeline's
//! ([`pipeline::seal_bridge_start`]: `ValidateInput` accepts no other name for it, and no start
//! of that name without the seal), follows the execution that exists on a redelivered job or a
//! made-up job for the same action (the bridge's seal on it verifies), keeps the job
//! in progress with a `continuationToken` (the execution ARN) while it runs, then reports
//! success with output variables or failure with the cause. The job event is never logged
//! (it carries temporary artifact credentials, dropped at parse time): only the job id and
//! the decision are.

use aws_sdk_codepipeline::types::{ExecutionDetails, FailureDetails, FailureType};
use aws_types::SdkConfig;
use serde::Serialize;

use crate::error::Error;
use crate::migration::pipeline::{self, decide, execution_name, workflow_input};
use crate::migration::pipeline::{Decision, JobEvent};
use crate::platform::aws::{self, AwsResultExt};
use crate::platform::{config, time};
use crate::sfn::execution;
use crate::shared::approval::Sealer;

pub struct Deps {
    pub sfn: aws_sdk_sfn::Client,
    pub codepipeline: aws_sdk_codepipeline::Client,
    /// Seals what the bridge starts (the decision signing key, `DECISION_SIGNING_KEY`).
    pub sealer: Sealer,
    pub environment: String,
    pub state_machine_arn: String,
    /// This function's name (`batchless-<env>-pipeline-bridge`), as the pipeline's action names it.
    pub bridge_function: String,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        let environment = config::environment()?;
        Ok(Deps {
            sfn: aws::sfn(sdk),
            codepipeline: aws::codepipeline(sdk),
            sealer: Sealer::from_env(sdk)?,
            bridge_function: pipeline::bridge_function(&environment),
            environment,
            state_machine_arn: config::required("MIGRATION_STATE_MACHINE_ARN")?,
        })
    }
}

/// AWS's job event (see [`JobEvent`]: no credentials kept, `Debug` shows the id only).
pub type Input = JobEvent;

/// What was reported, for the invocation's result (CodePipeline ignores it; tests read it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reported {
    Continue,
    Succeeded,
    Failed,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub job_id: String,
    pub decision: Reported,
    pub execution_arn: Option<String>,
}

pub async fn handle(deps: &Deps, job: Input) -> Result<Output, Error> {
    let decision = match start_or_follow(deps, &job).await {
        Ok(d) => d,
        // Transient: let Lambda's async retry try again; the job stays in progress.
        Err(e) if e.is_retryable() => return Err(e),
        Err(e) => Decision::Fail {
            execution_arn: None,
            message: e.to_string(),
        },
    };
    report(&deps.codepipeline, &job.id, &decision).await?;
    let (reported, arn) = match decision {
        Decision::Continue { execution_arn } => (Reported::Continue, Some(execution_arn)),
        Decision::Succeed { execution_arn, .. } => (Reported::Succeeded, Some(execution_arn)),
        Decision::Fail { execution_arn, .. } => (Reported::Failed, execution_arn),
    };
    tracing::info!(job_id = %job.id, decision = ?reported, execution = ?arn, "reported to CodePipeline");
    Ok(Output {
        job_id: job.id,
        decision: reported,
        execution_arn: arn,
    })
}

/// Start (or find) the execution of the job's action and decide what to report.
pub async fn start_or_follow(deps: &Deps, job: &JobEvent) -> Result<Decision, Error> {
    let arn = match job.continuation_token() {
        Some(token) => token.to_string(),
        None => match start(deps, job.user_parameters()).await? {
            Ok(arn) => arn,
            Err(message) => {
                return Ok(Decision::Fail {
                    execution_arn: None,
                    message,
                })
            }
        },
    };
    let out = deps
        .sfn
        .describe_execution()
        .execution_arn(&arn)
        .send()
        .await
        .aws("DescribeExecution")?;
    Ok(decide(
        &arn,
        out.status(),
        out.output(),
        out.error(),
        out.cause(),
    ))
}

/// The first delivery of a job: find the job's action execution and start the execution named
/// after it (the same action's job delivered twice has the same input: the execution already
/// exists and is followed, `already_existed`). `Ok(Err(why))`: the job fails with `why`.
async fn start(deps: &Deps, params: &str) -> Result<Result<String, String>, Error> {
    let (name, execution_id) = match pipeline::pipeline_of(params) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let actions =
        match pipeline::action_executions(&deps.codepipeline, &name, &execution_id).await? {
            Ok(actions) => actions,
            Err(why) => return Ok(Err(why)),
        };
    let action = match pipeline::bridge_action(&actions, &deps.bridge_function, params) {
        Ok(a) => a,
        Err(why) => {
            return Ok(Err(format!(
                "pipeline {name} execution {execution_id}: {why}"
            )))
        }
    };
    let unsealed = match workflow_input(params, &action.action_execution_id) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let execution = execution_name(&action.action_execution_id);
    let mut input = unsealed.clone();
    let at = time::rfc3339(time::now());
    pipeline::seal_bridge_start(
        &deps.sealer,
        &deps.environment,
        &execution,
        &mut input,
        &name,
        &at,
    )
    .await?;
    // A redelivered job (or a made-up one for the same action) finds its execution started
    // under its seal and follows it; a name taken by anything else fails the job, naming it.
    let same = async |existing: &serde_json::Value| {
        pipeline::is_bridge_start(
            &deps.sealer,
            &deps.environment,
            &execution,
            existing,
            &unsealed,
            &name,
        )
        .await
    };
    let started =
        execution::start_matching(&deps.sfn, &deps.state_machine_arn, &execution, &input, same)
            .await?;
    Ok(Ok(started.execution_arn))
}

/// Tell CodePipeline.
pub async fn report(
    codepipeline: &aws_sdk_codepipeline::Client,
    job_id: &str,
    decision: &Decision,
) -> Result<(), Error> {
    match decision {
        Decision::Continue { execution_arn } => {
            codepipeline
                .put_job_success_result()
                .job_id(job_id)
                .continuation_token(execution_arn)
                .execution_details(
                    ExecutionDetails::builder()
                        .summary("migration running")
                        .external_execution_id(execution_arn)
                        .build(),
                )
                .send()
                .await
                .aws("PutJobSuccessResult")?;
        }
        Decision::Succeed {
            execution_arn,
            summary,
            output_variables,
        } => {
            codepipeline
                .put_job_success_result()
                .job_id(job_id)
                .execution_details(
                    ExecutionDetails::builder()
                        .summary(summary.chars().take(2048).collect::<String>())
                        .external_execution_id(execution_arn)
                        .build(),
                )
                .set_output_variables(Some(output_variables.clone().into_iter().collect()))
                .send()
                .await
                .aws("PutJobSuccessResult")?;
        }
        Decision::Fail {
            execution_arn,
            message,
        } => {
            codepipeline
                .put_job_failure_result()
                .job_id(job_id)
                .failure_details(
                    FailureDetails::builder()
                        .r#type(FailureType::JobFailed)
                        .message(message)
                        .set_external_execution_id(execution_arn.clone())
                        .build()
                        .expect("type and message are set"),
                )
                .send()
                .await
                .aws("PutJobFailureResult")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::pipeline::tests::{event, listed_bridge_action, SM};
    use aws_sdk_codepipeline::operation::put_job_failure_result::PutJobFailureResultOutput;
    use aws_sdk_codepipeline::operation::put_job_success_result::PutJobSuccessResultOutput;
    use aws_sdk_codepipeline::types::ActionExecutionStatus;
    use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
    use aws_sdk_sfn::operation::start_execution::{StartExecutionError, StartExecutionOutput};
    use aws_sdk_sfn::types::ExecutionStatus;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use serde_json::json;

    const JOB: &str = "11111111-2222-3333-4444-555555555555";
    const AE: &str = "ae-1";
    const BRIDGE: &str = "batchless-staging-pipeline-bridge";

    /// The execution the job started: the input the job's event gives, with the bridge's seal
    /// (what a redelivery checks).
    fn describe(status: ExecutionStatus, output: Option<&'static str>) -> Rule {
        described(status, output, sealed_start().to_string())
    }

    /// The job's workflow input, as anyone could start it.
    fn unsealed_start() -> serde_json::Value {
        workflow_input(job(event(None)).user_parameters(), AE).unwrap()
    }

    /// ... and as the bridge started it (another seal than this run's: ECDSA differs each time).
    fn sealed_start() -> serde_json::Value {
        let mut input = unsealed_start();
        input["submission"] = json!({"by": BRIDGE, "person": "codepipeline:app",
                                     "at": "2026-12-05T10:00:00Z", "seal": "b2xkZXI="});
        input
    }

    fn described(status: ExecutionStatus, output: Option<&'static str>, input: String) -> Rule {
        mock!(aws_sdk_sfn::Client::describe_execution)
            .match_requests(|r| r.execution_arn().unwrap().ends_with(":codepipeline-ae-1"))
            .then_output(move || {
                DescribeExecutionOutput::builder()
                    .execution_arn("x")
                    .state_machine_arn(SM)
                    .status(status.clone())
                    .input(input.clone())
                    .set_output(output.map(str::to_string))
                    .start_date(aws_smithy_types::DateTime::from_secs(0))
                    .build()
                    .unwrap()
            })
    }

    fn already_exists() -> Rule {
        mock!(aws_sdk_sfn::Client::start_execution).then_error(|| {
            StartExecutionError::ExecutionAlreadyExists(
                aws_sdk_sfn::types::error::ExecutionAlreadyExists::builder()
                    .meta(crate::testing::meta("ExecutionAlreadyExists"))
                    .build(),
            )
        })
    }

    fn success() -> Rule {
        mock!(aws_sdk_codepipeline::Client::put_job_success_result)
            .then_output(|| PutJobSuccessResultOutput::builder().build())
    }

    fn failure() -> Rule {
        mock!(aws_sdk_codepipeline::Client::put_job_failure_result)
            .match_requests(|r| r.job_id() == Some(JOB))
            .then_output(|| PutJobFailureResultOutput::builder().build())
    }

    fn listed(user_parameters: String) -> Rule {
        listed_bridge_action("app", user_parameters, ActionExecutionStatus::InProgress)
    }

    fn mine() -> Rule {
        listed(job(event(None)).user_parameters().to_string())
    }

    fn deps(sfn: &[&Rule], cp: &[&Rule]) -> Deps {
        deps_verifying(true, sfn, cp)
    }

    /// A KMS that signs anything and says every seal is `valid` (or none is).
    fn deps_verifying(valid: bool, sfn: &[&Rule], cp: &[&Rule]) -> Deps {
        Deps {
            sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, sfn),
            codepipeline: mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, cp),
            sealer: crate::shared::approval::seal::tests::sealer(valid),
            environment: "staging".into(),
            state_machine_arn: SM.into(),
            bridge_function: BRIDGE.into(),
        }
    }

    fn job(ev: serde_json::Value) -> JobEvent {
        crate::platform::input::parse_strict(ev).unwrap()
    }

    #[tokio::test]
    async fn a_new_job_starts_its_execution_and_stays_in_progress() {
        let start = mock!(aws_sdk_sfn::Client::start_execution)
            .match_requests(|r| {
                let input: serde_json::Value =
                    serde_json::from_str(r.input().unwrap_or("null")).unwrap();
                let sealed = &input["submission"];
                r.name() == Some("codepipeline-ae-1")
                    && r.state_machine_arn() == Some(SM)
                    && input["pipeline"]
                        == json!({"name": "app", "executionId": "pe-1", "actionExecutionId": AE})
                    && input["commit"] == "0123456789abcdef0123456789abcdef01234567"
                    // Sealed by the bridge as the pipeline's run (the mock KMS's signature).
                    && (&sealed["by"], &sealed["person"], &sealed["seal"])
                        == (&json!(BRIDGE), &json!("codepipeline:app"), &json!("c2VhbGVkLWJ5LXRlc3Q="))
                    && input.as_object().map(|o| o.len()) == Some(3)
            })
            .then_output(|| {
                StartExecutionOutput::builder()
                    .execution_arn(format!(
                        "{}:codepipeline-{AE}",
                        SM.replace(":stateMachine:", ":execution:")
                    ))
                    .start_date(aws_smithy_types::DateTime::from_secs(0))
                    .build()
                    .unwrap()
            });
        let desc = describe(ExecutionStatus::Running, None);
        let ok = mock!(aws_sdk_codepipeline::Client::put_job_success_result)
            .match_requests(|r| {
                r.job_id() == Some(JOB)
                    && r.continuation_token()
                        .is_some_and(|t| t.ends_with(":codepipeline-ae-1"))
            })
            .then_output(|| PutJobSuccessResultOutput::builder().build());
        let list = mine();
        let d = deps(&[&start, &desc], &[&ok, &list]);
        let out = handle(&d, job(event(None))).await.unwrap();
        assert_eq!(out.decision, Reported::Continue);
        assert_eq!((start.num_calls(), ok.num_calls()), (1, 1));
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["decision"], "continue");
        assert_eq!(json["jobId"], JOB);
    }

    #[tokio::test]
    async fn a_second_delivery_follows_the_existing_execution() {
        let start = already_exists();
        let desc = describe(ExecutionStatus::Running, None);
        let ok = success();
        let list = mine();
        let d = deps(&[&start, &desc], &[&ok, &list]);
        let out = handle(&d, job(event(None))).await.unwrap();
        assert_eq!(out.decision, Reported::Continue, "{out:?}");
        assert!(out
            .execution_arn
            .unwrap()
            .ends_with(":execution:batchless-staging-migration:codepipeline-ae-1"));
        // Once by `execution::start` (same input?), once for the status.
        assert_eq!((start.num_calls(), desc.num_calls()), (1, 2));
    }

    /// The action's execution name already taken: by another input, by the action's very input
    /// without the bridge's seal (someone else was faster), by a seal that does not verify.
    /// The job fails naming the execution; nothing is followed.
    #[tokio::test]
    async fn the_job_name_taken_by_anything_but_the_bridges_own_start_fails_the_job() {
        for (valid, existing) in [
            (true, json!({"commit": "other"})),
            (true, unsealed_start()),
            (false, sealed_start()),
        ] {
            let start = already_exists();
            let desc = described(ExecutionStatus::Running, None, existing.to_string());
            let fail = mock!(aws_sdk_codepipeline::Client::put_job_failure_result)
                .match_requests(|r| {
                    r.job_id() == Some(JOB)
                        && r.failure_details().is_some_and(|f| {
                            f.message().contains(
                                "execution codepipeline-ae-1 already exists with a different input",
                            )
                        })
                })
                .then_output(|| PutJobFailureResultOutput::builder().build());
            let list = mine();
            let d = deps_verifying(valid, &[&start, &desc], &[&fail, &list]);
            let out = handle(&d, job(event(None))).await.unwrap();
            assert_eq!(out.decision, Reported::Failed, "{existing}");
            assert_eq!((desc.num_calls(), fail.num_calls()), (1, 1), "{existing}");
        }
    }

    #[tokio::test]
    async fn a_continuation_reports_the_end_with_output_variables() {
        let start = already_exists();
        let desc = describe(
            ExecutionStatus::Succeeded,
            Some(r#"{"buildId":"m:1","logUri":"s3://b/k"}"#),
        );
        let ok = mock!(aws_sdk_codepipeline::Client::put_job_success_result)
            .match_requests(|r| {
                r.continuation_token().is_none()
                    && r.output_variables()
                        .and_then(|v| v.get("buildId"))
                        .map(String::as_str)
                        == Some("m:1")
            })
            .then_output(|| PutJobSuccessResultOutput::builder().build());
        let d = deps(&[&start, &desc], &[&ok]);
        let token = format!(
            "{}:codepipeline-{AE}",
            SM.replace(":stateMachine:", ":execution:")
        );
        let out = handle(&d, job(event(Some(&token)))).await.unwrap();
        assert_eq!(out.decision, Reported::Succeeded);
        assert_eq!((start.num_calls(), ok.num_calls()), (0, 1));
    }

    #[tokio::test]
    async fn bad_user_parameters_fail_the_job_without_starting() {
        let start = already_exists();
        let fail = failure();
        let d = deps(&[&start], &[&fail]);
        let mut ev = event(None);
        ev["CodePipeline.job"]["data"]["actionConfiguration"]["configuration"]["UserParameters"] =
            json!("not json");
        let d2 = start_or_follow(&d, &job(ev.clone())).await.unwrap();
        assert!(
            matches!(d2, Decision::Fail { ref message, .. } if message.contains("UserParameters")),
            "{d2:?}"
        );
        let out = handle(&d, job(ev)).await.unwrap();
        assert_eq!(out.decision, Reported::Failed);
        assert_eq!(out.execution_arn, None);
        assert_eq!((start.num_calls(), fail.num_calls()), (0, 1));
    }

    #[tokio::test]
    async fn a_throttled_start_is_retried_by_lambda_not_reported() {
        let start = mock!(aws_sdk_sfn::Client::start_execution).then_error(|| {
            StartExecutionError::generic(crate::testing::meta("ThrottlingException"))
        });
        let fail = failure();
        let ok = success();
        let list = mine();
        let d = deps(&[&start], &[&fail, &ok, &list]);
        let err = handle(&d, job(event(None))).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert_eq!((fail.num_calls(), ok.num_calls()), (0, 0));
    }

    #[tokio::test]
    async fn a_job_without_its_own_action_in_progress_fails_without_starting() {
        let start = already_exists();
        // UserParameters the pipeline execution's action does not have (a made-up job), and a
        // pipeline execution CodePipeline does not know.
        let other =
            listed(r#"{"commit":"ffff","pipeline":{"name":"app","executionId":"pe-1"}}"#.into());
        let unknown = mock!(aws_sdk_codepipeline::Client::list_action_executions).then_error(|| {
            aws_sdk_codepipeline::operation::list_action_executions::ListActionExecutionsError::PipelineExecutionNotFoundException(
                aws_sdk_codepipeline::types::error::PipelineExecutionNotFoundException::builder()
                    .meta(crate::testing::meta("PipelineExecutionNotFoundException"))
                    .build(),
            )
        });
        for (list, expected) in [
            (other, "pipeline app execution pe-1: no in-progress Lambda action on batchless-staging-pipeline-bridge"),
            (unknown, "CodePipeline knows no execution pe-1 of pipeline app"),
        ] {
            let fail = mock!(aws_sdk_codepipeline::Client::put_job_failure_result)
                .match_requests(move |r| {
                    r.failure_details().is_some_and(|f| f.message().contains(expected))
                })
                .then_output(|| PutJobFailureResultOutput::builder().build());
            let d = deps(&[&start], &[&fail, &list]);
            let out = handle(&d, job(event(None))).await.unwrap();
            assert_eq!(out.decision, Reported::Failed, "{expected}");
            assert_eq!((start.num_calls(), fail.num_calls(), list.num_calls()), (0, 1, 1), "{expected}");
        }
    }
}
