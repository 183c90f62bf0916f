//! Scenario tests of the daily audit sweep (issue 15) on the local replica: paths to production
//! that bypass batchless — a build of the *migration* project with a buildspec override, an ECS
//! `RunTask` of the job task definition by an operator (CloudTrail records it) — are alerted;
//! a failed Slack alert does not stop the rest, and the next sweep starts at the watermark a
//! failed sweep left. Run one at a time (`--test-threads=1`): Slack failure injection is per
//! stack.

use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use batchless_scenarios::*;
use serde_json::{json, Value};

const ALERTS_CHANNEL: &str = "C0ALERTS";
const TIMEOUT: Duration = Duration::from_secs(60);

async fn setup() -> Result<Stack> {
    let stack = Stack::cleared().await?;
    Ok(stack)
}

/// A build of the migration project started around batchless, with its own buildspec.
async fn rogue_migration_build(stack: &Stack) -> Result<String> {
    let project = stack.physical_id("MigrationProject")?;
    let out = stack
        .codebuild
        .start_build()
        .project_name(&project)
        .source_version(stack.app_head()?)
        .buildspec_override("version: 0.2\nphases:\n  build:\n    commands:\n      - echo rogue\n")
        .send()
        .await?;
    Ok(out
        .build_value()
        .and_then(|b| b.id())
        .context("build id")?
        .to_string())
}

async fn sweep(stack: &Stack) -> Result<Value> {
    stack
        .invoke(
            "AuditCheckFunction",
            &json!({"mode": "sweep", "windowHours": 1}),
        )
        .await
}

async fn alerted(stack: &Stack, needle: &str) -> Result<bool> {
    Ok(stack
        .slack_messages(ALERTS_CHANNEL)
        .await?
        .iter()
        .any(|m| m["text"].as_str().is_some_and(|t| t.contains(needle))))
}

/// The sweep's `report[field]` names `what`, and `what` was alerted.
async fn found_and_alerted(stack: &Stack, report: &Value, field: &str, what: &str) -> Result<()> {
    assert!(report[field].to_string().contains(what), "{what}: {report}");
    assert!(alerted(stack, what).await?, "{what} was alerted");
    Ok(())
}

async fn watermark(stack: &Stack) -> Result<Option<String>> {
    Ok(stack
        .get_item(&stack.table("PatchesTable")?, "patchId", "sweep-watermark")
        .await?
        .and_then(|w| w["examinedUntil"].as_str().map(str::to_string)))
}

#[tokio::test]
async fn a_migration_project_build_with_a_buildspec_override_is_alerted() -> Result<()> {
    let stack = setup().await?;
    let build = rogue_migration_build(&stack).await?;
    let report = sweep(&stack).await?;
    let found = report["unsanctioned"]
        .as_array()
        .context("unsanctioned")?
        .iter()
        .find(|f| f["message"].as_str().is_some_and(|m| m.contains(&build)))
        .with_context(|| format!("no finding for {build}: {report}"))?
        .clone();
    let message = found["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("without a migration run")
            && message.contains("buildspec override that batchless did not send"),
        "{message}"
    );
    assert!(alerted(&stack, &build).await?, "no Slack alert for {build}");
    Ok(())
}

#[tokio::test]
async fn an_ecs_run_task_not_started_by_batchless_is_alerted() -> Result<()> {
    let stack = setup().await?;
    // An operator runs the job task definition with a command of their own (ECS JSON API).
    let body = json!({
        "cluster": stack.physical_id("JobsCluster")?,
        "taskDefinition": stack.physical_id("JobTaskDefinition")?,
        "overrides": {"containerOverrides": [{"name": "app", "command": ["sh", "-c", "echo rogue task"]}]},
        "startedBy": "console",
    });
    let task = stack.run_task(&body).await?;
    let report = sweep(&stack).await?;
    assert!(
        report["unsanctioned"]
            .as_array()
            .context("unsanctioned")?
            .iter()
            .any(|f| f["message"]
                .as_str()
                .is_some_and(|m| m.contains(&task) && m.contains("was not started by batchless"))),
        "{report}"
    );
    assert!(alerted(&stack, &task).await?, "no Slack alert for {task}");
    Ok(())
}

#[tokio::test]
async fn a_failed_alert_stops_nothing_and_the_next_sweep_starts_where_the_failed_one_did(
) -> Result<()> {
    let stack = setup().await?;
    // A clean sweep sets the watermark.
    sweep(&stack).await?;
    let before = watermark(&stack)
        .await?
        .context("a watermark after a clean sweep")?;
    let (first, second) = (
        rogue_migration_build(&stack).await?,
        rogue_migration_build(&stack).await?,
    );
    // Slack refuses the next post: one alert fails, the sweep goes on and ends with an error.
    stack
        .slack_fail("chat.postMessage", "internal_error", 1)
        .await?;
    let failed = sweep(&stack).await;
    assert!(failed.is_err(), "{failed:?}");
    let (a, b) = (
        alerted(&stack, &first).await?,
        alerted(&stack, &second).await?,
    );
    assert!(
        a || b,
        "neither {first} nor {second} was alerted after one failed post"
    );
    assert_eq!(
        watermark(&stack).await?.as_deref(),
        Some(before.as_str()),
        "a failed sweep must not move the watermark"
    );
    // The next sweep starts at the old watermark and alerts what the failed one could not.
    let report = sweep(&stack).await?;
    assert_eq!(report["since"].as_str(), Some(before.as_str()), "{report}");
    eventually("both builds alerted", TIMEOUT, || async {
        Ok((alerted(&stack, &first).await? && alerted(&stack, &second).await?).then_some(()))
    })
    .await?;
    let after = watermark(&stack).await?.context("watermark")?;
    assert!(after >= before, "{after} < {before}");
    // Each is on the audit trail once.
    let audit = stack.table("AuditTable")?;
    for build in [&first, &second] {
        let marker = stack
            .db
            .get_item()
            .table_name(&audit)
            .key(
                "chain",
                AttributeValue::S(format!("key#patches#sweep:{build}")),
            )
            .key("seq", AttributeValue::N("0".into()))
            .send()
            .await?;
        assert!(marker.item().is_some(), "{build} is not on the audit trail");
    }
    Ok(())
}

/// An operator who started a rogue build moves the sweep's watermark past it (the old seal
/// copied over) so that the next sweep would start after the build: the watermark's seal does
/// not verify, so the sweep believes none of it, examines its whole reach again, alerts the
/// build and the forged watermark, and seals a new one.
#[tokio::test]
async fn a_watermark_moved_past_a_rogue_build_is_not_believed() -> Result<()> {
    let stack = setup().await?;
    sweep(&stack).await?;
    let table = stack.table("PatchesTable")?;
    let old = stack
        .get_item(&table, "patchId", "sweep-watermark")
        .await?
        .context("a watermark after a clean sweep")?;
    let build = rogue_migration_build(&stack).await?;
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let s = |v: &str| AttributeValue::S(v.to_string());
    stack
        .db
        .put_item()
        .table_name(&table)
        .item("patchId", s("sweep-watermark"))
        .item("examinedUntil", s(&now))
        .item("sweptAt", s(&now))
        .item(
            "seal",
            s(old["seal"]
                .as_str()
                .context("the sweep seals its watermark")?),
        )
        .send()
        .await?;
    let report = sweep(&stack).await?;
    let since = report["since"].as_str().context("since")?;
    assert!(
        since < old["examinedUntil"].as_str().unwrap_or_default(),
        "{report}"
    );
    assert!(
        alerted(&stack, &build).await?,
        "the rogue build {build} was alerted"
    );
    assert!(
        alerted(&stack, "watermark was not written by the sweep").await?,
        "the forged watermark was alerted"
    );
    let new = stack
        .get_item(&table, "patchId", "sweep-watermark")
        .await?
        .context("watermark")?;
    assert_ne!(new["seal"], old["seal"], "{new}");
    // The next sweep believes the watermark it sealed itself.
    let again = sweep(&stack).await?;
    assert_eq!(again["since"], new["examinedUntil"], "{again}");
    Ok(())
}

/// An operator deletes the sweep's watermark outright (so that the next sweep would start only
/// 26 h back, past an older window a failed sweep left): the audit trail says sweeps ended
/// clean before (`SWEEPS_STARTED`), so the sweep knows the watermark was deleted, alerts it,
/// examines its whole reach (90 days) and seals a new one, which the next sweep believes.
#[tokio::test]
async fn a_deleted_watermark_is_alerted_and_the_sweep_looks_back_its_whole_reach() -> Result<()> {
    let stack = setup().await?;
    sweep(&stack).await?;
    let table = stack.table("PatchesTable")?;
    assert!(
        watermark(&stack).await?.is_some(),
        "a watermark after a clean sweep"
    );
    stack
        .db
        .delete_item()
        .table_name(&table)
        .key("patchId", AttributeValue::S("sweep-watermark".into()))
        .send()
        .await?;
    let report = sweep(&stack).await?;
    let since = report["since"].as_str().context("since")?.to_string();
    let reach = (chrono::Utc::now() - chrono::Duration::days(89))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    assert!(since < reach, "the sweep looked back 90 days: {report}");
    found_and_alerted(&stack, &report, "unsanctioned", "watermark is gone").await?;
    let new = watermark(&stack).await?.context("a new watermark")?;
    let again = sweep(&stack).await?;
    assert_eq!(again["since"].as_str(), Some(new.as_str()), "{again}");
    Ok(())
}

/// An operator changes what signs batchless's evidence outside a deploy (issue 15): the
/// configuration of the decision endpoint (whose code and configuration decide what it signs)
/// and the decision signing key's policy (which says who may `kms:Sign`). The sweep alerts
/// both, naming who did it; CloudTrail is where the replica records them.
#[tokio::test]
async fn a_change_to_a_signing_function_or_key_outside_a_deploy_is_alerted() -> Result<()> {
    let stack = setup().await?;
    let mallory = stack.sdk_config_as("mallory").await?;
    let function = stack.physical_id("DecisionFunction")?;
    aws_sdk_lambda::Client::new(&mallory)
        .update_function_configuration()
        .function_name(&function)
        .description(format!("changed by mallory {}", unique_name("x")))
        .send()
        .await?;
    let key = stack.physical_id("DecisionSigningKey")?;
    let kms = aws_sdk_kms::Client::new(&mallory);
    let policy = kms
        .get_key_policy()
        .key_id(&key)
        .policy_name("default")
        .send()
        .await?
        .policy()
        .context("the key's policy")?
        .to_string();
    kms.put_key_policy()
        .key_id(&key)
        .policy_name("default")
        .policy(policy)
        .send()
        .await?;
    let report = sweep(&stack).await?;
    assert!(
        report["unsanctioned"].to_string().contains("user/mallory"),
        "{report}"
    );
    for what in [
        format!("configuration of signing function {function}"),
        format!("the policy of signing key {key}"),
    ] {
        found_and_alerted(&stack, &report, "unsanctioned", &what).await?;
    }
    Ok(())
}

/// An operator takes over what signs without touching the signing functions themselves: lets
/// their own user assume the decision function's role (its trust policy), and creates a function
/// of their own under the audit writer's role. Both are alerted, naming the role and the caller;
/// the replica's CloudFormation creating the signing functions with those roles is a deploy's,
/// not a finding.
#[tokio::test]
async fn a_signing_role_handed_to_someone_else_is_alerted() -> Result<()> {
    let stack = setup().await?;
    let mallory = stack.sdk_config_as("mallory").await?;
    let lambda = aws_sdk_lambda::Client::new(&mallory);
    let role_of = |logical_id: &'static str| {
        let lambda = lambda.clone();
        let stack = &stack;
        async move {
            let name = stack.physical_id(logical_id)?;
            let config = lambda
                .get_function_configuration()
                .function_name(&name)
                .send()
                .await?;
            anyhow::Ok((name, config.role().context("role")?.to_string()))
        }
    };
    let (decision, decision_role) = role_of("DecisionFunction").await?;
    let (audit_writer, audit_role) = role_of("AuditCheckFunction").await?;
    let role_name = decision_role.rsplit('/').next().context("role name")?;
    aws_sdk_iam::Client::new(&mallory)
        .update_assume_role_policy()
        .role_name(role_name)
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": {"AWS": "arn:aws:iam::123456789012:user/mallory"}}]})
            .to_string(),
        )
        .send()
        .await?;
    let tool = unique_name("mallory-signer");
    // An empty zip archive: the code does not matter, the role it runs as does.
    let mut empty_zip = b"PK\x05\x06".to_vec();
    empty_zip.extend([0u8; 18]);
    lambda
        .create_function()
        .function_name(&tool)
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .handler("bootstrap")
        .role(&audit_role)
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_smithy_types::Blob::new(empty_zip))
                .build(),
        )
        .send()
        .await?;
    let report = sweep(&stack).await?;
    for what in [
        format!("who may assume signing role {decision_role}"),
        format!("a new function {tool} with signing role {audit_role}"),
    ] {
        found_and_alerted(&stack, &report, "unsanctioned", &what).await?;
    }
    let unsanctioned = report["unsanctioned"].to_string();
    assert!(unsanctioned.contains("user/mallory"), "{report}");
    for deployed in [&decision, &audit_writer] {
        assert!(
            !unsanctioned.contains(&format!("a new function {deployed} ")),
            "{deployed} was created by the deploy: {report}"
        );
    }
    Ok(())
}

/// An operator opens an ECS Exec session into a running job task (`ExecuteCommand`: a shell
/// with the job's credentials and `DATABASE_URL`). batchless never does that, so the sweep
/// alerts it, naming the task, who did it and the command.
#[tokio::test]
async fn an_execute_command_into_a_job_task_is_alerted() -> Result<()> {
    let stack = setup().await?;
    let input = json!({"job": "nightly-billing-report",
                       "manual": {"environment": {"FAKE_SLEEP_SECONDS": "20"}}});
    let arn = stack
        .submit("scheduled-job", &unique_name("manual-exec"), &input)
        .await?;
    let task = eventually(
        "the job's task RUNNING",
        Duration::from_secs(90),
        || async {
            let Some(task) = stack
                .find_run(&arn)
                .await?
                .and_then(|r| r["taskArn"].as_str().map(str::to_string))
            else {
                return Ok(None);
            };
            let running = stack
                .job_tasks()
                .await?
                .iter()
                .any(|t| t["taskArn"] == task.as_str() && t["lastStatus"] == "RUNNING");
            Ok(running.then_some(task))
        },
    )
    .await?;
    let mallory = stack.sdk_config_as("mallory").await?;
    aws_sdk_ecs::Client::new(&mallory)
        .execute_command()
        .cluster(stack.physical_id("JobsCluster")?)
        .task(&task)
        .command("bin/rails console")
        .interactive(true)
        .send()
        .await?;
    let report = sweep(&stack).await?;
    let what = format!(
        "ECS ExecuteCommand into job task {task} by arn:aws:iam::123456789012:user/mallory"
    );
    found_and_alerted(&stack, &report, "unsanctioned", &what).await?;
    let end = stack.wait_end(&arn, Duration::from_secs(180)).await?;
    assert_eq!(end.status, "SUCCEEDED", "the job itself ran on: {end:?}");
    Ok(())
}

/// bob submits a manual job run (the decision endpoint seals it as his), but someone else
/// starts it with the sealed input: the run says bob started it, CloudTrail says otherwise, and
/// the sweep names the mismatch (as it does for a data patch's requester).
#[tokio::test]
async fn a_sealed_job_run_started_by_someone_else_is_a_starter_mismatch() -> Result<()> {
    let stack = setup().await?;
    let name = unique_name("manual-handed");
    let input = json!({"job": "nightly-billing-report",
                       "manual": {"environment": {"FAKE_SLEEP_SECONDS": "1"}}});
    let sealed = stack.sealed("bob", "scheduled-job", &name, &input).await?;
    let sm = stack.state_machine("ScheduledJobStateMachine")?;
    // Started with the replica's default identity (local-operator), not bob's.
    let arn = stack.start(&sm, &name, &sealed).await?;
    let end = stack.wait_end(&arn, Duration::from_secs(180)).await?;
    assert_eq!(
        end.status, "SUCCEEDED",
        "the sealed run itself is valid: {end:?}"
    );
    let report = sweep(&stack).await?;
    let what =
        format!("job run {name} names bob as its starter, but CloudTrail shows local-operator");
    found_and_alerted(&stack, &report, "requesterMismatches", &what).await?;
    Ok(())
}
