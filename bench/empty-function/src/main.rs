//! `empty-function`: the floor the start-up benchmark compares every function with (issue 21).
//! What every batchless function does before its own work, and nothing else: the same tokio
//! runtime (`#[tokio::main]`, the workspace's tokio features), the runtime's default tracing
//! subscriber, and `lambda_runtime::run` with a handler that answers its event unchanged. No
//! AWS SDK, no configuration, no TLS.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
