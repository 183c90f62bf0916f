//! `validate-input`: the first step of every workflow. Parses the execution input strictly
//! (unknown fields rejected, each error naming its field) and returns the validated run, or
//! fails `InvalidInput` before anything is started or written.

use batchless_core::migration;
use batchless_core::patch::{self, Policy};
use batchless_core::platform::input::{parse_strict, InputError};
use batchless_core::sfn::Execution;
use batchless_core::shared::people::People;
use batchless_core::{platform::config, Error};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use serde_json::{json, Value};

struct Deps {
    environment: String,
    people: People,
    patch_policy: Policy,
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
        patch::WORKFLOW => {
            let run = patch::validate(
                event.input,
                &event.execution,
                &deps.environment,
                &deps.people,
                deps.patch_policy,
            )?;
            tracing::info!(patch = %run.patch_id, commit = %run.commit, requester = %run.requester, "data-patch input valid");
            Ok(json!({ "patch": run }))
        }
        other => Err(InputError::field("workflow", format!("unknown workflow {other:?}")).into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let environment = config::environment()?;
    let number = |name: &str, default: u64| -> Result<u64, Error> {
        match config::optional(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| Error::config(format!("{name} must be a whole number, got {v:?}"))),
        }
    };
    let defaults = Policy::default();
    let deps = Deps {
        people: People::load(&environment)?,
        patch_policy: Policy {
            required_approvals: number(
                "PATCH_REQUIRED_APPROVALS",
                defaults.required_approvals as u64,
            )? as u32,
            default_timeout_seconds: number(
                "PATCH_APPROVAL_TIMEOUT_SECONDS",
                defaults.default_timeout_seconds,
            )?,
        },
        environment,
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
            people: People::parse(batchless_core::shared::people::EMBEDDED, "staging").unwrap(),
            patch_policy: Policy::default(),
        }
    }

    #[tokio::test]
    async fn valid_and_invalid_data_patch() {
        let input = json!({"ticket": "OPS-1", "ref": "main", "commit": "0123456789abcdef0123456789abcdef01234567",
            "kind": "rake", "task": "data:fix", "reason": "r", "requestedBy": "arn:aws:iam::123456789012:user/bob"});
        let out = handler(
            json!({"workflow": "data-patch", "input": input, "execution": exec()}),
            &deps(),
        )
        .await
        .unwrap();
        assert_eq!(out["patch"]["command"], "bin/rake data:fix");
        let mut bad = input.clone();
        bad["task"] = json!("data:fix; curl evil");
        let err = handler(
            json!({"workflow": "data-patch", "input": bad, "execution": exec()}),
            &deps(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
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
