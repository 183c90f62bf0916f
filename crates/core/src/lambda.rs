//! The one way a Lambda main starts: tracing, the AWS configuration once, the step's `Deps`
//! once, then every event through the step's `handle`, its input parsed strictly (an unknown or
//! missing field is `InvalidInput` naming the field) and its output serialized.
//!
//! ```ignore
//! use batchless_core::migration::steps::acquire_lock as step;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), lambda_runtime::Error> {
//!     batchless_core::lambda::run(step::Deps::from_env, step::handle).await
//! }
//! ```

use aws_types::SdkConfig;
use lambda_runtime::{service_fn, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::Error;
use crate::platform::{aws, input};

/// Run a step as a Lambda function until the runtime stops it.
pub async fn run<D, I, O>(
    deps: impl AsyncFnOnce(&SdkConfig) -> Result<D, Error>,
    handle: impl AsyncFn(&D, I) -> Result<O, Error>,
) -> Result<(), lambda_runtime::Error>
where
    I: DeserializeOwned,
    O: Serialize,
{
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = deps(&sdk).await?;
    let deps = &deps;
    let handle = &handle;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        invoke(deps, handle, event.payload).await
    }))
    .await
}

/// One event: strict input, the step, its output as JSON.
pub async fn invoke<D, I, O>(
    deps: &D,
    handle: &impl AsyncFn(&D, I) -> Result<O, Error>,
    payload: Value,
) -> Result<Value, Error>
where
    I: DeserializeOwned,
    O: Serialize,
{
    let input: I = input::parse_strict(payload)?;
    // Boxed: a step's future nests several SDK calls' futures, and inlining it into the
    // runtime's service type can exceed rustc's type-query depth.
    let output = Box::pin(handle(deps, input)).await?;
    Ok(serde_json::to_value(output).expect("a step's output serializes to JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct In {
        n: u32,
    }

    async fn double(factor: &u32, input: In) -> Result<u32, Error> {
        Ok(input.n * factor)
    }

    #[tokio::test]
    async fn input_is_strict_and_output_is_json() {
        let out = invoke(&2, &double, serde_json::json!({"n": 21}))
            .await
            .unwrap();
        assert_eq!(out, serde_json::json!(42));
        let err = invoke(&2, &double, serde_json::json!({"n": 1, "m": 2}))
            .await
            .unwrap_err();
        assert_eq!(err.kind().name(), "InvalidInput");
        assert!(err.to_string().contains("unknown field `m`"), "{err}");
    }
}
