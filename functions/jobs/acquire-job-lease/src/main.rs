//! `acquire-job-lease`: the job's concurrency policy through its lease in the locks table
//! (expiry in the condition). `forbid`: not acquired while a run is live (the workflow skips and
//! records); `replace`: the live run's task is stopped and the lease taken over; `allow`: no lease.

use batchless_core::jobs::lease::{self, Request};
use batchless_core::jobs::workflow::JobRun;
use batchless_core::jobs::Concurrency;
use batchless_core::{
    platform::aws, platform::config, platform::input::parse_strict, platform::time, Error,
};
use chrono::Duration;
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use serde_json::Value;

struct Deps {
    db: aws_sdk_dynamodb::Client,
    ecs: aws_sdk_ecs::Client,
    locks_table: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    run: JobRun,
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let Event { run } = parse_strict(event)?;
    let policy: Concurrency = serde_json::from_value(Value::String(run.concurrency.clone()))
        .map_err(|e| batchless_core::platform::input::InputError::field("run.concurrency", e))?;
    let result = lease::acquire(
        &deps.db,
        &deps.ecs,
        Request {
            table: &deps.locks_table,
            lease: &run.lease,
            owner: &run.run_id,
            owner_name: &run.execution_name,
            occurrence_key: &run.occurrence_key,
            policy,
            ttl: Duration::seconds(run.lease_ttl_seconds as i64),
            now: time::now(),
        },
    )
    .await?;
    tracing::info!(lease = %run.lease, acquired = result.acquired, replaced = ?result.replaced, "lease");
    Ok(serde_json::to_value(result).expect("serializes"))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        db: aws::dynamodb(&sdk),
        ecs: aws::ecs(&sdk),
        locks_table: config::required("LOCKS_TABLE")?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
