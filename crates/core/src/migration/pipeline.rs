//! The CodePipeline **Lambda invoke action** bridge (`pipeline-bridge`): starts the migration
//! state machine with a name derived from the job id, keeps the job in progress with a
//! `continuationToken` while the execution runs, then reports success (with output variables)
//! or failure (with the cause).
//!
//! The job event carries temporary `artifactCredentials`: they are never deserialized, so
//! they cannot be logged by accident.

use std::collections::BTreeMap;

use aws_sdk_codepipeline::types::{ExecutionDetails, FailureDetails, FailureType};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::platform::aws::AwsResultExt;
use crate::platform::input::InputError;

/// CodePipeline shows at most 5,000 characters of a failure message.
pub const MAX_MESSAGE_CHARS: usize = 5000;

/// Only the fields the bridge uses. Unknown fields (including `artifactCredentials`) are
/// ignored here on purpose: this is AWS's event, not our input.
#[derive(Debug, Deserialize)]
pub struct JobEvent {
    #[serde(rename = "CodePipeline.job")]
    pub job: Job,
}

#[derive(Debug, Deserialize)]
pub struct Job {
    pub id: String,
    pub data: JobData,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobData {
    pub action_configuration: ActionConfiguration,
    #[serde(default)]
    pub continuation_token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ActionConfiguration {
    pub configuration: Configuration,
}

#[derive(Debug, Deserialize)]
pub struct Configuration {
    #[serde(rename = "UserParameters", default)]
    pub user_parameters: Option<String>,
}

/// What to tell CodePipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Still running: succeed the invocation with a continuation token (the execution ARN).
    Continue { execution_arn: String },
    Succeed {
        execution_arn: String,
        summary: String,
        output_variables: BTreeMap<String, String>,
    },
    Fail {
        execution_arn: Option<String>,
        message: String,
    },
}

/// `codepipeline-<job id>`: deterministic, ≤ 80 characters, no `:`.
pub fn execution_name(job_id: &str) -> String {
    let safe: String = job_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("codepipeline-{safe}");
    name.truncate(80);
    name
}

/// The ARN an execution named `name` of `state_machine_arn` has.
pub fn execution_arn(state_machine_arn: &str, name: &str) -> String {
    format!(
        "{}:{name}",
        state_machine_arn.replacen(":stateMachine:", ":execution:", 1)
    )
}

/// The workflow input: the action's `UserParameters` (a JSON object) plus the job id.
pub fn workflow_input(job: &Job) -> Result<Value, InputError> {
    let raw = job
        .data
        .action_configuration
        .configuration
        .user_parameters
        .as_deref()
        .unwrap_or("{}");
    let mut params: Map<String, Value> = serde_json::from_str(raw)
        .map_err(|e| InputError::field("UserParameters", format!("must be a JSON object: {e}")))?;
    let pipeline = params
        .entry("pipeline")
        .or_insert_with(|| Value::Object(Map::new()));
    match pipeline {
        Value::Object(p) => {
            p.entry("name")
                .or_insert_with(|| Value::String("codepipeline".into()));
            p.insert("jobId".into(), Value::String(job.id.clone()));
        }
        _ => {
            return Err(InputError::field(
                "UserParameters.pipeline",
                "must be an object",
            ))
        }
    }
    Ok(Value::Object(params))
}

/// Pure: the decision for an execution in `status`.
pub fn decide(
    execution_arn: &str,
    status: &str,
    output: Option<&str>,
    error: Option<&str>,
    cause: Option<&str>,
) -> Decision {
    match status {
        "RUNNING" | "PENDING_REDRIVE" => Decision::Continue {
            execution_arn: execution_arn.to_string(),
        },
        "SUCCEEDED" => {
            let output: Value = output
                .and_then(|o| serde_json::from_str(o).ok())
                .unwrap_or(Value::Null);
            let mut vars = BTreeMap::new();
            if let Value::Object(map) = &output {
                for (k, v) in map {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => continue,
                        other => other.to_string(),
                    };
                    vars.insert(k.clone(), value);
                }
            }
            Decision::Succeed {
                execution_arn: execution_arn.to_string(),
                summary: format!(
                    "migration succeeded: build {}, log {}",
                    vars.get("buildId").map(String::as_str).unwrap_or("?"),
                    vars.get("logUri").map(String::as_str).unwrap_or("?")
                ),
                output_variables: vars,
            }
        }
        other => {
            let cause = cause.unwrap_or_default();
            // A Lambda error's cause is JSON; show its message.
            let cause = serde_json::from_str::<Value>(cause)
                .ok()
                .and_then(|v| {
                    v.get("errorMessage")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_else(|| cause.to_string());
            let text = format!("{} ({other}): {cause}", error.unwrap_or("ExecutionFailed"));
            let text = crate::platform::redact::redact(&text).into_owned();
            Decision::Fail {
                execution_arn: Some(execution_arn.to_string()),
                message: text.chars().take(MAX_MESSAGE_CHARS).collect(),
            }
        }
    }
}

/// Start (or find) the job's execution and decide what to report.
pub async fn step(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    job: &Job,
) -> Result<Decision, Error> {
    let arn = match &job.data.continuation_token {
        Some(token) => token.clone(),
        None => {
            let input = match workflow_input(job) {
                Ok(v) => v,
                Err(e) => {
                    return Ok(Decision::Fail {
                        execution_arn: None,
                        message: e.to_string(),
                    })
                }
            };
            let name = execution_name(&job.id);
            let res = sfn
                .start_execution()
                .state_machine_arn(state_machine_arn)
                .name(&name)
                .input(input.to_string())
                .send()
                .await
                .aws("StartExecution");
            match res {
                Ok(out) => out.execution_arn().to_string(),
                // The same job delivered twice: the execution already exists; follow it.
                Err(e) if e.is_code("ExecutionAlreadyExists") => {
                    execution_arn(state_machine_arn, &name)
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let out = sfn
        .describe_execution()
        .execution_arn(&arn)
        .send()
        .await
        .aws("DescribeExecution")?;
    Ok(decide(
        &arn,
        out.status().as_str(),
        out.output(),
        out.error(),
        out.cause(),
    ))
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
    use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
    use aws_sdk_sfn::operation::start_execution::StartExecutionError;
    use aws_sdk_sfn::types::ExecutionStatus;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use serde_json::json;

    const SM: &str =
        "arn:aws:states:us-east-1:123456789012:stateMachine:batchless-staging-migration";

    fn event(token: Option<&str>) -> Value {
        json!({"CodePipeline.job": {
            "id": "11111111-2222-3333-4444-555555555555",
            "accountId": "123456789012",
            "data": {
                "actionConfiguration": {"configuration": {"FunctionName": "bridge", "UserParameters": "{\"commit\":\"0123456789abcdef0123456789abcdef01234567\",\"pipeline\":{\"name\":\"app\"}}"}},
                "inputArtifacts": [],
                "outputArtifacts": [],
                "artifactCredentials": {"accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "SECRETEXAMPLE", "sessionToken": "TOKENEXAMPLE"},
                "continuationToken": token
            }
        }})
    }

    #[test]
    fn credentials_are_never_held() {
        let parsed: JobEvent = serde_json::from_value(event(None)).unwrap();
        let debug = format!("{parsed:?}");
        assert!(!debug.contains("SECRETEXAMPLE") && !debug.contains("TOKENEXAMPLE"));
    }

    #[test]
    fn names_and_input() {
        let parsed: JobEvent = serde_json::from_value(event(None)).unwrap();
        assert_eq!(
            execution_name(&parsed.job.id),
            "codepipeline-11111111-2222-3333-4444-555555555555"
        );
        assert_eq!(
            execution_arn(SM, "n"),
            "arn:aws:states:us-east-1:123456789012:execution:batchless-staging-migration:n"
        );
        let input = workflow_input(&parsed.job).unwrap();
        assert_eq!(
            input["pipeline"]["jobId"],
            "11111111-2222-3333-4444-555555555555"
        );
        assert_eq!(input["pipeline"]["name"], "app");
    }

    #[test]
    fn decisions() {
        assert!(matches!(
            decide("a", "RUNNING", None, None, None),
            Decision::Continue { .. }
        ));
        match decide(
            "a",
            "SUCCEEDED",
            Some(r#"{"buildId":"m:1","logUri":"s3://b/k","durationSeconds":4,"x":null}"#),
            None,
            None,
        ) {
            Decision::Succeed {
                output_variables, ..
            } => {
                assert_eq!(output_variables["buildId"], "m:1");
                assert_eq!(output_variables["durationSeconds"], "4");
                assert!(!output_variables.contains_key("x"));
            }
            other => panic!("{other:?}"),
        }
        match decide(
            "a",
            "FAILED",
            None,
            Some("MigrationFailed"),
            Some("phase BUILD; DATABASE_URL=postgres://u:pw@h/d"),
        ) {
            Decision::Fail { message, .. } => {
                assert!(message.starts_with("MigrationFailed (FAILED): phase BUILD"));
                assert!(!message.contains(":pw@"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_second_delivery_follows_the_existing_execution() {
        let start = mock!(aws_sdk_sfn::Client::start_execution).then_error(|| {
            StartExecutionError::ExecutionAlreadyExists(
                aws_sdk_sfn::types::error::ExecutionAlreadyExists::builder()
                    .meta(crate::testing::meta("ExecutionAlreadyExists"))
                    .build(),
            )
        });
        let describe = mock!(aws_sdk_sfn::Client::describe_execution)
            .match_requests(|r| {
                r.execution_arn()
                    .unwrap()
                    .ends_with(":codepipeline-11111111-2222-3333-4444-555555555555")
            })
            .then_output(|| {
                DescribeExecutionOutput::builder()
                    .execution_arn("x")
                    .state_machine_arn(SM)
                    .status(ExecutionStatus::Running)
                    .start_date(aws_smithy_types::DateTime::from_secs(0))
                    .build()
                    .unwrap()
            });
        let sfn = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, [&start, &describe]);
        let parsed: JobEvent = serde_json::from_value(event(None)).unwrap();
        let d = step(&sfn, SM, &parsed.job).await.unwrap();
        assert!(matches!(d, Decision::Continue { .. }), "{d:?}");
        assert_eq!(start.num_calls(), 1);
    }

    #[tokio::test]
    async fn bad_user_parameters_fail_the_job_without_starting() {
        let start = mock!(aws_sdk_sfn::Client::start_execution).then_error(|| {
            StartExecutionError::ExecutionAlreadyExists(
                aws_sdk_sfn::types::error::ExecutionAlreadyExists::builder()
                    .meta(crate::testing::meta("ExecutionAlreadyExists"))
                    .build(),
            )
        });
        let sfn = mock_client!(aws_sdk_sfn, [&start]);
        let mut ev = event(None);
        ev["CodePipeline.job"]["data"]["actionConfiguration"]["configuration"]["UserParameters"] =
            json!("not json");
        let parsed: JobEvent = serde_json::from_value(ev).unwrap();
        let d = step(&sfn, SM, &parsed.job).await.unwrap();
        assert!(
            matches!(d, Decision::Fail { ref message, .. } if message.contains("UserParameters")),
            "{d:?}"
        );
        assert_eq!(start.num_calls(), 0);
    }
}
