//! `collect-logs`: see `batchless_core::shared::steps::collect_logs`.

use batchless_core::shared::steps::collect_logs as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
