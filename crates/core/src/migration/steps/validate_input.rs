//! `validate-input` (the migration's `ValidateInput` state): parses the execution input
//! strictly (unknown fields rejected, each error naming its field) and returns the validated
//! run, or fails `InvalidInput` before anything is started or written.
//!
//! Who started it is never taken on the input's word (issue 15): a person's run carries the
//! decision endpoint's seal (`shared::submission`); a run naming a `pipeline` is checked with
//! CodePipeline (`ListActionExecutions` of that pipeline execution): one of batchless's invoke
//! actions — the Step Functions action on this state machine, or the Lambda action on
//! `pipeline-bridge` — must be in progress with exactly this input, under the execution name
//! that action gives ([`pipeline::vouching_action`]); the bridge's runs also carry the bridge's
//! seal ([`pipeline::seal_bridge_start`]). A console start that names a pipeline, an input the
//! pipeline did not ask for (another commit, an override added), a second execution of the
//! action's input, a replay after the action ended, or the bridge action's very input started
//! by someone else under its name before the bridge is `InvalidInput`.

use aws_types::SdkConfig;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::migration::pipeline::{self, Starters};
use crate::migration::{self, MigrationRequest, MigrationRun, PipelineRef};
use crate::platform::aws;
use crate::platform::input::InputError;
use crate::platform::{config, input};
use crate::sfn::Execution;
use crate::shared::approval::Sealer;
use crate::shared::submission::{self, Submission};

pub struct Deps {
    pub environment: String,
    /// Verifies a submission's seal (the decision signing key, `DECISION_SIGNING_KEY`).
    pub sealer: Sealer,
    /// Asks CodePipeline whether a pipeline named in the input started the run.
    pub codepipeline: aws_sdk_codepipeline::Client,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            environment: config::environment()?,
            sealer: Sealer::from_env(sdk)?,
            codepipeline: aws::codepipeline(sdk),
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
    let (request, submitted) = submission::open(
        &deps.sealer,
        &deps.environment,
        submission::Workflow::Migration,
        &input.execution.name,
        input.input,
    )
    .await?;
    let asked = request.clone();
    let request: MigrationRequest = input::parse_strict(request)?;
    let run = migration::validate(request, &input.execution, &deps.environment)?;
    if let Some(p) = &run.pipeline {
        let action = started_by_pipeline(deps, p, &run, &asked, submitted.as_ref()).await?;
        tracing::info!(run_id = %run.run_id, pipeline = %p.name, action_execution = %action, "the pipeline's action started this run");
    }
    tracing::info!(run_id = %run.run_id, commit = %run.commit, "migration input valid");
    Ok(Output {
        run,
        approval: None,
    })
}

/// The id of the in-progress action of pipeline execution `p.execution_id` that started `run`
/// with input `request` (`submitted`: the input's verified submission), or `InvalidInput`
/// saying why none did. A bridge action's run must carry the bridge's own seal
/// ([`pipeline::bridge_sealed`]): anyone else who took the action's execution name first, even
/// with its very input, did not start the pipeline's run.
async fn started_by_pipeline(
    deps: &Deps,
    p: &PipelineRef,
    run: &MigrationRun,
    request: &serde_json::Value,
    submitted: Option<&Submission>,
) -> Result<String, Error> {
    let refused = |why: String| -> Error {
        InputError::field(
            "pipeline",
            format!(
                "{why}: a migration naming a pipeline must be started by that pipeline's batchless action (or submitted through the decision endpoint, `batchless run migration`)"
            ),
        )
        .into()
    };
    let Some(execution_id) = p.execution_id.as_deref() else {
        return Err(refused(format!(
            "`pipeline.executionId` is missing, so CodePipeline cannot confirm that pipeline {} started this run (set it to #{{codepipeline.PipelineExecutionId}} in the action's configuration)",
            p.name
        )));
    };
    let actions = pipeline::action_executions(&deps.codepipeline, &p.name, execution_id)
        .await?
        .map_err(refused)?;
    let state_machine_arn = crate::sfn::execution::state_machine_of(&run.run_id);
    let bridge = pipeline::bridge_function(&run.environment);
    let starters = Starters {
        state_machine_arn: &state_machine_arn,
        bridge_function: &bridge,
    };
    let action = pipeline::vouching_action(&actions, starters, request, &run.execution_name)
        .map_err(|why| {
            refused(format!(
                "pipeline {} execution {execution_id}: {why}",
                p.name
            ))
        })?;
    if action.invokes_bridge(&bridge)
        && !submitted.is_some_and(|s| pipeline::bridge_sealed(s, &run.environment, &p.name))
    {
        return Err(refused(format!(
            "pipeline {} execution {execution_id}: action {} is {bridge}'s, which starts its execution itself and seals its input; this input carries no seal of the bridge, so someone else started it under the action's name",
            p.name, action.action_execution_id
        )));
    }
    Ok(action.action_execution_id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lambda::invoke;
    use crate::migration::pipeline::tests::listed_bridge_action;
    use aws_sdk_codepipeline::operation::list_action_executions::ListActionExecutionsError;
    use aws_sdk_codepipeline::types::ActionExecutionStatus;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use serde_json::{json, Value};

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn deps() -> Deps {
        deps_verifying(true)
    }

    /// A KMS that says every seal is `valid` (or none is); CodePipeline knows no pipeline.
    fn deps_verifying(valid: bool) -> Deps {
        with_pipeline(valid, &[])
    }

    fn with_pipeline(valid: bool, codepipeline: &[&Rule]) -> Deps {
        Deps {
            environment: "staging".into(),
            sealer: crate::shared::approval::seal::tests::sealer(valid),
            codepipeline: mock_client!(aws_sdk_codepipeline, RuleMode::MatchAny, codepipeline),
        }
    }

    const SM: &str = "arn:aws:states:us-east-1:1:stateMachine:m";

    /// Pipeline `app-deploy`'s execution `pe-1`: its bridge action asking for `commit`, in
    /// `status`.
    fn listed(commit: &'static str, status: ActionExecutionStatus) -> Rule {
        let params =
            json!({"commit": commit, "pipeline": {"name": "app-deploy", "executionId": "pe-1"}});
        listed_bridge_action("app-deploy", params.to_string(), status)
    }

    fn unknown_pipeline() -> Rule {
        mock!(aws_sdk_codepipeline::Client::list_action_executions).then_error(|| {
            ListActionExecutionsError::PipelineNotFoundException(
                aws_sdk_codepipeline::types::error::PipelineNotFoundException::builder()
                    .message("no such pipeline")
                    .meta(crate::testing::meta("PipelineNotFoundException"))
                    .build(),
            )
        })
    }

    /// What the bridge starts for action `ae-1` of pipeline execution `pe-1` (`executionId` as
    /// given), with `extra` fields added, under execution name `name`.
    fn from_pipeline(commit: &str, execution_id: Option<&str>, extra: Value, name: &str) -> Value {
        let mut input = json!({"commit": commit, "pipeline": {"name": "app-deploy", "executionId": execution_id, "actionExecutionId": "ae-1"}});
        if execution_id.is_none() {
            input["pipeline"]
                .as_object_mut()
                .unwrap()
                .remove("executionId");
        }
        for (k, v) in extra.as_object().unwrap() {
            input[k] = v.clone();
        }
        let mut ev = event(input);
        ev["execution"]["id"] = json!(format!(
            "{}:{name}",
            SM.replace(":stateMachine:", ":execution:")
        ));
        ev["execution"]["name"] = json!(name);
        ev
    }

    /// The bridge's own start for action `ae-1`, sealed by the bridge.
    fn bridge_start(commit: &str) -> Value {
        sealed_as(
            unsealed_bridge_start(commit),
            "batchless-staging-pipeline-bridge",
            "codepipeline:app-deploy",
        )
    }

    /// The action `ae-1`'s very input under its name, as anyone could start it.
    fn unsealed_bridge_start(commit: &str) -> Value {
        from_pipeline(commit, Some("pe-1"), json!({}), "codepipeline-ae-1")
    }

    /// `ev`'s input with a submission by `by` for `person` (the mock KMS decides its seal).
    fn sealed_as(mut ev: Value, by: &str, person: &str) -> Value {
        ev["input"]["submission"] =
            json!({"by": by, "person": person, "at": "2026-11-28T12:59:00Z", "seal": "c2VhbGVk"});
        ev
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
    }

    #[tokio::test]
    async fn a_run_naming_a_pipeline_is_the_pipelines_only_if_codepipeline_says_its_action_started_it(
    ) {
        // CodePipeline's run: the bridge's seal, its action in progress with this input.
        let rule = listed(SHA, ActionExecutionStatus::InProgress);
        let out = invoke(&with_pipeline(true, &[&rule]), &handle, bridge_start(SHA))
            .await
            .unwrap();
        assert_eq!(out["run"]["startedBy"], "codepipeline:app-deploy");
        assert_eq!(rule.num_calls(), 1);
        let other = "1111111111111111111111111111111111111111";
        let in_progress = || vec![listed(SHA, ActionExecutionStatus::InProgress)];
        for (rules, ev, expected) in [
            // The console, naming the pipeline with no execution to check.
            (
                vec![],
                from_pipeline(SHA, None, json!({}), "codepipeline-ae-1"),
                "`pipeline.executionId` is missing",
            ),
            // An execution CodePipeline does not know.
            (vec![unknown_pipeline()], bridge_start(SHA), "knows no execution pe-1"),
            // A commit the pipeline did not ask for, under the action's name.
            (
                vec![listed(other, ActionExecutionStatus::InProgress)],
                bridge_start(SHA),
                "ae-1 (InProgress) asked for another input",
            ),
            // The pipeline's commit with an override it did not ask for.
            (
                in_progress(),
                from_pipeline(SHA, Some("pe-1"), json!({"environmentOverrides": {"RAILS_LOG_LEVEL": "debug"}}), "codepipeline-ae-1"),
                "asked for another input",
            ),
            // A second execution of the action's very input under another name.
            (
                in_progress(),
                from_pipeline(SHA, Some("pe-1"), json!({}), "codepipeline-j-1"),
                "no batchless invoke action of that pipeline execution starts execution name codepipeline-j-1",
            ),
            // The pipeline's input replayed after its action ended.
            (
                vec![listed(SHA, ActionExecutionStatus::Succeeded)],
                bridge_start(SHA),
                "ae-1 is Succeeded",
            ),
            // The action's very input under its name, started before the bridge by someone
            // else: no seal, a person's seal, the bridge's seal for another pipeline.
            (
                in_progress(),
                unsealed_bridge_start(SHA),
                "action ae-1 is batchless-staging-pipeline-bridge's, which starts its execution itself and seals its input; this input carries no seal of the bridge",
            ),
            (
                in_progress(),
                sealed_as(unsealed_bridge_start(SHA), "arn:aws:iam::123456789012:user/alice", "codepipeline:app-deploy"),
                "carries no seal of the bridge",
            ),
            (
                in_progress(),
                sealed_as(unsealed_bridge_start(SHA), "batchless-staging-pipeline-bridge", "codepipeline:other"),
                "carries no seal of the bridge",
            ),
        ] {
            let rules: Vec<&Rule> = rules.iter().collect();
            let err = invoke(&with_pipeline(true, &rules), &handle, ev)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), crate::error::Kind::InvalidInput);
            assert!(
                err.to_string().contains(expected) && err.to_string().contains("`pipeline`"),
                "{err}"
            );
        }
    }

    /// CodePipeline starts a Step Functions action's execution itself: nothing seals it, and
    /// none is asked for (the name race that remains there: README, Open).
    #[tokio::test]
    async fn a_step_functions_actions_run_needs_no_seal() {
        use aws_sdk_codepipeline::operation::list_action_executions::ListActionExecutionsOutput;
        use aws_sdk_codepipeline::types::{
            ActionCategory, ActionExecutionDetail, ActionExecutionInput, ActionOwner, ActionTypeId,
        };
        let input =
            json!({"commit": SHA, "pipeline": {"name": "app-deploy", "executionId": "pe-1"}});
        let asked = input.to_string();
        let rule =
            mock!(aws_sdk_codepipeline::Client::list_action_executions).then_output(move || {
                let kind = ActionTypeId::builder()
                    .category(ActionCategory::Invoke)
                    .owner(ActionOwner::Aws)
                    .provider("StepFunctions")
                    .version("1")
                    .build()
                    .unwrap();
                let detail = ActionExecutionDetail::builder()
                    .action_execution_id("ae-1")
                    .status(ActionExecutionStatus::InProgress)
                    .input(
                        ActionExecutionInput::builder()
                            .action_type_id(kind)
                            .configuration("StateMachineArn", SM)
                            .configuration("ExecutionNamePrefix", "migrate")
                            .resolved_configuration("Input", asked.clone())
                            .build(),
                    )
                    .build();
                ListActionExecutionsOutput::builder()
                    .action_execution_details(detail)
                    .build()
            });
        let mut ev = event(input);
        ev["execution"]["id"] = json!(format!(
            "{}:migrate-ae-1",
            SM.replace(":stateMachine:", ":execution:")
        ));
        ev["execution"]["name"] = json!("migrate-ae-1");
        let out = invoke(&with_pipeline(false, &[&rule]), &handle, ev)
            .await
            .unwrap();
        assert_eq!(out["run"]["startedBy"], "codepipeline:app-deploy");
        assert_eq!(rule.num_calls(), 1);
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
