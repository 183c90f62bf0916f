//! `watch-login`: see `batchless_core::bastion::steps::watch_login`.

use batchless_core::bastion::steps::watch_login as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
