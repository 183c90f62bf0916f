//! `register-wait`: the body of a `.waitForTaskToken` step. Stores the task token keyed by the
//! build id or ECS task ARN, then re-checks the build/task once: if it already ended (its
//! state-change event may have come and gone before the token was stored), it completes the
//! wait itself.

use batchless_core::platform::input::parse_strict;
use batchless_core::sfn::waits::{self, WaitKind};
use batchless_core::shared::task;
use batchless_core::{platform::aws, platform::config, platform::time, shared::build, Error};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use serde_json::{json, Value};

struct Deps {
    db: aws_sdk_dynamodb::Client,
    sfn: aws_sdk_sfn::Client,
    codebuild: aws_sdk_codebuild::Client,
    ecs: aws_sdk_ecs::Client,
    table: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Event {
    task_token: String,
    kind: WaitKind,
    id: String,
    execution_arn: String,
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let event: Event = parse_strict(event)?;
    let key = event.kind.key(&event.id);
    waits::register(
        &deps.db,
        &deps.table,
        &key,
        &event.task_token,
        &event.execution_arn,
        time::now(),
    )
    .await?;
    let completed_now = match event.kind {
        WaitKind::Codebuild => {
            let outcome = build::fetch_outcome(&deps.codebuild, &event.id).await?;
            if outcome.finished {
                let output = serde_json::to_value(&outcome).expect("outcome serializes");
                waits::complete(&deps.db, &deps.sfn, &deps.table, &key, &output).await?
            } else {
                false
            }
        }
        WaitKind::Ecs => {
            let outcome = task::describe(&deps.ecs, &event.id).await?;
            if outcome.finished {
                let output = serde_json::to_value(&outcome).expect("outcome serializes");
                waits::complete(&deps.db, &deps.sfn, &deps.table, &key, &output).await?
            } else {
                false
            }
        }
    };
    tracing::info!(%key, completed_now, "wait registered");
    Ok(json!({ "waitKey": key, "completedNow": completed_now }))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        db: aws::dynamodb(&sdk),
        sfn: aws::sfn(&sdk),
        codebuild: aws::codebuild(&sdk),
        ecs: aws::ecs(&sdk),
        table: config::required("WAITS_TABLE")?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
