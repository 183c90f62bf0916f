//! Scenario tests of the migration pre-flight, lint, policy gate and lock handling (issue 19)
//! on the replica's real Rails app and PostgreSQL. Each test commits its own pending migration
//! to a branch of the app's repository (never `main`, so other tests see none of them) and
//! migrates that commit. Run one at a time (`--test-threads=1`).
//!
//! The production test runs on a replica stack with `--env production` (the findings policy
//! follows the environment): `BATCHLESS_PRODUCTION_STACK`, or one it starts
//! (`batchless_scenarios::other`).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use batchless_scenarios::app::{camel, migrate_within, migration_report, suffix, version};
use batchless_scenarios::other::{OtherStack, Setup};
use batchless_scenarios::*;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(300);
/// A stack started by the test builds its functions on their first call (cargo lambda).
const COLD_TIMEOUT: Duration = Duration::from_secs(900);
const MIGRATIONS_CHANNEL: &str = "C0MIGRATIONS";

struct Pending {
    version: String,
    class: String,
    file: String,
    commit: String,
}

/// Commit one migration (`body` is the `change`/`up` method's content) on a new branch of
/// `main`; returns the commit.
fn pending(stack: &Stack, kind: &str, sfx: &str, body: &str) -> Result<Pending> {
    let v = version();
    // Rails' camelize of the file name: `preflight_<kind>_<sfx>` → `Preflight<Kind><Sfx>`.
    let sfx_camel = camel(sfx);
    let class = format!("Preflight{kind}{sfx_camel}");
    let file = format!("db/migrate/{v}_preflight_{}_{sfx}.rb", kind.to_lowercase());
    let source = format!("class {class} < ActiveRecord::Migration[6.1]\n{body}end\n");
    let commit = stack.commit_to_app(
        &format!("preflight-{sfx}"),
        &[(&file, &source)],
        &format!("pending migration {class}"),
    )?;
    Ok(Pending {
        version: v,
        class,
        file,
        commit,
    })
}

async fn migrate(stack: &Stack, commit: &str, prefix: &str) -> Result<(String, String, Ended)> {
    migrate_within(stack, commit, prefix, TIMEOUT).await
}

fn applied(stack: &Stack, version: &str) -> Result<bool> {
    Ok(stack
        .sql(&format!(
            "SELECT version FROM schema_migrations WHERE version = '{version}'"
        ))?
        .len()
        == 1)
}

fn index_exists(stack: &Stack, name: &str) -> Result<bool> {
    Ok(stack.sql_value(&format!(
        "SELECT count(*) FROM pg_indexes WHERE indexname = '{name}'"
    ))? == "1")
}

fn column_exists(stack: &Stack, table: &str, column: &str) -> Result<bool> {
    Ok(stack.sql_value(&format!(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = '{table}' AND column_name = '{column}'"
    ))? == "1")
}

/// Another session holding ACCESS EXCLUSIVE on `table` until released (or dropped).
fn hold(stack: &Stack, table: &str, sfx: &str) -> Result<LockHolder> {
    LockHolder::start(
        stack,
        &format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"),
        sfx,
    )
}

/// Locks the pre-flight's session holds or waits for on the app's tables (everything in
/// `public` but Rails' own bookkeeping tables), and whether the migrate session was seen waiting.
const LOCK_PROBE: &str = "SELECT a.application_name || ':' || c.relname || ':' || l.mode || ':' || l.granted \
     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid JOIN pg_class c ON c.oid = l.relation \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = 'public' AND c.relname NOT IN ('schema_migrations', 'ar_internal_metadata') \
     AND a.application_name IN ('batchless-preflight', 'batchless-migrate')";

// ----------------------------------------------------------------------------- staging

#[tokio::test]
async fn a_non_concurrent_index_on_a_table_with_rows_is_reported_in_staging_and_migrated(
) -> Result<()> {
    let stack = Stack::cleared().await?;
    assert!(
        stack
            .sql_value("SELECT count(*) FROM users")?
            .parse::<i64>()?
            > 0
    );
    let sfx = suffix();
    let index = format!("idx_preflight_{sfx}");
    let p = pending(
        &stack,
        "Index",
        &sfx,
        &format!("  def change\n    add_index :users, [:name, :email], name: \"{index}\"\n  end\n"),
    )?;
    let (arn, name, end) = migrate(&stack, &p.commit, "pf-idx").await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    assert!(index_exists(&stack, &index)?, "the index was created");
    assert!(applied(&stack, &p.version)?);

    // The workflow output carries the card's data: pending list, finding with line and recipe.
    let out = end.output.context("output")?;
    let report = &out["report"];
    assert_eq!(report["policy"], "report", "{report}");
    assert_eq!(report["gate"], "reported", "{report}");
    let pending = &report["preflight"]["pending"][0];
    assert_eq!(pending["version"], p.version.as_str());
    assert_eq!(pending["class"], p.class.as_str());
    assert_eq!(pending["file"], p.file.as_str());
    assert_eq!(pending["disablesDdlTransaction"], false);
    let sql = pending["statements"][0]["sql"].as_str().unwrap_or_default();
    assert!(
        sql.starts_with(&format!("CREATE INDEX \"{index}\" ON \"users\"")),
        "{sql}"
    );
    let finding = &report["preflight"]["findings"][0];
    assert_eq!(finding["rule"], "index-not-concurrent", "{report}");
    assert_eq!(finding["version"], p.version.as_str());
    assert_eq!(finding["line"], 3, "the add_index line");
    assert!(finding["recipe"]
        .as_str()
        .unwrap_or_default()
        .contains("algorithm: :concurrently"));
    let ran = &report["migrate"]["migrations"][0];
    assert_eq!(ran["status"], "succeeded", "{report}");
    assert!(ran["durationMs"].as_u64().is_some(), "{ran}");
    assert_eq!(ran["retries"], 0);

    // The full report in S3, the history record, and the Slack card.
    let pre = migration_report(&stack, &name, "preflight.json").await?;
    assert_eq!(pre["gate"], "reported");
    let runs = stack.table("RunsTable")?;
    let rec = stack
        .get_item(&runs, "runId", &arn)
        .await?
        .context("run record")?;
    assert_eq!(
        rec["migrationReport"]["preflight"]["findings"][0]["rule"],
        "index-not-concurrent"
    );
    let post = eventually("the Slack card", Duration::from_secs(30), || async {
        Ok(stack
            .slack_messages(MIGRATIONS_CHANNEL)
            .await?
            .into_iter()
            .find(|m| m["text"].as_str().is_some_and(|t| t.contains(&p.class))))
    })
    .await?;
    let blocks = post["blocks"].to_string();
    assert!(blocks.contains("index-not-concurrent"), "{blocks}");
    assert!(blocks.contains("Pre-flight"), "{blocks}");
    Ok(())
}

#[tokio::test]
async fn a_safe_migration_has_no_findings_and_runs() -> Result<()> {
    let stack = Stack::cleared().await?;
    let sfx = suffix();
    let table = format!("preflight_safe_{sfx}");
    let p = pending(
        &stack,
        "Safe",
        &sfx,
        &format!("  def change\n    create_table :{table} do |t|\n      t.string :label\n    end\n    add_index :{table}, :label\n  end\n"),
    )?;
    let (_, _, end) = migrate(&stack, &p.commit, "pf-safe").await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    let report = &end.output.context("output")?["report"];
    assert_eq!(report["gate"], "pass", "{report}");
    assert_eq!(report["preflight"]["findings"], json!([]), "{report}");
    assert_eq!(
        report["preflight"]["pending"][0]["statements"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "CREATE TABLE and CREATE INDEX recorded: {report}"
    );
    assert!(column_exists(&stack, &table, "label")?);
    assert!(applied(&stack, &p.version)?);
    Ok(())
}

#[tokio::test]
async fn a_held_lock_times_out_is_retried_and_fails_naming_the_table_while_preflight_takes_no_lock(
) -> Result<()> {
    let stack = Stack::cleared().await?;
    let sfx = suffix();
    let column = format!("preflight_locked_{sfx}");
    let p = pending(
        &stack,
        "Locked",
        &sfx,
        &format!("  def change\n    add_column :users, :{column}, :string\n  end\n"),
    )?;
    // ACCESS EXCLUSIVE on every app table: any lock the pre-flight asked for on one would
    // wait (and show in pg_locks) or time out.
    let tables = [
        "users",
        "orders",
        "sessions",
        "task_runs",
        "billing_reports",
        "exchange_rates",
    ];
    let mut holders = Vec::new();
    for t in tables {
        holders.push(hold(&stack, t, &format!("{sfx}-{t}"))?);
    }
    let sm = stack.state_machine("MigrationStateMachine")?;
    let name = unique_name("pf-lock");
    let arn = stack
        .start(&sm, &name, &migration_input(&p.commit, json!({})))
        .await?;
    // Sample pg_locks until the run ends.
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    let end = loop {
        for row in stack.sql(LOCK_PROBE)? {
            if !seen.contains(&row) {
                seen.push(row);
            }
        }
        if stack.execution_status(&arn).await? != "RUNNING" {
            break stack.wait_end(&arn, Duration::from_secs(10)).await?;
        }
        if Instant::now() > deadline {
            bail!("the run did not end");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    };
    drop(holders);
    let preflight_locks: Vec<&String> = seen
        .iter()
        .filter(|r| r.starts_with("batchless-preflight:"))
        .collect();
    assert!(
        preflight_locks.is_empty(),
        "pre-flight locked app tables: {preflight_locks:?}"
    );
    // The probe sees a lock wait when there is one: the migration's own.
    assert!(
        seen.iter()
            .any(|r| r.starts_with("batchless-migrate:users:") && r.ends_with(":false")),
        "the probe saw the migration wait on users: {seen:?}"
    );

    assert_eq!(end.status, "FAILED", "{end:?}");
    assert_eq!(end.error.as_deref(), Some("MigrationFailed"));
    let cause = end.cause.clone().unwrap_or_default();
    assert!(cause.chars().count() <= 5000);
    for needle in [
        format!("failed: {} {}", p.version, p.class),
        "waiting for a lock on table users".to_string(),
        "gave up after 4 attempt(s)".to_string(),
        "55P03".to_string(),
    ] {
        assert!(cause.contains(&needle), "{needle:?} in {cause}");
    }
    let m = migration_report(&stack, &name, "migrate.json").await?;
    let attempts = m["migrations"][0]["attempts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(attempts.len(), 4, "1 + 3 retries: {m}");
    assert!(attempts.iter().all(|a| a["table"] == "users"), "{m}");
    assert_eq!(m["failure"]["table"], "users");
    assert_eq!(m["failure"]["lockTimeout"], true);
    let pre = migration_report(&stack, &name, "preflight.json").await?;
    assert_eq!(
        pre["error"],
        Value::Null,
        "pre-flight completed under the locks: {pre}"
    );
    assert!(
        !column_exists(&stack, "users", &column)?,
        "schema unchanged"
    );
    assert!(!applied(&stack, &p.version)?);
    Ok(())
}

#[tokio::test]
async fn a_lock_released_halfway_succeeds_on_a_retry() -> Result<()> {
    let stack = Stack::cleared().await?;
    let sfx = suffix();
    let column = format!("preflight_released_{sfx}");
    let p = pending(
        &stack,
        "Released",
        &sfx,
        &format!("  def change\n    add_column :users, :{column}, :string\n  end\n"),
    )?;
    let mut holder = hold(&stack, "users", &sfx)?;
    let sm = stack.state_machine("MigrationStateMachine")?;
    let name = unique_name("pf-release");
    let arn = stack
        .start(&sm, &name, &migration_input(&p.commit, json!({})))
        .await?;
    eventually("the migration waiting on users", TIMEOUT, || async {
        Ok(stack
            .sql(LOCK_PROBE)?
            .into_iter()
            .find(|r| r.starts_with("batchless-migrate:users:") && r.ends_with(":false")))
    })
    .await?;
    // The first attempt times out (lock_timeout 5s); release before the retry (2 s later).
    tokio::time::sleep(Duration::from_millis(5800)).await;
    holder.release();
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    let ran = &end.output.context("output")?["report"]["migrate"]["migrations"][0];
    assert_eq!(ran["status"], "succeeded", "{ran}");
    assert!(ran["retries"].as_u64().unwrap_or_default() >= 1, "{ran}");
    assert!(
        ran["lockWaitMs"].as_u64().unwrap_or_default() >= 4000,
        "{ran}"
    );
    let m = migration_report(&stack, &name, "migrate.json").await?;
    assert_eq!(m["migrations"][0]["attempts"][0]["table"], "users", "{m}");
    assert!(column_exists(&stack, "users", &column)?);
    assert!(applied(&stack, &p.version)?);
    Ok(())
}

#[tokio::test]
async fn a_raising_migration_names_its_version_class_sql_and_pg_error() -> Result<()> {
    let stack = Stack::cleared().await?;
    let sfx = suffix();
    let p = pending(
        &stack,
        "Raising",
        &sfx,
        &format!("  def up\n    execute \"UPDATE users SET no_such_column_{sfx} = 1\"\n  end\n\n  def down; end\n"),
    )?;
    let (_, _, end) = migrate(&stack, &p.commit, "pf-raise").await?;
    assert_eq!(end.status, "FAILED", "{end:?}");
    assert_eq!(end.error.as_deref(), Some("MigrationFailed"));
    let cause = end.cause.unwrap_or_default();
    for needle in [
        format!("failed: {} {}", p.version, p.class),
        format!("Statement: UPDATE users SET no_such_column_{sfx} = 1"),
        "PostgreSQL error 42703".to_string(),
        format!("column \"no_such_column_{sfx}\" of relation \"users\" does not exist"),
    ] {
        assert!(cause.contains(&needle), "{needle:?} in {cause}");
    }
    assert!(!applied(&stack, &p.version)?);
    Ok(())
}

// ----------------------------------------------------------------------------- production

#[tokio::test]
async fn production_needs_an_approval_for_findings_and_leaves_the_schema_unchanged() -> Result<()> {
    let prod = OtherStack::up(Setup::Production)?;
    let stack = prod.stack().await?;
    assert_eq!(stack.environment(), "production");
    let sfx = suffix();
    let index = format!("idx_preflight_prod_{sfx}");
    let p = pending(
        &stack,
        "Prodindex",
        &sfx,
        &format!("  def change\n    add_index :users, :name, name: \"{index}\"\n  end\n"),
    )?;
    let (arn, _, end) = migrate_within(&stack, &p.commit, "pf-prod", COLD_TIMEOUT).await?;
    assert_eq!(end.status, "FAILED", "{end:?}");
    assert_eq!(
        end.error.as_deref(),
        Some("MigrationNeedsApproval"),
        "{end:?}"
    );
    let cause = end.cause.clone().unwrap_or_default();
    assert!(
        cause.chars().count() <= 5000,
        "CodePipeline shows 5,000 characters"
    );
    for needle in [
        "needs an approval",
        "the production policy is require-approval",
        "db:migrate did not run",
        "How to approve",
        "index-not-concurrent",
        p.class.as_str(),
        p.version.as_str(),
    ] {
        assert!(cause.contains(needle), "{needle:?} in {cause}");
    }
    assert!(stack
        .task_errors(&arn)
        .await?
        .iter()
        .any(|e| e == "MigrationNeedsApproval"));
    let states = stack.states_entered(&arn).await?;
    assert!(states.iter().any(|s| s == "ReadReport"), "{states:?}");
    assert!(!index_exists(&stack, &index)?, "schema unchanged");
    assert!(!applied(&stack, &p.version)?);
    let runs = stack.table("RunsTable")?;
    let rec = stack
        .get_item(&runs, "runId", &arn)
        .await?
        .context("run record")?;
    assert_eq!(rec["error"], "MigrationNeedsApproval", "{rec}");

    // A safe migration on production asks for nothing and runs.
    let table = format!("preflight_prod_safe_{sfx}");
    let safe = pending(
        &stack,
        "Prodsafe",
        &format!("{sfx}b"),
        &format!("  def change\n    create_table :{table}\n  end\n"),
    )?;
    let (_, _, end) = migrate(&stack, &safe.commit, "pf-prod-safe").await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    assert!(applied(&stack, &safe.version)?);
    Ok(())
}
