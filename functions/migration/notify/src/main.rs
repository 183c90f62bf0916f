//! `notify`: the migration's `Notify` step (`batchless_core::migration::steps::notify`).

use batchless_core::migration::steps::notify as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
