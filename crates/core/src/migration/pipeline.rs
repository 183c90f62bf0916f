//! The CodePipeline **Lambda invoke action** (`pipeline-bridge`, the step is
//! [`super::steps::pipeline_bridge`]): the job event, the execution it starts (named after the
//! job id), and the pure decision of what to report for an execution's status.
//!
//! The job event carries temporary `artifactCredentials`: [`JobEvent`] drops them as soon as
//! the event is parsed and its `Debug` shows the job id only, so they cannot be logged by
//! accident.

use std::collections::BTreeMap;

use aws_lambda_events::codepipeline_job::{CodePipelineJob, CodePipelineJobEvent};
use aws_sdk_sfn::types::ExecutionStatus;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::platform::input::InputError;

/// CodePipeline shows at most 5,000 characters of a failure message.
pub const MAX_MESSAGE_CHARS: usize = 5000;

/// A CodePipeline job event (`aws_lambda_events`' type), without its artifact credentials.
/// Unknown fields are ignored on purpose: this is AWS's event, not our input.
pub struct JobEvent {
    /// The job id (required: a job without one cannot be reported).
    pub id: String,
    pub job: CodePipelineJob,
}

impl<'de> Deserialize<'de> for JobEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let CodePipelineJobEvent {
            code_pipeline_job: mut job,
            ..
        } = CodePipelineJobEvent::deserialize(deserializer)?;
        // Temporary credentials for the artifact bucket: nothing here uses them; never keep them.
        job.data.artifact_credentials = Default::default();
        let id = job
            .id
            .clone()
            .ok_or_else(|| serde::de::Error::missing_field("CodePipeline.job.id"))?;
        Ok(JobEvent { id, job })
    }
}

impl std::fmt::Debug for JobEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobEvent")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl JobEvent {
    /// The continuation token of a re-invocation (the execution ARN we returned).
    pub fn continuation_token(&self) -> Option<&str> {
        self.job.data.continuation_token.as_deref()
    }

    /// The action's `UserParameters`, `{}` when none are set.
    pub fn user_parameters(&self) -> &str {
        self.job
            .data
            .action_configuration
            .configuration
            .user_parameters
            .as_deref()
            .unwrap_or("{}")
    }
}

/// What to tell CodePipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Still running: succeed the invocation with a continuation token (the execution ARN).
    Continue { execution_arn: String },
    Succeed {
        execution_arn: String,
        summary: String,
        output_variables: BTreeMap<String, String>,
    },
    Fail {
        execution_arn: Option<String>,
        message: String,
    },
}

/// `codepipeline-<job id>`: deterministic, ≤ 80 characters, no `:`.
pub fn execution_name(job_id: &str) -> String {
    let safe = crate::sfn::execution::name_safe(job_id);
    let mut name = format!("codepipeline-{safe}");
    name.truncate(80);
    name
}

/// The workflow input: the action's `UserParameters` (a JSON object) plus the job id.
pub fn workflow_input(job: &JobEvent) -> Result<Value, InputError> {
    let raw = job.user_parameters();
    let mut params: Map<String, Value> = serde_json::from_str(raw)
        .map_err(|e| InputError::field("UserParameters", format!("must be a JSON object: {e}")))?;
    let pipeline = params
        .entry("pipeline")
        .or_insert_with(|| Value::Object(Map::new()));
    match pipeline {
        Value::Object(p) => {
            p.entry("name")
                .or_insert_with(|| Value::String("codepipeline".into()));
            p.insert("jobId".into(), Value::String(job.id.clone()));
        }
        _ => {
            return Err(InputError::field(
                "UserParameters.pipeline",
                "must be an object",
            ))
        }
    }
    Ok(Value::Object(params))
}

/// Pure: the decision for an execution in `status`.
pub fn decide(
    execution_arn: &str,
    status: &ExecutionStatus,
    output: Option<&str>,
    error: Option<&str>,
    cause: Option<&str>,
) -> Decision {
    match status {
        ExecutionStatus::Running | ExecutionStatus::PendingRedrive => Decision::Continue {
            execution_arn: execution_arn.to_string(),
        },
        ExecutionStatus::Succeeded => {
            let output: Value = output
                .and_then(|o| serde_json::from_str(o).ok())
                .unwrap_or(Value::Null);
            let mut vars = BTreeMap::new();
            if let Value::Object(map) = &output {
                for (k, v) in map {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => continue,
                        other => other.to_string(),
                    };
                    vars.insert(k.clone(), value);
                }
            }
            Decision::Succeed {
                execution_arn: execution_arn.to_string(),
                summary: format!(
                    "migration succeeded: build {}, log {}",
                    vars.get("buildId").map(String::as_str).unwrap_or("?"),
                    vars.get("logUri").map(String::as_str).unwrap_or("?")
                ),
                output_variables: vars,
            }
        }
        other => {
            let cause = cause.unwrap_or_default();
            // A Lambda error's cause is JSON; show its message.
            let cause = serde_json::from_str::<Value>(cause)
                .ok()
                .and_then(|v| {
                    v.get("errorMessage")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_else(|| cause.to_string());
            let text = format!(
                "{} ({}): {cause}",
                error.unwrap_or("ExecutionFailed"),
                other.as_str()
            );
            let text = crate::platform::redact::redact(&text).into_owned();
            Decision::Fail {
                execution_arn: Some(execution_arn.to_string()),
                message: text.chars().take(MAX_MESSAGE_CHARS).collect(),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) const SM: &str =
        "arn:aws:states:us-east-1:123456789012:stateMachine:batchless-staging-migration";

    pub(crate) fn event(token: Option<&str>) -> Value {
        json!({"CodePipeline.job": {
            "id": "11111111-2222-3333-4444-555555555555",
            "accountId": "123456789012",
            "data": {
                "actionConfiguration": {"configuration": {"FunctionName": "bridge", "UserParameters": "{\"commit\":\"0123456789abcdef0123456789abcdef01234567\",\"pipeline\":{\"name\":\"app\"}}"}},
                "inputArtifacts": [],
                "outputArtifacts": [],
                "artifactCredentials": {"accessKeyId": "AKIAEXAMPLE", "secretAccessKey": "SECRETEXAMPLE", "sessionToken": "TOKENEXAMPLE"},
                "continuationToken": token
            }
        }})
    }

    #[test]
    fn credentials_are_never_held() {
        let parsed: JobEvent = serde_json::from_value(event(None)).unwrap();
        let debug = format!("{parsed:?}");
        assert!(!debug.contains("SECRETEXAMPLE") && !debug.contains("TOKENEXAMPLE"));
        // Dropped at parse time, not only hidden: the crate's own Debug would print them.
        let inner = format!("{:?}", parsed.job);
        assert!(
            !inner.contains("SECRETEXAMPLE") && !inner.contains("AKIAEXAMPLE"),
            "{inner}"
        );
        assert!(parsed.job.data.artifact_credentials.session_token.is_none());
    }

    #[test]
    fn a_job_without_an_id_is_not_a_job() {
        let mut ev = event(None);
        ev["CodePipeline.job"].as_object_mut().unwrap().remove("id");
        let err = serde_json::from_value::<JobEvent>(ev).unwrap_err();
        assert!(err.to_string().contains("CodePipeline.job.id"), "{err}");
        let err = serde_json::from_value::<JobEvent>(json!({"detail": {}})).unwrap_err();
        assert!(err.to_string().contains("CodePipeline.job"), "{err}");
    }

    #[test]
    fn names_and_input() {
        let parsed: JobEvent = serde_json::from_value(event(None)).unwrap();
        assert_eq!(
            execution_name(&parsed.id),
            "codepipeline-11111111-2222-3333-4444-555555555555"
        );
        assert_eq!(
            crate::sfn::execution::execution_arn(SM, "n"),
            "arn:aws:states:us-east-1:123456789012:execution:batchless-staging-migration:n"
        );
        let input = workflow_input(&parsed).unwrap();
        assert_eq!(
            input["pipeline"]["jobId"],
            "11111111-2222-3333-4444-555555555555"
        );
        assert_eq!(input["pipeline"]["name"], "app");
    }

    #[test]
    fn decisions() {
        assert!(matches!(
            decide("a", &ExecutionStatus::Running, None, None, None),
            Decision::Continue { .. }
        ));
        match decide(
            "a",
            &ExecutionStatus::Succeeded,
            Some(r#"{"buildId":"m:1","logUri":"s3://b/k","durationSeconds":4,"x":null}"#),
            None,
            None,
        ) {
            Decision::Succeed {
                output_variables, ..
            } => {
                assert_eq!(output_variables["buildId"], "m:1");
                assert_eq!(output_variables["durationSeconds"], "4");
                assert!(!output_variables.contains_key("x"));
            }
            other => panic!("{other:?}"),
        }
        match decide(
            "a",
            &ExecutionStatus::Failed,
            None,
            Some("MigrationFailed"),
            Some("phase BUILD; DATABASE_URL=postgres://u:pw@h/d"),
        ) {
            Decision::Fail { message, .. } => {
                assert!(
                    message.starts_with("MigrationFailed (FAILED): phase BUILD"),
                    "{message}"
                );
                assert!(!message.contains(":pw@"));
            }
            other => panic!("{other:?}"),
        }
    }
}
