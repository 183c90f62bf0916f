//! `validate-patch-request`: see `batchless_core::patch::steps::validate_patch_request`.

use batchless_core::patch::steps::validate_patch_request as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
