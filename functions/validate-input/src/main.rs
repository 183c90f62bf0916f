//! `validate-input`: the first step of every workflow. Parses the execution input strictly
//! (unknown fields rejected, each error naming its field) and returns the validated run, or
//! fails `InvalidInput` before anything is started or written.

use batchless_core::input::{parse_strict, InputError};
use batchless_core::migration::{self, Execution};
use batchless_core::Error;
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use serde_json::{json, Value};

struct Deps {
    environment: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    workflow: String,
    input: Value,
    execution: Execution,
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let event: Event = parse_strict(event)?;
    match event.workflow.as_str() {
        migration::WORKFLOW => {
            let run = migration::validate(event.input, &event.execution, &deps.environment)?;
            tracing::info!(run_id = %run.run_id, commit = %run.commit, "migration input valid");
            Ok(json!({ "run": run }))
        }
        other => Err(InputError::field("workflow", format!("unknown workflow {other:?}")).into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = Deps {
        environment: batchless_core::config::environment()?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps() -> Deps {
        Deps {
            environment: "staging".into(),
        }
    }

    fn exec() -> Value {
        json!({"id": "arn:aws:states:us-east-1:1:execution:m:e", "name": "e", "startTime": "2026-11-28T13:00:00Z"})
    }

    #[tokio::test]
    async fn valid_migration() {
        let out = handler(
            json!({"workflow": "migration", "input": {"commit": "0123456789abcdef0123456789abcdef01234567"}, "execution": exec()}),
            &deps(),
        )
        .await
        .unwrap();
        assert_eq!(out["run"]["lock"], "migration:staging");
    }

    #[tokio::test]
    async fn invalid_input_is_named() {
        let err = handler(
            json!({"workflow": "migration", "input": {"commit": "HEAD"}, "execution": exec()}),
            &deps(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
        let err = handler(
            json!({"workflow": "nope", "input": {}, "execution": exec()}),
            &deps(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("unknown workflow"));
    }
}
