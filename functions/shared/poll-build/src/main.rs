//! `poll-build`: see `batchless_core::shared::steps::poll_build`.

use batchless_core::shared::steps::poll_build as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
