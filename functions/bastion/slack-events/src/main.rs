//! `slack-events`: see `batchless_core::bastion::steps::slack_events`.

use batchless_core::bastion::steps::slack_events as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
