//! `watch-login`: target of the EventBridge rule on CloudTrail `ExecuteCommand` into the
//! bastion cluster. Starts the bastion-session watch **named after the ECS Exec session id**,
//! so a redelivered event never opens a second watch (`ExecutionAlreadyExists` is success).
//! The deadline and reminder come from configuration (`BASTION_APPROVAL_DEADLINE_SECONDS`,
//! `BASTION_REMINDER_BEFORE_SECONDS`) and travel in the execution's input.

use batchless_core::bastion::login::{self, WatchInput};
use batchless_core::platform::aws::AwsResultExt;
use batchless_core::{platform::aws, platform::config, Error};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};

struct Deps {
    sfn: aws_sdk_sfn::Client,
    state_machine_arn: String,
    deadline_seconds: u64,
    reminder_before_seconds: u64,
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

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let Some(login) = login::from_event(&event)? else {
        tracing::info!("ExecuteCommand opened no session (failed call): nothing to watch");
        return Ok(json!({ "started": false, "reason": "the call opened no session" }));
    };
    let name = login::execution_name(&login.session_id);
    let input = WatchInput {
        login,
        deadline_seconds: deps.deadline_seconds,
        reminder_before_seconds: deps.reminder_before_seconds,
    };
    input.validate()?;
    let res = deps
        .sfn
        .start_execution()
        .state_machine_arn(&deps.state_machine_arn)
        .name(&name)
        .input(serde_json::to_string(&input).expect("input serializes"))
        .send()
        .await
        .aws("StartExecution");
    match res {
        Ok(out) => {
            tracing::info!(execution = %out.execution_arn(), "bastion watch started");
            Ok(
                json!({ "started": true, "executionName": name, "executionArn": out.execution_arn() }),
            )
        }
        Err(e) if e.is_code("ExecutionAlreadyExists") => {
            tracing::info!(%name, "redelivered login: the watch already exists");
            Ok(json!({ "started": false, "executionName": name, "alreadyWatching": true }))
        }
        Err(e) => Err(e.into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        sfn: aws::sfn(&sdk),
        state_machine_arn: config::required("BASTION_STATE_MACHINE_ARN")?,
        deadline_seconds: seconds("BASTION_APPROVAL_DEADLINE_SECONDS", 86_400)?,
        reminder_before_seconds: seconds("BASTION_REMINDER_BEFORE_SECONDS", 3_600)?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
