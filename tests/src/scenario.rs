//! Table-driven pieces of the scenario tests, so that a test reads as its scenario (the
//! faults it injects, the input it starts) and its expectations: fault specs by what they do
//! ([`fault`]), what an execution is expected to end with ([`Expect`], checked in one call),
//! and the reads the tests repeat (a run's record, a build, a build count).

use anyhow::{Context, Result};
use aws_sdk_codebuild::types::Build;
use serde_json::Value;

use crate::{Ended, Stack};

/// Faults for the replica's fault injection (`POST /_replica/faults`, see `local/README.md`).
pub mod fault {
    use serde_json::{json, Value};

    /// `operation` of `service` answers `error`, `count` times.
    pub fn aws(service: &str, operation: &str, error: &str, count: u32) -> Value {
        json!({"service": service, "operation": operation, "error": error, "count": count})
    }

    /// [`aws`], only for requests whose body contains `needle` (a table name, a word of an
    /// object's content).
    pub fn aws_matching(
        service: &str,
        operation: &str,
        needle: &str,
        error: &str,
        count: u32,
    ) -> Value {
        let mut f = aws(service, operation, error, count);
        f["match"] = json!(needle);
        f
    }

    /// [`aws`], once the first `after` calls have gone through.
    pub fn aws_after(service: &str, operation: &str, error: &str, after: u32, count: u32) -> Value {
        let mut f = aws(service, operation, error, count);
        f["after"] = json!(after);
        f
    }

    /// The next `count` invocations of the function whose name contains `function` and whose
    /// JSON payload contains `input` (a subset) answer `error` without running it: singles
    /// out one state of several that call the same function (`{"woken": true}`: RecheckBuild).
    pub fn lambda_error(function: &str, input: Value, error: &str, count: u32) -> Value {
        json!({"lambda_error": {"function": function, "input": input, "error": error, "count": count}})
    }

    /// The fake Slack answers the next `count` calls of `method` with `ok: false` and `error`
    /// (not a replica fault: [`crate::Stack::faults`] sends it to the fake Slack).
    pub fn slack(method: &str, error: &str, count: u32) -> Value {
        json!({"slack_fail": {"method": method, "error": error, "count": count}})
    }

    /// The next "CodeBuild Build State Change" event of a build that SUCCEEDED (of `project`
    /// when given) is lost: only the safety-net poll can see that build end.
    pub fn lost_build_end(project: Option<&str>) -> Value {
        let mut detail = json!({"build-status": "SUCCEEDED"});
        if let Some(project) = project {
            detail["project-name"] = json!(project);
        }
        json!({"drop_events": {
            "source": "aws.codebuild",
            "detail_type": "CodeBuild Build State Change",
            "detail": detail,
            "count": 1
        }})
    }
}

/// The app's database and Redis password on the replica (`local/batchless_local/services.py`):
/// an infrastructure secret, never to appear in a cause, a log or a post.
pub const INFRA_SECRET: &str = "change-me";

/// What an ended execution is expected to show; every field that is set is asserted by
/// [`Expect::check`]. Start from [`Expect::succeeded`] or [`Expect::failed`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Expect<'a> {
    /// `SUCCEEDED`, `FAILED`, ... (unchecked when `None`).
    pub status: Option<&'a str>,
    /// The execution's error name.
    pub error: Option<&'a str>,
    /// Strings the cause contains, and strings it must not contain.
    pub cause_has: &'a [&'a str],
    pub cause_lacks: &'a [&'a str],
    /// States entered (at least once), and states never entered.
    pub entered: &'a [&'a str],
    pub not_entered: &'a [&'a str],
    /// The whole path, state by state.
    pub path: Option<&'a [&'a str]>,
    /// The error names of the failed Lambda tasks, in order.
    pub task_errors: Option<&'a [&'a str]>,
}

impl<'a> Expect<'a> {
    pub fn succeeded() -> Self {
        Expect {
            status: Some("SUCCEEDED"),
            ..Expect::default()
        }
    }

    pub fn failed(error: &'a str) -> Self {
        Expect {
            status: Some("FAILED"),
            error: Some(error),
            ..Expect::default()
        }
    }

    /// Ended with `error`, whatever the status (a `Fail` state or a stop).
    pub fn error(error: &'a str) -> Self {
        Expect {
            error: Some(error),
            ..Expect::default()
        }
    }

    /// Assert all of it; the states entered, for further checks.
    pub async fn check(&self, stack: &Stack, arn: &str, end: &Ended) -> Result<Vec<String>> {
        if let Some(status) = self.status {
            assert_eq!(end.status, status, "{end:?}");
        }
        if let Some(error) = self.error {
            assert_eq!(end.error.as_deref(), Some(error), "{end:?}");
        }
        let cause = end.cause.as_deref().unwrap_or_default();
        for needle in self.cause_has {
            assert!(
                cause.contains(needle),
                "{needle:?} not in the cause: {cause}"
            );
        }
        for needle in self.cause_lacks {
            assert!(
                !cause.contains(needle),
                "{needle:?} leaked into the cause: {cause}"
            );
        }
        let states = stack.states_entered(arn).await?;
        for s in self.entered {
            assert!(states.iter().any(|x| x == s), "{s} not entered: {states:?}");
        }
        for s in self.not_entered {
            assert!(!states.iter().any(|x| x == s), "{s} entered: {states:?}");
        }
        if let Some(path) = self.path {
            assert_eq!(states, path, "{end:?}");
        }
        if let Some(errors) = self.task_errors {
            assert_eq!(stack.task_errors(arn).await?, errors, "{end:?}");
        }
        Ok(states)
    }
}

impl Stack {
    /// Inject each fault (see [`fault`]), in order; [`Stack::clear_faults`] clears them all.
    pub async fn faults(&self, faults: &[Value]) -> Result<()> {
        for f in faults {
            match f.get("slack_fail") {
                Some(s) => {
                    let field = |k: &str| s[k].as_str().unwrap_or_default().to_string();
                    let count = s["count"].as_u64().unwrap_or(1) as u32;
                    self.slack_fail(&field("method"), &field("error"), count)
                        .await?
                }
                None => self.fault(f.clone()).await?,
            }
        }
        Ok(())
    }

    /// [`Stack::slack_send`] of `spec` with the fields of `extra` added or replaced (e.g. a
    /// wrong signing secret or a stale timestamp).
    pub async fn slack_send_with(&self, mut spec: Value, extra: &Value) -> Result<(u16, Value)> {
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        self.slack_send(&spec).await
    }

    /// The replica's scheduler delivers the target input of the job's schedule
    /// (`batchless-<env>-job-<job>`) for the time `at`, `n` times concurrently; the execution
    /// ARNs (an error when a delivery failed).
    pub async fn fire_schedule(&self, job: &str, at: &str, n: u32) -> Result<Vec<String>> {
        let schedule = format!("batchless-{}-job-{job}", self.environment());
        let resp: Value = self
            .http
            .post(format!("{}/_replica/scheduler/fire", self.endpoint()))
            .json(&serde_json::json!({"schedule": schedule, "at": at, "deliveries": n}))
            .send()
            .await?
            .json()
            .await?;
        resp["deliveries"]
            .as_array()
            .context("no deliveries")?
            .iter()
            .map(|d| {
                d["execution_arn"]
                    .as_str()
                    .map(str::to_string)
                    .with_context(|| format!("delivery failed: {d}"))
            })
            .collect()
    }

    /// A JSON-protocol AWS call (`x-amz-target: target`) to the replica, in the credential
    /// scope of `service` (`ecs`, `events`, `logs`, ...); the raw response.
    pub async fn aws_json(
        &self,
        service: &str,
        target: &str,
        body: &Value,
    ) -> Result<reqwest::Response> {
        let scope = format!("testing/20261128/us-east-1/{service}/aws4_request");
        Ok(self
            .http
            .post(self.endpoint())
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", target)
            .header(
                "authorization",
                format!("AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=0"),
            )
            .body(body.to_string())
            .send()
            .await?)
    }

    /// The stack named by `BATCHLESS_STACK` ([`Stack::from_env`]), its injected faults cleared.
    pub async fn cleared() -> Result<Stack> {
        let stack = Stack::from_env().await?;
        stack.clear_faults().await?;
        Ok(stack)
    }

    /// [`Stack::cleared`] and the ARN of its state machine `logical_id`.
    pub async fn cleared_with(logical_id: &str) -> Result<(Stack, String)> {
        let stack = Stack::cleared().await?;
        let sm = stack.state_machine(logical_id)?;
        Ok((stack, sm))
    }

    /// ECS `RunTask` (`run` is its JSON request) as an operator would call it; the task's ARN.
    pub async fn run_task(&self, run: &Value) -> Result<String> {
        let resp: Value = self
            .aws_json("ecs", "AmazonEC2ContainerServiceV20141113.RunTask", run)
            .await?
            .json()
            .await?;
        resp["tasks"][0]["taskArn"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("RunTask: {resp}"))
    }

    /// DescribeExecution of the execution.
    pub async fn describe(
        &self,
        execution_arn: &str,
    ) -> Result<aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput> {
        Ok(self
            .sfn
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await?)
    }

    /// The execution's status now (`RUNNING`, `SUCCEEDED`, ...).
    pub async fn execution_status(&self, execution_arn: &str) -> Result<String> {
        Ok(self
            .describe(execution_arn)
            .await?
            .status()
            .as_str()
            .to_string())
    }

    /// The first post in `channel` (waiting up to 30 s) whose text contains `needle`.
    pub async fn slack_post_containing(&self, channel: &str, needle: &str) -> Result<Value> {
        post_containing(&format!("a Slack post in {channel}"), needle, || {
            self.slack_messages(channel)
        })
        .await
    }

    /// The run's record in the runs table, if any.
    pub async fn find_run(&self, execution_arn: &str) -> Result<Option<Value>> {
        let runs = self.table("RunsTable")?;
        self.get_item(&runs, "runId", execution_arn).await
    }

    /// The run's record in the runs table; an error when there is none.
    pub async fn run_record(&self, execution_arn: &str) -> Result<Value> {
        self.find_run(execution_arn)
            .await?
            .with_context(|| format!("no run record for {execution_arn}"))
    }

    /// One CodeBuild build.
    pub async fn build(&self, build_id: &str) -> Result<Build> {
        let out = self
            .codebuild
            .batch_get_builds()
            .ids(build_id)
            .send()
            .await?;
        out.builds()
            .first()
            .cloned()
            .with_context(|| format!("no build {build_id}"))
    }

    /// A build's status (`IN_PROGRESS`, `SUCCEEDED`, `STOPPED`, ...).
    pub async fn build_status(&self, build_id: &str) -> Result<Option<String>> {
        Ok(self
            .build(build_id)
            .await?
            .build_status()
            .map(|s| s.as_str().to_string()))
    }

    /// How many builds the project (a logical id, e.g. `MigrationProject`) has had so far.
    pub async fn build_count(&self, project_logical_id: &str) -> Result<usize> {
        let project = self.physical_id(project_logical_id)?;
        Ok(self.builds(&project).await?.len())
    }
}

/// The first of the posts `posts` returns (a channel's, a thread's; polled up to 30 s) whose
/// text contains `needle`; `what` names them in the timeout error.
pub async fn post_containing<F, Fut>(what: &str, needle: &str, mut posts: F) -> Result<Value>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Value>>>,
{
    crate::eventually(
        &format!("{what} containing {needle:?}"),
        std::time::Duration::from_secs(30),
        || {
            let fetched = posts();
            async move {
                Ok(fetched
                    .await?
                    .into_iter()
                    .find(|m| m["text"].as_str().is_some_and(|t| t.contains(needle))))
            }
        },
    )
    .await
}
