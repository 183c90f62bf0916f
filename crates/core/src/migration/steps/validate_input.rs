//! `validate-input` (the migration's `ValidateInput` state): parses the execution input
//! strictly (unknown fields rejected, each error naming its field) and returns the validated
//! run, or fails `InvalidInput` before anything is started or written.

use aws_types::SdkConfig;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::migration::{self, MigrationRequest, MigrationRun};
use crate::platform::{config, input};
use crate::sfn::Execution;
use crate::shared::approval::Sealer;
use crate::shared::submission;

pub struct Deps {
    pub environment: String,
    /// Verifies a submission's seal (the decision signing key, `DECISION_SIGNING_KEY`).
    pub sealer: Sealer,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            environment: config::environment()?,
            sealer: Sealer::from_env(sdk)?,
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
    /// A [`MigrationRequest`], with the decision endpoint's submission when a person
    /// submitted it (`crate::shared::submission`).
    pub input: serde_json::Value,
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
    let (request, _) = submission::open(
        &deps.sealer,
        &deps.environment,
        submission::Workflow::Migration,
        &input.execution.name,
        input.input,
    )
    .await?;
    let request: MigrationRequest = input::parse_strict(request)?;
    let run = migration::validate(request, &input.execution, &deps.environment)?;
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
        deps_verifying(true)
    }

    /// A KMS that says every seal is `valid` (or none is).
    fn deps_verifying(valid: bool) -> Deps {
        Deps {
            environment: "staging".into(),
            sealer: crate::shared::approval::seal::tests::sealer(valid),
        }
    }

    /// alice's migration as the decision endpoint submits it.
    fn submitted(mut input: Value) -> Value {
        input["startedBy"] = json!("alice");
        input["submission"] = json!({"by": "arn:aws:iam::123456789012:user/alice", "person": "alice", "at": "2026-11-28T12:59:00Z", "seal": "c2VhbGVk"});
        input
    }

    fn event(input: Value) -> Value {
        json!({"workflow": "migration", "input": input, "execution": {
            "id": "arn:aws:states:us-east-1:1:execution:m:e", "name": "e",
            "startTime": "2026-11-28T13:00:00Z"}})
    }

    #[tokio::test]
    async fn a_valid_migration_becomes_the_run() {
        let out = invoke(&deps(), &handle, event(submitted(json!({"commit": SHA}))))
            .await
            .unwrap();
        assert_eq!(out["run"]["lock"], "migration:staging");
        assert_eq!(out["run"]["environment"], "staging");
        assert_eq!(out["run"]["workflow"], "migration");
        assert_eq!(
            out["run"]["runId"],
            "arn:aws:states:us-east-1:1:execution:m:e"
        );
        assert_eq!(out["run"]["startedBy"], "alice");
        assert!(out["approval"].is_null() && out.get("approval").is_some());
        // CodePipeline's run names its pipeline and needs no submission.
        let pipeline = json!({"commit": SHA, "pipeline": {"name": "app-deploy"}});
        let out = invoke(&deps_verifying(false), &handle, event(pipeline))
            .await
            .unwrap();
        assert_eq!(out["run"]["startedBy"], "codepipeline:app-deploy");
    }

    #[tokio::test]
    async fn a_starter_without_a_seal_that_verifies_is_invalid_input() {
        for (d, ev, expected) in [
            // The console, naming bob.
            (
                deps(),
                event(json!({"commit": SHA, "startedBy": "bob"})),
                "field `startedBy`",
            ),
            // The console, naming nobody and no pipeline.
            (deps(), event(json!({"commit": SHA})), "field `submission`"),
            // A made-up or moved seal.
            (
                deps_verifying(false),
                event(submitted(json!({"commit": SHA}))),
                "does not verify",
            ),
        ] {
            let err = invoke(&d, &handle, ev).await.unwrap_err();
            assert_eq!(err.kind(), crate::error::Kind::InvalidInput);
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[tokio::test]
    async fn invalid_input_is_named() {
        for (ev, expected) in [
            (event(submitted(json!({"commit": "HEAD"}))), "`commit`"),
            (
                event(submitted(json!({"commit": SHA, "extra": 1}))),
                "unknown field `extra`",
            ),
            (
                json!({"workflow": "nope", "input": {}, "execution": {}}),
                "unknown variant `nope`",
            ),
            (
                {
                    let mut e = event(submitted(json!({"commit": SHA})));
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
