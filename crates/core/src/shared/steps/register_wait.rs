//! `register-wait`: the body of a build's or task's `.waitForTaskToken` step. Stores the task
//! token keyed by the build id or ECS task ARN, then re-checks the build/task once: if it
//! already ended (its state-change event may have come and gone before the token was stored),
//! it completes the wait itself.
//!
//! A build is waited on only if it was started for the waiting execution: its
//! `BATCHLESS_RUN_ID` (set by the step that started it) is the execution's ARN. A run record
//! planted ahead of an execution with some other (finished, green) build id would otherwise make
//! the start step skip its build and the run end "succeeded" without running anything; such a
//! build fails the wait `Corrupt`, loudly (the run is recorded failed and Slack told), and
//! nothing is waited on.

use serde::Deserialize;

use crate::error::{Error, Kind};
use crate::platform::input::InputError;
use crate::platform::time;
use crate::sfn::waits::{self, Registered, WaitKind};
use crate::shared::{build, task};

/// The build environment variable naming the run (execution ARN) a build was started for.
pub const RUN_ID_VARIABLE: &str = "BATCHLESS_RUN_ID";

/// Whether `b` was started for the execution `execution_arn` (its [`RUN_ID_VARIABLE`]).
pub fn check_started_for(
    b: &aws_sdk_codebuild::types::Build,
    execution_arn: &str,
) -> Result<(), Error> {
    let run_id = b
        .environment()
        .map(|e| e.environment_variables())
        .unwrap_or_default()
        .iter()
        .find(|v| v.name() == RUN_ID_VARIABLE)
        .map(|v| v.value());
    if run_id == Some(execution_arn) {
        return Ok(());
    }
    let build_id = b.id().unwrap_or_default();
    tracing::error!(
        %build_id,
        %execution_arn,
        run_id = ?run_id,
        "refusing to wait on a build not started for this execution (a planted or stale run record?)"
    );
    Err(Error::Corrupt(format!(
        "build {build_id} was not started for this execution (its {RUN_ID_VARIABLE} is {}): \
         the run's record names a build this run did not start; nothing was waited on",
        run_id.unwrap_or("unset")
    )))
}

/// The same clients and table as ending a wait: one `Deps` for both halves of `sfn::waits`.
pub use super::complete_wait::Deps;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Input {
    pub task_token: String,
    pub kind: WaitKind,
    pub id: String,
    pub execution_arn: String,
}

pub type Output = Registered;

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let Input {
        task_token,
        kind,
        id,
        execution_arn,
    } = input;
    if !matches!(kind, WaitKind::Codebuild | WaitKind::Ecs) {
        // Nothing is stored: an approval's wait is registered by its own workflow's step.
        return Err(InputError::field(
            "kind",
            format!("{kind:?} waits are registered by their own workflow's step"),
        )
        .into());
    }
    // One BatchGetBuilds: the re-check reads the build and refuses one not started for this
    // execution (then the token just stored is taken back: nothing waits on that build).
    let recheck = async || -> Result<Option<serde_json::Value>, Error> {
        let (finished, output) = match kind {
            WaitKind::Codebuild => {
                let b = build::fetch(&deps.codebuild, &id).await?;
                check_started_for(&b, &execution_arn)?;
                let outcome = build::outcome(&b);
                (outcome.finished, serde_json::to_value(&outcome))
            }
            WaitKind::Ecs => {
                let outcome = task::describe(&deps.ecs, &id).await?;
                (outcome.finished, serde_json::to_value(&outcome))
            }
            WaitKind::PatchApproval | WaitKind::MigrationApproval | WaitKind::SessionApproval => {
                unreachable!("refused above")
            }
        };
        Ok(finished.then(|| output.expect("outcome serializes")))
    };
    let registered = match waits::register_then_recheck(
        &deps.db,
        &deps.sfn,
        &deps.table,
        kind,
        &id,
        &task_token,
        &execution_arn,
        time::now(),
        recheck,
    )
    .await
    {
        Err(e) if e.kind() == Kind::Corrupt => {
            waits::take(&deps.db, &deps.table, &kind.key(&id)).await?;
            return Err(e);
        }
        other => other?,
    };
    tracing::info!(key = %registered.wait_key, completed_now = registered.completed_now, "wait registered");
    Ok(registered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_codebuild::operation::batch_get_builds::BatchGetBuildsOutput;
    use aws_sdk_codebuild::types::{Build, EnvironmentVariable, ProjectEnvironment, StatusType};
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessOutput;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn environment(run_id: &str) -> ProjectEnvironment {
        ProjectEnvironment::builder()
            .r#type(aws_sdk_codebuild::types::EnvironmentType::LinuxContainer)
            .image("ruby:3.3")
            .compute_type(aws_sdk_codebuild::types::ComputeType::BuildGeneral1Small)
            .environment_variables(
                EnvironmentVariable::builder()
                    .name(RUN_ID_VARIABLE)
                    .value(run_id)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    fn deps(status: StatusType) -> (Deps, aws_smithy_mocks::Rule, aws_smithy_mocks::Rule) {
        let (d, put, _take, send) = deps_for(status, "arn:e");
        (d, put, send)
    }

    type Rule = aws_smithy_mocks::Rule;

    /// The deps, and the waits table's put and take and Step Functions' send.
    fn deps_for(status: StatusType, run_id: &'static str) -> (Deps, Rule, Rule, Rule) {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                crate::testing::attr_s(r.item(), "waitKey")
                    .is_some_and(|k| k == "codebuild#migrate:1")
            })
            .then_output(|| PutItemOutput::builder().build());
        let take = mock!(aws_sdk_dynamodb::Client::delete_item).then_output(|| {
            DeleteItemOutput::builder()
                .set_attributes(Some(crate::platform::dynamo::to_item(&waits::Waiter {
                    wait_key: "codebuild#migrate:1".into(),
                    task_token: "tok".into(),
                    execution_arn: "arn:e".into(),
                    registered_at: "2026-12-01T00:00:00Z".into(),
                    expires_at: "2027-12-01T00:00:00Z".into(),
                })))
                .build()
        });
        let get = mock!(aws_sdk_codebuild::Client::batch_get_builds).then_output(move || {
            BatchGetBuildsOutput::builder()
                .builds(
                    Build::builder()
                        .id("migrate:1")
                        .build_status(status.clone())
                        .environment(environment(run_id))
                        .build(),
                )
                .build()
        });
        let send = mock!(aws_sdk_sfn::Client::send_task_success)
            .match_requests(|r| r.task_token() == Some("tok"))
            .then_output(|| SendTaskSuccessOutput::builder().build());
        let d = Deps {
            db: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &take]),
            sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, [&send]),
            codebuild: mock_client!(aws_sdk_codebuild, RuleMode::MatchAny, [&get]),
            ecs: mock_client!(aws_sdk_ecs, RuleMode::MatchAny, []),
            table: "waits".into(),
        };
        (d, put, take, send)
    }

    fn input() -> Input {
        Input {
            task_token: "tok".into(),
            kind: WaitKind::Codebuild,
            id: "arn:aws:codebuild:us-east-1:123456789012:build/migrate:1".into(),
            execution_arn: "arn:e".into(),
        }
    }

    #[tokio::test]
    async fn a_build_that_already_ended_completes_the_wait_at_once() {
        let (d, put, send) = deps(StatusType::Succeeded);
        let out = handle(&d, input()).await.unwrap();
        assert_eq!(out.wait_key, "codebuild#migrate:1");
        assert!(out.completed_now);
        assert_eq!((put.num_calls(), send.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_running_build_leaves_the_token_stored() {
        let (d, put, send) = deps(StatusType::InProgress);
        let out = handle(&d, input()).await.unwrap();
        assert!(!out.completed_now);
        assert_eq!((put.num_calls(), send.num_calls()), (1, 0));
    }

    #[tokio::test]
    async fn a_build_started_for_another_run_is_not_waited_on() {
        // A run record planted ahead of the execution names an old green build: the wait
        // refuses it (and takes back the token it stored for the re-check), so nothing can end
        // the run "succeeded".
        let (d, put, take, send) = deps_for(
            StatusType::Succeeded,
            "arn:aws:states:us-east-1:123456789012:execution:migration:old",
        );
        let err = handle(&d, input()).await.unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::Corrupt);
        assert!(
            err.to_string().contains("not started for this execution"),
            "{err}"
        );
        assert_eq!(
            (put.num_calls(), take.num_calls(), send.num_calls()),
            (1, 1, 0)
        );
    }

    #[tokio::test]
    async fn approval_waits_are_not_registered_here() {
        let (d, _, _) = deps(StatusType::InProgress);
        let mut i = input();
        i.kind = WaitKind::PatchApproval;
        let err = handle(&d, i).await.unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::InvalidInput);
    }
}
