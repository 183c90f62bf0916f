//! `open-session`: see `batchless_core::bastion::steps::open_session`.

use batchless_core::bastion::steps::open_session as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
