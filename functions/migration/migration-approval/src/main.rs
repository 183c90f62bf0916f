//! `migration-approval`: the migration's `AskApproval`, `WaitForApproval` and `ExpireApproval`
//! steps (`batchless_core::migration::steps::migration_approval`).

use batchless_core::migration::steps::migration_approval as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
