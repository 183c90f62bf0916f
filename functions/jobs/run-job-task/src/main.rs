//! `run-job-task`: ECS RunTask of the app's task definition with the job's command as the
//! container override and a client token derived from the occurrence (a retried step starts
//! one task). Names the task on the lease and the run record; if the lease was taken over
//! meanwhile (`replace`), stops its own task at once.

use batchless_core::jobs::lease;
use batchless_core::jobs::workflow::{self, JobRun, TaskState};
use batchless_core::platform::aws::AwsResultExt;
use batchless_core::shared::task;
use batchless_core::{
    platform::aws, platform::config, platform::dynamo, platform::input::parse_strict, Error,
};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use serde_json::Value;

struct Deps {
    db: aws_sdk_dynamodb::Client,
    ecs: aws_sdk_ecs::Client,
    locks_table: String,
    runs_table: String,
    cluster: String,
    task_definition: String,
    container: String,
    log_group: String,
    log_stream_prefix: String,
    subnets: Vec<String>,
    security_groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    run: JobRun,
}

fn list(v: Option<String>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let Event { run } = parse_strict(event)?;
    let started_by = format!("batchless-{}", run.job);
    let task_arn = task::run(
        &deps.ecs,
        task::RunRequest {
            cluster: &deps.cluster,
            task_definition: &deps.task_definition,
            container: &deps.container,
            command: &run.command,
            environment: &run.environment_overrides,
            cpu: run.cpu,
            memory: run.memory,
            client_token: &run.client_token,
            started_by: &started_by[..started_by.len().min(36)],
            subnets: &deps.subnets,
            security_groups: &deps.security_groups,
        },
    )
    .await?;
    if run.concurrency != "allow"
        && !lease::set_task(
            &deps.db,
            &deps.locks_table,
            &run.lease,
            &run.run_id,
            &task_arn,
        )
        .await?
    {
        let holder = lease::get(&deps.db, &deps.locks_table, &run.lease).await?;
        let by = holder
            .map(|h| h.owner.rsplit(':').next().unwrap_or_default().to_string())
            .unwrap_or_else(|| "another run".into());
        tracing::warn!(%task_arn, %by, "lease taken over before the task was named; stopping it");
        task::stop(&deps.ecs, &task_arn, &format!("replaced by {by}")).await?;
    }
    deps.db
        .update_item()
        .table_name(&deps.runs_table)
        .key("runId", dynamo::s(&run.run_id))
        .update_expression("SET taskArn = :t")
        .expression_attribute_values(":t", dynamo::s(&task_arn))
        .send()
        .await
        .aws("UpdateItem")?;
    let state = TaskState {
        log_group: deps.log_group.clone(),
        log_stream: format!(
            "{}/{}/{}",
            deps.log_stream_prefix,
            deps.container,
            task::task_id(&task_arn)
        ),
        task_arn,
        wait_seconds: workflow::next_wait(&run, 0),
        waited_seconds: 0,
        timed_out: false,
        last_poll: None,
    };
    tracing::info!(task = %state.task_arn, job = %run.job, "task started");
    Ok(serde_json::to_value(state).expect("serializes"))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        db: aws::dynamodb(&sdk),
        ecs: aws::ecs(&sdk),
        locks_table: config::required("LOCKS_TABLE")?,
        runs_table: config::required("RUNS_TABLE")?,
        cluster: config::required("JOBS_CLUSTER")?,
        task_definition: config::required("JOB_TASK_DEFINITION")?,
        container: config::optional("JOB_CONTAINER").unwrap_or_else(|| "app".into()),
        log_group: config::required("JOBS_LOG_GROUP")?,
        log_stream_prefix: config::optional("JOBS_LOG_STREAM_PREFIX")
            .unwrap_or_else(|| "job".into()),
        subnets: list(config::optional("JOB_SUBNETS")),
        security_groups: list(config::optional("JOB_SECURITY_GROUPS")),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
