//! `record-run`: write a finished run to the history (commit, build, status, duration, log,
//! started by, failure cause) and return what the workflow outputs or fails with.

use batchless_core::migration::{self, MigrationState};
use batchless_core::platform::input::parse_strict;
use batchless_core::{platform::aws, platform::config, platform::time, shared::runs, Error};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

struct Deps {
    db: aws_sdk_dynamodb::Client,
    table: String,
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let state: MigrationState = parse_strict(event)?;
    let recorded = migration::record(&state);
    let record = migration::run_record(&state, &recorded, &time::rfc3339(time::now()));
    runs::put(&deps.db, &deps.table, &record).await?;
    tracing::info!(run_id = %record.run_id, status = %record.status, "run recorded");
    Ok(serde_json::to_value(recorded).expect("serializes"))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        db: aws::dynamodb(&sdk),
        table: config::required("RUNS_TABLE")?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
