//! Submissions (issue 15): who started a run is never a field the caller fills in.
//!
//! A person starts a data patch, a migration or a manual (or backfilled) job run through the
//! IAM-authenticated decision endpoint (`{"action": "submit", ...}`). The endpoint takes the
//! caller's ARN from the request context Lambda verified, writes the starter into the input
//! ([`fill`]: `requestedBy` of a patch, `startedBy` of a migration, `manual.requestedBy` /
//! `backfill.requestedBy` of a job run) and seals it ([`seal`]): a signature with the
//! decision signing key (only the decision endpoints' roles may `kms:Sign` with it) over the
//! environment, the workflow, the execution name and the whole input. The CLI then starts
//! the execution with that input under that name, with the caller's own credentials (so
//! CloudTrail's `StartExecution` names them too).
//!
//! The workflow's first state [`open`]s the input: a seal that does not verify (an edited
//! input, a sealed input moved to another execution name or environment, a made-up seal) is
//! `InvalidInput` before anything is recorded. An input without a submission may name no
//! starter ([`unsealed`]): a data patch always needs one; a migration without one must come
//! from CodePipeline (`pipeline`) and is attributed to it; a job run without one is a
//! scheduled occurrence (EventBridge Scheduler). So an execution started from the console or a
//! raw `StartExecution` naming another person as requester fails `InvalidInput`.
//!
//! A sealed input cannot be replayed: the seal binds the execution name, and Step Functions
//! refuses a second execution of a name (for 90 days) unless it has the same input, in which
//! case it is the same execution.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::platform::input::InputError;
use crate::shared::approval::Sealer;
use crate::shared::audit::canonical_json;

/// The input's field that carries the submission.
pub const FIELD: &str = "submission";

/// The workflows a person submits (each workflow's `WORKFLOW`; their tests check it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workflow {
    DataPatch,
    Migration,
    ScheduledJob,
}

impl Workflow {
    pub const fn name(self) -> &'static str {
        match self {
            Workflow::DataPatch => "data-patch",
            Workflow::Migration => "migration",
            Workflow::ScheduledJob => "scheduled-job",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [
            Workflow::DataPatch,
            Workflow::Migration,
            Workflow::ScheduledJob,
        ]
        .into_iter()
        .find(|w| w.name() == name)
    }
}

/// Who submitted an input, as the decision endpoint saw it, and its seal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Submission {
    /// The caller's ARN, as Lambda verified the SigV4 signature.
    pub by: String,
    /// The person the deployed people map makes of it.
    pub person: String,
    pub at: String,
    /// The decision signing key's signature over [`message`].
    pub seal: String,
}

/// What is signed: `batchless-submission/1:` and the SHA-256 of a canonical JSON array of the
/// environment, the workflow, the execution name, the input (without its submission) and who
/// submitted it when.
pub fn message(
    environment: &str,
    workflow: Workflow,
    execution_name: &str,
    input: &Value,
    by: &str,
    person: &str,
    at: &str,
) -> Vec<u8> {
    let canonical = canonical_json(&serde_json::json!([
        "batchless-submission/1",
        environment,
        workflow.name(),
        execution_name,
        input,
        by,
        person,
        at,
    ]));
    let digest = Sha256::digest(canonical.as_bytes());
    format!("batchless-submission/1:{}", hex::encode(digest)).into_bytes()
}

/// Write the starter into `input` (the endpoint, before it seals): the caller's ARN as a
/// patch's `requestedBy`, the person as a migration's `startedBy` or a job run's
/// `manual.requestedBy` / `backfill.requestedBy`. A starter already there must be the same
/// one; the error says what is wrong with the input (the endpoint answers 400).
pub fn fill(
    workflow: Workflow,
    input: &mut Value,
    principal: &str,
    person: &str,
) -> Result<(), String> {
    let obj = input
        .as_object_mut()
        .ok_or("the input must be a JSON object")?;
    if obj.contains_key(FIELD) {
        return Err(format!(
            "{FIELD}: set by this endpoint, never by the caller"
        ));
    }
    let (target, field, value) = match workflow {
        Workflow::DataPatch => (obj, "requestedBy", principal),
        Workflow::Migration => (obj, "startedBy", person),
        Workflow::ScheduledJob => {
            let part = match (obj.contains_key("manual"), obj.contains_key("backfill")) {
                (true, false) => "manual",
                (false, true) => "backfill",
                _ => {
                    return Err(
                        "a job run is submitted as `manual` or as a `backfill` of its \
                                scheduled occurrences (EventBridge Scheduler starts the rest)"
                            .into(),
                    )
                }
            };
            let target = obj
                .get_mut(part)
                .and_then(Value::as_object_mut)
                .ok_or(format!("{part}: must be an object"))?;
            (target, "requestedBy", person)
        }
    };
    match target.get(field) {
        None | Some(Value::Null) => {
            target.insert(field.to_string(), Value::String(value.to_string()));
            Ok(())
        }
        Some(Value::String(s)) if s == value => Ok(()),
        Some(other) => Err(format!(
            "{field}: the starter is you, the authenticated caller ({value}), not {other}"
        )),
    }
}

/// Seal `input` (the starter already [`fill`]ed in) for execution `execution_name`.
#[allow(clippy::too_many_arguments)]
pub async fn seal(
    sealer: &Sealer,
    environment: &str,
    workflow: Workflow,
    execution_name: &str,
    input: &mut Value,
    principal: &str,
    person: &str,
    at: &str,
) -> Result<(), Error> {
    let seal = sealer
        .sign(message(
            environment,
            workflow,
            execution_name,
            input,
            principal,
            person,
            at,
        ))
        .await?;
    let s = Submission {
        by: principal.to_string(),
        person: person.to_string(),
        at: at.to_string(),
        seal,
    };
    input[FIELD] = serde_json::to_value(s).expect("a submission serializes");
    Ok(())
}

/// The first state's view of its input: the input without its submission, and the
/// submission if there was one — whose seal verified, or `InvalidInput`. An input without
/// one must name no starter ([`unsealed`]).
pub async fn open(
    sealer: &Sealer,
    environment: &str,
    workflow: Workflow,
    execution_name: &str,
    mut input: Value,
) -> Result<(Value, Option<Submission>), Error> {
    let Some(raw) = input.as_object_mut().and_then(|o| o.remove(FIELD)) else {
        unsealed(workflow, &input)?;
        return Ok((input, None));
    };
    let s: Submission = serde_json::from_value(raw).map_err(|e| {
        InputError::field(
            FIELD,
            format!("not a submission of the decision endpoint: {e}"),
        )
    })?;
    let m = message(
        environment,
        workflow,
        execution_name,
        &input,
        &s.by,
        &s.person,
        &s.at,
    );
    if !sealer.valid(m, Some(&s.seal)).await? {
        return Err(InputError::field(
            FIELD,
            format!(
                "its seal does not verify for execution {execution_name:?} of {} in {environment}: \
                 the input was changed after it was submitted, moved to another execution, or \
                 the seal was made up",
                workflow.name()
            ),
        )
        .into());
    }
    Ok((input, Some(s)))
}

/// An input that came without a submission may not name who started it.
pub fn unsealed(workflow: Workflow, input: &Value) -> Result<(), InputError> {
    let has = |k: &str| input.get(k).is_some_and(|v| !v.is_null());
    match workflow {
        Workflow::DataPatch => Err(InputError::field(
            FIELD,
            "a data patch is submitted through the decision endpoint (`batchless patch \
             submit`), which takes the requester from the authenticated caller; an execution \
             started another way (the console, a raw StartExecution) names nobody",
        )),
        Workflow::Migration if has("startedBy") => Err(InputError::field(
            "startedBy",
            "only a submission sealed by the decision endpoint names who started a migration \
             (`batchless run migration`); an unsubmitted run is CodePipeline's and names its \
             `pipeline`",
        )),
        Workflow::Migration if !has("pipeline") => Err(InputError::field(
            FIELD,
            "a migration is started by CodePipeline (with `pipeline`) or submitted through the \
             decision endpoint (`batchless run migration`), which names who started it",
        )),
        Workflow::ScheduledJob if has("manual") || has("backfill") => Err(InputError::field(
            FIELD,
            "a manual or backfilled job run is submitted through the decision endpoint \
             (`batchless jobs run`, `batchless jobs backfill`), which names who started it; \
             without a submission only a scheduled occurrence runs",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_starter_is_written_where_each_workflow_keeps_it() {
        let alice = "arn:aws:iam::123456789012:user/alice";
        let mut p = json!({"ticket": "OPS-1"});
        fill(Workflow::DataPatch, &mut p, alice, "alice").unwrap();
        assert_eq!(p["requestedBy"], alice);
        let mut m = json!({"commit": "c"});
        fill(Workflow::Migration, &mut m, alice, "alice").unwrap();
        assert_eq!(m["startedBy"], "alice");
        let mut j = json!({"job": "j", "manual": {}});
        fill(Workflow::ScheduledJob, &mut j, alice, "alice").unwrap();
        assert_eq!(j["manual"]["requestedBy"], "alice");
        let mut b = json!({"job": "j", "scheduledTime": "t", "backfill": {"policy": "forbid"}});
        fill(Workflow::ScheduledJob, &mut b, alice, "alice").unwrap();
        assert_eq!(b["backfill"]["requestedBy"], "alice");
        // The same starter again is fine (an older CLI); another is refused.
        let mut same = json!({"requestedBy": alice});
        assert!(fill(Workflow::DataPatch, &mut same, alice, "alice").is_ok());
        for (w, mut bad) in [
            (
                Workflow::DataPatch,
                json!({"requestedBy": "arn:aws:iam::123456789012:user/bob"}),
            ),
            (Workflow::Migration, json!({"startedBy": "bob"})),
            (
                Workflow::ScheduledJob,
                json!({"manual": {"requestedBy": "bob"}}),
            ),
            (Workflow::ScheduledJob, json!({"scheduledTime": "t"})),
            (
                Workflow::ScheduledJob,
                json!({"manual": {}, "backfill": {}}),
            ),
            (Workflow::ScheduledJob, json!({"manual": "x"})),
            (Workflow::Migration, json!({"submission": {}})),
            (Workflow::Migration, json!(["commit"])),
        ] {
            let before = bad.clone();
            assert!(fill(w, &mut bad, alice, "alice").is_err(), "{before}");
        }
    }

    #[test]
    fn the_seal_covers_the_environment_the_workflow_the_name_and_every_field() {
        let input = json!({"b": 1, "a": {"y": 2, "x": [1, 2]}});
        let m = |env: &str, w, name: &str, input: &Value, by: &str| {
            message(env, w, name, input, by, "alice", "2026-12-02T10:00:00Z")
        };
        let base = m("staging", Workflow::DataPatch, "n", &input, "arn");
        // Key order does not matter (canonical JSON) ...
        let reordered = json!({"a": {"x": [1, 2], "y": 2}, "b": 1});
        assert_eq!(
            base,
            m("staging", Workflow::DataPatch, "n", &reordered, "arn")
        );
        // ... everything else does.
        for other in [
            m("production", Workflow::DataPatch, "n", &input, "arn"),
            m("staging", Workflow::Migration, "n", &input, "arn"),
            m("staging", Workflow::DataPatch, "n2", &input, "arn"),
            m(
                "staging",
                Workflow::DataPatch,
                "n",
                &json!({"b": 2, "a": {"y": 2, "x": [1, 2]}}),
                "arn",
            ),
            m("staging", Workflow::DataPatch, "n", &input, "arn2"),
        ] {
            assert_ne!(base, other);
        }
        assert!(base.starts_with(b"batchless-submission/1:"));
    }

    #[test]
    fn an_unsealed_input_names_no_starter() {
        assert!(unsealed(Workflow::DataPatch, &json!({"requestedBy": "x"})).is_err());
        assert!(unsealed(Workflow::DataPatch, &json!({})).is_err());
        assert!(unsealed(
            Workflow::Migration,
            &json!({"commit": "c", "startedBy": "bob"})
        )
        .is_err());
        assert!(unsealed(Workflow::Migration, &json!({"commit": "c"})).is_err());
        assert!(unsealed(
            Workflow::Migration,
            &json!({"commit": "c", "pipeline": {"name": "p"}})
        )
        .is_ok());
        assert!(unsealed(Workflow::ScheduledJob, &json!({"job": "j", "manual": {}})).is_err());
        assert!(unsealed(
            Workflow::ScheduledJob,
            &json!({"job": "j", "scheduledTime": "t", "backfill": {}})
        )
        .is_err());
        assert!(unsealed(
            Workflow::ScheduledJob,
            &json!({"job": "j", "scheduledTime": "t"})
        )
        .is_ok());
        for w in ["data-patch", "migration", "scheduled-job"] {
            assert_eq!(Workflow::from_name(w).map(Workflow::name), Some(w));
        }
        assert_eq!(Workflow::from_name("bastion-session"), None);
    }

    #[tokio::test]
    async fn open_returns_the_input_without_its_submission_or_refuses_a_seal_that_does_not_verify()
    {
        use crate::shared::approval::seal::tests::sealer;
        let mut input = json!({"commit": "c"});
        fill(Workflow::Migration, &mut input, "arn:x", "alice").unwrap();
        seal(
            &sealer(true),
            "staging",
            Workflow::Migration,
            "n",
            &mut input,
            "arn:x",
            "alice",
            "t",
        )
        .await
        .unwrap();
        assert_eq!(input[FIELD]["seal"], "c2VhbGVkLWJ5LXRlc3Q=");
        let (rest, s) = open(
            &sealer(true),
            "staging",
            Workflow::Migration,
            "n",
            input.clone(),
        )
        .await
        .unwrap();
        assert_eq!(rest, json!({"commit": "c", "startedBy": "alice"}));
        assert_eq!(s.unwrap().person, "alice");
        let err = open(
            &sealer(false),
            "staging",
            Workflow::Migration,
            "n",
            input.clone(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::InvalidInput);
        assert!(err.to_string().contains("does not verify"), "{err}");
        let mut junk = input.clone();
        junk[FIELD] = json!({"by": "arn:x"});
        let err = open(&sealer(true), "staging", Workflow::Migration, "n", junk)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::InvalidInput);
        let pipeline = json!({"commit": "c", "pipeline": {"name": "p"}});
        let (same, none) = open(
            &sealer(false),
            "staging",
            Workflow::Migration,
            "n",
            pipeline.clone(),
        )
        .await
        .unwrap();
        assert_eq!((same, none), (pipeline, None));
        let console = json!({"commit": "c", "startedBy": "bob"});
        let err = open(&sealer(true), "staging", Workflow::Migration, "n", console)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("startedBy"), "{err}");
    }
}
