//! `poll-task`: the safety net of the task wait, run when the wait's timeout passes without the
//! STOPPED event. Asks ECS directly; counts the time waited by Step Functions' own clock (the
//! sum of the wait timeouts), and past the job's timeout stops the task (→ `JobTimedOut`).

use batchless_core::jobs::workflow::{self, JobRun, TaskState};
use batchless_core::shared::task;
use batchless_core::{platform::aws, platform::input::parse_strict, Error};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use serde_json::Value;

struct Deps {
    ecs: aws_sdk_ecs::Client,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    run: JobRun,
    task: TaskState,
}

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

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let Event { run, mut task } = parse_strict(event)?;
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
    Ok(serde_json::to_value(task).expect("serializes"))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        ecs: aws::ecs(&sdk),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use batchless_core::jobs::JobsFile;
    use serde_json::json;

    fn run(timeout: u64) -> JobRun {
        let exec = batchless_core::sfn::Execution {
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
}
