//! `migration-lock`: acquire or release the migration lock. See `batchless_core::migration::steps::migration_lock`.

use batchless_core::migration::steps::migration_lock as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
