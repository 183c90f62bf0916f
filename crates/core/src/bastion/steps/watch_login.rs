//! `watch-login`: target of the EventBridge rule on CloudTrail `ExecuteCommand` into the
//! bastion cluster. Starts the bastion-session watch **named after the ECS Exec session id**,
//! so a redelivered event never opens a second watch: [`execution::start`] finds the execution
//! that exists with the same input and answers with it.
//! The deadline and reminder come from configuration (`BASTION_APPROVAL_DEADLINE_SECONDS`,
//! `BASTION_REMINDER_BEFORE_SECONDS`) and travel in the execution's input.

use aws_types::SdkConfig;
use serde::Serialize;
use serde_json::Value;

use crate::bastion::login::{self, WatchInput};
use crate::error::Error;
use crate::platform::{aws, config};
use crate::sfn::execution;

pub struct Deps {
    pub sfn: aws_sdk_sfn::Client,
    pub state_machine_arn: String,
    pub deadline_seconds: u64,
    pub reminder_before_seconds: u64,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            sfn: aws::sfn(sdk),
            state_machine_arn: config::required("BASTION_STATE_MACHINE_ARN")?,
            deadline_seconds: seconds("BASTION_APPROVAL_DEADLINE_SECONDS", 86_400)?,
            reminder_before_seconds: seconds("BASTION_REMINDER_BEFORE_SECONDS", 3_600)?,
        })
    }
}

fn seconds(name: &str, default: u64) -> Result<u64, Error> {
    match config::optional(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| Error::config(format!("{name} must be a number of seconds, got {v:?}"))),
    }
}

/// The EventBridge envelope of a CloudTrail record (`AWS API Call via CloudTrail`), read by
/// [`login::from_event`], which names a missing or wrong field.
pub type Input = Value;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub started: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub already_watching: Option<bool>,
}

pub async fn handle(deps: &Deps, event: Input) -> Result<Output, Error> {
    let Some(login) = login::from_event(&event)? else {
        tracing::info!("ExecuteCommand opened no session (failed call): nothing to watch");
        return Ok(Output {
            started: false,
            reason: Some("the call opened no session"),
            execution_name: None,
            execution_arn: None,
            already_watching: None,
        });
    };
    let name = login::execution_name(&login.session_id);
    let input = WatchInput {
        login,
        deadline_seconds: deps.deadline_seconds,
        reminder_before_seconds: deps.reminder_before_seconds,
    };
    input.validate()?;
    let input = serde_json::to_value(&input).expect("input serializes");
    let started = execution::start(&deps.sfn, &deps.state_machine_arn, &name, &input).await?;
    if started.already_existed {
        tracing::info!(%name, "redelivered login: the watch already exists");
    } else {
        tracing::info!(execution = %started.execution_arn, "bastion watch started");
    }
    Ok(Output {
        started: !started.already_existed,
        reason: None,
        execution_name: Some(name),
        execution_arn: Some(started.execution_arn),
        already_watching: started.already_existed.then_some(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bastion::login::sample_event;
    use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
    use aws_sdk_sfn::operation::start_execution::{StartExecutionError, StartExecutionOutput};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn deps(rules: &[&aws_smithy_mocks::Rule]) -> Deps {
        Deps {
            sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, rules),
            state_machine_arn: "arn:aws:states:us-east-1:1:stateMachine:bastion".into(),
            deadline_seconds: 86_400,
            reminder_before_seconds: 3_600,
        }
    }

    fn event() -> Value {
        sample_event(
            "ecs-execute-command-0a1b",
            "arn:aws:iam::123456789012:user/alice",
            "bastion",
            "t1",
            "2026-11-28T13:00:00Z",
        )
    }

    #[tokio::test]
    async fn the_watch_is_named_after_the_session_and_carries_the_deadline() {
        let start = mock!(aws_sdk_sfn::Client::start_execution)
            .match_requests(|r| {
                let input: Value = serde_json::from_str(r.input().unwrap_or("{}")).unwrap();
                r.name() == Some("ecs-execute-command-0a1b")
                    && input["deadlineSeconds"] == 86_400
                    && input["reminderBeforeSeconds"] == 3_600
                    && input["login"]["taskId"] == "t1"
            })
            .then_output(|| {
                StartExecutionOutput::builder()
                    .execution_arn("arn:exec")
                    .start_date(aws_smithy_types::DateTime::from_secs(0))
                    .build()
                    .unwrap()
            });
        let out = handle(&deps(&[&start]), event()).await.unwrap();
        assert!(out.started);
        assert_eq!(out.execution_arn.as_deref(), Some("arn:exec"));
        assert_eq!(start.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_redelivered_login_is_already_watched() {
        const EXECUTION: &str =
            "arn:aws:states:us-east-1:1:execution:bastion:ecs-execute-command-0a1b";
        let start = mock!(aws_sdk_sfn::Client::start_execution).then_error(|| {
            StartExecutionError::ExecutionAlreadyExists(
                aws_sdk_sfn::types::error::ExecutionAlreadyExists::builder()
                    .meta(crate::testing::meta("ExecutionAlreadyExists"))
                    .build(),
            )
        });
        // The watch that exists was started with this very input (the same event).
        let input = {
            let d = deps(&[]);
            let login = login::from_event(&event()).unwrap().unwrap();
            serde_json::to_string(&WatchInput {
                login,
                deadline_seconds: d.deadline_seconds,
                reminder_before_seconds: d.reminder_before_seconds,
            })
            .unwrap()
        };
        let describe = mock!(aws_sdk_sfn::Client::describe_execution)
            .match_requests(|r| r.execution_arn() == Some(EXECUTION))
            .then_output(move || {
                DescribeExecutionOutput::builder()
                    .execution_arn(EXECUTION)
                    .state_machine_arn("arn:aws:states:us-east-1:1:stateMachine:bastion")
                    .status(aws_sdk_sfn::types::ExecutionStatus::Running)
                    .start_date(aws_smithy_types::DateTime::from_secs(0))
                    .input(input.clone())
                    .build()
                    .unwrap()
            });
        let out = handle(&deps(&[&start, &describe]), event()).await.unwrap();
        assert_eq!((out.started, out.already_watching), (false, Some(true)));
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"started": false, "executionName": "ecs-execute-command-0a1b", "executionArn": EXECUTION, "alreadyWatching": true})
        );
        assert_eq!(describe.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_failed_call_starts_nothing_and_another_event_is_invalid() {
        let d = deps(&[]);
        let mut ev = event();
        ev["detail"]["errorCode"] = "AccessDeniedException".into();
        let out = handle(&d, ev).await.unwrap();
        assert!(!out.started && out.reason.is_some());
        let mut ev = event();
        ev["detail"]["eventName"] = "RunTask".into();
        let err = handle(&d, ev).await.unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::InvalidInput);
    }
}
