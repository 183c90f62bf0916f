//! Workflow cost benchmark (issue 8): per migration run, the Step Functions state transitions
//! and Lambda invocations for builds of 1, 10 and 60 (time-scaled) minutes, and the delay from
//! the build's end to the workflow moving on (`CollectLogs` entered) — once with the build's
//! state-change event delivered, once with it lost (only the safety-net poll can end the wait).
//!
//! ```sh
//! target/debug/batchless local up --name bench --time-scale 60 -- --param MigrationTimeoutMinutes=90
//! BATCHLESS_STACK=bench cargo run -p batchless-scenarios --example workflow-cost [-- --reps 2]
//! ```
//! (The migration project's default timeout is 60 minutes: a 60-minute `db:migrate` plus the
//! build's other phases would end TIMED_OUT, so the stack gets 90.)
//! On a stack with time scale S, a build of M minutes is the fake app's `db:migrate` sleeping
//! M × 60 / S real seconds, and every Wait/timeout of the state machine is divided by S, so the
//! counts are those of an M-minute build on AWS. The delay is measured in real seconds: the
//! event path (EventBridge → complete-wait → SendTaskSuccess) is not time-scaled; a poll's
//! delay is, so it is also shown multiplied by S (what it would be on AWS).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use batchless_scenarios::{migration_input, unique_name, Stack};
use serde_json::{json, Value};

/// Standard workflows: USD per state transition (us-east-1, $0.025 per 1,000).
const USD_PER_TRANSITION: f64 = 0.000_025;

struct Run {
    minutes: u32,
    lost: bool,
    status: String,
    transitions: usize,
    lambda_in_execution: usize,
    complete_wait: usize,
    polls: usize,
    build_seconds: f64,
    delay_seconds: f64,
}

fn secs(t: &aws_smithy_types::DateTime) -> f64 {
    t.as_secs_f64()
}

/// The first `"buildId"` anywhere in a JSON document.
fn build_id(v: &Value) -> Option<String> {
    match v {
        Value::Object(m) => m
            .get("buildId")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| m.values().find_map(build_id)),
        Value::Array(a) => a.iter().find_map(build_id),
        _ => None,
    }
}

async fn one_run(stack: &Stack, scale: f64, minutes: u32, lost: bool) -> Result<Run> {
    let real_sleep = (f64::from(minutes) * 60.0 / scale).round().max(1.0) as u64;
    stack.clear_faults().await?;
    if lost {
        stack
            .fault(json!({"drop_events": {
                "source": "aws.codebuild",
                "detail_type": "CodeBuild Build State Change",
                "count": 10
            }}))
            .await?;
    }
    let input = migration_input(
        &stack.app_head()?,
        json!({"FAKE_SLEEP_SECONDS": real_sleep.to_string()}),
    );
    let arn = stack
        .submit("migration", &unique_name(&format!("cost{minutes}")), &input)
        .await?;
    let end = stack
        .wait_end(&arn, Duration::from_secs(real_sleep + 180))
        .await;
    stack.clear_faults().await?;
    let end = end?;
    let history = stack.history(&arn).await?;

    let started = history.first().map(|e| secs(e.timestamp())).unwrap_or(0.0);
    let stopped = history.last().map(|e| secs(e.timestamp())).unwrap_or(0.0);
    let mut transitions = 0;
    let mut lambda_in_execution = 0;
    let mut polls = 0;
    let mut collect_entered = None;
    let mut build = None;
    for e in &history {
        if let Some(d) = e.state_entered_event_details() {
            transitions += 1;
            match d.name() {
                "PollBuild" => polls += 1,
                "CollectLogs" if collect_entered.is_none() => {
                    collect_entered = Some(secs(e.timestamp()))
                }
                _ => {}
            }
        }
        let lambda_task = e
            .task_scheduled_event_details()
            .is_some_and(|d| d.resource_type() == "lambda");
        if lambda_task || e.lambda_function_scheduled_event_details().is_some() {
            lambda_in_execution += 1;
        }
        let output = e
            .task_succeeded_event_details()
            .and_then(|d| d.output())
            .or_else(|| {
                e.lambda_function_succeeded_event_details()
                    .and_then(|d| d.output())
            });
        if build.is_none() {
            build = output
                .and_then(|o| serde_json::from_str::<Value>(o).ok())
                .and_then(|v| build_id(&v));
        }
    }
    let build = build.context("no buildId in the execution's task outputs")?;
    let out = stack
        .codebuild
        .batch_get_builds()
        .ids(&build)
        .send()
        .await?;
    let b = out.builds().first().context("build not found")?;
    let (b_start, b_end) = match (b.start_time(), b.end_time()) {
        (Some(s), Some(e)) => (secs(s), secs(e)),
        _ => bail!("build {build} has no start/end time"),
    };
    let collect = collect_entered.context("CollectLogs was never entered")?;

    // complete-wait runs outside the execution (the build's state-change rule invokes it): its
    // invocations while this execution ran (runs are sequential, nothing else builds).
    let inv = stack
        .replica_get("invocations?function=complete-wait")
        .await?;
    let complete_wait = inv["invocations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["started"].as_str())
        .filter_map(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.timestamp_micros() as f64 / 1e6)
        .filter(|t| *t >= started && *t <= stopped)
        .count();
    Ok(Run {
        minutes,
        lost,
        status: end.status,
        transitions,
        lambda_in_execution,
        complete_wait,
        polls,
        build_seconds: b_end - b_start,
        delay_seconds: collect - b_end,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let reps = batchless_scenarios::count_arg("--reps", 2)?;
    let stack = Stack::from_env().await?;
    let scale = stack.info["time_scale"].as_f64().unwrap_or(1.0);
    eprintln!(
        "workflow cost benchmark on stack {} (time scale {scale}, {reps} runs per row)",
        stack.name
    );
    // Not measured: the replica's Lambda emulator starts each function's process on its first
    // invocation, which would land in the first run's delay.
    one_run(&stack, scale, 1, false).await?;
    let mut runs = Vec::new();
    for lost in [false, true] {
        for minutes in [1, 10, 60] {
            for _ in 0..reps {
                let r = one_run(&stack, scale, minutes, lost).await?;
                eprintln!(
                    "  {minutes:>2} min build, event {}: {} · {} transitions · {} + {} Lambda invocations · {} polls · delay {:.2} s",
                    if lost { "lost" } else { "delivered" },
                    r.status, r.transitions, r.lambda_in_execution, r.complete_wait, r.polls, r.delay_seconds
                );
                runs.push(r);
            }
        }
    }

    println!("| build (scaled) | state-change event | status | transitions | Lambda invocations (in the execution + complete-wait) | safety-net polls | build end → CollectLogs, real s | same on AWS (× {scale}) | transitions cost per run |");
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|");
    for r in &runs {
        let aws_delay = if r.lost {
            format!("{:.0} s", r.delay_seconds * scale)
        } else {
            format!("{:.2} s (event path, not scaled)", r.delay_seconds)
        };
        println!(
            "| {} min ({:.0} s real) | {} | {} | {} | {} ({} + {}) | {} | {:.2} | {aws_delay} | ${:.5} |",
            r.minutes,
            r.build_seconds,
            if r.lost { "lost (poll only)" } else { "delivered" },
            r.status,
            r.transitions,
            r.lambda_in_execution + r.complete_wait,
            r.lambda_in_execution,
            r.complete_wait,
            r.polls,
            r.delay_seconds,
            r.transitions as f64 * USD_PER_TRANSITION,
        );
    }
    if let Some(r) = runs.iter().find(|r| r.status != "SUCCEEDED") {
        bail!("a {} min run ended {} (see the table)", r.minutes, r.status);
    }
    Ok(())
}
