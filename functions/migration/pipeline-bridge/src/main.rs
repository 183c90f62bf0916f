//! `pipeline-bridge`: the CodePipeline Lambda invoke action that runs the migration workflow
//! (never logs the job event). See `batchless_core::migration::steps::pipeline_bridge`.

use batchless_core::migration::steps::pipeline_bridge as step;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    batchless_core::lambda::run(step::Deps::from_env, step::handle).await
}
