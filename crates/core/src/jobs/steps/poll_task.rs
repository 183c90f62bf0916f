//! `poll-task`: the safety net of the job's task wait, run when the wait's timeout passes
//! without the STOPPED event. Asks ECS directly; counts the time waited by Step Functions' own
//! clock (the sum of the wait timeouts), and past the job's timeout stops the task
//! (→ `JobTimedOut`).

use aws_types::SdkConfig;
use serde::Deserialize;

use crate::error::Error;
use crate::jobs::workflow::{self, JobRun, TaskState};
use crate::platform::aws;
use crate::shared::task;

pub struct Deps {
    pub ecs: aws_sdk_ecs::Client,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps { ecs: aws::ecs(sdk) })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Input {
    pub run: JobRun,
    pub task: TaskState,
}

/// The task's state for the next wait, with what this poll saw (`lastPoll`).
pub type Output = TaskState;

/// Pure: what to do after a poll. Returns whether to stop the task now.
fn next(run: &JobRun, t: &mut TaskState, finished: bool) -> bool {
    t.waited_seconds += t.wait_seconds;
    if finished {
        return false;
    }
    if t.timed_out || t.waited_seconds >= run.timeout_seconds {
        t.timed_out = true;
        t.wait_seconds = workflow::STOP_WAIT_SECONDS;
        return true;
    }
    t.wait_seconds = workflow::next_wait(run, t.waited_seconds);
    false
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let Input { run, mut task } = input;
    let outcome = task::describe(&deps.ecs, &task.task_arn).await?;
    if next(&run, &mut task, outcome.finished) {
        let stopped = task::stop(
            &deps.ecs,
            &task.task_arn,
            &format!("batchless: job timed out after {}s", run.timeout_seconds),
        )
        .await?;
        tracing::warn!(task = %task.task_arn, stopped, "job timed out: task stopped");
    }
    task.last_poll = Some(outcome);
    Ok(task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobsFile;
    use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
    use aws_sdk_ecs::operation::stop_task::StopTaskOutput;
    use aws_sdk_ecs::types::Task;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use serde_json::json;

    const TASK: &str = "arn:aws:ecs:us-east-1:123456789012:task/jobs/t1";

    fn run(timeout: u64) -> JobRun {
        let exec = crate::sfn::Execution {
            id: "arn:e1".into(),
            name: "e1".into(),
            start_time: "2026-11-28T13:00:00Z".into(),
        };
        workflow::validate(
            json!({"job": "purge-expired-sessions", "manual": {"timeoutSeconds": timeout}}),
            &exec,
            "staging",
            &JobsFile::embedded(),
        )
        .unwrap()
    }

    #[test]
    fn waits_then_stops_past_the_timeout() {
        let r = run(700);
        let mut t = TaskState {
            wait_seconds: 300,
            ..Default::default()
        };
        assert!(!next(&r, &mut t, false));
        assert_eq!((t.waited_seconds, t.wait_seconds), (300, 300));
        assert!(!next(&r, &mut t, false));
        assert_eq!((t.waited_seconds, t.wait_seconds), (600, 100));
        assert!(next(&r, &mut t, false));
        assert!(t.timed_out);
        assert_eq!(t.wait_seconds, workflow::STOP_WAIT_SECONDS);
        let mut done = TaskState {
            wait_seconds: 300,
            ..Default::default()
        };
        assert!(!next(&r, &mut done, true));
        assert!(!done.timed_out);
    }

    fn running() -> DescribeTasksOutput {
        DescribeTasksOutput::builder()
            .tasks(
                Task::builder()
                    .task_arn(TASK)
                    .last_status("RUNNING")
                    .build(),
            )
            .build()
    }

    /// One poll of the task 300 s into its wait, for a run with `timeout_seconds`.
    async fn poll_after_300s(ecs: aws_sdk_ecs::Client, timeout_seconds: u64) -> Output {
        let task = TaskState {
            task_arn: TASK.into(),
            wait_seconds: 300,
            ..Default::default()
        };
        let input = Input {
            run: run(timeout_seconds),
            task,
        };
        handle(&Deps { ecs }, input).await.unwrap()
    }

    #[tokio::test]
    async fn past_the_timeout_the_running_task_is_stopped() {
        let describe = mock!(aws_sdk_ecs::Client::describe_tasks).then_output(running);
        let stop = mock!(aws_sdk_ecs::Client::stop_task)
            .match_requests(|r| {
                r.task() == Some(TASK)
                    && r.reason()
                        .is_some_and(|m| m.contains("timed out after 300s"))
            })
            .then_output(|| StopTaskOutput::builder().build());
        let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&describe, &stop]);
        let out = poll_after_300s(ecs, 300).await;
        assert!(out.timed_out);
        assert_eq!(out.wait_seconds, workflow::STOP_WAIT_SECONDS);
        assert_eq!(out.last_poll.map(|p| p.finished), Some(false));
        assert_eq!(stop.num_calls(), 1);
    }

    #[tokio::test]
    async fn within_the_timeout_nothing_is_stopped() {
        let describe = mock!(aws_sdk_ecs::Client::describe_tasks).then_output(running);
        let ecs = mock_client!(aws_sdk_ecs, RuleMode::MatchAny, [&describe]);
        let out = poll_after_300s(ecs, 3600).await;
        assert!(!out.timed_out);
        assert_eq!((out.waited_seconds, out.wait_seconds), (300, 300));
    }
}
