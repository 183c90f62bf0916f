//! ECS: run a job's task (the app's task definition, the job's command as an override, a
//! client token so a retried start makes one task), read how it ended, stop it.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, ContainerOverride, KeyValuePair, LaunchType,
    NetworkConfiguration, Task, TaskOverride,
};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::platform::aws::AwsResultExt;

/// How a task looks to the workflow (the one shape every waiting path returns).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskOutcome {
    pub task_arn: String,
    pub finished: bool,
    pub last_status: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub stop_code: Option<String>,
    #[serde(default)]
    pub stopped_reason: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub stopped_at: Option<String>,
    #[serde(default)]
    pub duration_seconds: Option<i64>,
}

fn dt(t: &aws_smithy_types::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// Pure: an ECS `Task` as a [`TaskOutcome`].
pub fn outcome(task: &Task) -> TaskOutcome {
    let last_status = task.last_status().unwrap_or("PROVISIONING").to_string();
    let started = task.started_at().and_then(dt);
    let stopped = task.stopped_at().and_then(dt);
    TaskOutcome {
        task_arn: task.task_arn().unwrap_or_default().to_string(),
        finished: last_status == "STOPPED",
        exit_code: task.containers().first().and_then(|c| c.exit_code()),
        stop_code: task.stop_code().map(|c| c.as_str().to_string()),
        stopped_reason: task
            .stopped_reason()
            .map(|r| crate::platform::redact::redact(r).into_owned()),
        started_at: started.map(crate::platform::time::rfc3339),
        stopped_at: stopped.map(crate::platform::time::rfc3339),
        duration_seconds: started
            .zip(stopped)
            .map(|(a, b)| crate::platform::time::seconds_between(a, b)),
        last_status,
    }
}

/// `arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID` → `CLUSTER`.
pub fn cluster_of(task_arn: &str) -> Option<&str> {
    let rest = task_arn.split_once(":task/")?.1;
    let (cluster, _) = rest.split_once('/')?;
    Some(cluster)
}

pub fn task_id(task_arn: &str) -> &str {
    task_arn.rsplit('/').next().unwrap_or(task_arn)
}

pub async fn describe(ecs: &aws_sdk_ecs::Client, task_arn: &str) -> Result<TaskOutcome, Error> {
    let mut req = ecs.describe_tasks().tasks(task_arn);
    if let Some(c) = cluster_of(task_arn) {
        req = req.cluster(c);
    }
    let out = req.send().await.aws("DescribeTasks")?;
    out.tasks()
        .first()
        .map(outcome)
        .ok_or_else(|| Error::NotFound(format!("task {task_arn}")))
}

/// Stop a task; a task that already stopped (or is unknown) is not an error. Returns whether
/// it was running.
pub async fn stop(ecs: &aws_sdk_ecs::Client, task_arn: &str, reason: &str) -> Result<bool, Error> {
    match describe(ecs, task_arn).await {
        Ok(o) if o.finished => return Ok(false),
        Ok(_) => {}
        Err(Error::NotFound(_)) => return Ok(false),
        Err(e) => return Err(e),
    }
    let mut req = ecs.stop_task().task(task_arn).reason(reason);
    if let Some(c) = cluster_of(task_arn) {
        req = req.cluster(c);
    }
    req.send().await.aws("StopTask")?;
    Ok(true)
}

#[derive(Debug, Clone)]
pub struct RunRequest<'a> {
    pub cluster: &'a str,
    pub task_definition: &'a str,
    pub container: &'a str,
    /// One shell command line (run as `sh -c`).
    pub command: &'a str,
    pub environment: &'a BTreeMap<String, String>,
    pub cpu: u32,
    pub memory: u32,
    /// ECS keeps it 24 hours: a retried start returns the same task.
    pub client_token: &'a str,
    pub started_by: &'a str,
    pub subnets: &'a [String],
    pub security_groups: &'a [String],
}

pub async fn run(ecs: &aws_sdk_ecs::Client, req: RunRequest<'_>) -> Result<String, Error> {
    let env: Vec<KeyValuePair> = req
        .environment
        .iter()
        .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
        .collect();
    let overrides = TaskOverride::builder()
        .cpu(req.cpu.to_string())
        .memory(req.memory.to_string())
        .container_overrides(
            ContainerOverride::builder()
                .name(req.container)
                .set_command(Some(vec![
                    "sh".to_string(),
                    "-c".to_string(),
                    req.command.to_string(),
                ]))
                .set_environment((!env.is_empty()).then_some(env))
                .build(),
        )
        .build();
    let network = (!req.subnets.is_empty()).then(|| {
        NetworkConfiguration::builder()
            .awsvpc_configuration(
                AwsVpcConfiguration::builder()
                    .set_subnets(Some(req.subnets.to_vec()))
                    .set_security_groups(Some(req.security_groups.to_vec()))
                    .assign_public_ip(AssignPublicIp::Disabled)
                    .build()
                    .expect("subnets set"),
            )
            .build()
    });
    let out = ecs
        .run_task()
        .cluster(req.cluster)
        .task_definition(req.task_definition)
        .launch_type(LaunchType::Fargate)
        .count(1)
        .overrides(overrides)
        .client_token(req.client_token)
        .started_by(req.started_by)
        .set_network_configuration(network)
        .send()
        .await
        .aws("RunTask")?;
    if let Some(f) = out.failures().first() {
        return Err(Error::Aws(crate::platform::aws::AwsError::Service {
            operation: "RunTask",
            code: f.reason().unwrap_or("Failure").to_string(),
            message: f.detail().unwrap_or_default().to_string(),
        }));
    }
    out.tasks()
        .first()
        .and_then(|t| t.task_arn())
        .map(str::to_string)
        .ok_or_else(|| Error::NotFound("RunTask returned no task".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
    use aws_sdk_ecs::operation::run_task::RunTaskOutput;
    use aws_sdk_ecs::types::{Container, TaskStopCode};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    const ARN: &str = "arn:aws:ecs:us-east-1:123456789012:task/batchless-staging-jobs/abc123";

    fn stopped(code: i32) -> Task {
        Task::builder()
            .task_arn(ARN)
            .last_status("STOPPED")
            .stop_code(TaskStopCode::EssentialContainerExited)
            .stopped_reason("Essential container in task exited")
            .started_at(aws_smithy_types::DateTime::from_secs(1_700_000_000))
            .stopped_at(aws_smithy_types::DateTime::from_secs(1_700_000_030))
            .containers(Container::builder().exit_code(code).build())
            .build()
    }

    #[test]
    fn outcome_and_arns() {
        let o = outcome(&stopped(3));
        assert!(o.finished);
        assert_eq!(o.exit_code, Some(3));
        assert_eq!(o.duration_seconds, Some(30));
        assert_eq!(o.stop_code.as_deref(), Some("EssentialContainerExited"));
        assert_eq!(cluster_of(ARN), Some("batchless-staging-jobs"));
        assert_eq!(task_id(ARN), "abc123");
    }

    #[tokio::test]
    async fn run_passes_command_and_token_and_stop_skips_ended_tasks() {
        let run_rule = mock!(aws_sdk_ecs::Client::run_task)
            .match_requests(|r| {
                r.client_token() == Some("tok")
                    && r.overrides().unwrap().container_overrides()[0].command()
                        == ["sh", "-c", "bin/rake x"]
            })
            .then_output(|| RunTaskOutput::builder().tasks(stopped(0)).build());
        let desc = mock!(aws_sdk_ecs::Client::describe_tasks)
            .then_output(|| DescribeTasksOutput::builder().tasks(stopped(0)).build());
        let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&run_rule, &desc]);
        let env = BTreeMap::new();
        let arn = run(
            &ecs,
            RunRequest {
                cluster: "c",
                task_definition: "td",
                container: "app",
                command: "bin/rake x",
                environment: &env,
                cpu: 256,
                memory: 512,
                client_token: "tok",
                started_by: "batchless",
                subnets: &[],
                security_groups: &[],
            },
        )
        .await
        .unwrap();
        assert_eq!(arn, ARN);
        assert!(!stop(&ecs, ARN, "r").await.unwrap());
    }
}
