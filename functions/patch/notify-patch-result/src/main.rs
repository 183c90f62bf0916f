//! `notify-patch-result`: see `batchless_core::patch::steps::notify_patch_result`.

use batchless_core::patch::steps::notify_patch_result as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
