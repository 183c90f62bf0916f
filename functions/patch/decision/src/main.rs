//! `decision`: see `batchless_core::patch::steps::decision`.

use batchless_core::patch::steps::decision as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
