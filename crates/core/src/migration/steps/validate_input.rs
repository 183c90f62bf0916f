//! `validate-input` (the migration's `ValidateInput` state): parses the execution input
//! strictly (unknown fields rejected, each error naming its field) and returns the validated
//! run, or fails `InvalidInput` before anything is started or written.

use aws_types::SdkConfig;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::migration::{self, MigrationRequest, MigrationRun};
use crate::platform::config;
use crate::sfn::Execution;

pub struct Deps {
    pub environment: String,
}

impl Deps {
    pub async fn from_env(_sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            environment: config::environment()?,
        })
    }
}

/// The one workflow this step validates (the ASL passes `"workflow": "migration"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Workflow {
    Migration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Input {
    pub workflow: Workflow,
    pub input: MigrationRequest,
    pub execution: Execution,
}

/// The workflow's state from here on: the run, and `approval: null` (later states pass
/// `$.approval` whether or not the run needed one).
#[derive(Debug, Serialize)]
pub struct Output {
    pub run: MigrationRun,
    pub approval: Option<crate::migration::approval::ApprovalState>,
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let run = migration::validate(input.input, &input.execution, &deps.environment)?;
    tracing::info!(run_id = %run.run_id, commit = %run.commit, "migration input valid");
    Ok(Output {
        run,
        approval: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lambda::invoke;
    use serde_json::{json, Value};

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn deps() -> Deps {
        Deps {
            environment: "staging".into(),
        }
    }

    fn event(input: Value) -> Value {
        json!({"workflow": "migration", "input": input, "execution": {
            "id": "arn:aws:states:us-east-1:1:execution:m:e", "name": "e",
            "startTime": "2026-11-28T13:00:00Z"}})
    }

    #[tokio::test]
    async fn a_valid_migration_becomes_the_run() {
        let out = invoke(&deps(), &handle, event(json!({"commit": SHA})))
            .await
            .unwrap();
        assert_eq!(out["run"]["lock"], "migration:staging");
        assert_eq!(out["run"]["environment"], "staging");
        assert_eq!(out["run"]["workflow"], "migration");
        assert_eq!(
            out["run"]["runId"],
            "arn:aws:states:us-east-1:1:execution:m:e"
        );
        assert_eq!(out["run"]["startedBy"], "unattributed");
        assert!(out["approval"].is_null() && out.get("approval").is_some());
    }

    #[tokio::test]
    async fn invalid_input_is_named() {
        for (ev, expected) in [
            (event(json!({"commit": "HEAD"})), "`commit`"),
            (
                event(json!({"commit": SHA, "extra": 1})),
                "unknown field `extra`",
            ),
            (
                json!({"workflow": "nope", "input": {}, "execution": {}}),
                "unknown variant `nope`",
            ),
            (
                {
                    let mut e = event(json!({"commit": SHA}));
                    e["surprise"] = json!(true);
                    e
                },
                "unknown field `surprise`",
            ),
        ] {
            let err = invoke(&deps(), &handle, ev).await.unwrap_err();
            assert_eq!(err.kind(), crate::error::Kind::InvalidInput);
            assert!(err.to_string().contains(expected), "{err}");
        }
    }
}
