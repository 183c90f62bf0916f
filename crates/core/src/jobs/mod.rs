//! Scheduled jobs (issue 4): the jobs file, Scheduler expressions, exactly-once occurrences,
//! the per-job lease that carries the concurrency policy, ECS tasks, the workflow's domain and
//! the template's generated schedules.

pub mod config;
pub mod lease;
pub mod occurrence;
pub mod schedule;
pub mod task;
pub mod template;
pub mod workflow;

pub use config::{Concurrency, Job, JobsFile};
pub use workflow::WORKFLOW;

/// The ECS task a run started, from its record in the runs table (`taskArn`), for cleanup.
pub async fn task_arn_of_run(
    db: &aws_sdk_dynamodb::Client,
    runs_table: &str,
    run_id: &str,
) -> Result<Option<String>, crate::Error> {
    use crate::aws::AwsResultExt;
    let out = db
        .get_item()
        .table_name(runs_table)
        .key("runId", crate::dynamo::s(run_id))
        .projection_expression("taskArn")
        .consistent_read(true)
        .send()
        .await
        .aws("GetItem")?;
    Ok(out
        .item()
        .and_then(|i| i.get("taskArn"))
        .and_then(|v| v.as_s().ok())
        .cloned())
}
