//! `request-approval`: see `batchless_core::patch::steps::request_approval`.

use batchless_core::patch::steps::request_approval as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
