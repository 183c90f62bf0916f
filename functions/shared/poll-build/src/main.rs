//! `poll-build`: the safety net. When a wait times out (its state-change event was lost or is
//! late), the workflow asks for the build's status directly: status, current phase, the
//! failed phase and its context.

use batchless_core::platform::input::parse_strict;
use batchless_core::{platform::aws, shared::build, Error};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use serde_json::Value;

struct Deps {
    codebuild: aws_sdk_codebuild::Client,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Event {
    build_id: String,
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let Event { build_id } = parse_strict(event)?;
    let outcome = build::fetch_outcome(&deps.codebuild, &build_id).await?;
    tracing::info!(%build_id, status = %outcome.status, finished = outcome.finished, "polled build");
    Ok(serde_json::to_value(outcome).expect("outcome serializes"))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        codebuild: aws::codebuild(&sdk),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
