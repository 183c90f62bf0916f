//! TEMPORARY — removed when data-patch has its own validate/notify: the data-patch workflow
//! still calls this function with `"workflow": "data-patch"`, so its validation is dispatched
//! here from the main (calling `batchless_core::patch`, never from `migration`).

use aws_types::SdkConfig;
use batchless_core::migration::steps::validate_input as step;
use batchless_core::patch::{self, Policy};
use batchless_core::platform::{config, input::parse_strict};
use batchless_core::sfn::Execution;
use batchless_core::shared::people::People;
use batchless_core::Error;
use serde::Deserialize;
use serde_json::{json, Value};

/// The migration step's deps, and the data patch's (removed with this file).
pub struct Deps {
    pub migration: step::Deps,
    patch: PatchDeps,
}

struct PatchDeps {
    environment: String,
    people: People,
    policy: Policy,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Deps, Error> {
        Ok(Deps {
            migration: step::Deps::from_env(sdk).await?,
            patch: patch_deps()?,
        })
    }
}

fn patch_deps() -> Result<PatchDeps, Error> {
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
    Ok(PatchDeps {
        people: People::load(&environment)?,
        policy: Policy {
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
    })
}

pub fn is_data_patch(event: &Value) -> bool {
    event.get("workflow").and_then(Value::as_str) == Some(patch::WORKFLOW)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    #[allow(dead_code)] // always "data-patch": checked by is_data_patch
    workflow: String,
    input: Value,
    execution: Execution,
}

pub fn validate(deps: &Deps, event: Value) -> Result<Value, Error> {
    let deps = &deps.patch;
    let event: Event = parse_strict(event)?;
    let run = patch::validate(
        event.input,
        &event.execution,
        &deps.environment,
        &deps.people,
        deps.policy,
    )?;
    tracing::info!(patch = %run.patch_id, commit = %run.commit, requester = %run.requester, "data-patch input valid");
    Ok(json!({ "patch": run }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps() -> Deps {
        Deps {
            migration: step::Deps {
                environment: "staging".into(),
            },
            patch: PatchDeps {
                environment: "staging".into(),
                people: People::parse(batchless_core::shared::people::EMBEDDED, "staging").unwrap(),
                policy: Policy::default(),
            },
        }
    }

    fn exec() -> Value {
        json!({"id": "arn:aws:states:us-east-1:1:execution:m:e", "name": "e",
            "startTime": "2026-11-28T13:00:00Z"})
    }

    #[tokio::test]
    async fn valid_and_invalid_data_patch() {
        let input = json!({"ticket": "OPS-1", "ref": "main",
            "commit": "0123456789abcdef0123456789abcdef01234567", "kind": "rake",
            "task": "data:fix", "reason": "r", "requestedBy": "arn:aws:iam::123456789012:user/bob"});
        let event =
            |input: &Value| json!({"workflow": "data-patch", "input": input, "execution": exec()});
        let out = crate::handle(&deps(), event(&input)).await.unwrap();
        assert_eq!(out["patch"]["command"], "bin/rake data:fix");
        let mut bad = input.clone();
        bad["task"] = json!("data:fix; curl evil");
        let err = crate::handle(&deps(), event(&bad)).await.unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
    }

    #[tokio::test]
    async fn migrations_and_unknown_workflows_go_to_the_migration_step() {
        let out = crate::handle(
            &deps(),
            json!({"workflow": "migration",
                "input": {"commit": "0123456789abcdef0123456789abcdef01234567"},
                "execution": exec()}),
        )
        .await
        .unwrap();
        assert_eq!(out["run"]["lock"], "migration:staging");
        let err = crate::handle(
            &deps(),
            json!({"workflow": "nope", "input": {}, "execution": exec()}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
        assert!(err.to_string().contains("unknown variant `nope`"), "{err}");
    }
}
