//! `record-patch`: see `batchless_core::patch::steps::record_patch`.

use batchless_core::patch::steps::record_patch as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
