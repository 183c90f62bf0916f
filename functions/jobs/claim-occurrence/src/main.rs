//! `claim-occurrence`: see `batchless_core::jobs::steps::claim_occurrence`.

use batchless_core::jobs::steps::claim_occurrence as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
