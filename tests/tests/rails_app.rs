//! Scenario tests through the real app (issue 17): the replica's builds and tasks run
//! `local/sample-app` (Rails 6.1) against the stack's own PostgreSQL and Redis, with its Sidekiq
//! worker running. Each test asserts on the database and Redis, not only on logs. Run one at a
//! time (`--test-threads=1`); every test makes its own rows / migrations (unique names), so reruns
//! on the same stack do not collide.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use batchless_core::bastion::login::sample_event;
use batchless_scenarios::app::{camel, migrate_within, strip_ansi, suffix, version};
use batchless_scenarios::patch::urlencode;
use batchless_scenarios::*;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(180);
const ALICE: &str = "arn:aws:iam::123456789012:user/alice";
const ALICE_SLACK: &str = "U0ALICE01";
const BOB: &str = "arn:aws:iam::123456789012:user/bob";
const BASTION_CHANNEL: &str = "C0BASTION";

async fn migrate(stack: &Stack, commit: &str, prefix: &str) -> Result<Ended> {
    Ok(migrate_within(stack, commit, prefix, TIMEOUT).await?.2)
}

// ----------------------------------------------------------------------------- migrations

#[tokio::test]
async fn a_migration_adds_a_column_and_schema_migrations_records_its_version() -> Result<()> {
    let stack = Stack::cleared().await?;
    let sfx = suffix();
    let column = format!("nickname_{sfx}");
    let name = format!("add_{column}_to_users");
    let v = version();
    let migration = format!(
        "class {} < ActiveRecord::Migration[6.1]\n  def change\n    add_column :users, :{column}, :string, null: false, default: \"none\"\n  end\nend\n",
        camel(&name)
    );
    let commit = stack.commit_to_app(
        "main",
        &[(&format!("db/migrate/{v}_{name}.rb"), &migration)],
        &format!("add users.{column}"),
    )?;
    assert!(!stack.columns("users")?.contains(&column));
    assert!(!stack.migration_versions()?.contains(&v));

    let end = migrate(&stack, &commit, "app-mig").await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    assert!(
        stack.migration_versions()?.contains(&v),
        "schema_migrations has {v}"
    );
    assert!(
        stack.columns("users")?.contains(&column),
        "users.{column} exists"
    );
    // Existing rows got the default: the migration really ran against the seeded data.
    assert_eq!(
        stack.sql_value(&format!(
            "SELECT count(*) FROM users WHERE {column} <> 'none'"
        ))?,
        "0"
    );
    let log_uri = end
        .output
        .as_ref()
        .and_then(|o| o["logUri"].as_str())
        .context("logUri")?;
    let log = String::from_utf8(stack.object(log_uri).await?)?;
    assert!(
        log.contains(&format!("== {v} {}: migrated", camel(&name))),
        "{log}"
    );
    assert!(
        log.contains(&format!("   up     {v}")),
        "post_build's db:migrate:status shows it up: {log}"
    );
    Ok(())
}

#[tokio::test]
async fn a_failing_migration_leaves_schema_and_schema_migrations_as_they_were() -> Result<()> {
    let stack = Stack::cleared().await?;
    let sfx = suffix();
    let column = format!("phone_{sfx}");
    let name = format!("require_{column}_on_users");
    let class = camel(&name);
    let v = version();
    // Adds a column, then makes it NOT NULL while every seeded user has NULL there: PostgreSQL
    // refuses (PG::NotNullViolation) and rolls back the whole migration, the column included.
    let migration = format!(
        "class {class} < ActiveRecord::Migration[6.1]\n  def change\n    add_column :users, :{column}, :string\n    change_column_null :users, :{column}, false\n  end\nend\n"
    );
    // On a branch: a migration that fails on main would fail every later migration of main.
    let branch = format!("failing-{sfx}");
    let commit = stack.commit_to_app(
        &branch,
        &[(&format!("db/migrate/{v}_{name}.rb"), &migration)],
        "a migration PostgreSQL refuses",
    )?;
    let columns_before = stack.columns("users")?;
    let versions_before = stack.migration_versions()?;
    let tables_before = stack.sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )?;

    let (arn, _, end) = migrate_within(&stack, &commit, "app-migfail", TIMEOUT).await?;
    assert_eq!(end.status, "FAILED", "{end:?}");
    assert_eq!(end.error.as_deref(), Some("MigrationFailed"));
    assert_eq!(
        stack.columns("users")?,
        columns_before,
        "the added column was rolled back"
    );
    assert_eq!(
        stack.migration_versions()?,
        versions_before,
        "schema_migrations is unchanged"
    );
    assert!(!stack.migration_versions()?.contains(&v));
    assert_eq!(
        stack.sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
        )?,
        tables_before
    );
    let cause = end.cause.unwrap_or_default();
    assert!(cause.contains("in phase BUILD"), "{cause}");
    assert!(
        cause.contains("PG::NotNullViolation") && cause.contains(&format!("column \"{column}\"")),
        "the cause names the PostgreSQL error: {cause}"
    );
    // The migration shim's report names the failing migration first (issue 19), ahead of the
    // card and the log tail.
    assert!(
        cause.contains(&format!("Failing migration: {v} {class}")),
        "the cause names the failing migration's version and class: {cause}"
    );
    // The archived log has it all too (the cause carries only the log's last lines: a migration
    // with a long backtrace can push its `== VERSION Class: migrating` line out of them).
    let arn_item = stack.run_record(&arn).await?;
    assert_eq!(arn_item["commit"], commit.as_str(), "{arn_item}");
    let log = String::from_utf8(
        stack
            .object(arn_item["logUri"].as_str().context("logUri")?)
            .await?,
    )?;
    assert!(log.contains(&format!("== {v} {class}: migrating")), "{log}");
    assert!(log.contains("PG::NotNullViolation"), "{log}");
    assert!(
        log.contains(&format!("  down    {v}")),
        "post_build's db:migrate:status shows it still down: {log}"
    );
    Ok(())
}

// ----------------------------------------------------------------------------- data patches

/// A user with `open` open and `paid` paid orders (100, 200, ... cents); its id.
fn user_with_orders(stack: &Stack, email: &str, open: usize, paid: usize) -> Result<String> {
    let id = stack.sql_value(&format!(
        "INSERT INTO users (email, name, created_at, updated_at) VALUES ('{email}', 'Test', now(), now()) RETURNING id"
    ))?;
    for i in 0..open + paid {
        let status = if i < open { "open" } else { "paid" };
        stack.sql(&format!(
            "INSERT INTO orders (user_id, amount_cents, status, created_at, updated_at) VALUES ({id}, {}, '{status}', now(), now())",
            100 * (i + 1)
        ))?;
    }
    Ok(id)
}

#[tokio::test]
async fn a_data_patch_changes_exactly_its_rows_and_the_job_it_enqueued_runs() -> Result<()> {
    let stack = Stack::cleared().await?;
    let table = stack.table("PatchesTable")?;
    let sfx = suffix();
    let target = format!("target-{sfx}@example.com");
    let target_id = user_with_orders(&stack, &target, 3, 1)?;
    let other_id = user_with_orders(&stack, &format!("other-{sfx}@example.com"), 2, 0)?;
    let others_before = stack.sql(&format!(
        "SELECT id, status, updated_at FROM orders WHERE user_id <> {target_id} ORDER BY id"
    ))?;

    let name = unique_name("app-patch");
    let input = json!({
        "ticket": "OPS-17",
        "ref": "main",
        "commit": stack.app_head()?,
        "kind": "rake",
        "task": "data:cancel_open_orders",
        "args": [target],
        "reason": "the customer cancelled everything open",
        "requestedBy": BOB,
    });
    let arn = stack.submit("data-patch", &name, &input).await?;
    eventually("the approval request", TIMEOUT, || async {
        let r = stack.get_item(&table, "patchId", &name).await?;
        let waiting = stack
            .wait_registered(&format!("patch-approval#{name}"))
            .await?;
        Ok(r.filter(|r| r.get("approvalMessage").is_some() && waiting))
    })
    .await?;
    // Nothing ran before the approval.
    assert_eq!(
        stack.sql_value(&format!(
            "SELECT count(*) FROM orders WHERE user_id = {target_id} AND status = 'cancelled'"
        ))?,
        "0"
    );
    // A real click's own ids: its trigger_id is the approval function's replay key.
    let action_ts = unique_name("a");
    let payload = json!({
        "type": "block_actions",
        "user": {"id": ALICE_SLACK},
        "trigger_id": format!("t{action_ts}"),
        "actions": [{"action_id": "patch_approve", "value": name, "type": "button",
                     "action_ts": action_ts}],
        "container": {"type": "message"},
    });
    let (status, body) = stack
        .slack_send(&json!({
            "url": stack.info["function_urls"]["ApprovalFunction"],
            "body": format!("payload={}", urlencode(&payload.to_string())),
            "content_type": "application/x-www-form-urlencoded",
        }))
        .await?;
    assert_eq!(status, 200, "{body}");
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");

    // Exactly the target's 3 open orders changed; its paid order and everyone else's did not.
    assert_eq!(
        stack.sql(&format!(
            "SELECT status, count(*) FROM orders WHERE user_id = {target_id} GROUP BY status ORDER BY status"
        ))?,
        vec!["cancelled|3".to_string(), "paid|1".to_string()]
    );
    assert_eq!(
        stack.sql(&format!(
            "SELECT id, status, updated_at FROM orders WHERE user_id <> {target_id} ORDER BY id"
        ))?,
        others_before,
        "no other order changed"
    );
    // The Sidekiq job the task enqueued ran on the stack's worker: the target's total is its
    // paid order only (400 cents), the other user's total was not touched.
    let started = Instant::now();
    let total = eventually("RecomputeUserTotalsJob's effect", Duration::from_secs(60), || async {
        let row = stack.sql_value(&format!(
            "SELECT orders_total_cents, totals_recomputed_at IS NOT NULL FROM users WHERE id = {target_id}"
        ))?;
        Ok((row.ends_with("|t")).then_some(row))
    })
    .await?;
    assert_eq!(total, "400|t");
    assert_eq!(
        stack.sql_value(&format!(
            "SELECT orders_total_cents, totals_recomputed_at IS NULL FROM users WHERE id = {other_id}"
        ))?,
        "0|t"
    );
    assert_eq!(
        stack.sql_value(&format!(
            "SELECT count(*) FROM task_runs WHERE name = 'RecomputeUserTotalsJob' AND arguments = '{target_id}' AND source = 'data:cancel_open_orders'"
        ))?,
        "1"
    );
    assert_eq!(
        stack.sql_value(&format!(
            "SELECT source FROM task_runs WHERE name = 'data:cancel_open_orders' AND arguments = '{target}'"
        ))?,
        name,
        "the task recorded the patch it ran for (BATCHLESS_PATCH_ID)"
    );
    // Nothing is left in the queue, and nothing went to Sidekiq's retry or dead sets.
    assert_eq!(stack.redis(&["llen", "queue:default"])?, "0");
    assert_eq!(stack.redis(&["zcard", "retry"])?, "0");
    assert_eq!(stack.redis(&["zcard", "dead"])?, "0");
    eprintln!(
        "the job's effect was visible {:?} after the patch ended",
        started.elapsed()
    );
    Ok(())
}

// ----------------------------------------------------------------------------- scheduled jobs

#[tokio::test]
async fn a_scheduled_rake_task_writes_its_rows_once_for_fifty_concurrent_deliveries() -> Result<()>
{
    let stack = Stack::cleared().await?;
    // A job that runs every minute, so that a recent minute is a real occurrence (a delivery for
    // a time its schedule does not imply is InvalidInput).
    let job = "sync-exchange-rates";
    // A minute in the catch-up window (10 min) that no earlier run claimed.
    let occurrences = stack.table("OccurrencesTable")?;
    let mut at = None;
    for minutes_ago in 1..=8 {
        let t = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
        let t = batchless_core::platform::time::rfc3339(
            batchless_core::platform::time::truncate_to_minute(t),
        );
        if stack
            .get_item(&occurrences, "occurrenceKey", &format!("{job}#{t}"))
            .await?
            .is_none()
        {
            at = Some(t);
            break;
        }
    }
    let at = at.context("no unclaimed minute of sync-exchange-rates in the last 8")?;
    let before: i64 = stack
        .sql_value("SELECT count(*) FROM exchange_rates")?
        .parse()?;
    let arns = stack.fire_schedule(job, &at, 50).await?;
    assert_eq!(arns.len(), 50, "{arns:?}");
    let mut ran = 0;
    for arn in &arns {
        let end = stack.wait_end(arn, Duration::from_secs(300)).await?;
        assert_eq!(end.status, "SUCCEEDED", "{arn}: {end:?}");
        if end
            .output
            .as_ref()
            .is_some_and(|o| o["outcome"] != "duplicate")
        {
            ran += 1;
        }
    }
    assert_eq!(ran, 1, "one execution ran the occurrence");
    let after: i64 = stack
        .sql_value("SELECT count(*) FROM exchange_rates")?
        .parse()?;
    // rates:sync writes one row per currency (EUR, JPY, GBP), once.
    assert_eq!(after, before + 3, "the task wrote its rows exactly once");
    assert_eq!(
        stack.sql_value(
            "SELECT string_agg(currency, ',' ORDER BY currency) FROM (SELECT currency FROM exchange_rates ORDER BY id DESC LIMIT 3) r"
        )?,
        "EUR,GBP,JPY"
    );
    Ok(())
}

// ----------------------------------------------------------------------------- the bastion console

#[tokio::test]
async fn a_real_rails_console_is_watched_and_its_enqueued_job_is_processed() -> Result<()> {
    let stack = Stack::cleared().await?;
    let cluster = stack.physical_id("BastionCluster")?;
    let bastion_table = stack.table("BastionTable")?;
    let sfx = suffix();

    // The bastion task (its definition's `sleep infinity`), as the bastion service runs it.
    let run = json!({"cluster": cluster, "taskDefinition": stack.physical_id("BastionTaskDefinition")?, "launchType": "FARGATE", "count": 1});
    let task_arn = stack.run_task(&run).await?;
    let task = task_arn.rsplit('/').next().unwrap_or_default().to_string();
    eventually(
        "the bastion task RUNNING",
        Duration::from_secs(60),
        || async {
            Ok(stack.replica_get("tasks").await?["tasks"]
                .as_array()
                .and_then(|ts| {
                    ts.iter()
                        .find(|t| t["taskArn"] == task_arn.as_str())
                        .cloned()
                })
                .filter(|t| t["lastStatus"] == "RUNNING"))
        },
    )
    .await?;

    // The ECS Exec login (CloudTrail's ExecuteCommand through EventBridge) opens the watch.
    let sid = format!("ecs-execute-command-rails{sfx}");
    let event = sample_event(
        &sid,
        ALICE,
        &cluster,
        &task,
        &chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let entry = json!({"Source": event["source"], "DetailType": event["detail-type"], "Detail": event["detail"].to_string(), "Resources": [], "EventBusName": "default"});
    let put = stack
        .aws_json(
            "events",
            "AWSEvents.PutEvents",
            &json!({"Entries": [entry]}),
        )
        .await?;
    assert!(put.status().is_success());
    let session = eventually("the session waiting for approval", TIMEOUT, || async {
        let waiting = stack
            .wait_registered(&format!("session-approval#{sid}"))
            .await?;
        Ok(stack
            .get_item_pk_sk(&bastion_table, &format!("session#{sid}"), "session")
            .await?
            .filter(|s| waiting && s.get("threadTs").is_some()))
    })
    .await?;
    let thread_ts = session["threadTs"]
        .as_str()
        .context("threadTs")?
        .to_string();

    // A user of its own: the job enqueued from the console recomputes its total.
    let email = format!("console-{sfx}@example.com");
    let user_id = user_with_orders(&stack, &email, 2, 0)?;
    let users_before = stack.sql_value("SELECT count(*) FROM users")?;
    let source = format!("console-{sfx}");
    let enqueue = format!("RecomputeUserTotalsJob.perform_async([{user_id}], \"{source}\")");
    let typed = ["User.count", enqueue.as_str(), "User.delete_all", "exit"];
    let started = Instant::now();
    // Blocking is fine here: the watch runs in the replica, not in this test's runtime.
    let (code, transcript) = stack.exec_typed(&task, &["bin/rails", "console"], &typed)?;
    let text = strip_ansi(&transcript);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("Loading production environment"), "{text}");
    assert!(
        text.contains(&format!("=> {users_before}")),
        "User.count answered from the DB: {text}"
    );
    // The DB refused: orders reference every user (a real PG error in a real console).
    assert!(text.contains("PG::ForeignKeyViolation"), "{text}");
    assert_eq!(stack.sql_value("SELECT count(*) FROM users")?, users_before);

    // User.delete_all is posted to the session's thread within seconds; User.count is not.
    let thread = |needle: &'static str| {
        let stack = &stack;
        let thread_ts = thread_ts.clone();
        async move {
            Ok::<_, anyhow::Error>(
                stack
                    .slack_messages(BASTION_CHANNEL)
                    .await?
                    .into_iter()
                    .filter(|m| m["thread_ts"].as_str() == Some(thread_ts.as_str()))
                    .find(|m| m["text"].as_str().is_some_and(|t| t.contains(needle))),
            )
        }
    };
    let post = eventually(
        "User.delete_all in the session's thread",
        Duration::from_secs(30),
        || thread("User.delete_all"),
    )
    .await?;
    let within = started.elapsed();
    assert!(
        post["text"].as_str().unwrap_or_default().contains("[hook]"),
        "{post}"
    );
    assert!(
        within < Duration::from_secs(30),
        "posted {within:?} after the console started"
    );
    assert!(
        thread("User.count").await?.is_none(),
        "User.count is not flagged"
    );
    assert!(
        thread("perform_async").await?.is_none(),
        "enqueueing a job is not flagged"
    );

    // The job enqueued from the console was processed by the stack's worker.
    eventually("the console's job processed", Duration::from_secs(60), || async {
        let n = stack.sql_value(&format!(
            "SELECT count(*) FROM task_runs WHERE name = 'RecomputeUserTotalsJob' AND source = '{source}'"
        ))?;
        Ok((n == "1").then_some(()))
    })
    .await?;
    assert_eq!(
        stack.sql_value(&format!(
            "SELECT orders_total_cents FROM users WHERE id = {user_id}"
        ))?,
        "300"
    );
    eprintln!("User.delete_all reached the thread {within:?} after the console started");

    let _ = stack
        .sfn
        .stop_execution()
        .execution_arn(format!(
            "{}:{}",
            stack
                .state_machine("BastionSessionStateMachine")?
                .replace(":stateMachine:", ":execution:"),
            batchless_core::bastion::login::execution_name(&sid)
        ))
        .send()
        .await;
    let stop = json!({"cluster": cluster, "task": task_arn});
    let _ = stack
        .aws_json("ecs", "AmazonEC2ContainerServiceV20141113.StopTask", &stop)
        .await;
    Ok(())
}
