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

/// One CodePipeline action execution as `ListActionExecutions` gives it: the fields that say
/// which action started a migration, for which commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionExecution {
    pub action_execution_id: String,
    /// `InProgress`, `Succeeded`, ...
    pub status: String,
    /// `Invoke` / `AWS` / `Lambda` or `StepFunctions`.
    pub category: String,
    pub owner: String,
    pub provider: String,
    /// As configured, and with the pipeline's variables resolved for this execution.
    pub configuration: BTreeMap<String, String>,
    pub resolved: BTreeMap<String, String>,
}

/// Who may start a migration on a pipeline's behalf: the migration state machine itself
/// (CodePipeline's Step Functions invoke action) or `pipeline-bridge` (its Lambda invoke action).
#[derive(Debug, Clone, Copy)]
pub struct Starters<'a> {
    pub state_machine_arn: &'a str,
    pub bridge_function: &'a str,
}

/// Pure: the in-progress action of `actions` (one pipeline execution's) that started this
/// migration — a batchless invoke action whose resolved input asks for `commit`, under an
/// execution name that action gives (`<prefix>-<action execution id>` for the Step Functions
/// action, `codepipeline-<job id>` for the bridge's) — or why there is none. This is how an
/// unsubmitted migration's attribution to a pipeline is checked against CodePipeline's own
/// record instead of believed.
pub fn vouching_action<'a>(
    actions: &'a [ActionExecution],
    starters: Starters<'_>,
    commit: &str,
    execution_name: &str,
) -> Result<&'a ActionExecution, String> {
    let bare = |f: &str| {
        f.rsplit_once(":function:")
            .map_or(f, |(_, rest)| rest.split(':').next().unwrap_or(rest))
            .to_string()
    };
    let asks_for = |input: Option<&String>| {
        input
            .and_then(|i| serde_json::from_str::<Value>(i).ok())
            .and_then(|v| v["commit"].as_str().map(str::to_ascii_lowercase))
            .is_some_and(|c| c == commit.to_ascii_lowercase())
    };
    let mut seen = Vec::new();
    for a in actions {
        if (a.category.as_str(), a.owner.as_str()) != ("Invoke", "AWS") {
            continue;
        }
        let ours = match a.provider.as_str() {
            "Lambda" => {
                a.configuration
                    .get("FunctionName")
                    .is_some_and(|f| bare(f) == starters.bridge_function)
                    && asks_for(a.resolved.get("UserParameters"))
                    && execution_name.starts_with("codepipeline-")
            }
            "StepFunctions" => {
                let name = match a.configuration.get("ExecutionNamePrefix") {
                    Some(p) if !p.is_empty() => format!("{p}-{}", a.action_execution_id),
                    _ => a.action_execution_id.clone(),
                };
                a.configuration.get("StateMachineArn").map(String::as_str)
                    == Some(starters.state_machine_arn)
                    && asks_for(a.resolved.get("Input"))
                    && execution_name == name
            }
            _ => false,
        };
        if ours && a.status == "InProgress" {
            return Ok(a);
        }
        if ours {
            seen.push(format!("{} ({})", a.action_execution_id, a.status));
        }
    }
    Err(if seen.is_empty() {
        format!(
            "no batchless invoke action of that pipeline execution asks for commit {commit} under execution name {execution_name}"
        )
    } else {
        format!(
            "its action for commit {commit} is no longer in progress: {}",
            seen.join(", ")
        )
    })
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

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn action(
        provider: &str,
        status: &str,
        config: &[(&str, &str)],
        input: Value,
    ) -> ActionExecution {
        let key = if provider == "Lambda" {
            "UserParameters"
        } else {
            "Input"
        };
        let configuration: BTreeMap<String, String> = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut resolved = configuration.clone();
        resolved.insert(key.into(), input.to_string());
        ActionExecution {
            action_execution_id: "ae-1".into(),
            status: status.into(),
            category: "Invoke".into(),
            owner: "AWS".into(),
            provider: provider.into(),
            configuration,
            resolved,
        }
    }

    #[test]
    fn only_batchless_own_action_in_progress_for_the_commit_vouches_for_a_run() {
        let starters = Starters {
            state_machine_arn: SM,
            bridge_function: "batchless-staging-pipeline-bridge",
        };
        let asks = json!({"commit": COMMIT.to_uppercase()});
        let bridge = |status: &str, function: &str| {
            action(
                "Lambda",
                status,
                &[("FunctionName", function)],
                asks.clone(),
            )
        };
        let sfn = |prefix: &str, sm: &str| {
            action(
                "StepFunctions",
                "InProgress",
                &[("StateMachineArn", sm), ("ExecutionNamePrefix", prefix)],
                asks.clone(),
            )
        };
        let check = |a: ActionExecution, name: &str| {
            vouching_action(&[a], starters, COMMIT, name).map(|a| a.action_execution_id.clone())
        };
        // The bridge's run (name or ARN of the function), the Step Functions action's run.
        assert_eq!(
            check(
                bridge("InProgress", "batchless-staging-pipeline-bridge"),
                "codepipeline-j"
            ),
            Ok("ae-1".into())
        );
        let arn =
            "arn:aws:lambda:us-east-1:123456789012:function:batchless-staging-pipeline-bridge";
        assert!(check(bridge("InProgress", arn), "codepipeline-j").is_ok());
        assert!(check(sfn("app-deploy", SM), "app-deploy-ae-1").is_ok());
        assert!(check(sfn("", SM), "ae-1").is_ok());
        // Anything else is not the pipeline's start of this run.
        for (a, name) in [
            (
                bridge("InProgress", "batchless-staging-pipeline-bridge"),
                "console-run",
            ),
            (bridge("InProgress", "mallory-bridge"), "codepipeline-j"),
            (
                bridge("Succeeded", "batchless-staging-pipeline-bridge"),
                "codepipeline-j",
            ),
            (sfn("app-deploy", SM), "app-deploy-ae-2"),
            (
                sfn(
                    "app-deploy",
                    "arn:aws:states:us-east-1:123456789012:stateMachine:other",
                ),
                "app-deploy-ae-1",
            ),
            (
                action(
                    "Lambda",
                    "InProgress",
                    &[("FunctionName", "batchless-staging-pipeline-bridge")],
                    json!({"commit": "ffff"}),
                ),
                "codepipeline-j",
            ),
            (
                ActionExecution {
                    category: "Build".into(),
                    ..bridge("InProgress", "batchless-staging-pipeline-bridge")
                },
                "codepipeline-j",
            ),
        ] {
            assert!(check(a.clone(), name).is_err(), "{a:?} {name}");
        }
        let ended = check(
            bridge("Failed", "batchless-staging-pipeline-bridge"),
            "codepipeline-j",
        );
        assert!(ended
            .unwrap_err()
            .contains("no longer in progress: ae-1 (Failed)"));
    }

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
