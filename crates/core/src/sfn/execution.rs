//! The execution a step runs in, and a caught step error, as the ASL hands them to a step;
//! execution statuses and their change events; and [`start`], the one StartExecution.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::platform::aws::AwsResultExt;

/// The execution a step runs in (from the ASL context object).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Execution {
    pub id: String,
    pub name: String,
    pub start_time: String,
}

/// The input of a workflow's first step: the execution input as it came (the step parses it
/// strictly) and the execution it started.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StartInput {
    pub input: serde_json::Value,
    pub execution: Execution,
}

/// A caught Step Functions error (`Catch` with `ResultPath`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepError {
    #[serde(rename = "Error")]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

impl StepError {
    /// The readable part of a cause: a Lambda error's `errorMessage`, else the cause itself.
    pub fn message(&self) -> String {
        serde_json::from_str::<Value>(&self.cause)
            .ok()
            .and_then(|v| {
                v.get("errorMessage")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| self.cause.clone())
    }
}

/// The Step Functions console page of an execution.
pub fn execution_console_url(execution_arn: &str) -> String {
    let region = execution_arn.split(':').nth(3).unwrap_or("us-east-1");
    format!("https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}")
}

/// A Step Functions execution status (the `status` of an execution status change event and of
/// `DescribeExecution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
    PendingRedrive,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Running => "RUNNING",
            ExecutionStatus::Succeeded => "SUCCEEDED",
            ExecutionStatus::Failed => "FAILED",
            ExecutionStatus::TimedOut => "TIMED_OUT",
            ExecutionStatus::Aborted => "ABORTED",
            ExecutionStatus::PendingRedrive => "PENDING_REDRIVE",
        }
    }
}

impl std::fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `detail` of a "Step Functions Execution Status Change" event (`aws_lambda_events` has no
/// Step Functions type): what cleanup needs of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStatusChange {
    pub execution_arn: String,
    pub status: ExecutionStatus,
    #[serde(default)]
    pub state_machine_arn: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// `s` fit for an execution name: every character but `[A-Za-z0-9_-]` becomes `-`.
pub fn name_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The ARN of execution `name` of `state_machine_arn` (what StartExecution would return).
pub fn execution_arn(state_machine_arn: &str, name: &str) -> String {
    format!(
        "{}:{name}",
        state_machine_arn.replacen(":stateMachine:", ":execution:", 1)
    )
}

/// The state machine whose execution `execution_arn` is (the inverse of [`execution_arn`]).
pub fn state_machine_of(execution_arn: &str) -> String {
    let sm = execution_arn
        .rsplit_once(':')
        .map_or(execution_arn, |(sm, _)| sm);
    sm.replacen(":execution:", ":stateMachine:", 1)
}

/// What [`start`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    pub execution_arn: String,
    /// The execution already existed with this name and the same input (a redelivered
    /// event, a retried call): nothing new was started.
    pub already_existed: bool,
}

/// StartExecution, idempotent by name: execution names are unique per state machine for 90
/// days, so a second call with the same name and the same input (a redelivered event, a retried
/// Lambda) is success with the existing execution (`already_existed`). The same name with a
/// different input is [`Error::Conflict`]: that is a different request, not a retry.
pub async fn start(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    name: &str,
    input: &Value,
) -> Result<Started, Error> {
    start_matching(
        sfn,
        state_machine_arn,
        name,
        input,
        async |existing: &Value| Ok(existing == input),
    )
    .await
}

/// [`start`], where `same` says whether the input of the execution that already has the name is
/// this request's: for an input that carries a signature, which differs each time it is made.
pub async fn start_matching(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    name: &str,
    input: &Value,
    same: impl AsyncFn(&Value) -> Result<bool, Error>,
) -> Result<Started, Error> {
    let res = sfn
        .start_execution()
        .state_machine_arn(state_machine_arn)
        .name(name)
        .input(input.to_string())
        .send()
        .await
        .aws("StartExecution");
    match res {
        Ok(out) => Ok(Started {
            execution_arn: out.execution_arn().to_string(),
            already_existed: false,
        }),
        Err(e) if e.is_code("ExecutionAlreadyExists") => {
            let arn = execution_arn(state_machine_arn, name);
            let existing = sfn
                .describe_execution()
                .execution_arn(&arn)
                .send()
                .await
                .aws("DescribeExecution")?;
            let same = match existing
                .input()
                .and_then(|i| serde_json::from_str::<Value>(i).ok())
            {
                Some(existing) => same(&existing).await?,
                None => false,
            };
            if same {
                tracing::info!(execution = %arn, "execution already started with this input");
                Ok(Started {
                    execution_arn: arn,
                    already_existed: true,
                })
            } else {
                Err(Error::Conflict(format!(
                    "execution {name} already exists with a different input"
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_machine_of_an_execution() {
        let sm = "arn:aws:states:us-east-1:123456789012:stateMachine:batchless-staging-migration";
        assert_eq!(state_machine_of(&execution_arn(sm, "codepipeline-j-1")), sm);
    }
    use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
    use aws_sdk_sfn::operation::start_execution::{StartExecutionError, StartExecutionOutput};
    use aws_sdk_sfn::types::error::ExecutionAlreadyExists;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use serde_json::json;

    const MACHINE: &str =
        "arn:aws:states:us-east-1:123456789012:stateMachine:batchless-staging-bastion";
    const EXECUTION: &str =
        "arn:aws:states:us-east-1:123456789012:execution:batchless-staging-bastion:login-s1";

    fn already_exists() -> Rule {
        mock!(aws_sdk_sfn::Client::start_execution).then_error(|| {
            StartExecutionError::ExecutionAlreadyExists(
                ExecutionAlreadyExists::builder()
                    .meta(crate::testing::meta("ExecutionAlreadyExists"))
                    .build(),
            )
        })
    }

    fn existing_with(input: &'static str) -> Rule {
        mock!(aws_sdk_sfn::Client::describe_execution)
            .match_requests(|r| r.execution_arn() == Some(EXECUTION))
            .then_output(move || {
                DescribeExecutionOutput::builder()
                    .execution_arn(EXECUTION)
                    .state_machine_arn(MACHINE)
                    .status(aws_sdk_sfn::types::ExecutionStatus::Running)
                    .start_date(aws_smithy_types::DateTime::from_secs(0))
                    .input(input)
                    .build()
                    .unwrap()
            })
    }

    #[test]
    fn execution_arns_follow_the_state_machine() {
        assert_eq!(execution_arn(MACHINE, "login-s1"), EXECUTION);
    }

    #[tokio::test]
    async fn a_new_name_starts_an_execution_with_the_input() {
        let started = mock!(aws_sdk_sfn::Client::start_execution)
            .match_requests(|r| {
                r.state_machine_arn() == Some(MACHINE)
                    && r.name() == Some("login-s1")
                    && r.input() == Some(r#"{"sessionId":"s1"}"#)
            })
            .then_output(|| {
                StartExecutionOutput::builder()
                    .execution_arn(EXECUTION)
                    .start_date(aws_smithy_types::DateTime::from_secs(0))
                    .build()
                    .unwrap()
            });
        let sfn = mock_client!(aws_sdk_sfn, [&started]);
        let out = start(&sfn, MACHINE, "login-s1", &json!({"sessionId": "s1"}))
            .await
            .unwrap();
        assert_eq!(
            out,
            Started {
                execution_arn: EXECUTION.into(),
                already_existed: false
            }
        );
        assert_eq!(started.num_calls(), 1);
    }

    /// `login-s1` started again with `{"sessionId": "s1"}` while an execution of that name
    /// exists with `existing_input`: what `start` answers, and how often it described it.
    async fn start_again(existing_input: &'static str) -> (Result<Started, Error>, usize) {
        let (start_rule, describe) = (already_exists(), existing_with(existing_input));
        let sfn = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, [&start_rule, &describe]);
        let out = start(&sfn, MACHINE, "login-s1", &json!({"sessionId": "s1"})).await;
        (out, describe.num_calls())
    }

    #[tokio::test]
    async fn the_same_name_and_input_again_is_the_existing_execution() {
        let (out, described) = start_again(r#"{ "sessionId": "s1" }"#).await;
        let out = out.unwrap();
        assert!(out.already_existed);
        assert_eq!(out.execution_arn, EXECUTION);
        assert_eq!(described, 1);
    }

    #[tokio::test]
    async fn the_same_name_with_another_input_is_a_conflict() {
        let err = start_again(r#"{"sessionId":"s2"}"#).await.0.unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::Conflict);
        assert!(err.to_string().contains("login-s1"), "{err}");
    }

    #[test]
    fn statuses_keep_their_wire_names() {
        for s in [
            ExecutionStatus::Running,
            ExecutionStatus::Succeeded,
            ExecutionStatus::Failed,
            ExecutionStatus::TimedOut,
            ExecutionStatus::Aborted,
            ExecutionStatus::PendingRedrive,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
    }
}
