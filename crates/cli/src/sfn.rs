//! Step Functions edges: SDK history events → [`HistoryEvent`], state machine lookup,
//! starting executions, execution histories and descriptions, and the live follow loop.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use aws_sdk_sfn::types::HistoryEvent as SdkEvent;
use batchless_asl::HistoryEvent;
use batchless_core::platform::aws::AwsResultExt;

use crate::context::{arn_in_stack, Aws};
use crate::render::{summary, Outcome, Renderer};

/// The error and cause of whichever failure detail the event carries.
fn failure_details(e: &SdkEvent) -> (Option<String>, Option<String>) {
    macro_rules! first {
        ($($detail:ident),* $(,)?) => {
            $(
                if let Some(d) = e.$detail() {
                    return (d.error().map(str::to_string), d.cause().map(str::to_string));
                }
            )*
        };
    }
    first!(
        task_failed_event_details,
        task_timed_out_event_details,
        task_start_failed_event_details,
        task_submit_failed_event_details,
        lambda_function_failed_event_details,
        lambda_function_timed_out_event_details,
        lambda_function_start_failed_event_details,
        lambda_function_schedule_failed_event_details,
        activity_failed_event_details,
        activity_timed_out_event_details,
        activity_schedule_failed_event_details,
        execution_failed_event_details,
        execution_aborted_event_details,
        execution_timed_out_event_details,
        map_run_failed_event_details,
        evaluation_failed_event_details,
    );
    (None, None)
}

pub fn convert(e: &SdkEvent) -> HistoryEvent {
    let (error, cause) = failure_details(e);
    let entered = e.state_entered_event_details();
    let exited = e.state_exited_event_details();
    HistoryEvent {
        id: e.id(),
        previous_event_id: Some(e.previous_event_id()),
        kind: e.r#type().as_str().to_string(),
        timestamp_millis: e.timestamp().to_millis().ok(),
        name: entered
            .map(|d| d.name().to_string())
            .or_else(|| exited.map(|d| d.name().to_string())),
        error,
        cause,
        input: entered
            .and_then(|d| d.input())
            .or_else(|| e.execution_started_event_details().and_then(|d| d.input()))
            .map(str::to_string),
        output: exited
            .and_then(|d| d.output())
            .or_else(|| {
                e.execution_succeeded_event_details()
                    .and_then(|d| d.output())
            })
            .map(str::to_string),
    }
}

/// The whole history of an execution, oldest first.
pub async fn history(sfn: &aws_sdk_sfn::Client, execution_arn: &str) -> Result<Vec<HistoryEvent>> {
    let mut events: Vec<HistoryEvent> = sfn
        .get_execution_history()
        .execution_arn(execution_arn)
        .include_execution_data(true)
        .max_results(1000)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .aws("GetExecutionHistory")?
        .iter()
        .map(convert)
        .collect();
    events.sort_by_key(|e| e.id);
    Ok(events)
}

pub async fn describe(sfn: &aws_sdk_sfn::Client, execution_arn: &str) -> Result<Outcome> {
    let d = sfn
        .describe_execution()
        .execution_arn(execution_arn)
        .send()
        .await
        .aws("DescribeExecution")?;
    let start = d.start_date().to_millis().ok();
    let stop = d.stop_date().and_then(|t| t.to_millis().ok());
    Ok(Outcome {
        status: d.status().as_str().to_string(),
        duration_millis: start.zip(stop).map(|(a, b)| b - a),
        output: d.output().map(str::to_string),
        error: d.error().map(str::to_string),
        cause: d.cause().map(str::to_string),
    })
}

/// Every state machine (name, ARN).
pub async fn state_machines(sfn: &aws_sdk_sfn::Client) -> Result<Vec<(String, String)>> {
    Ok(sfn
        .list_state_machines()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .aws("ListStateMachines")?
        .iter()
        .map(|m| (m.name().to_string(), m.state_machine_arn().to_string()))
        .collect())
}

/// The ARN of the workflow's state machine `batchless-<env>-<workflow>`, if deployed.
pub async fn find_state_machine(
    aws: &Aws,
    sfn: &aws_sdk_sfn::Client,
    workflow: &str,
) -> Result<Option<String>> {
    let name = aws.state_machine_name(workflow);
    if let Some(arn) = aws.stack.as_ref().and_then(|s| arn_in_stack(s, &name)) {
        return Ok(Some(arn.to_string()));
    }
    Ok(state_machines(sfn)
        .await?
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, arn)| arn))
}

pub async fn require_state_machine(
    aws: &Aws,
    sfn: &aws_sdk_sfn::Client,
    workflow: &str,
) -> Result<String> {
    find_state_machine(aws, sfn, workflow)
        .await?
        .with_context(|| {
            format!(
                "no state machine {} (workflow {workflow:?} in environment {:?}); is it deployed?",
                aws.state_machine_name(workflow),
                aws.environment
            )
        })
}

/// Start an execution of the state machine `machine` (the core's one StartExecution,
/// idempotent by name); its ARN.
pub async fn start(
    sfn: &aws_sdk_sfn::Client,
    machine: &str,
    name: &str,
    input: &serde_json::Value,
) -> Result<String> {
    let started = batchless_core::sfn::execution::start(sfn, machine, name, input).await?;
    Ok(started.execution_arn)
}

/// Whether `workflow` is one a person submits through the decision endpoint (its first state
/// refuses a run that names a person without the endpoint's seal).
pub fn is_submitted(workflow: &str) -> bool {
    batchless_core::shared::submission::Workflow::from_name(workflow).is_some()
}

/// Seal a run a person submits (a data patch, a migration, a manual or backfilled job run)
/// for execution `name`: the decision endpoint, which knows who you are from your signed
/// request, writes you in as the starter and seals the input. The sealed input.
pub async fn seal(
    aws: &Aws,
    workflow: &str,
    name: &str,
    input: &serde_json::Value,
) -> Result<serde_json::Value> {
    let url = aws.decision_url()?;
    let body =
        serde_json::json!({"action": "submit", "workflow": workflow, "name": name, "input": input});
    let (status, answer) = crate::signed::post(aws, &url, &body).await?;
    match (status, answer.get("input")) {
        (200, Some(sealed)) if sealed.is_object() => Ok(sealed.clone()),
        _ => anyhow::bail!(
            "the decision endpoint did not accept the {workflow} run ({status}): {}",
            answer["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| answer.to_string())
        ),
    }
}

/// [`seal`] the run, then start the execution with the sealed input, with your own
/// credentials (so CloudTrail's StartExecution names you too). Its ARN.
pub async fn submit(
    aws: &Aws,
    sfn: &aws_sdk_sfn::Client,
    workflow: &str,
    machine: &str,
    name: &str,
    input: &serde_json::Value,
) -> Result<String> {
    let sealed = seal(aws, workflow, name, input).await?;
    start(sfn, machine, name, &sealed).await
}

/// The follow loop's option (`run` and `follow`).
#[derive(Debug, clap::Args, Clone, Copy)]
pub struct PollArgs {
    /// How often to poll the execution history, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000, hide = true)]
    pub poll_ms: u64,
}

impl PollArgs {
    pub fn interval(self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }
}

fn is_running(status: &str) -> bool {
    matches!(status, "RUNNING" | "PENDING_REDRIVE")
}

/// Follow an execution until it ends, printing each state as it happens; exit 0 on
/// SUCCEEDED, 1 otherwise. Ctrl-C stops following (the execution goes on), exit 130.
pub async fn follow(
    sfn: &aws_sdk_sfn::Client,
    execution_arn: &str,
    poll: Duration,
) -> Result<ExitCode> {
    let watch = async {
        let mut renderer = Renderer::new();
        loop {
            print_lines(renderer.render(&history(sfn, execution_arn).await?));
            let outcome = describe(sfn, execution_arn).await?;
            if !is_running(&outcome.status) {
                // The history may trail the status: take the last events too.
                print_lines(renderer.render(&history(sfn, execution_arn).await?));
                print_lines(summary(&outcome));
                return Ok::<_, anyhow::Error>(if outcome.succeeded() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            tokio::time::sleep(poll).await;
        }
    };
    tokio::select! {
        result = watch => result,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("stopped following; the execution goes on: {execution_arn}");
            Ok(ExitCode::from(130))
        }
    }
}

fn print_lines(lines: Vec<String>) {
    for l in lines {
        println!("{l}");
    }
}

/// The AWS console page of an execution.
pub fn console_url(region: &str, execution_arn: &str) -> String {
    format!("https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sfn::primitives::DateTime;
    use aws_sdk_sfn::types::{
        HistoryEventType, LambdaFunctionFailedEventDetails, StateEnteredEventDetails,
    };

    /// Every page of the history is read (the SDK's paginator follows `nextToken`), and the
    /// events come back oldest first.
    #[tokio::test]
    async fn the_whole_history_is_read_page_by_page() {
        use aws_sdk_sfn::operation::get_execution_history::GetExecutionHistoryOutput;
        use aws_smithy_mocks::{mock, mock_client};
        let event = |id: i64| {
            SdkEvent::builder()
                .id(id)
                .r#type(HistoryEventType::PassStateEntered)
                .timestamp(DateTime::from_millis(id * 1_000))
                .build()
                .unwrap()
        };
        let pages = mock!(aws_sdk_sfn::Client::get_execution_history)
            .match_requests(|r| r.execution_arn() == Some("arn:e"))
            .sequence()
            .output(move || {
                GetExecutionHistoryOutput::builder()
                    .events(event(3))
                    .events(event(1))
                    .next_token("page-2")
                    .build()
                    .unwrap()
            })
            .output(move || {
                GetExecutionHistoryOutput::builder()
                    .events(event(2))
                    .build()
                    .unwrap()
            })
            .build();
        let sfn = mock_client!(aws_sdk_sfn, [&pages]);
        let ids: Vec<i64> = history(&sfn, "arn:e")
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(pages.num_calls(), 2);
    }

    #[test]
    fn sdk_events_convert() {
        let entered = SdkEvent::builder()
            .id(2)
            .previous_event_id(1)
            .r#type(HistoryEventType::ChoiceStateEntered)
            .timestamp(DateTime::from_millis(1_500))
            .state_entered_event_details(
                StateEnteredEventDetails::builder()
                    .name("Outcome?")
                    .input(r#"{"a":1}"#)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let e = convert(&entered);
        assert_eq!(e.kind, "ChoiceStateEntered");
        assert_eq!(e.name.as_deref(), Some("Outcome?"));
        assert_eq!(e.input.as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(
            (e.id, e.previous_event_id, e.timestamp_millis),
            (2, Some(1), Some(1_500))
        );

        let failed = SdkEvent::builder()
            .id(5)
            .previous_event_id(4)
            .r#type(HistoryEventType::LambdaFunctionFailed)
            .timestamp(DateTime::from_millis(2_000))
            .lambda_function_failed_event_details(
                LambdaFunctionFailedEventDetails::builder()
                    .error("BuildFailed")
                    .cause("boom")
                    .build(),
            )
            .build()
            .unwrap();
        let e = convert(&failed);
        assert!(e.is_state_failure());
        assert_eq!(e.error.as_deref(), Some("BuildFailed"));
        assert_eq!(e.cause.as_deref(), Some("boom"));
    }

    #[test]
    fn console_urls() {
        assert_eq!(
            console_url("eu-west-1", "arn:aws:states:eu-west-1:1:execution:m:e"),
            "https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/arn:aws:states:eu-west-1:1:execution:m:e"
        );
    }
}
