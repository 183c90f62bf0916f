//! `run-job-task`: see `batchless_core::jobs::steps::run_job_task`.

use batchless_core::jobs::steps::run_job_task as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
