//! `pipeline-bridge`: the CodePipeline Lambda invoke action. Starts the migration workflow
//! named after the job id, keeps the job in progress with a continuation token, then reports
//! success with output variables or failure with the cause. Never logs the job event (it
//! carries temporary artifact credentials): only the job id and the decision are logged.

use batchless_core::migration::pipeline::{self, Decision, JobEvent};
use batchless_core::platform::input::InputError;
use batchless_core::{platform::aws, platform::config, Error};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};

struct Deps {
    sfn: aws_sdk_sfn::Client,
    codepipeline: aws_sdk_codepipeline::Client,
    state_machine_arn: String,
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let event: JobEvent = serde_json::from_value(event)
        .map_err(|e| InputError::new(format!("not a CodePipeline job event: {e}")))?;
    let job = &event.job;
    let decision = match pipeline::step(&deps.sfn, &deps.state_machine_arn, job).await {
        Ok(d) => d,
        // Transient: let Lambda's async retry try again; the job stays in progress.
        Err(e) if e.is_retryable() => return Err(e),
        Err(e) => Decision::Fail {
            execution_arn: None,
            message: e.to_string(),
        },
    };
    pipeline::report(&deps.codepipeline, &job.id, &decision).await?;
    let (kind, arn) = match &decision {
        Decision::Continue { execution_arn } => ("continue", Some(execution_arn.clone())),
        Decision::Succeed { execution_arn, .. } => ("succeeded", Some(execution_arn.clone())),
        Decision::Fail { execution_arn, .. } => ("failed", execution_arn.clone()),
    };
    tracing::info!(job_id = %job.id, decision = kind, execution = ?arn, "reported to CodePipeline");
    Ok(json!({ "jobId": job.id, "decision": kind, "executionArn": arn }))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        sfn: aws::sfn(&sdk),
        codepipeline: aws::codepipeline(&sdk),
        state_machine_arn: config::required("MIGRATION_STATE_MACHINE_ARN")?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
