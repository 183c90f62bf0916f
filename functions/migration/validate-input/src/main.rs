//! `validate-input`: the migration's `ValidateInput` step (`migration::steps::validate_input`).

use batchless_core::migration::steps::validate_input as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
