//! `approval`: see `batchless_core::patch::steps::approval`.

use batchless_core::patch::steps::approval as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
