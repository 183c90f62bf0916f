//! `complete-wait`: see `batchless_core::shared::steps::complete_wait`.

use batchless_core::shared::steps::complete_wait as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
