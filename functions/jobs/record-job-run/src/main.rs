//! `record-job-run`: the job's history record (job, occurrence, task, exit code, duration,
//! log), the run's status on its occurrence, the lease released (only if still ours), and what
//! the workflow ends with: the status, the `JobFailed`/`JobTimedOut` cause (redacted log tail)
//! and the Slack post for a failure.

use batchless_core::jobs::occurrence;
use batchless_core::jobs::workflow::{self, JobState};
use batchless_core::shared::people::People;
use batchless_core::{
    platform::aws, platform::config, platform::dynamo, platform::input::parse_strict,
    platform::time, shared::lock, Error,
};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

struct Deps {
    db: aws_sdk_dynamodb::Client,
    runs_table: String,
    occurrences_table: String,
    locks_table: String,
    jobs_channel: String,
    people: Option<People>,
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let state: JobState = parse_strict(event)?;
    let recorded = workflow::record(&state, &deps.jobs_channel, deps.people.as_ref());
    let ended_at = time::rfc3339(time::now());
    let rec = workflow::final_record(&state, &recorded, &ended_at);
    use batchless_core::platform::aws::AwsResultExt;
    deps.db
        .put_item()
        .table_name(&deps.runs_table)
        .set_item(Some(dynamo::to_item(&rec)))
        .send()
        .await
        .aws("PutItem")?;
    occurrence::set_run_status(
        &deps.db,
        &deps.occurrences_table,
        &state.run.occurrence_key,
        &state.run.run_id,
        &recorded.status,
    )
    .await?;
    // Release the lease only if this run took it (a skipped or stale run never held it).
    if state.lease.as_ref().is_some_and(|l| l.acquired) && state.run.concurrency != "allow" {
        lock::release(
            &deps.db,
            &deps.locks_table,
            &state.run.lease,
            &state.run.run_id,
        )
        .await?;
    }
    tracing::info!(job = %state.run.job, status = %recorded.status, "job run recorded");
    Ok(serde_json::to_value(recorded).expect("serializes"))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let environment = config::environment()?;
    let deps = Deps {
        db: aws::dynamodb(&sdk),
        runs_table: config::required("RUNS_TABLE")?,
        occurrences_table: config::required("OCCURRENCES_TABLE")?,
        locks_table: config::required("LOCKS_TABLE")?,
        jobs_channel: config::required("SLACK_JOBS_CHANNEL")?,
        people: People::load(&environment).ok(),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
