//! `record-job-run`: see `batchless_core::jobs::steps::record_job_run`.

use batchless_core::jobs::steps::record_job_run as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
