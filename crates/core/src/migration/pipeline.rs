//! The CodePipeline **Lambda invoke action** (`pipeline-bridge`, the step is
//! [`super::steps::pipeline_bridge`]): the job event, its own action execution (found with
//! `ListActionExecutions`), the execution it starts (named after that action execution), how
//! `ValidateInput` checks that an execution naming a pipeline is the one its action started, and
//! the pure decision of what to report for an execution's status.
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
use crate::shared::approval::Sealer;
use crate::shared::submission::{self, Submission, Workflow};

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

/// `codepipeline-<action execution id>`: one execution per action execution (Step Functions
/// keeps a name unique for 90 days), ≤ 80 characters, no `:`.
pub fn execution_name(action_execution_id: &str) -> String {
    let safe = crate::sfn::execution::name_safe(action_execution_id);
    let mut name = format!("codepipeline-{safe}");
    name.truncate(80);
    name
}

/// The name of the bridge function of `environment` (the template's `FunctionName`).
pub fn bridge_function(environment: &str) -> String {
    format!("batchless-{environment}-pipeline-bridge")
}

/// A bridge action's `UserParameters` (a JSON object) with the pipeline it names:
/// `pipeline.name` and `pipeline.executionId` (`#{codepipeline.PipelineExecutionId}`) are
/// required, since the bridge finds its own action execution by them.
fn parameters(raw: &str) -> Result<(Map<String, Value>, String, String), InputError> {
    let params: Map<String, Value> = serde_json::from_str(raw)
        .map_err(|e| InputError::field("UserParameters", format!("must be a JSON object: {e}")))?;
    let Some(Value::Object(p)) = params.get("pipeline") else {
        return Err(InputError::field(
            "UserParameters.pipeline",
            "must be an object with `name` and `executionId` (#{codepipeline.PipelineExecutionId})",
        ));
    };
    const WHY: &str = "is required (a string): the bridge finds its action execution by the \
                       pipeline's name and #{codepipeline.PipelineExecutionId}";
    let text = |key: &str| match p.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(InputError::field(
            &format!("UserParameters.pipeline.{key}"),
            WHY,
        )),
    };
    let (name, execution_id) = (text("name")?, text("executionId")?);
    Ok((params, name, execution_id))
}

/// The pipeline (name, execution id) a bridge job's `UserParameters` name.
pub fn pipeline_of(user_parameters: &str) -> Result<(String, String), InputError> {
    parameters(user_parameters).map(|(_, name, id)| (name, id))
}

/// The workflow input the bridge starts for its action execution `action_execution_id`: the
/// action's `UserParameters` plus `pipeline.actionExecutionId`. The same function tells
/// `ValidateInput` what that action asked for, so the two cannot disagree.
pub fn workflow_input(
    user_parameters: &str,
    action_execution_id: &str,
) -> Result<Value, InputError> {
    let (mut params, _, _) = parameters(user_parameters)?;
    if let Some(Value::Object(p)) = params.get_mut("pipeline") {
        p.insert(
            "actionExecutionId".into(),
            Value::String(action_execution_id.to_string()),
        );
    }
    Ok(Value::Object(params))
}

/// One CodePipeline action execution as `ListActionExecutions` gives it: the fields that say
/// which action started a migration, with which input.
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

impl ActionExecution {
    fn is_invoke(&self, provider: &str) -> bool {
        (
            self.category.as_str(),
            self.owner.as_str(),
            self.provider.as_str(),
        ) == ("Invoke", "AWS", provider)
    }

    /// A Lambda invoke action on function `bridge` (configured by name or ARN).
    pub fn invokes_bridge(&self, bridge: &str) -> bool {
        let bare = |f: &str| {
            f.rsplit_once(":function:")
                .map_or(f, |(_, rest)| rest.split(':').next().unwrap_or(rest))
                .to_string()
        };
        self.is_invoke("Lambda")
            && self
                .configuration
                .get("FunctionName")
                .is_some_and(|f| bare(f) == bridge)
    }

    fn in_progress(&self) -> bool {
        self.status == "InProgress"
    }
}

/// Every action execution of pipeline execution `execution_id` of pipeline `pipeline`
/// (`ListActionExecutions`, all pages), or why CodePipeline knows no such execution.
pub async fn action_executions(
    codepipeline: &aws_sdk_codepipeline::Client,
    pipeline: &str,
    execution_id: &str,
) -> Result<Result<Vec<ActionExecution>, String>, crate::error::Error> {
    use crate::platform::aws::AwsResultExt;
    let mut actions = Vec::new();
    let mut token = None;
    loop {
        let page = codepipeline
            .list_action_executions()
            .pipeline_name(pipeline)
            .filter(
                aws_sdk_codepipeline::types::ActionExecutionFilter::builder()
                    .pipeline_execution_id(execution_id)
                    .build(),
            )
            .set_next_token(token)
            .send()
            .await
            .aws("ListActionExecutions");
        let page = match page {
            Ok(page) => page,
            Err(e)
                if e.is_code("PipelineNotFoundException")
                    || e.is_code("PipelineExecutionNotFoundException") =>
            {
                return Ok(Err(format!(
                    "CodePipeline knows no execution {execution_id} of pipeline {pipeline}"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        actions.extend(page.action_execution_details().iter().map(action_of));
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(Ok(actions))
}

fn action_of(d: &aws_sdk_codepipeline::types::ActionExecutionDetail) -> ActionExecution {
    let input = d.input();
    let kind = input.and_then(|i| i.action_type_id());
    let map = |m: Option<&std::collections::HashMap<String, String>>| {
        m.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    ActionExecution {
        action_execution_id: d.action_execution_id().unwrap_or_default().to_string(),
        status: d
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        category: kind
            .map(|k| k.category().as_str().to_string())
            .unwrap_or_default(),
        owner: kind
            .map(|k| k.owner().as_str().to_string())
            .unwrap_or_default(),
        provider: kind.map(|k| k.provider().to_string()).unwrap_or_default(),
        configuration: map(input.and_then(|i| i.configuration())),
        resolved: map(input.and_then(|i| i.resolved_configuration())),
    }
}

/// Pure: the bridge's own action among `actions` (one pipeline execution's): the one in-progress
/// Lambda invoke action on `bridge` whose resolved `UserParameters` are the job's. Its id names
/// the execution, so a job (or a made-up job) for that action can start one execution only.
pub fn bridge_action<'a>(
    actions: &'a [ActionExecution],
    bridge: &str,
    user_parameters: &str,
) -> Result<&'a ActionExecution, String> {
    let same = |raw: Option<&String>| {
        let parse = |s: &str| serde_json::from_str::<Value>(s).ok();
        raw.and_then(|r| parse(r))
            .is_some_and(|v| Some(v) == parse(user_parameters))
    };
    let mine: Vec<&ActionExecution> = actions
        .iter()
        .filter(|a| a.invokes_bridge(bridge) && a.in_progress())
        .filter(|a| same(a.resolved.get("UserParameters")))
        .collect();
    match mine.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "no in-progress Lambda action on {bridge} in that pipeline execution has these UserParameters"
        )),
        many => Err(format!(
            "{} in-progress Lambda actions on {bridge} in that pipeline execution have these UserParameters ({}); give each its own",
            many.len(),
            many.iter().map(|a| a.action_execution_id.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Who may start a migration on a pipeline's behalf: the migration state machine itself
/// (CodePipeline's Step Functions invoke action) or `pipeline-bridge` (its Lambda invoke action).
#[derive(Debug, Clone, Copy)]
pub struct Starters<'a> {
    pub state_machine_arn: &'a str,
    pub bridge_function: &'a str,
}

/// Pure: the in-progress action of `actions` (one pipeline execution's) that started this
/// migration — a batchless invoke action whose resolved input is `request` exactly (the
/// execution's input, every field: commit, environment overrides, pipeline), under the execution
/// name that action gives (`<prefix>-<action execution id>` for the Step Functions action,
/// `codepipeline-<action execution id>` for the bridge's) — or why there is none. This is how an
/// unsubmitted migration's attribution to a pipeline is checked against CodePipeline's own
/// record instead of believed, and since the name is the action's, one action starts one
/// execution.
pub fn vouching_action<'a>(
    actions: &'a [ActionExecution],
    starters: Starters<'_>,
    request: &Value,
    execution_name: &str,
) -> Result<&'a ActionExecution, String> {
    let mut seen = Vec::new();
    for a in actions {
        // (this action's execution name, the input it asked for)
        let asked = if a.invokes_bridge(starters.bridge_function) {
            let input = a
                .resolved
                .get("UserParameters")
                .and_then(|p| workflow_input(p, &a.action_execution_id).ok());
            (self::execution_name(&a.action_execution_id), input)
        } else if a.is_invoke("StepFunctions")
            && a.configuration.get("StateMachineArn").map(String::as_str)
                == Some(starters.state_machine_arn)
        {
            let name = match a.configuration.get("ExecutionNamePrefix") {
                Some(p) if !p.is_empty() => format!("{p}-{}", a.action_execution_id),
                _ => a.action_execution_id.clone(),
            };
            let input = a
                .resolved
                .get("Input")
                .and_then(|i| serde_json::from_str::<Value>(i).ok());
            (name, input)
        } else {
            continue;
        };
        if asked.0 != execution_name {
            continue;
        }
        if asked.1.as_ref() != Some(request) {
            seen.push(format!(
                "{} ({}) asked for another input",
                a.action_execution_id, a.status
            ));
        } else if a.in_progress() {
            return Ok(a);
        } else {
            seen.push(format!("{} is {}", a.action_execution_id, a.status));
        }
    }
    Err(if seen.is_empty() {
        format!(
            "no batchless invoke action of that pipeline execution starts execution name {execution_name}"
        )
    } else {
        format!(
            "the action that gives execution name {execution_name} did not start this input: {}",
            seen.join("; ")
        )
    })
}

/// The bridge's seal on what it starts (issue 15). Whoever may `states:StartExecution` could
/// take a bridge action's execution name, with the action's very input, in the milliseconds
/// before the bridge does, and pass their own start off as the pipeline's. So the bridge seals
/// the input it starts as a submission ([`submission::seal`], the decision signing key, whose
/// policy lets the bridge's role sign): `by` is the bridge function's name (the decision
/// endpoint's submissions carry the caller's ARN, `arn:...`, so neither can pass for the
/// other), `person` is `codepipeline:<pipeline>`. `ValidateInput` accepts a run vouched for by
/// a bridge action only with that seal ([`bridge_sealed`]); a start that took the name first
/// fails `InvalidInput`, and the bridge's own start then fails the pipeline's job, naming it.
pub async fn seal_bridge_start(
    sealer: &Sealer,
    environment: &str,
    execution_name: &str,
    input: &mut Value,
    pipeline: &str,
    at: &str,
) -> Result<(), crate::error::Error> {
    submission::seal(
        sealer,
        environment,
        Workflow::Migration,
        execution_name,
        input,
        &bridge_function(environment),
        &pipeline_starter(pipeline),
        at,
    )
    .await
}

/// Who a pipeline's run is attributed to: `codepipeline:<pipeline>`.
pub fn pipeline_starter(pipeline: &str) -> String {
    format!("codepipeline:{pipeline}")
}

/// Pure: whether submission `s` (its seal already verified) is the bridge of `environment`
/// starting a run of `pipeline`.
pub fn bridge_sealed(s: &Submission, environment: &str, pipeline: &str) -> bool {
    s.by == bridge_function(environment) && s.person == pipeline_starter(pipeline)
}

/// Whether `existing` (the input of the execution that holds the bridge's execution name) is
/// the bridge's own start of `unsealed` for `pipeline`: sealed by the bridge for that name, and
/// otherwise the same input. A redelivered job seals again, and an ECDSA signature differs each
/// time, so the inputs are compared without their seals.
pub async fn is_bridge_start(
    sealer: &Sealer,
    environment: &str,
    execution_name: &str,
    existing: &Value,
    unsealed: &Value,
    pipeline: &str,
) -> Result<bool, crate::error::Error> {
    let opened = submission::open(
        sealer,
        environment,
        Workflow::Migration,
        execution_name,
        existing.clone(),
    )
    .await;
    match opened {
        Ok((rest, Some(s))) => Ok(&rest == unsealed && bridge_sealed(&s, environment, pipeline)),
        Ok((_, None)) => Ok(false),
        Err(e) if e.kind() == crate::error::Kind::InvalidInput => Ok(false),
        Err(e) => Err(e),
    }
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

    /// `ListActionExecutions` of pipeline `pipeline`'s execution `pe-1`: one Lambda invoke
    /// action `ae-1` on the staging bridge, in `status`, with `user_parameters`.
    pub(crate) fn listed_bridge_action(
        pipeline: &'static str,
        user_parameters: String,
        status: aws_sdk_codepipeline::types::ActionExecutionStatus,
    ) -> aws_smithy_mocks::Rule {
        use aws_sdk_codepipeline::operation::list_action_executions::ListActionExecutionsOutput;
        use aws_sdk_codepipeline::types::{
            ActionCategory, ActionExecutionDetail, ActionExecutionInput, ActionOwner, ActionTypeId,
        };
        aws_smithy_mocks::mock!(aws_sdk_codepipeline::Client::list_action_executions)
            .match_requests(move |r| {
                r.pipeline_name() == Some(pipeline)
                    && r.filter().and_then(|f| f.pipeline_execution_id()) == Some("pe-1")
            })
            .then_output(move || {
                let kind = ActionTypeId::builder()
                    .category(ActionCategory::Invoke)
                    .owner(ActionOwner::Aws)
                    .provider("Lambda")
                    .version("1")
                    .build()
                    .unwrap();
                let input = ActionExecutionInput::builder()
                    .action_type_id(kind)
                    .configuration("FunctionName", "batchless-staging-pipeline-bridge")
                    .resolved_configuration("UserParameters", user_parameters.clone())
                    .build();
                let detail = ActionExecutionDetail::builder()
                    .action_execution_id("ae-1")
                    .status(status.clone())
                    .input(input)
                    .build();
                ListActionExecutionsOutput::builder()
                    .action_execution_details(detail)
                    .build()
            })
    }

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

    const BRIDGE: &str = "batchless-staging-pipeline-bridge";

    fn params(commit: &str) -> String {
        json!({"commit": commit, "environmentOverrides": {"A": "1"},
               "pipeline": {"name": "app-deploy", "executionId": "pe-1"}})
        .to_string()
    }

    #[test]
    fn the_bridge_finds_its_one_action_in_progress_with_the_jobs_parameters() {
        let mine = |status: &str, function: &str, up: &str| ActionExecution {
            resolved: BTreeMap::from([("UserParameters".into(), up.into())]),
            ..action("Lambda", status, &[("FunctionName", function)], json!({}))
        };
        let up = params(COMMIT);
        // Whitespace and key order do not matter; the function may be named by ARN.
        let respaced =
            serde_json::to_string_pretty(&serde_json::from_str::<Value>(&up).unwrap()).unwrap();
        let arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{BRIDGE}");
        for a in [
            mine("InProgress", BRIDGE, &up),
            mine("InProgress", &arn, &respaced),
        ] {
            assert_eq!(
                bridge_action(&[a], BRIDGE, &up).map(|a| a.action_execution_id.clone()),
                Ok("ae-1".into())
            );
        }
        for a in [
            mine("Succeeded", BRIDGE, &up),
            mine("InProgress", "mallory", &up),
            mine("InProgress", BRIDGE, &params("ffff")),
        ] {
            let err = bridge_action(std::slice::from_ref(&a), BRIDGE, &up).unwrap_err();
            assert!(err.contains("no in-progress Lambda action"), "{a:?}: {err}");
        }
        let two = [
            mine("InProgress", BRIDGE, &up),
            ActionExecution {
                action_execution_id: "ae-2".into(),
                ..mine("InProgress", BRIDGE, &up)
            },
        ];
        let err = bridge_action(&two, BRIDGE, &up).unwrap_err();
        assert!(
            err.contains("2 in-progress") && err.contains("ae-1, ae-2"),
            "{err}"
        );
    }

    #[test]
    fn only_batchless_own_action_in_progress_for_the_same_input_vouches_for_a_run() {
        let starters = Starters {
            state_machine_arn: SM,
            bridge_function: BRIDGE,
        };
        let asks =
            json!({"commit": COMMIT, "pipeline": {"name": "app-deploy", "executionId": "pe-1"}});
        // What the bridge starts for action ae-1: its UserParameters plus the action's id.
        let started = workflow_input(&asks.to_string(), "ae-1").unwrap();
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
        let check = |a: ActionExecution, request: &Value, name: &str| {
            vouching_action(&[a], starters, request, name).map(|a| a.action_execution_id.clone())
        };
        // The bridge's run (function by name or ARN), the Step Functions action's run.
        assert_eq!(
            check(bridge("InProgress", BRIDGE), &started, "codepipeline-ae-1"),
            Ok("ae-1".into())
        );
        let arn = format!("arn:aws:lambda:us-east-1:123456789012:function:{BRIDGE}");
        assert!(check(bridge("InProgress", &arn), &started, "codepipeline-ae-1").is_ok());
        assert!(check(sfn("app-deploy", SM), &asks, "app-deploy-ae-1").is_ok());
        assert!(check(sfn("", SM), &asks, "ae-1").is_ok());
        // The same commit with anything added (an override the pipeline did not ask for, another
        // pipeline field), under the action's name: not the pipeline's run.
        let mut overridden = started.clone();
        overridden["environmentOverrides"] = json!({"DISABLE_SAFETY": "1"});
        let mut other_id = started.clone();
        other_id["pipeline"]["actionExecutionId"] = json!("ae-2");
        for request in [&overridden, &other_id, &asks] {
            let err =
                check(bridge("InProgress", BRIDGE), request, "codepipeline-ae-1").unwrap_err();
            assert!(
                err.contains("ae-1 (InProgress) asked for another input"),
                "{request}: {err}"
            );
        }
        let mut sfn_overridden = asks.clone();
        sfn_overridden["environmentOverrides"] = json!({"X": "1"});
        assert!(check(sfn("app-deploy", SM), &sfn_overridden, "app-deploy-ae-1").is_err());
        // Anything else is not the pipeline's start of this run.
        for (a, request, name) in [
            // A second execution of the action's input under another name.
            (bridge("InProgress", BRIDGE), &started, "codepipeline-j"),
            (bridge("InProgress", BRIDGE), &started, "console-run"),
            (
                bridge("InProgress", "mallory-bridge"),
                &started,
                "codepipeline-ae-1",
            ),
            (sfn("app-deploy", SM), &asks, "app-deploy-ae-2"),
            (
                sfn(
                    "app-deploy",
                    "arn:aws:states:us-east-1:123456789012:stateMachine:other",
                ),
                &asks,
                "app-deploy-ae-1",
            ),
            (
                ActionExecution {
                    category: "Build".into(),
                    ..bridge("InProgress", BRIDGE)
                },
                &started,
                "codepipeline-ae-1",
            ),
        ] {
            let err = check(a.clone(), request, name).unwrap_err();
            assert!(err.contains(&format!("no batchless invoke action of that pipeline execution starts execution name {name}")), "{a:?} {name}: {err}");
        }
        let ended = check(bridge("Failed", BRIDGE), &started, "codepipeline-ae-1");
        assert!(ended.unwrap_err().contains("ae-1 is Failed"));
    }

    pub(crate) const SM: &str =
        "arn:aws:states:us-east-1:123456789012:stateMachine:batchless-staging-migration";

    pub(crate) fn event(token: Option<&str>) -> Value {
        json!({"CodePipeline.job": {
            "id": "11111111-2222-3333-4444-555555555555",
            "accountId": "123456789012",
            "data": {
                "actionConfiguration": {"configuration": {"FunctionName": "bridge", "UserParameters": "{\"commit\":\"0123456789abcdef0123456789abcdef01234567\",\"pipeline\":{\"name\":\"app\",\"executionId\":\"pe-1\"}}"}},
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
        assert_eq!(
            execution_name("ae-1/x"),
            format!(
                "codepipeline-{}",
                crate::sfn::execution::name_safe("ae-1/x")
            )
        );
        assert_eq!(
            crate::sfn::execution::execution_arn(SM, "n"),
            "arn:aws:states:us-east-1:123456789012:execution:batchless-staging-migration:n"
        );
        let parsed: JobEvent = serde_json::from_value(event(None)).unwrap();
        assert_eq!(
            pipeline_of(parsed.user_parameters()).unwrap(),
            ("app".into(), "pe-1".into())
        );
        let input = workflow_input(parsed.user_parameters(), "ae-1").unwrap();
        assert_eq!(
            input["pipeline"],
            json!({"name": "app", "executionId": "pe-1", "actionExecutionId": "ae-1"})
        );
        assert_eq!(input["commit"], COMMIT);
        // The bridge finds its action by the pipeline's name and execution id: both required.
        for (up, field) in [
            ("not json", "`UserParameters`"),
            (r#"{"commit":"c"}"#, "`UserParameters.pipeline`"),
            (r#"{"pipeline":"app"}"#, "`UserParameters.pipeline`"),
            (
                r#"{"pipeline":{"name":"app"}}"#,
                "`UserParameters.pipeline.executionId`",
            ),
            (
                r#"{"pipeline":{"executionId":"pe-1","name":""}}"#,
                "`UserParameters.pipeline.name`",
            ),
        ] {
            let err = workflow_input(up, "ae-1").unwrap_err().to_string();
            assert!(err.contains(field), "{up}: {err}");
            assert!(pipeline_of(up).is_err());
        }
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
