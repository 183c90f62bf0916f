//! `cleanup`: target of the "Step Functions Execution Status Change" rule (ABORTED, TIMED_OUT,
//! FAILED). Step Functions runs no `Catch` on `StopExecution` or an execution timeout, so this
//! stops the run's build or ECS task, releases every lock the execution holds, marks its run
//! record ended, and lets the execution's workflow end its own record
//! ([`WorkflowRecords`], e.g. a data patch's). Each part is idempotent: an event may come twice.

use std::future::Future;

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use aws_types::SdkConfig;
use serde::Serialize;

use crate::error::Error;
use crate::platform::input::InputError;
use crate::platform::{aws, config, time};
use crate::sfn::{ExecutionStatus, ExecutionStatusChange};
use crate::shared::runs::Runs;
use crate::shared::{build, lock, task};

/// What a workflow records beyond the runs table, ended here when its execution stopped before
/// the workflow's own last step could (the cleanup function's binary wires the workflows in).
pub trait WorkflowRecords {
    /// End the record `change.execution_arn` left open, if it is one of this workflow's;
    /// returns whether this call ended one.
    fn end_unrecorded(
        &self,
        change: &ExecutionStatusChange,
    ) -> impl Future<Output = Result<bool, Error>>;
}

/// No workflow records besides the runs table.
impl WorkflowRecords for () {
    async fn end_unrecorded(&self, _: &ExecutionStatusChange) -> Result<bool, Error> {
        Ok(false)
    }
}

pub struct Deps<W = ()> {
    pub db: aws_sdk_dynamodb::Client,
    pub codebuild: aws_sdk_codebuild::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub runs_table: String,
    pub locks_table: String,
    pub workflows: W,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            db: aws::dynamodb(sdk),
            codebuild: aws::codebuild(sdk),
            ecs: aws::ecs(sdk),
            runs_table: config::required("RUNS_TABLE")?,
            locks_table: config::required("LOCKS_TABLE")?,
            workflows: (),
        })
    }
}

impl<W> Deps<W> {
    /// The same dependencies, with `workflows` ending their own records.
    pub fn with_workflows<V: WorkflowRecords>(self, workflows: V) -> Deps<V> {
        Deps {
            db: self.db,
            codebuild: self.codebuild,
            ecs: self.ecs,
            runs_table: self.runs_table,
            locks_table: self.locks_table,
            workflows,
        }
    }
}

/// The EventBridge event.
pub type Input = CloudWatchEvent<ExecutionStatusChange>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub execution_arn: String,
    pub status: ExecutionStatus,
    pub stopped_build: Option<String>,
    pub stopped_task: Option<String>,
    pub released_locks: Vec<String>,
    pub record_ended: bool,
}

/// An execution that ended without its workflow's own last step: nothing else ends its build,
/// task, locks and records.
pub fn needs_cleanup(status: ExecutionStatus) -> bool {
    matches!(
        status,
        ExecutionStatus::Aborted | ExecutionStatus::TimedOut | ExecutionStatus::Failed
    )
}

pub async fn handle<W: WorkflowRecords>(deps: &Deps<W>, input: Input) -> Result<Output, Error> {
    let Some(change) = input.detail else {
        return Err(
            InputError::field("detail", "missing: not a Step Functions status change").into(),
        );
    };
    let report = cleanup(deps, &change, &time::rfc3339(time::now())).await?;
    let workflow_record_ended = if needs_cleanup(change.status) {
        deps.workflows.end_unrecorded(&change).await?
    } else {
        false
    };
    tracing::info!(
        workflow_record_ended,
        execution = %report.execution_arn,
        status = %report.status,
        stopped_build = ?report.stopped_build,
        stopped_task = ?report.stopped_task,
        released = ?report.released_locks,
        "cleanup done"
    );
    Ok(report)
}

async fn cleanup<W>(
    deps: &Deps<W>,
    change: &ExecutionStatusChange,
    now: &str,
) -> Result<Output, Error> {
    let execution_arn = change.execution_arn.as_str();
    let mut report = Output {
        execution_arn: execution_arn.to_string(),
        status: change.status,
        stopped_build: None,
        stopped_task: None,
        released_locks: Vec::new(),
        record_ended: false,
    };
    if !needs_cleanup(change.status) {
        return Ok(report);
    }
    let db = &deps.db;
    let runs = Runs::new(db.clone(), &deps.runs_table);
    let run = runs.get(execution_arn).await?;
    if let Some(build_id) = run.as_ref().and_then(|r| r.build_id.as_deref()) {
        match build::stop(&deps.codebuild, build_id).await {
            Ok(true) => report.stopped_build = Some(build_id.to_string()),
            Ok(false) | Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if run.is_some() {
        if let Some(task_arn) = runs.task_arn(execution_arn).await? {
            let reason = format!("batchless: execution {}", change.status);
            if task::stop(&deps.ecs, &task_arn, &reason).await? {
                report.stopped_task = Some(task_arn);
            }
        }
    }
    for lease in lock::held_by(db, &deps.locks_table, execution_arn).await? {
        if lock::release(db, &deps.locks_table, &lease.lock_name, execution_arn).await? {
            report.released_locks.push(lease.lock_name);
        }
    }
    if run.is_some() {
        report.record_ended = runs
            .end_if_running(
                execution_arn,
                change.status.as_str(),
                now,
                &format!("execution {}", change.status),
            )
            .await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::dynamo;
    use crate::shared::runs;
    use aws_sdk_codebuild::operation::batch_get_builds::BatchGetBuildsOutput;
    use aws_sdk_codebuild::operation::stop_build::StopBuildOutput;
    use aws_sdk_codebuild::types::{Build, StatusType};
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::scan::ScanOutput;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;

    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use serde_json::{json, Value};
    use std::cell::Cell;

    const EXECUTION: &str =
        "arn:aws:states:us-east-1:123456789012:execution:batchless-staging-migration:m-1";

    fn event(status: &str) -> Value {
        json!({
            "version": "0", "id": "2dc860dd", "detail-type": "Step Functions Execution Status Change",
            "source": "aws.states", "account": "123456789012", "time": "2026-11-28T13:02:10Z",
            "region": "us-east-1", "resources": [EXECUTION],
            "detail": {
                "executionArn": EXECUTION,
                "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:batchless-staging-migration",
                "name": "m-1", "status": status, "startDate": 1795870800123_i64,
                "stopDate": 1795870930456_i64, "input": "{}", "output": null,
                "inputDetails": {"included": true}, "outputDetails": null, "error": null,
                "cause": null, "redriveCount": 0, "redriveStatus": "NOT_REDRIVABLE"
            }
        })
    }

    fn run_record() -> runs::RunRecord {
        runs::RunRecord {
            run_id: EXECUTION.into(),
            workflow: "migration".into(),
            environment: "staging".into(),
            execution_name: "m-1".into(),
            started_at: "2026-11-28T13:00:00Z".into(),
            started_by: "alice".into(),
            status: runs::RunStatus::Running,
            build_id: Some("batchless-staging-migration:b1".into()),
            ..Default::default()
        }
    }

    struct Mocks {
        get_run: Rule,
        get_task: Rule,
        scan_locks: Rule,
        release: Rule,
        end_run: Rule,
        get_build: Rule,
        stop_build: Rule,
    }

    /// The first `end_run` (to `ended_as`) finds the run RUNNING, later ones find it ended.
    fn mocks(build_status: StatusType, ended_as: &'static str) -> Mocks {
        Mocks {
            get_run: mock!(aws_sdk_dynamodb::Client::get_item)
                .match_requests(|r| r.projection_expression().is_none())
                .then_output(|| {
                    GetItemOutput::builder()
                        .set_item(Some(dynamo::to_item(&run_record())))
                        .build()
                }),
            get_task: mock!(aws_sdk_dynamodb::Client::get_item)
                .match_requests(|r| r.projection_expression() == Some("taskArn"))
                .then_output(|| GetItemOutput::builder().build()),
            scan_locks: mock!(aws_sdk_dynamodb::Client::scan)
                .match_requests(|r| {
                    r.table_name() == Some("locks")
                        && r.expression_attribute_values()
                            .and_then(|v| v.get(":owner"))
                            .is_some_and(|v| v == &AttributeValue::S(EXECUTION.into()))
                })
                .then_output(|| {
                    let mut item = std::collections::HashMap::new();
                    item.insert(
                        "lockName".to_string(),
                        AttributeValue::S("migration-staging".into()),
                    );
                    item.insert("owner".to_string(), AttributeValue::S(EXECUTION.into()));
                    item.insert(
                        "acquiredAt".to_string(),
                        AttributeValue::S("2026-11-28T13:00:00Z".into()),
                    );
                    item.insert(
                        "expiresAt".to_string(),
                        AttributeValue::S("2026-11-28T15:00:00Z".into()),
                    );
                    ScanOutput::builder().items(item).build()
                }),
            release: mock!(aws_sdk_dynamodb::Client::delete_item)
                .match_requests(|r| r.condition_expression() == Some("#owner = :owner"))
                .then_output(|| DeleteItemOutput::builder().build()),
            end_run: mock!(aws_sdk_dynamodb::Client::update_item)
                .match_requests(move |r| {
                    r.condition_expression()
                        == Some("attribute_exists(#k0) AND (#status = :running)")
                        && r.expression_attribute_names()
                            .and_then(|n| n.get("#f0"))
                            .is_some_and(|n| n == "status")
                        && r.expression_attribute_values()
                            .and_then(|v| v.get(":f0"))
                            .is_some_and(|v| v == &AttributeValue::S(ended_as.into()))
                })
                .sequence()
                .output(|| {
                    UpdateItemOutput::builder()
                        .set_attributes(Some(dynamo::to_item(&run_record())))
                        .build()
                })
                .error(crate::testing::update_item_failed)
                .repeatedly()
                .build(),
            get_build: mock!(aws_sdk_codebuild::Client::batch_get_builds).then_output(move || {
                BatchGetBuildsOutput::builder()
                    .builds(
                        Build::builder()
                            .id("batchless-staging-migration:b1")
                            .build_status(build_status.clone())
                            .build(),
                    )
                    .build()
            }),
            stop_build: mock!(aws_sdk_codebuild::Client::stop_build)
                .match_requests(|r| r.id() == Some("batchless-staging-migration:b1"))
                .then_output(|| StopBuildOutput::builder().build()),
        }
    }

    fn deps(m: &Mocks) -> Deps {
        Deps {
            db: mock_client!(
                aws_sdk_dynamodb,
                RuleMode::MatchAny,
                [
                    &m.get_run,
                    &m.get_task,
                    &m.scan_locks,
                    &m.release,
                    &m.end_run
                ]
            ),
            codebuild: mock_client!(
                aws_sdk_codebuild,
                RuleMode::MatchAny,
                [&m.get_build, &m.stop_build]
            ),
            ecs: mock_client!(aws_sdk_ecs, []),
            runs_table: "runs".into(),
            locks_table: "locks".into(),
            workflows: (),
        }
    }

    #[tokio::test]
    async fn an_aborted_run_has_its_build_stopped_its_locks_released_and_its_record_ended() {
        let m = mocks(StatusType::InProgress, "ABORTED");
        let out = crate::lambda::invoke(&deps(&m), &handle, event("ABORTED"))
            .await
            .unwrap();
        assert_eq!(
            out,
            json!({
                "executionArn": EXECUTION, "status": "ABORTED",
                "stoppedBuild": "batchless-staging-migration:b1", "stoppedTask": null,
                "releasedLocks": ["migration-staging"], "recordEnded": true
            })
        );
        assert_eq!((m.stop_build.num_calls(), m.release.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_second_delivery_stops_nothing_twice() {
        let m = mocks(StatusType::InProgress, "ABORTED");
        let d = deps(&m);
        handle(&d, parse(event("ABORTED"))).await.unwrap();
        let again = {
            // The build has stopped by now.
            let m2 = mocks(StatusType::Stopped, "ABORTED");
            let d2 = Deps {
                codebuild: mock_client!(
                    aws_sdk_codebuild,
                    RuleMode::MatchAny,
                    [&m2.get_build, &m2.stop_build]
                ),
                ..d
            };
            let out = handle(&d2, parse(event("ABORTED"))).await.unwrap();
            assert_eq!(m2.stop_build.num_calls(), 0);
            out
        };
        assert_eq!(again.stopped_build, None);
        assert!(
            !again.record_ended,
            "the record was ended by the first delivery"
        );
        assert_eq!(m.end_run.num_calls(), 2);
    }

    #[tokio::test]
    async fn a_succeeded_execution_is_left_alone() {
        let m = mocks(StatusType::InProgress, "ABORTED");
        let d = deps(&m);
        let out = handle(&d, parse(event("SUCCEEDED"))).await.unwrap();
        assert_eq!(out.status, ExecutionStatus::Succeeded);
        assert_eq!(
            (
                m.get_run.num_calls(),
                m.scan_locks.num_calls(),
                m.stop_build.num_calls()
            ),
            (0, 0, 0)
        );
    }

    struct Counting(Cell<u32>);

    impl WorkflowRecords for Counting {
        async fn end_unrecorded(&self, change: &ExecutionStatusChange) -> Result<bool, Error> {
            assert_eq!(change.execution_arn, EXECUTION);
            self.0.set(self.0.get() + 1);
            Ok(true)
        }
    }

    #[tokio::test]
    async fn the_workflow_ends_its_own_record_only_for_an_unfinished_end() {
        let m = mocks(StatusType::Stopped, "TIMED_OUT");
        let d = deps(&m).with_workflows(Counting(Cell::new(0)));
        handle(&d, parse(event("TIMED_OUT"))).await.unwrap();
        handle(&d, parse(event("SUCCEEDED"))).await.unwrap();
        assert_eq!(d.workflows.0.get(), 1);
    }

    #[test]
    fn the_full_event_step_functions_sends_parses() {
        let text = include_str!("../../../../../bench/events/cleanup.json");
        let input = parse(serde_json::from_str(text).unwrap());
        let change = input.detail.unwrap();
        assert_eq!(change.status, ExecutionStatus::Aborted);
        assert!(change
            .execution_arn
            .contains(":execution:batchless-staging-migration:"));
    }

    #[test]
    fn only_unfinished_ends_need_cleanup() {
        assert!(needs_cleanup(ExecutionStatus::Aborted));
        assert!(needs_cleanup(ExecutionStatus::TimedOut));
        assert!(needs_cleanup(ExecutionStatus::Failed));
        assert!(!needs_cleanup(ExecutionStatus::Succeeded));
        assert!(!needs_cleanup(ExecutionStatus::Running));
    }

    #[tokio::test]
    async fn an_event_without_a_detail_is_invalid_input() {
        let mut e = event("ABORTED");
        e.as_object_mut().unwrap().remove("detail");
        let m = mocks(StatusType::Stopped, "ABORTED");
        let err = handle(&deps(&m), parse(e)).await.unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::InvalidInput);
        assert_eq!(m.get_run.num_calls(), 0);
    }

    fn parse(v: Value) -> Input {
        crate::platform::input::parse_strict(v).unwrap()
    }
}
