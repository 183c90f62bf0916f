//! `register-wait`: the body of a build's or task's `.waitForTaskToken` step. Stores the task
//! token keyed by the build id or ECS task ARN, then re-checks the build/task once: if it
//! already ended (its state-change event may have come and gone before the token was stored),
//! it completes the wait itself.

use aws_types::SdkConfig;
use serde::Deserialize;

use crate::error::Error;
use crate::platform::input::InputError;
use crate::platform::{aws, config, time};
use crate::sfn::waits::{self, Registered, WaitKind};
use crate::shared::{build, task};

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
    let recheck = async || -> Result<Option<serde_json::Value>, Error> {
        let (finished, output) = match kind {
            WaitKind::Codebuild => {
                let outcome = build::fetch_outcome(&deps.codebuild, &id).await?;
                (outcome.finished, serde_json::to_value(&outcome))
            }
            WaitKind::Ecs => {
                let outcome = task::describe(&deps.ecs, &id).await?;
                (outcome.finished, serde_json::to_value(&outcome))
            }
            WaitKind::PatchApproval | WaitKind::SessionApproval => unreachable!("refused above"),
        };
        Ok(finished.then(|| output.expect("outcome serializes")))
    };
    let registered = waits::register_then_recheck(
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
    .await?;
    tracing::info!(key = %registered.wait_key, completed_now = registered.completed_now, "wait registered");
    Ok(registered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_codebuild::operation::batch_get_builds::BatchGetBuildsOutput;
    use aws_sdk_codebuild::types::{Build, StatusType};
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessOutput;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn deps(status: StatusType) -> (Deps, aws_smithy_mocks::Rule, aws_smithy_mocks::Rule) {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.item()
                    .and_then(|i| i.get("waitKey"))
                    .and_then(|v| v.as_s().ok())
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
        (d, put, send)
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
    async fn approval_waits_are_not_registered_here() {
        let (d, _, _) = deps(StatusType::InProgress);
        let mut i = input();
        i.kind = WaitKind::PatchApproval;
        let err = handle(&d, i).await.unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::InvalidInput);
    }
}
