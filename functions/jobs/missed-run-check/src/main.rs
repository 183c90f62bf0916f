//! `missed-run-check`: see `batchless_core::jobs::steps::missed_run_check`.

use batchless_core::jobs::steps::missed_run_check as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
