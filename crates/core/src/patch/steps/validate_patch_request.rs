//! `validate-patch-request`: the data-patch workflow's first step. Parses the request strictly
//! (unknown fields rejected, each error naming its field; safe characters for the task or
//! script; the requester a person with the requester role) and returns the validated patch,
//! or fails `InvalidInput` before anything is recorded.

use aws_types::SdkConfig;
use serde::Serialize;

use crate::error::Error;
use crate::patch::{self, PatchRun, Policy};
use crate::platform::config;
use crate::shared::approval::Sealer;
use crate::shared::people::People;
use crate::shared::submission::{self, Workflow};

pub struct Deps {
    pub environment: String,
    /// Verifies the submission's seal (the decision signing key, `DECISION_SIGNING_KEY`).
    pub sealer: Sealer,
    pub people: People,
    pub policy: Policy,
}

impl Deps {
    /// `BATCHLESS_ENV`, the people map, and the environment's policy:
    /// `PATCH_REQUIRED_APPROVALS`, `PATCH_APPROVAL_TIMEOUT_SECONDS` (optional).
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        let environment = config::environment()?;
        let defaults = Policy::default();
        let required = number(
            "PATCH_REQUIRED_APPROVALS",
            config::optional("PATCH_REQUIRED_APPROVALS"),
            defaults.required_approvals as u64,
        )?;
        Ok(Deps {
            sealer: Sealer::from_env(sdk)?,
            people: People::load(&environment)?,
            policy: Policy {
                required_approvals: u32::try_from(required).map_err(|_| {
                    Error::config(format!("PATCH_REQUIRED_APPROVALS is too large: {required}"))
                })?,
                default_timeout_seconds: number(
                    "PATCH_APPROVAL_TIMEOUT_SECONDS",
                    config::optional("PATCH_APPROVAL_TIMEOUT_SECONDS"),
                    defaults.default_timeout_seconds,
                )?,
                dry_run: crate::patch::preview::Settings::from_env()?.enabled,
            },
            environment,
        })
    }
}

fn number(name: &str, value: Option<String>, default: u64) -> Result<u64, Error> {
    match value {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| Error::config(format!("{name} must be a whole number, got {v:?}"))),
    }
}

/// The execution input as it came (validated here, strictly) and the execution it started.
pub type Input = crate::sfn::execution::StartInput;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub patch: PatchRun,
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let (request, _) = submission::open(
        &deps.sealer,
        &deps.environment,
        Workflow::DataPatch,
        &input.execution.name,
        input.input,
    )
    .await?;
    let run = patch::validate(
        request,
        &input.execution,
        &deps.environment,
        &deps.people,
        deps.policy,
    )?;
    tracing::info!(patch = %run.patch_id, commit = %run.commit, requester = %run.requester, "data-patch request valid");
    Ok(Output { patch: run })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;
    use serde_json::json;
    use serde_json::Value;

    fn deps() -> Deps {
        deps_verifying(true)
    }

    /// A KMS that says every seal is `valid` (or none is).
    fn deps_verifying(valid: bool) -> Deps {
        Deps {
            sealer: crate::shared::approval::seal::tests::sealer(valid),
            environment: "staging".into(),
            people: People::parse(crate::shared::people::EMBEDDED, "staging").unwrap(),
            policy: Policy::default(),
        }
    }

    fn event(input: Value) -> Value {
        json!({"input": input, "execution": {"id": "arn:aws:states:us-east-1:1:execution:batchless-staging-data-patch:e", "name": "e", "startTime": "2026-11-28T13:00:00Z"}})
    }

    /// bob's request as the decision endpoint submits it (sealed for execution `e`).
    fn request() -> Value {
        let mut r = unsealed_request();
        r["submission"] =
            json!({"by": BOB, "person": "bob", "at": "2026-11-28T12:59:00Z", "seal": "c2VhbGVk"});
        r
    }

    const BOB: &str = "arn:aws:iam::123456789012:user/bob";

    fn unsealed_request() -> Value {
        json!({"ticket": "OPS-1", "ref": "main", "commit": "0123456789abcdef0123456789abcdef01234567",
            "kind": "rake", "task": "data:fix", "reason": "r", "requestedBy": BOB})
    }

    #[tokio::test]
    async fn a_request_not_submitted_through_the_endpoint_or_with_a_bad_seal_is_invalid_input() {
        // Started from the console (no submission), naming bob as requester.
        let err = crate::lambda::invoke(&deps(), &handle, event(unsealed_request()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), Kind::InvalidInput);
        assert!(err.to_string().contains("field `submission`"), "{err}");
        // A submission whose seal KMS does not verify (edited after sealing, or made up).
        let err = crate::lambda::invoke(&deps_verifying(false), &handle, event(request()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), Kind::InvalidInput);
        assert!(err.to_string().contains("does not verify"), "{err}");
    }

    #[tokio::test]
    async fn a_valid_request_becomes_the_patch() {
        let out = crate::lambda::invoke(&deps(), &handle, event(request()))
            .await
            .unwrap();
        assert_eq!(out["patch"]["command"], "bin/rake data:fix");
        assert_eq!(out["patch"]["patchId"], "e");
        assert_eq!(out["patch"]["requester"], "bob");
    }

    #[tokio::test]
    async fn a_bad_request_is_invalid_input_naming_the_field() {
        let mut bad = request();
        bad["task"] = json!("data:fix; curl evil");
        let err = crate::lambda::invoke(&deps(), &handle, event(bad))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), Kind::InvalidInput);
        assert!(err.to_string().contains("field `task`"), "{err}");
        // The step's own input is strict too (the old shared step's `workflow` is gone).
        let mut e = event(request());
        e["workflow"] = json!("data-patch");
        let err = crate::lambda::invoke(&deps(), &handle, e)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown field `workflow`"),
            "{err}"
        );
    }

    #[test]
    fn policy_numbers_are_whole() {
        assert_eq!(number("N", None, 3).unwrap(), 3);
        assert_eq!(number("N", Some("2".into()), 3).unwrap(), 2);
        assert_eq!(
            number("N", Some("two".into()), 3).unwrap_err().kind(),
            Kind::ConfigError
        );
    }
}
