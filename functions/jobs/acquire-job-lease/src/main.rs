//! `acquire-job-lease`: see `batchless_core::jobs::steps::acquire_job_lease`.

use batchless_core::jobs::steps::acquire_job_lease as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
