//! `start-patch-build`: see `batchless_core::patch::steps::start_patch_build`.

use batchless_core::patch::steps::start_patch_build as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
