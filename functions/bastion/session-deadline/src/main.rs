//! `session-deadline`: see `batchless_core::bastion::steps::session_deadline`.

use batchless_core::bastion::steps::session_deadline as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
