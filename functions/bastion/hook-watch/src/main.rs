//! `hook-watch`: "console hook not reporting" (`batchless_core::bastion::steps::hook_watch`).

use batchless_core::bastion::steps::hook_watch as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
