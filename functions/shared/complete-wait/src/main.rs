//! `complete-wait`: target of the "CodeBuild Build State Change" and "ECS Task State Change"
//! rules. When a build reaches a final status or a task STOPPED, sends its outcome to the
//! execution waiting on it (if any) with `SendTaskSuccess`. At-least-once delivery is fine:
//! the wait is taken once.

use batchless_core::sfn::waits::{self, WaitKind};
use batchless_core::shared::task;
use batchless_core::{platform::aws, platform::config, shared::build, Error};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};

struct Deps {
    db: aws_sdk_dynamodb::Client,
    sfn: aws_sdk_sfn::Client,
    codebuild: aws_sdk_codebuild::Client,
    ecs: aws_sdk_ecs::Client,
    table: String,
}

const FINAL: [&str; 5] = ["SUCCEEDED", "FAILED", "FAULT", "STOPPED", "TIMED_OUT"];

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let detail_type = event
        .get("detail-type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let detail = event.get("detail").cloned().unwrap_or(Value::Null);
    if detail_type == "ECS Task State Change" {
        return task_stopped(&detail, deps).await;
    }
    if detail_type != "CodeBuild Build State Change" {
        tracing::warn!(
            detail_type,
            "ignoring an event this function does not handle"
        );
        return Ok(json!({ "completed": false, "ignored": detail_type }));
    }
    let status = detail
        .get("build-status")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(build_id) = detail.get("build-id").and_then(Value::as_str) else {
        return Err(batchless_core::platform::input::InputError::field(
            "detail.build-id",
            "missing",
        )
        .into());
    };
    if !FINAL.contains(&status) {
        return Ok(json!({ "completed": false, "status": status }));
    }
    // Read the build itself: one outcome shape for every path that ends a wait.
    let outcome = build::fetch_outcome(&deps.codebuild, build_id).await?;
    let key = WaitKind::Codebuild.key(build_id);
    let output = serde_json::to_value(&outcome).expect("outcome serializes");
    let completed = waits::complete(&deps.db, &deps.sfn, &deps.table, &key, &output).await?;
    tracing::info!(%key, status, completed, "build state change handled");
    Ok(json!({ "completed": completed, "status": status, "waitKey": key }))
}

/// An ECS task reached STOPPED: end the wait on it (other statuses are ignored).
async fn task_stopped(detail: &Value, deps: &Deps) -> Result<Value, Error> {
    let status = detail
        .get("lastStatus")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(task_arn) = detail.get("taskArn").and_then(Value::as_str) else {
        return Err(batchless_core::platform::input::InputError::field(
            "detail.taskArn",
            "missing",
        )
        .into());
    };
    if status != "STOPPED" {
        return Ok(json!({ "completed": false, "status": status }));
    }
    // Read the task itself: one outcome shape for every path that ends a wait.
    let outcome = task::describe(&deps.ecs, task_arn).await?;
    let key = WaitKind::Ecs.key(task_arn);
    let output = serde_json::to_value(&outcome).expect("outcome serializes");
    let completed = waits::complete(&deps.db, &deps.sfn, &deps.table, &key, &output).await?;
    tracing::info!(%key, status, completed, "task state change handled");
    Ok(json!({ "completed": completed, "status": status, "waitKey": key }))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        db: aws::dynamodb(&sdk),
        sfn: aws::sfn(&sdk),
        codebuild: aws::codebuild(&sdk),
        ecs: aws::ecs(&sdk),
        table: config::required("WAITS_TABLE")?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
