//! `read-migration-report`: read the build's pre-flight and migrate reports, apply the policy.
//! See `batchless_core::migration::steps::read_migration_report`.

use batchless_core::migration::steps::read_migration_report as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
