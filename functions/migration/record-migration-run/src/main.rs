//! `record-migration-run`: write a finished migration run to the history.
//! See `batchless_core::migration::steps::record_migration_run`.

use batchless_core::migration::steps::record_migration_run as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
