//! Scenario tests of the migration workflow on the local replica: real executions of
//! `statemachines/migration.asl.json`, the real functions, real (local) CodeBuild builds.
//! Each test asserts the path taken (execution history) and the effects (runs table, locks
//! table, S3 objects, Slack posts). Run one at a time: the migration lock and the replica's
//! fault injection are per stack (`make test` passes `--test-threads=1`).

use std::time::Duration;

use anyhow::{Context, Result};
use batchless_scenarios::*;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(180);
const MIGRATIONS_CHANNEL: &str = "C0MIGRATIONS";
const LOCK: &str = "migration:staging";

async fn setup() -> Result<Stack> {
    Ok(Stack::cleared_with("MigrationStateMachine").await?.0)
}

/// The scenario: inject `faults`, migrate the app's head with `overrides`, wait for the end;
/// the injected faults are cleared whatever happened.
async fn migrate(
    stack: &Stack,
    prefix: &str,
    faults: &[Value],
    overrides: Value,
) -> Result<(String, Ended)> {
    let result = async {
        stack.faults(faults).await?;
        let input = migration_input(&stack.app_head()?, overrides);
        let arn = stack
            .submit("migration", &unique_name(prefix), &input)
            .await?;
        let end = stack.wait_end(&arn, TIMEOUT).await?;
        anyhow::Ok((arn, end))
    }
    .await;
    stack.clear_faults().await?;
    result
}

/// Assert that the migration project has had `n` builds since it had `before` (`what` says
/// which).
async fn assert_new_builds(stack: &Stack, before: usize, n: usize, what: &str) -> Result<()> {
    assert_eq!(
        stack.build_count("MigrationProject").await?,
        before + n,
        "{what}"
    );
    Ok(())
}

/// Migrate with `faults` (see [`migrate`]): the run ends as `expect` says, is recorded
/// `ERROR`, and leaves the lock free.
async fn errored_run(
    stack: &Stack,
    prefix: &str,
    faults: &[Value],
    overrides: Value,
    expect: Expect<'_>,
) -> Result<()> {
    let (arn, end) = migrate(stack, prefix, faults, overrides).await?;
    expect.check(stack, &arn, &end).await?;
    assert_eq!(stack.run_record(&arn).await?["status"], "ERROR");
    assert!(lock_is_free(stack).await?);
    Ok(())
}

async fn lock_is_free(stack: &Stack) -> Result<bool> {
    let locks = stack.table("LocksTable")?;
    Ok(stack.get_item(&locks, "lockName", LOCK).await?.is_none())
}

#[tokio::test]
async fn success_runs_the_commit_and_leaves_log_history_and_slack_post() -> Result<()> {
    let stack = setup().await?;
    let commit = stack.app_head()?;
    let name = unique_name("ok");
    let arn = stack
        .submit("migration", &name, &migration_input(&commit, json!({})))
        .await?;
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    Expect {
        entered: &[
            "ValidateInput",
            "AcquireLock",
            "StartBuild",
            "WaitForBuild",
            "CollectLogs",
            "RecordRun",
            "ReleaseLock",
            "Notify",
            "Outcome?",
            "Migrated",
        ],
        ..Expect::succeeded()
    }
    .check(&stack, &arn, &end)
    .await?;

    let output = end.output.expect("output");
    let build_id = output["buildId"].as_str().expect("buildId");
    let build = stack.build(build_id).await?;
    assert_eq!(
        build.resolved_source_version(),
        Some(commit.as_str()),
        "the build ran that commit"
    );
    assert_eq!(build.build_status().map(|s| s.as_str()), Some("SUCCEEDED"));

    let log_uri = output["logUri"].as_str().expect("logUri");
    let log = stack.object(log_uri).await?;
    let text = String::from_utf8_lossy(&log);
    assert!(
        text.contains(&format!("batchless migration of {commit}")),
        "{text}"
    );
    // The real app: db:migrate ran, and afterwards `db:migrate:status` shows every migration up.
    assert!(
        text.contains("Running command bin/rails db:migrate") && text.contains("   up     "),
        "{text}"
    );
    assert!(!text.contains("  down    "), "{text}");
    let sha = output["logSha256"].as_str().expect("logSha256");
    assert_eq!(
        sha256_hex(&log),
        sha,
        "the archived log matches its recorded SHA-256"
    );
    let sidecar = String::from_utf8(stack.object(&format!("{log_uri}.sha256")).await?)?;
    assert!(
        sidecar.starts_with(&format!("{sha}  build.log")),
        "{sidecar}"
    );

    let item = stack.run_record(&arn).await?;
    assert_eq!(item["status"], "SUCCEEDED");
    assert_eq!(item["commit"], commit);
    assert_eq!(item["buildId"], build_id);
    assert_eq!(item["logUri"], log_uri);
    assert_eq!(item["startedBy"], "alice");
    assert_eq!(item["workflow"], "migration");
    assert!(item["durationSeconds"].as_i64().is_some(), "{item}");

    let post = stack
        .slack_post_containing(MIGRATIONS_CHANNEL, &format!("|{name}>"))
        .await?;
    let post_text = post["text"].as_str().unwrap_or_default();
    assert!(
        post_text.contains(&format!("`{}` succeeded", &commit[..12])),
        "{post}"
    );
    assert!(
        post_text.contains(log_uri),
        "the post links the log: {post}"
    );
    assert!(lock_is_free(&stack).await?);
    Ok(())
}

#[tokio::test]
async fn failing_build_phase_fails_migration_with_phase_and_redacted_tail() -> Result<()> {
    let stack = setup().await?;
    let name = unique_name("fail");
    let commit = stack.app_head()?;
    let arn = stack
        .submit(
            "migration",
            &name,
            &migration_input(&commit, json!({"FAKE_EXIT_CODE": "1"})),
        )
        .await?;
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    // The cause carries the log tail. The build printed DATABASE_URL with its password: the
    // archive has it, nothing that leaves the system does.
    Expect {
        cause_has: &["in phase BUILD", "PG::DuplicateTable"],
        cause_lacks: &[INFRA_SECRET],
        ..Expect::failed("MigrationFailed")
    }
    .check(&stack, &arn, &end)
    .await?;
    let item = stack.run_record(&arn).await?;
    assert_eq!(item["status"], "FAILED");
    assert_eq!(item["failedPhase"], "BUILD");
    let log = String::from_utf8(stack.object(item["logUri"].as_str().unwrap()).await?)?;
    assert!(
        log.contains(INFRA_SECRET),
        "the test must see the secret in the raw log to prove redaction"
    );
    let post = stack
        .slack_post_containing(MIGRATIONS_CHANNEL, &format!("|{name}>"))
        .await?;
    let post_text = post["text"].as_str().unwrap_or_default();
    assert!(
        post_text.contains(&format!("`{}` *failed*", &commit[..12])),
        "{post}"
    );
    assert!(post_text.contains("BUILD"), "{post}");
    assert!(
        !post_text.contains(INFRA_SECRET),
        "secret leaked into Slack: {post}"
    );
    let build = stack.build(item["buildId"].as_str().unwrap()).await?;
    let phases: Vec<String> = build
        .phases()
        .iter()
        .map(|p| {
            format!(
                "{}={}",
                p.phase_type().map(|t| t.as_str()).unwrap_or("?"),
                p.phase_status().map(|s| s.as_str()).unwrap_or("?")
            )
        })
        .collect();
    assert!(
        phases.contains(&"POST_BUILD=SUCCEEDED".to_string()),
        "post_build still ran: {phases:?}"
    );
    assert!(
        lock_is_free(&stack).await?,
        "the lock is released after a failure"
    );
    Ok(())
}

#[tokio::test]
async fn invalid_inputs_fail_invalid_input_and_start_nothing() -> Result<()> {
    let stack = setup().await?;
    let before = stack.build_count("MigrationProject").await?;
    let head = stack.app_head()?;
    let cases = [
        json!({"commit": "main"}),
        json!({"commit": &head[..7]}),
        json!({"commit": head, "unexpected": true}),
        json!({"commit": head, "environmentOverrides": {"AWS_SECRET_ACCESS_KEY": "x"}}),
        json!({}),
    ];
    for input in cases {
        let arn = stack
            .submit("migration", &unique_name("bad"), &input)
            .await?;
        let end = stack.wait_end(&arn, TIMEOUT).await?;
        eprintln!("input {input}");
        Expect {
            cause_has: &["invalid input"],
            path: Some(&["ValidateInput", "RejectInput"]),
            ..Expect::failed("InvalidInput")
        }
        .check(&stack, &arn, &end)
        .await?;
        assert!(
            stack.find_run(&arn).await?.is_none(),
            "no run recorded for {input}"
        );
    }
    assert_new_builds(&stack, before, 0, "no build started").await?;
    Ok(())
}

#[tokio::test]
async fn two_concurrent_migrations_never_build_at_once() -> Result<()> {
    let stack = setup().await?;
    let commit = stack.app_head()?;
    // No extra sleep: each real build (pre-flight, db:migrate, status: three Rails boots) is
    // long enough for the other run to meet the lock. B's lock budget (~10 min, about 10 s at
    // time-scale 60) may or may not outlast A's whole run on a loaded machine: either way the
    // builds never overlap. B either waits and then builds after A's build ended, or gives up
    // as `MigrationInProgress` without a build.
    let input = migration_input(&commit, json!({}));
    let a = stack
        .submit("migration", &unique_name("conc-a"), &input)
        .await?;
    let b = stack
        .submit("migration", &unique_name("conc-b"), &input)
        .await?;
    let (ea, eb) = (
        stack.wait_end(&a, TIMEOUT).await?,
        stack.wait_end(&b, TIMEOUT).await?,
    );
    // Whichever took the lock first built and succeeded; the other met the lock.
    let (won, lost, lost_arn) = if ea.status == "SUCCEEDED" {
        (&ea, &eb, &b)
    } else {
        (&eb, &ea, &a)
    };
    assert_eq!(won.status, "SUCCEEDED", "{ea:?} {eb:?}");
    let errors = [stack.task_errors(&a).await?, stack.task_errors(&b).await?].concat();
    assert!(errors.iter().any(|e| e == "LockHeld"), "{errors:?}");
    let build_of = |e: &Ended| {
        e.output
            .as_ref()
            .and_then(|o| o["buildId"].as_str())
            .map(str::to_string)
    };
    let won_build = build_of(won).context("the winner's build")?;
    if lost.status == "SUCCEEDED" {
        let spans: Vec<(i64, i64)> = stack
            .builds_by_id(vec![won_build, build_of(lost).context("the second build")?])
            .await?
            .iter()
            .map(|b| {
                (
                    b.start_time().unwrap().as_nanos() as i64,
                    b.end_time().unwrap().as_nanos() as i64,
                )
            })
            .collect();
        assert_eq!(spans.len(), 2);
        let (first, second) = if spans[0].0 <= spans[1].0 {
            (spans[0], spans[1])
        } else {
            (spans[1], spans[0])
        };
        assert!(first.1 <= second.0, "builds overlapped: {spans:?}");
    } else {
        assert_eq!(lost.status, "FAILED", "{lost:?}");
        assert_eq!(
            lost.error.as_deref(),
            Some("MigrationInProgress"),
            "{lost:?}"
        );
        let states = stack.states_entered(lost_arn).await?;
        assert!(
            !states.iter().any(|s| s == "StartBuild"),
            "the run that gave up built nothing: {states:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_held_lock_fails_migration_in_progress_without_a_build() -> Result<()> {
    let stack = setup().await?;
    let locks = stack.table("LocksTable")?;
    // Another execution holds the lock (for longer than the retries last).
    stack
        .db
        .put_item()
        .table_name(&locks)
        .item(
            "lockName",
            aws_sdk_dynamodb::types::AttributeValue::S(LOCK.into()),
        )
        .item(
            "owner",
            aws_sdk_dynamodb::types::AttributeValue::S("arn:someone-else".into()),
        )
        .item(
            "acquiredAt",
            aws_sdk_dynamodb::types::AttributeValue::S("2026-01-01T00:00:00Z".into()),
        )
        .item(
            "expiresAt",
            aws_sdk_dynamodb::types::AttributeValue::S("2999-01-01T00:00:00Z".into()),
        )
        .send()
        .await?;
    let before = stack.build_count("MigrationProject").await?;
    let result = migrate(&stack, "held", &[], json!({})).await;
    stack
        .db
        .delete_item()
        .table_name(&locks)
        .key(
            "lockName",
            aws_sdk_dynamodb::types::AttributeValue::S(LOCK.into()),
        )
        .send()
        .await?;
    let (arn, end) = result?;
    // The cause names the holder.
    Expect {
        cause_has: &["arn:someone-else"],
        ..Expect::failed("MigrationInProgress")
    }
    .check(&stack, &arn, &end)
    .await?;
    assert_new_builds(&stack, before, 0, "no build started").await?;
    Ok(())
}

#[tokio::test]
async fn stop_execution_mid_build_stops_the_build_and_frees_the_lock() -> Result<()> {
    let stack = setup().await?;
    let commit = stack.app_head()?;
    let arn = stack
        .submit(
            "migration",
            &unique_name("stop"),
            &migration_input(&commit, json!({"FAKE_SLEEP_SECONDS": "120"})),
        )
        .await?;
    let build_id: String = eventually("the build to start", Duration::from_secs(60), || async {
        Ok(stack
            .find_run(&arn)
            .await?
            .and_then(|i| i["buildId"].as_str().map(str::to_string)))
    })
    .await?;
    stack
        .sfn
        .stop_execution()
        .execution_arn(&arn)
        .error("Operator")
        .cause("stopped by test")
        .send()
        .await?;
    let started = std::time::Instant::now();
    eventually(
        "build STOPPED and lock free",
        Duration::from_secs(30),
        || async {
            let status = stack.build_status(&build_id).await?;
            Ok((status.as_deref() == Some("STOPPED") && lock_is_free(&stack).await?).then_some(()))
        },
    )
    .await?;
    assert!(started.elapsed() < Duration::from_secs(30));
    let item: Value = eventually(
        "the run marked ABORTED",
        Duration::from_secs(30),
        || async {
            Ok(stack
                .find_run(&arn)
                .await?
                .filter(|i| i["status"] == "ABORTED"))
        },
    )
    .await?;
    assert_eq!(item["buildId"], build_id);
    Ok(())
}

#[tokio::test]
async fn a_lost_state_change_event_is_caught_by_the_safety_net_poll() -> Result<()> {
    let stack = setup().await?;
    // The build outlasts register-wait's one re-check and the first (time-scaled 10 s) wait,
    // so the first poll finds it running and waits again; only a poll can end the run.
    let (arn, end) = migrate(
        &stack,
        "lost",
        &[fault::lost_build_end(None)],
        json!({"FAKE_SLEEP_SECONDS": "14"}),
    )
    .await?;
    // The poll completed the run.
    let states = Expect {
        entered: &["PollBuild", "BuildEnded?"],
        ..Expect::succeeded()
    }
    .check(&stack, &arn, &end)
    .await?;
    let count = |name: &str| states.iter().filter(|s| *s == name).count();
    assert!(
        count("PollBuild") >= 2,
        "polled while running, then after the end: {states:?}"
    );
    assert!(
        count("WaitForBuild") >= 2,
        "waited again after a poll: {states:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_throttled_start_is_retried_then_succeeds() -> Result<()> {
    let stack = setup().await?;
    // The SDK itself retries throttling (3 attempts in its standard mode): three throttled
    // answers exhaust it, so the workflow's Retry has to act; then a full build queue
    // (AccountLimitExceeded, which the SDK does not retry) once more.
    let faults = [
        fault::aws("codebuild", "StartBuild", "ThrottlingException", 3),
        fault::aws(
            "codebuild",
            "StartBuild",
            "AccountLimitExceededException",
            1,
        ),
    ];
    let before = stack.build_count("MigrationProject").await?;
    let (arn, end) = migrate(&stack, "throttle", &faults, json!({})).await?;
    // Retried, then success.
    Expect {
        task_errors: Some(&["Throttled", "AccountLimitExceeded"]),
        ..Expect::succeeded()
    }
    .check(&stack, &arn, &end)
    .await?;
    assert_new_builds(&stack, before, 1, "one build").await?;
    Ok(())
}

#[tokio::test]
async fn an_unrecoverable_start_error_is_recorded_and_frees_the_lock() -> Result<()> {
    let stack = setup().await?;
    let faults = [fault::aws(
        "codebuild",
        "StartBuild",
        "InvalidInputException",
        1,
    )];
    let expect = Expect {
        cause_has: &["InvalidInputException"],
        entered: &["Errored", "ReleaseLock"],
        ..Expect::failed("AwsServiceError")
    };
    errored_run(&stack, "starterr", &faults, json!({}), expect).await
}

#[tokio::test]
async fn a_log_archive_failure_is_recorded_and_the_result_stands() -> Result<()> {
    let stack = setup().await?;
    // The build log's upload (CodeBuild's phase lines are only in the log, not in the
    // pre-flight and migrate reports the build uploads as its artifacts).
    let faults = [fault::aws_matching(
        "s3",
        "PutObject",
        "Entering phase BUILD",
        "AccessDenied",
        1,
    )];
    let (arn, end) = migrate(&stack, "nolog", &faults, json!({})).await?;
    Expect::succeeded().check(&stack, &arn, &end).await?;
    let item = stack.run_record(&arn).await?;
    assert_eq!(item["status"], "SUCCEEDED");
    assert!(item.get("logUri").is_none(), "{item}");
    Ok(())
}

const ARTIFACT_SECRET: &str = "wJalrXUtnFEMIbridgeSECRETexample";
const ARTIFACT_TOKEN: &str = "FwoGZXIvYXdzEBridgeSessionTokenExample";

fn job_event(run: &Value, continuation: Option<&str>) -> Value {
    bridge_job_event(run, ARTIFACT_SECRET, ARTIFACT_TOKEN, continuation)
}

/// The results the replica's CodePipeline recorded for a job, in order.
async fn job_results(stack: &Stack, job_id: &str) -> Result<Vec<Value>> {
    let jobs = stack.replica_get("codepipeline/jobs").await?;
    Ok(jobs["jobs"][job_id].as_array().cloned().unwrap_or_default())
}

#[tokio::test]
async fn pipeline_bridge_delivered_twice_makes_one_build_and_never_logs_credentials() -> Result<()>
{
    let stack = setup().await?;
    let before = stack.build_count("MigrationProject").await?;
    let commit = stack.app_head()?;
    let run = stack.bridge_run(&commit).await?;
    let job_id = run["jobId"].as_str().context("jobId")?.to_string();
    let event = job_event(&run, None);

    let first = stack.invoke("PipelineBridgeFunction", &event).await?;
    assert_eq!(first["decision"], "continue", "{first}");
    let arn = first["executionArn"]
        .as_str()
        .expect("executionArn")
        .to_string();
    // Named after the pipeline's action execution, which the bridge found in CodePipeline.
    let action = run["actionExecutionId"]
        .as_str()
        .context("actionExecutionId")?;
    assert!(arn.ends_with(&format!(":codepipeline-{action}")), "{arn}");
    // The same job delivered again while the execution runs: no second execution.
    let second = stack.invoke("PipelineBridgeFunction", &event).await?;
    assert_eq!(second["executionArn"], arn.as_str(), "{second}");
    // Nor for a made-up job for the same action (someone invoking the bridge themselves): one
    // action, one execution.
    let mut made_up = event.clone();
    made_up["CodePipeline.job"]["id"] = json!(unique_name("madeup"));
    let third = stack.invoke("PipelineBridgeFunction", &made_up).await?;
    assert_eq!(third["executionArn"], arn.as_str(), "{third}");

    let end = stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    // CodePipeline confirmed that its action started the run: attributed to the pipeline.
    let record = stack.run_record(&arn).await?;
    assert_eq!(record["startedBy"], "codepipeline:app-deploy", "{record}");
    // CodePipeline polls with the continuation token; a late redelivery of the first event
    // (ExecutionAlreadyExists) would find the same execution. Both end the job once.
    let done = stack
        .invoke("PipelineBridgeFunction", &job_event(&run, Some(&arn)))
        .await?;
    assert_eq!(done["decision"], "succeeded", "{done}");

    assert_new_builds(&stack, before, 1, "exactly one build").await?;
    let results = job_results(&stack, &job_id).await?;
    let kinds: Vec<(String, bool)> = results
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap_or("").to_string(),
                r["request"]["continuationToken"].is_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("success".into(), true),
            ("success".into(), true),
            ("success".into(), false)
        ],
        "{results:?}"
    );
    let last = &results[2]["request"];
    assert_eq!(
        last["outputVariables"]["buildId"],
        end.output.as_ref().unwrap()["buildId"],
        "{last}"
    );
    assert!(
        last["outputVariables"]["logUri"]
            .as_str()
            .unwrap_or("")
            .starts_with("s3://"),
        "{last}"
    );

    // Nothing the replica or the functions logged holds the job's credentials.
    let state_dir = repo_root().join(".local").join(&stack.name);
    let mut scanned = 0;
    for entry in std::fs::read_dir(&state_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "log") {
            let text = String::from_utf8_lossy(&std::fs::read(&path)?).into_owned();
            assert!(
                !text.contains(ARTIFACT_SECRET) && !text.contains(ARTIFACT_TOKEN),
                "credentials in {}",
                path.display()
            );
            scanned += 1;
        }
    }
    assert!(scanned > 0, "no log files found in {}", state_dir.display());
    Ok(())
}

#[tokio::test]
async fn pipeline_bridge_reports_a_failed_migration_with_its_cause() -> Result<()> {
    let stack = setup().await?;
    let run = stack.bridge_run("abc1234").await?;
    let job_id = run["jobId"].as_str().context("jobId")?.to_string();
    // A short SHA: the workflow fails InvalidInput and the job fails with that cause.
    let first = stack
        .invoke("PipelineBridgeFunction", &job_event(&run, None))
        .await?;
    let arn = first["executionArn"]
        .as_str()
        .expect("executionArn")
        .to_string();
    stack.wait_end(&arn, TIMEOUT).await?;
    let done = stack
        .invoke("PipelineBridgeFunction", &job_event(&run, Some(&arn)))
        .await?;
    assert_eq!(done["decision"], "failed", "{done}");
    let results = job_results(&stack, &job_id).await?;
    let last = results.last().expect("a result");
    assert_eq!(last["kind"], "failure");
    let message = last["request"]["failureDetails"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(
        message.starts_with("InvalidInput (FAILED)") && message.contains("`commit`"),
        "{message}"
    );
    assert_eq!(
        last["request"]["failureDetails"]["externalExecutionId"],
        arn.as_str()
    );
    Ok(())
}

#[tokio::test]
async fn a_slack_outage_does_not_change_the_result() -> Result<()> {
    let stack = setup().await?;
    // Notify tries 1 + 3 times: all four fail.
    stack
        .slack_fail("chat.postMessage", "service_unavailable", 4)
        .await?;
    let (arn, end) = migrate(&stack, "noslack", &[], json!({})).await?;
    Expect {
        task_errors: Some(&["SlackError"; 4]),
        ..Expect::succeeded()
    }
    .check(&stack, &arn, &end)
    .await?;
    assert_eq!(stack.run_record(&arn).await?["status"], "SUCCEEDED");
    Ok(())
}

#[tokio::test]
async fn a_wait_that_cannot_be_registered_errors_and_cleanup_stops_the_build() -> Result<()> {
    let stack = setup().await?;
    let waits = stack.table("WaitsTable")?;
    let faults = [fault::aws_matching(
        "dynamodb",
        "PutItem",
        &waits,
        "ValidationException",
        1,
    )];
    let (arn, end) = migrate(
        &stack,
        "nowait",
        &faults,
        json!({"FAKE_SLEEP_SECONDS": "60"}),
    )
    .await?;
    Expect {
        entered: &["WaitForBuild", "Errored"],
        ..Expect::failed("AwsServiceError")
    }
    .check(&stack, &arn, &end)
    .await?;
    let item = stack.run_record(&arn).await?;
    assert_eq!(item["status"], "ERROR");
    // The execution failed with its build still running: cleanup stops it.
    let build_id = item["buildId"].as_str().expect("buildId").to_string();
    eventually(
        "the orphaned build STOPPED",
        Duration::from_secs(30),
        || async {
            Ok((stack.build_status(&build_id).await?.as_deref() == Some("STOPPED")).then_some(()))
        },
    )
    .await?;
    assert!(lock_is_free(&stack).await?);
    Ok(())
}

#[tokio::test]
async fn a_failing_safety_net_poll_errors_the_run() -> Result<()> {
    let stack = setup().await?;
    // The end-of-build event is lost, and CodeBuild refuses the poll (the first
    // BatchGetBuilds, register-wait's re-check, goes through). The build outlasts that
    // re-check (even with a cold function start) and ends before the 10 s (scaled) wait does.
    let faults = [
        fault::lost_build_end(None),
        fault::aws_after("codebuild", "BatchGetBuilds", "InvalidInputException", 1, 1),
    ];
    let expect = Expect {
        entered: &["PollBuild", "Errored"],
        not_entered: &["BuildEnded?"],
        ..Expect::failed("AwsServiceError")
    };
    let slow = json!({"FAKE_SLEEP_SECONDS": "8"});
    errored_run(&stack, "nopoll", &faults, slow, expect).await
}

#[tokio::test]
async fn a_failing_recheck_after_the_wake_errors_the_run() -> Result<()> {
    let stack = setup().await?;
    // The build's end wakes the wait, and the re-check that follows fails (only RecheckBuild's
    // poll, `woken: true`: the safety-net PollBuild, if the wait times out first on a slow
    // machine, goes through). The build has ended: releasing the lock leaves nothing running.
    let faults = [fault::lambda_error(
        "poll-build",
        json!({"woken": true}),
        "AwsServiceError",
        1,
    )];
    let expect = Expect {
        entered: &["RecheckBuild", "RecordRun", "Errored"],
        not_entered: &["CollectLogs", "ReadReport"],
        ..Expect::failed("AwsServiceError")
    };
    // The precondition is a wake: on a loaded machine the build can outlast the wait's timeout
    // (600 s, 10 s at time-scale 60) and the safety-net poll find it ended, with no wake and so
    // no re-check. Such a run proves nothing here: it is run again (at most three times).
    for _ in 0..3 {
        let (arn, end) = migrate(&stack, "norecheck", &faults, json!({})).await?;
        let states = stack.states_entered(&arn).await?;
        if !states.iter().any(|s| s == "RecheckBuild") {
            eprintln!("no wake before the wait's timeout ({states:?}): again");
            continue;
        }
        expect.check(&stack, &arn, &end).await?;
        assert_eq!(stack.run_record(&arn).await?["status"], "ERROR");
        assert!(lock_is_free(&stack).await?);
        return Ok(());
    }
    anyhow::bail!("three runs in a row without a wake before the wait's timeout")
}

#[tokio::test]
async fn a_report_that_cannot_be_read_is_recorded_and_the_run_ends_on_its_build() -> Result<()> {
    let stack = setup().await?;
    // ReadReport is denied the pre-flight report (S3 GetObject of its key): not fatal, the
    // build's own outcome decides, and the gap is on the record.
    let faults = [fault::aws_matching(
        "s3",
        "GetObject",
        "preflight.json",
        "AccessDenied",
        1,
    )];
    let (arn, end) = migrate(&stack, "noreport", &faults, json!({})).await?;
    Expect {
        entered: &["ReadReport", "RecordRun", "Migrated"],
        ..Expect::succeeded()
    }
    .check(&stack, &arn, &end)
    .await?;
    let item = stack.run_record(&arn).await?;
    assert_eq!(item["status"], "SUCCEEDED", "{item}");
    let unreadable = &item["migrationReport"]["unreadable"];
    assert_eq!(unreadable["error"], "AwsServiceError", "{item}");
    assert!(
        unreadable["cause"]
            .as_str()
            .is_some_and(|c| c.contains("AccessDenied")),
        "{item}"
    );
    assert!(lock_is_free(&stack).await?);
    Ok(())
}
