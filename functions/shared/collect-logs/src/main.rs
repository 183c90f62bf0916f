//! `collect-logs`: archive a run's CloudWatch Logs stream to S3 (paginated, bounded memory),
//! with its SHA-256 and size; returns the `s3://` URI, console links and a redacted tail.

use batchless_core::platform::input::{identifier, parse_strict};
use batchless_core::shared::logs::{self, Source, Target};
use batchless_core::{platform::aws, platform::config, Error};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use serde_json::Value;

struct Deps {
    logs: aws_sdk_cloudwatchlogs::Client,
    s3: aws_sdk_s3::Client,
    bucket: String,
    region: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Event {
    workflow: String,
    execution_name: String,
    /// The file name under the run's prefix, e.g. `build` → `build.log`.
    name: String,
    log_group: Option<String>,
    log_stream: Option<String>,
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let e: Event = parse_strict(event)?;
    identifier("workflow", &e.workflow, 64)?;
    identifier("executionName", &e.execution_name, 80)?;
    identifier("name", &e.name, 64)?;
    let key = format!("logs/{}/{}/{}.log", e.workflow, e.execution_name, e.name);
    let (group, stream) = match (&e.log_group, &e.log_stream) {
        (Some(g), Some(s)) => (g.as_str(), s.as_str()),
        _ => ("(none)", "(none)"),
    };
    let collected = logs::collect(
        &deps.logs,
        &deps.s3,
        Source { group, stream },
        Target {
            bucket: &deps.bucket,
            key: &key,
            region: &deps.region,
        },
    )
    .await?;
    tracing::info!(uri = %collected.uri, bytes = collected.bytes, sha256 = %collected.sha256, "log archived");
    Ok(serde_json::to_value(collected).expect("serializes"))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        logs: aws::logs(&sdk),
        s3: aws::s3(&sdk),
        bucket: config::required("LOGS_BUCKET")?,
        region: sdk
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into()),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
