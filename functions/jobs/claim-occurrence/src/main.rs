//! `claim-occurrence`: the first step of the scheduled-job workflow. Parses the input strictly
//! (a bad one fails `InvalidInput` and claims nothing), then claims the occurrence (job +
//! scheduled minute) with one conditional write. The winner's run is recorded RUNNING; a
//! duplicate delivery is recorded on the occurrence and the workflow ends `duplicate`. A claim
//! past the catch-up window is still taken (so the occurrence can never run late) but marked stale.

use batchless_core::jobs::occurrence::{self, Claim, Occurrence};
use batchless_core::jobs::workflow::{self, ClaimResult};
use batchless_core::jobs::JobsFile;
use batchless_core::platform::aws::{AwsResultExt, ConditionalExt};
use batchless_core::sfn::Execution;
use batchless_core::{
    platform::aws, platform::config, platform::dynamo, platform::input::parse_strict,
    platform::time, Error,
};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use serde_json::{json, Value};

struct Deps {
    db: aws_sdk_dynamodb::Client,
    occurrences_table: String,
    runs_table: String,
    environment: String,
    jobs: JobsFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    input: Value,
    execution: Execution,
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let event: Event = parse_strict(event)?;
    let run = workflow::validate(event.input, &event.execution, &deps.environment, &deps.jobs)?;
    let now = time::now();
    let occ = Occurrence {
        occurrence_key: run.occurrence_key.clone(),
        job: run.job.clone(),
        scheduled_time: run.occurrence.clone().unwrap_or_else(|| "manual".into()),
        environment: run.environment.clone(),
        claimed_by: run.run_id.clone(),
        claimed_at: time::rfc3339(now),
        source: if run.trigger == "manual" {
            "manual"
        } else {
            "scheduler"
        }
        .into(),
        status: occurrence::status::CLAIMED.into(),
        run_status: None,
        duplicate_claimers: vec![],
    };
    let (stale, late) = workflow::lateness(&run, now);
    let claim = match occurrence::claim(&deps.db, &deps.occurrences_table, &occ).await? {
        Claim::Won => {
            // The run's record (RUNNING until RecordJobRun; cleanup ends it on abort).
            // Created once: a retried claim finds it already there.
            deps.db
                .put_item()
                .table_name(&deps.runs_table)
                .set_item(Some(dynamo::to_item(&workflow::running_record(&run))))
                .condition_expression("attribute_not_exists(runId)")
                .send()
                .await
                .aws("PutItem")
                .conditional()?;
            ClaimResult {
                outcome: "claimed".into(),
                occurrence_key: run.occurrence_key.clone(),
                claimed_by: run.run_id.clone(),
                stale,
                late_by_seconds: late,
            }
        }
        Claim::Duplicate(owner) => {
            occurrence::record_duplicate(
                &deps.db,
                &deps.occurrences_table,
                &run.occurrence_key,
                &run.run_id,
            )
            .await?;
            ClaimResult {
                outcome: "duplicate".into(),
                occurrence_key: run.occurrence_key.clone(),
                claimed_by: owner.claimed_by,
                stale,
                late_by_seconds: late,
            }
        }
    };
    tracing::info!(key = %claim.occurrence_key, outcome = %claim.outcome, stale, "occurrence claim");
    Ok(json!({ "run": run, "claim": claim }))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        db: aws::dynamodb(&sdk),
        occurrences_table: config::required("OCCURRENCES_TABLE")?,
        runs_table: config::required("RUNS_TABLE")?,
        environment: config::environment()?,
        jobs: JobsFile::embedded(),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
