//! `start-migration-build`: CodeBuild StartBuild on the migration project at the run's commit.
//! See `batchless_core::migration::steps::start_migration_build`.

use batchless_core::migration::steps::start_migration_build as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
