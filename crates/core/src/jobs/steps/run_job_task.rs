//! `run-job-task`: ECS RunTask of the app's task definition with the job's command as the
//! container override and a client token derived from the occurrence (a retried step starts
//! one task). Names the task on the lease and the run record; if the lease was taken over
//! meanwhile (`replace`), stops its own task at once.

use aws_types::SdkConfig;
use serde::Deserialize;

use crate::error::Error;
use crate::jobs::lease;
use crate::jobs::workflow::{self, JobRun, TaskState};
use crate::jobs::Concurrency;
use crate::platform::{aws, config};
use crate::shared::runs::Runs;
use crate::shared::task;

pub struct Deps {
    pub db: aws_sdk_dynamodb::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub locks_table: String,
    pub runs: Runs,
    pub cluster: String,
    pub task_definition: String,
    pub container: String,
    pub log_group: String,
    pub log_stream_prefix: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        let db = aws::dynamodb(sdk);
        Ok(Deps {
            db: db.clone(),
            ecs: aws::ecs(sdk),
            locks_table: config::required("LOCKS_TABLE")?,
            runs: Runs::new(db, config::required("RUNS_TABLE")?),
            cluster: config::required("JOBS_CLUSTER")?,
            task_definition: config::required("JOB_TASK_DEFINITION")?,
            container: config::optional("JOB_CONTAINER").unwrap_or_else(|| "app".into()),
            log_group: config::required("JOBS_LOG_GROUP")?,
            log_stream_prefix: config::optional("JOBS_LOG_STREAM_PREFIX")
                .unwrap_or_else(|| "job".into()),
            subnets: config::list("JOB_SUBNETS"),
            security_groups: config::list("JOB_SECURITY_GROUPS"),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Input {
    pub run: JobRun,
}

/// The task as the workflow tracks it while waiting.
pub type Output = TaskState;

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let run = input.run;
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
    crate::jobs::ledger::metric::task_started(&run, crate::platform::time::now());
    if run.concurrency != Concurrency::Allow
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
    if !deps.runs.set_task_arn(&run.run_id, &task_arn).await? {
        tracing::warn!(run = %run.run_id, %task_arn, "no run record to name the task on");
    }
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
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobsFile;
    use crate::platform::dynamo;
    use crate::shared::runs::RunRecord;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_sdk_ecs::operation::run_task::RunTaskOutput;
    use aws_sdk_ecs::types::Task;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use serde_json::json;

    const TASK: &str = "arn:aws:ecs:us-east-1:123456789012:task/jobs/0123abcd";

    fn run(job: &str) -> JobRun {
        workflow::validate(
            json!({"job": job, "scheduledTime": "2026-11-28T13:15:00Z"}),
            &crate::sfn::Execution {
                id: "arn:e1".into(),
                name: "e1".into(),
                start_time: "2026-11-28T13:15:01Z".into(),
            },
            "staging",
            &JobsFile::embedded(),
        )
        .unwrap()
    }

    fn deps(db: &[&Rule], ecs: &[&Rule]) -> Deps {
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, db);
        Deps {
            db: db.clone(),
            ecs: mock_client!(aws_sdk_ecs, RuleMode::MatchAny, ecs),
            locks_table: "locks".into(),
            runs: Runs::new(db, "runs"),
            cluster: "jobs".into(),
            task_definition: "app:1".into(),
            container: "app".into(),
            log_group: "/batchless/staging/jobs".into(),
            log_stream_prefix: "job".into(),
            subnets: vec![],
            security_groups: vec![],
        }
    }

    #[tokio::test]
    async fn the_task_starts_with_the_occurrence_token_and_is_named_on_lease_and_run() {
        let r = run("sync-exchange-rates");
        let token = r.client_token.clone();
        let start = mock!(aws_sdk_ecs::Client::run_task)
            .match_requests(move |q| q.client_token() == Some(token.as_str()))
            .then_output(|| {
                RunTaskOutput::builder()
                    .tasks(Task::builder().task_arn(TASK).build())
                    .build()
            });
        let named = |table: &'static str| {
            mock!(aws_sdk_dynamodb::Client::update_item)
                .match_requests(move |u| {
                    u.table_name() == Some(table)
                        && u.expression_attribute_values()
                            .is_some_and(|v| v.values().any(|a| a == &dynamo::s(TASK)))
                })
                .then_output(|| {
                    UpdateItemOutput::builder()
                        .set_attributes(Some(dynamo::to_item(&RunRecord::default())))
                        .build()
                })
        };
        let (lease, record) = (named("locks"), named("runs"));
        let d = deps(&[&lease, &record], &[&start]);
        let out = handle(&d, Input { run: r }).await.unwrap();
        assert_eq!(out.task_arn, TASK);
        assert_eq!(out.log_stream, "job/app/0123abcd");
        assert_eq!(out.wait_seconds, workflow::POLL_EVERY_SECONDS);
        assert_eq!(
            (start.num_calls(), lease.num_calls(), record.num_calls()),
            (1, 1, 1)
        );
    }
}
