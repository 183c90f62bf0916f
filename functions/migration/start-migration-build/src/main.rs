//! `start-migration-build`: CodeBuild `StartBuild` on the migration project at the run's
//! commit, with the run's environment overrides. Idempotent: a retried step finds the build
//! already recorded on the run (or CodeBuild's idempotency token returns the same build).

use batchless_core::migration::MigrationRun;
use batchless_core::platform::input::parse_strict;
use batchless_core::{platform::aws, platform::config, shared::build, shared::runs, Error};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

struct Deps {
    db: aws_sdk_dynamodb::Client,
    codebuild: aws_sdk_codebuild::Client,
    runs_table: String,
    project: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    run: MigrationRun,
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let Event { run } = parse_strict(event)?;
    if let Some(existing) = runs::get(&deps.db, &deps.runs_table, &run.run_id).await? {
        if let Some(build_id) = existing.build_id {
            tracing::info!(%build_id, "build already started for this run");
            return Ok(json!({ "buildId": build_id }));
        }
    }
    let mut env = run.environment_overrides.clone();
    env.insert("BATCHLESS_RUN_ID".into(), run.run_id.clone());
    let token = hex::encode(&Sha256::digest(run.run_id.as_bytes())[..16]);
    let build_id = build::start(
        &deps.codebuild,
        build::StartRequest {
            project: &deps.project,
            source_version: &run.commit,
            environment: &env,
            idempotency_token: &token,
            artifacts: None,
        },
    )
    .await?;
    let record = runs::RunRecord {
        run_id: run.run_id.clone(),
        workflow: run.workflow.clone(),
        environment: run.environment.clone(),
        execution_name: run.execution_name.clone(),
        started_at: run.started_at.clone(),
        started_by: run.started_by.clone(),
        status: runs::status::RUNNING,
        commit: Some(run.commit.clone()),
        build_id: Some(build_id.clone()),
        lock: Some(run.lock.clone()),
        pipeline: run
            .pipeline
            .as_ref()
            .map(|p| serde_json::to_value(p).expect("serializes")),
        ..Default::default()
    };
    let build_id = match runs::create(&deps.db, &deps.runs_table, &record).await? {
        Some(existing) => existing.build_id.unwrap_or(build_id),
        None => build_id,
    };
    tracing::info!(%build_id, commit = %run.commit, project = %deps.project, "migration build started");
    Ok(json!({ "buildId": build_id }))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        db: aws::dynamodb(&sdk),
        codebuild: aws::codebuild(&sdk),
        runs_table: config::required("RUNS_TABLE")?,
        project: config::required("MIGRATION_PROJECT")?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
