//! `cleanup`: target of the "Step Functions Execution Status Change" rule (ABORTED,
//! TIMED_OUT, FAILED). Stops the run's build or ECS task, releases its locks and marks its
//! record ended.

use batchless_core::patch::{self, store};
use batchless_core::platform::input::InputError;
use batchless_core::shared::cleanup::{self, StatusChange, Tables};
use batchless_core::{platform::aws, platform::config, platform::time, Error};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

struct Deps {
    db: aws_sdk_dynamodb::Client,
    codebuild: aws_sdk_codebuild::Client,
    ecs: aws_sdk_ecs::Client,
    runs_table: String,
    locks_table: String,
    patches: store::Backend,
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let detail = event.get("detail").cloned().unwrap_or(Value::Null);
    let change: StatusChange = serde_json::from_value(detail).map_err(|e| {
        InputError::field("detail", format!("not a Step Functions status change: {e}"))
    })?;
    let report = cleanup::cleanup(
        &deps.db,
        &deps.codebuild,
        &deps.ecs,
        Tables {
            runs: &deps.runs_table,
            locks: &deps.locks_table,
        },
        &change,
        &time::rfc3339(time::now()),
    )
    .await?;
    // A patch execution stopped or timed out never reached RecordOutcome: record its end.
    let patch_ended = match patch::patch_id_of_execution(&change.execution_arn) {
        Some(id) => store::end_unrecorded(&deps.patches.store(), id, &change.status).await?,
        None => false,
    };
    tracing::info!(
        patch_ended,
        execution = %report.execution_arn,
        status = %report.status,
        stopped_build = ?report.stopped_build,
        stopped_task = ?report.stopped_task,
        released = ?report.released_locks,
        "cleanup done"
    );
    Ok(serde_json::to_value(report).expect("serializes"))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        db: aws::dynamodb(&sdk),
        codebuild: aws::codebuild(&sdk),
        ecs: aws::ecs(&sdk),
        runs_table: config::required("RUNS_TABLE")?,
        locks_table: config::required("LOCKS_TABLE")?,
        patches: store::Backend::from_env(&sdk)?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
