//! `complete-wait`: target of the "CodeBuild Build State Change" and "ECS Task State Change"
//! rules. When a build reaches a final status or a task STOPPED, it reads the build/task
//! itself (one outcome shape for every path that ends a wait) and sends that to the execution
//! waiting on it, if any ([`waits::complete`]). At-least-once delivery is fine: the wait is
//! taken once, a completion for a key nobody waits on is a no-op, and a token that is no
//! longer valid (the wait timed out and the poll took over) completes nothing.

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use aws_lambda_events::event::codebuild::CodeBuildEvent;
use aws_sdk_codebuild::types::StatusType;
use aws_types::SdkConfig;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::platform::input::InputError;
use crate::platform::{aws, config};
use crate::sfn::waits::{self, WaitKind};
use crate::shared::{build, task};

pub const BUILD_STATE_CHANGE: &str = "CodeBuild Build State Change";
pub const TASK_STATE_CHANGE: &str = "ECS Task State Change";

pub struct Deps {
    pub db: aws_sdk_dynamodb::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub codebuild: aws_sdk_codebuild::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub table: String,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            db: aws::dynamodb(sdk),
            sfn: aws::sfn(sdk),
            codebuild: aws::codebuild(sdk),
            ecs: aws::ecs(sdk),
            table: config::required("WAITS_TABLE")?,
        })
    }
}

/// The `detail` of an "ECS Task State Change" event (`aws_lambda_events` has no ECS type):
/// only what ending a wait needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStateChange {
    pub task_arn: String,
    #[serde(default)]
    pub last_status: String,
}

/// An EventBridge event, by its `detail-type`.
#[derive(Debug)]
pub enum Input {
    Build(Box<CodeBuildEvent>),
    Task(Box<CloudWatchEvent<TaskStateChange>>),
    /// Any other detail type: ignored (the rules send none).
    Other(String),
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let event = serde_json::Value::deserialize(d)?;
        let detail_type = event
            .get("detail-type")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string();
        let typed = |what: &str, e: serde_json::Error| D::Error::custom(format!("{what}: {e}"));
        match detail_type.as_str() {
            BUILD_STATE_CHANGE => serde_json::from_value(event)
                .map(|e| Input::Build(Box::new(e)))
                .map_err(|e| typed(BUILD_STATE_CHANGE, e)),
            TASK_STATE_CHANGE => serde_json::from_value(event)
                .map(|e| Input::Task(Box::new(e)))
                .map_err(|e| typed(TASK_STATE_CHANGE, e)),
            _ => Ok(Input::Other(detail_type)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// Whether a waiting execution was told.
    pub completed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_key: Option<String>,
    /// The detail type of an event this function does not handle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

impl Output {
    fn not_final(status: String) -> Self {
        Output {
            completed: false,
            status: Some(status),
            wait_key: None,
            ignored: None,
        }
    }
}

/// A build status after which the build does not change any more.
pub fn is_final_build_status(status: &str) -> bool {
    matches!(
        StatusType::from(status),
        StatusType::Succeeded
            | StatusType::Failed
            | StatusType::Fault
            | StatusType::Stopped
            | StatusType::TimedOut
    )
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    match input {
        Input::Build(event) => build_changed(deps, &event).await,
        Input::Task(event) => task_changed(deps, &event).await,
        Input::Other(detail_type) => {
            tracing::warn!(
                detail_type,
                "ignoring an event this function does not handle"
            );
            Ok(Output {
                completed: false,
                status: None,
                wait_key: None,
                ignored: Some(detail_type),
            })
        }
    }
}

async fn build_changed(deps: &Deps, event: &CodeBuildEvent) -> Result<Output, Error> {
    let status = event.detail.build_status.clone().unwrap_or_default();
    let Some(build_id) = event.detail.build_id.as_deref() else {
        return Err(InputError::field("detail.build-id", "missing").into());
    };
    if !is_final_build_status(&status) {
        return Ok(Output::not_final(status));
    }
    let outcome = build::fetch_outcome(&deps.codebuild, build_id).await?;
    let key = WaitKind::Codebuild.key(build_id);
    complete(deps, key, status, &outcome).await
}

async fn task_changed(
    deps: &Deps,
    event: &CloudWatchEvent<TaskStateChange>,
) -> Result<Output, Error> {
    let Some(detail) = event.detail.as_ref() else {
        return Err(InputError::field("detail", "missing").into());
    };
    if detail.last_status != "STOPPED" {
        return Ok(Output::not_final(detail.last_status.clone()));
    }
    let outcome = task::describe(&deps.ecs, &detail.task_arn).await?;
    let key = WaitKind::Ecs.key(&detail.task_arn);
    complete(deps, key, detail.last_status.clone(), &outcome).await
}

async fn complete(
    deps: &Deps,
    key: String,
    status: String,
    outcome: &impl Serialize,
) -> Result<Output, Error> {
    let output = serde_json::to_value(outcome).expect("outcome serializes");
    let completed = waits::complete(&deps.db, &deps.sfn, &deps.table, &key, &output).await?;
    tracing::info!(%key, status, completed, "state change handled");
    Ok(Output {
        completed,
        status: Some(status),
        wait_key: Some(key),
        ignored: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::input::parse_strict;
    use aws_sdk_codebuild::operation::batch_get_builds::BatchGetBuildsOutput;
    use aws_sdk_codebuild::types::Build;
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;

    use aws_sdk_ecs::operation::describe_tasks::DescribeTasksOutput;
    use aws_sdk_ecs::types::Task;
    use aws_sdk_sfn::operation::send_task_success::{SendTaskSuccessError, SendTaskSuccessOutput};
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use serde_json::{json, Value};

    const BUILD_ARN: &str =
        "arn:aws:codebuild:us-east-1:123456789012:build/batchless-staging-migration:e7e3";
    const TASK_ARN: &str = "arn:aws:ecs:us-east-1:123456789012:task/batchless-staging/0a1b2c";

    /// A build state-change event as CodeBuild sends it (trimmed to one phase).
    fn build_event(status: &str) -> Value {
        json!({
            "version": "0", "id": "c1e2d323", "detail-type": BUILD_STATE_CHANGE,
            "source": "aws.codebuild", "account": "123456789012", "time": "2026-11-28T13:03:42Z",
            "region": "us-east-1", "resources": [BUILD_ARN],
            "detail": {
                "build-status": status, "project-name": "batchless-staging-migration",
                "build-id": BUILD_ARN,
                "additional-information": {
                    "cache": {"type": "NO_CACHE"}, "timeout-in-minutes": 60,
                    "build-complete": status != "IN_PROGRESS",
                    "initiator": "batchless-staging-start-migration-build",
                    "build-start-time": "Nov 28, 2026 1:00:04 PM",
                    "source": {"type": "GITHUB", "location": "https://github.com/example/app.git"},
                    "source-version": "0123456789abcdef0123456789abcdef01234567",
                    "artifact": {"location": ""},
                    "environment": {"image": "ruby:3.3", "privileged-mode": false,
                        "compute-type": "BUILD_GENERAL1_SMALL", "type": "ARM_CONTAINER",
                        "environment-variables": [{"name": "RAILS_ENV", "type": "PLAINTEXT", "value": "production"}]},
                    "logs": {"group-name": "/batchless/staging/migration", "stream-name": "e7e3",
                        "deep-link": "https://console.aws.amazon.com/cloudwatch/home"},
                    "phases": [
                        {"phase-context": [], "start-time": "Nov 28, 2026 1:00:04 PM",
                         "end-time": "Nov 28, 2026 1:03:38 PM", "duration-in-seconds": 214,
                         "phase-type": "BUILD", "phase-status": "SUCCEEDED"},
                        {"start-time": "Nov 28, 2026 1:03:41 PM", "phase-type": "COMPLETED"}
                    ],
                    "queued-timeout-in-minutes": 480
                },
                "current-phase": "COMPLETED", "current-phase-context": "[]", "version": "1"
            }
        })
    }

    fn task_event(last_status: &str) -> Value {
        json!({
            "version": "0", "id": "e1", "detail-type": TASK_STATE_CHANGE, "source": "aws.ecs",
            "account": "123456789012", "time": "2026-11-28T13:03:42Z", "region": "us-east-1",
            "resources": [TASK_ARN],
            "detail": {"taskArn": TASK_ARN, "lastStatus": last_status, "desiredStatus": "STOPPED",
                       "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/batchless-staging"}
        })
    }

    fn waiter(key: &str) -> waits::Waiter {
        waits::Waiter {
            wait_key: key.into(),
            task_token: "tok".into(),
            execution_arn: "arn:e".into(),
            registered_at: "2026-12-01T00:00:00Z".into(),
            expires_at: "2027-12-01T00:00:00Z".into(),
        }
    }

    /// The waits table: the first take of `key` finds the waiter, every later one nothing.
    fn take_once(key: &'static str) -> Rule {
        mock!(aws_sdk_dynamodb::Client::delete_item)
            .match_requests(move |r| {
                crate::testing::attr_s(r.key(), "waitKey").is_some_and(|k| k == key)
                    && r.condition_expression() == Some("attribute_exists(waitKey)")
            })
            .sequence()
            .output(move || {
                DeleteItemOutput::builder()
                    .set_attributes(Some(crate::platform::dynamo::to_item(&waiter(key))))
                    .build()
            })
            .error(crate::testing::delete_item_failed)
            .repeatedly()
            .build()
    }

    fn nobody_waits() -> Rule {
        crate::testing::delete_item_absent()
    }

    fn build_lookup() -> Rule {
        mock!(aws_sdk_codebuild::Client::batch_get_builds)
            .match_requests(|r| r.ids() == ["batchless-staging-migration:e7e3".to_string()])
            .then_output(|| {
                BatchGetBuildsOutput::builder()
                    .builds(
                        Build::builder()
                            .id("batchless-staging-migration:e7e3")
                            .build_status(StatusType::Succeeded)
                            .build_complete(true)
                            .build(),
                    )
                    .build()
            })
    }

    fn task_lookup() -> Rule {
        mock!(aws_sdk_ecs::Client::describe_tasks)
            .match_requests(|r| r.cluster() == Some("batchless-staging"))
            .then_output(|| {
                DescribeTasksOutput::builder()
                    .tasks(
                        Task::builder()
                            .task_arn(TASK_ARN)
                            .last_status("STOPPED")
                            .build(),
                    )
                    .build()
            })
    }

    fn send_ok() -> Rule {
        mock!(aws_sdk_sfn::Client::send_task_success)
            .match_requests(|r| {
                r.task_token() == Some("tok")
                    && r.output().is_some_and(|o| o.contains("\"finished\":true"))
            })
            .then_output(|| SendTaskSuccessOutput::builder().build())
    }

    fn deps(db: &[&Rule], sfn: &[&Rule], codebuild: &[&Rule], ecs: &[&Rule]) -> Deps {
        Deps {
            db: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, db),
            sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, sfn),
            codebuild: mock_client!(aws_sdk_codebuild, RuleMode::MatchAny, codebuild),
            ecs: mock_client!(aws_sdk_ecs, RuleMode::MatchAny, ecs),
            table: "waits".into(),
        }
    }

    async fn run(d: &Deps, event: Value) -> Result<Value, Error> {
        crate::lambda::invoke(d, &handle, event).await
    }

    #[tokio::test]
    async fn a_final_build_event_sends_the_builds_outcome_once() {
        let (take, get, send) = (
            take_once("codebuild#batchless-staging-migration:e7e3"),
            build_lookup(),
            send_ok(),
        );
        let d = deps(&[&take], &[&send], &[&get], &[]);
        let first = run(&d, build_event("SUCCEEDED")).await.unwrap();
        assert_eq!(
            first,
            json!({"completed": true, "status": "SUCCEEDED",
                   "waitKey": "codebuild#batchless-staging-migration:e7e3"})
        );
        // EventBridge delivers at least once: the second delivery finds the wait taken.
        let second = run(&d, build_event("SUCCEEDED")).await.unwrap();
        assert_eq!(second["completed"], json!(false));
        assert_eq!(send.num_calls(), 1);
        assert_eq!(take.num_calls(), 2);
    }

    #[tokio::test]
    async fn a_running_build_completes_nothing_and_reads_nothing() {
        let (take, get, send) = (nobody_waits(), build_lookup(), send_ok());
        let d = deps(&[&take], &[&send], &[&get], &[]);
        let out = run(&d, build_event("IN_PROGRESS")).await.unwrap();
        assert_eq!(out, json!({"completed": false, "status": "IN_PROGRESS"}));
        assert_eq!(
            (take.num_calls(), get.num_calls(), send.num_calls()),
            (0, 0, 0)
        );
    }

    #[tokio::test]
    async fn a_build_nobody_waits_on_is_a_no_op() {
        let (take, get, send) = (nobody_waits(), build_lookup(), send_ok());
        let d = deps(&[&take], &[&send], &[&get], &[]);
        let out = run(&d, build_event("FAILED")).await.unwrap();
        assert_eq!(out["completed"], json!(false));
        assert_eq!((take.num_calls(), send.num_calls()), (1, 0));
    }

    #[tokio::test]
    async fn a_token_that_is_no_longer_valid_completes_nothing() {
        let take = take_once("codebuild#batchless-staging-migration:e7e3");
        let get = build_lookup();
        let send = mock!(aws_sdk_sfn::Client::send_task_success).then_error(|| {
            SendTaskSuccessError::TaskTimedOut(
                aws_sdk_sfn::types::error::TaskTimedOut::builder()
                    .meta(crate::testing::meta("TaskTimedOut"))
                    .build(),
            )
        });
        let d = deps(&[&take], &[&send], &[&get], &[]);
        let out = run(&d, build_event("SUCCEEDED")).await.unwrap();
        assert_eq!(out["completed"], json!(false));
        assert_eq!(send.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_stopped_task_sends_the_tasks_outcome() {
        let key: &'static str = Box::leak(WaitKind::Ecs.key(TASK_ARN).into_boxed_str());
        let (take, describe, send) = (take_once(key), task_lookup(), send_ok());
        let d = deps(&[&take], &[&send], &[], &[&describe]);
        let out = run(&d, task_event("STOPPED")).await.unwrap();
        assert_eq!(
            out,
            json!({"completed": true, "status": "STOPPED", "waitKey": key})
        );
        assert_eq!((describe.num_calls(), send.num_calls()), (1, 1));
        let running = run(&d, task_event("RUNNING")).await.unwrap();
        assert_eq!(running, json!({"completed": false, "status": "RUNNING"}));
        assert_eq!(describe.num_calls(), 1);
    }

    #[tokio::test]
    async fn other_events_are_ignored() {
        let d = deps(&[], &[], &[], &[]);
        let out = run(
            &d,
            json!({"detail-type": "CodeBuild Build Phase Change", "detail": {}}),
        )
        .await
        .unwrap();
        assert_eq!(
            out,
            json!({"completed": false, "ignored": "CodeBuild Build Phase Change"})
        );
    }

    #[test]
    fn a_malformed_event_is_invalid_input_naming_what_is_wrong() {
        let mut e = task_event("STOPPED");
        e["detail"].as_object_mut().unwrap().remove("taskArn");
        let err = parse_strict::<Input>(e).unwrap_err();
        assert!(err.message.contains("taskArn"), "{err}");
    }

    #[tokio::test]
    async fn a_build_event_without_its_build_id_is_invalid_input() {
        let take = nobody_waits();
        let d = deps(&[&take], &[], &[], &[]);
        let mut b = build_event("SUCCEEDED");
        b["detail"].as_object_mut().unwrap().remove("build-id");
        let err = run(&d, b).await.unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::InvalidInput);
        assert!(err.to_string().contains("detail.build-id"), "{err}");
        assert_eq!(take.num_calls(), 0);
    }

    #[test]
    fn the_full_event_codebuild_sends_parses() {
        let text = include_str!("../../../../../bench/events/complete-wait.json");
        let Input::Build(event) =
            parse_strict::<Input>(serde_json::from_str(text).unwrap()).unwrap()
        else {
            panic!("not a build event")
        };
        assert_eq!(event.detail.build_status.as_deref(), Some("SUCCEEDED"));
        assert_eq!(event.detail.additional_information.phases.len(), 11);
    }

    #[test]
    fn final_statuses() {
        for s in ["SUCCEEDED", "FAILED", "FAULT", "STOPPED", "TIMED_OUT"] {
            assert!(is_final_build_status(s), "{s}");
        }
        assert!(!is_final_build_status("IN_PROGRESS"));
        assert!(!is_final_build_status("SOMETHING_NEW"));
    }
}
