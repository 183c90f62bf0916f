//! `audit-check`: see `batchless_core::patch::steps::audit_check`.

use batchless_core::patch::steps::audit_check as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
