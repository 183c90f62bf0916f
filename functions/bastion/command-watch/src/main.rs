//! `command-watch`: see `batchless_core::bastion::steps::command_watch`.

use batchless_core::bastion::steps::command_watch as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
