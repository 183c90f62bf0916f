//! `notify-job-result`: see `batchless_core::jobs::steps::notify_job_result`.

use batchless_core::jobs::steps::notify_job_result as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
