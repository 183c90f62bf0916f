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
    let name = unique_name("pf-lock");
    let arn = stack
        .submit("migration", &name, &migration_input(&p.commit, json!({})))
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
    let name = unique_name("pf-release");
    let arn = stack
        .submit("migration", &name, &migration_input(&p.commit, json!({})))
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

const APPROVE: &str = "migration_approve";
const REJECT: &str = "migration_reject";

/// Start a migration of `commit` and wait until it waits for its approval (the request posted,
/// the task token stored): the execution's ARN and the approval id.
async fn until_it_asks(stack: &Stack, commit: &str, prefix: &str) -> Result<(String, String)> {
    let name = unique_name(prefix);
    let arn = stack
        .submit("migration", &name, &migration_input(commit, json!({})))
        .await?;
    let id = format!("migration-{name}");
    let key = format!("migration-approval#{id}");
    eventually("the migration's approval wait", COLD_TIMEOUT, || async {
        Ok(stack.wait_registered(&key).await?.then_some(()))
    })
    .await?;
    Ok((arn, id))
}

/// The migration approval record.
async fn approval(stack: &Stack, id: &str) -> Result<Value> {
    let table = stack.table("ApprovalsTable")?;
    stack
        .get_item(&table, "approvalId", id)
        .await?
        .with_context(|| format!("no approval {id}"))
}

/// The events of the migrations audit chain about `id`, in order; the chain verifies.
async fn audited(stack: &Stack, id: &str) -> Result<Vec<String>> {
    let (code, out, err) = stack.cli(&["audit", "verify", "--chain", "migrations"])?;
    if code != 0 {
        bail!("audit verify --chain migrations failed ({code}): {out} {err}");
    }
    let trail = batchless_core::shared::audit::Trail {
        db: &stack.db,
        s3: &stack.s3,
        table: &stack.table("AuditTable")?,
        bucket: &stack.bucket("LogsBucket")?,
        chain: "migrations",
    };
    let (records, _) = batchless_core::shared::audit::read_chain(&trail)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(records
        .into_iter()
        .filter(|r| r.patch_id == id)
        .map(|r| r.event)
        .collect())
}

#[tokio::test]
async fn production_waits_for_an_approval_of_its_findings_and_a_rejection_leaves_the_schema_unchanged(
) -> Result<()> {
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
    let (arn, id) = until_it_asks(&stack, &p.commit, "pf-prod").await?;
    // The request is in the migrations channel with the finding, its recipe and the buttons.
    let asked = format!("Migration of {} on production needs", &p.commit[..12]);
    let post = stack
        .slack_post_containing(MIGRATIONS_CHANNEL, &asked)
        .await?
        .to_string();
    for needle in [
        "index-not-concurrent",
        p.class.as_str(),
        "safer",
        id.as_str(),
        APPROVE,
        REJECT,
    ] {
        assert!(post.contains(needle), "{needle:?} in {post}");
    }
    let rec = approval(&stack, &id).await?;
    assert_eq!(rec["status"], "PENDING_APPROVAL", "{rec}");
    assert_eq!(rec["details"]["commit"], p.commit.as_str(), "{rec}");
    assert!(
        !index_exists(&stack, &index)?,
        "nothing migrated while it waits"
    );

    // Somebody outside the production people map cannot decide it.
    let (code, body) = stack
        .approval_click(&id, "U0DAVE001", APPROVE, json!({}))
        .await?;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["outcome"]["refusal"]["refusal"], "unknown_person",
        "{body}"
    );
    assert_eq!(approval(&stack, &id).await?["status"], "PENDING_APPROVAL");

    // Carol (an approver) rejects: the run fails MigrationNeedsApproval, schema unchanged.
    let (code, body) = stack
        .approval_click(&id, "U0CAROL01", REJECT, json!({}))
        .await?;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["outcome"]["status"], "REJECTED", "{body}");
    let end = stack.wait_end(&arn, TIMEOUT).await?;
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
        "was not approved",
        "carol rejected it",
        "db:migrate did not run",
        "How to approve",
        "index-not-concurrent",
        p.class.as_str(),
        p.version.as_str(),
    ] {
        assert!(cause.contains(needle), "{needle:?} in {cause}");
    }
    let states = stack.states_entered(&arn).await?;
    assert!(states.iter().any(|s| s == "WaitForApproval"), "{states:?}");
    assert!(
        !states.iter().any(|s| s == "StartApprovedBuild"),
        "{states:?}"
    );
    assert!(!index_exists(&stack, &index)?, "schema unchanged");
    assert!(!applied(&stack, &p.version)?);
    let runs = stack.table("RunsTable")?;
    let run = stack
        .get_item(&runs, "runId", &arn)
        .await?
        .context("run record")?;
    assert_eq!(run["error"], "MigrationNeedsApproval", "{run}");
    assert_eq!(run["approvalId"], id.as_str(), "{run}");
    let events = audited(&stack, &id).await?;
    assert_eq!(
        events,
        ["REQUESTED", "DECISION_REFUSED", "DECISION", "REJECTED"],
        "{events:?}"
    );

    // A safe migration on production asks for nothing and runs.
    let table = format!("preflight_prod_safe_{sfx}");
    let safe = pending(
        &stack,
        "Prodsafe",
        &format!("{sfx}b"),
        &format!("  def change\n    create_table :{table}\n  end\n"),
    )?;
    let (safe_arn, _, end) = migrate(&stack, &safe.commit, "pf-prod-safe").await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    assert!(applied(&stack, &safe.version)?);
    let states = stack.states_entered(&safe_arn).await?;
    assert!(!states.iter().any(|s| s == "AskApproval"), "{states:?}");
    Ok(())
}

#[tokio::test]
async fn production_migrates_the_approved_pending_set_and_a_forged_wake_changes_nothing(
) -> Result<()> {
    let prod = OtherStack::up(Setup::Production)?;
    let stack = prod.stack().await?;
    let sfx = suffix();
    let index = format!("idx_preflight_ok_{sfx}");
    let p = pending(
        &stack,
        "Prodapproved",
        &sfx,
        &format!("  def change\n    add_index :users, :email, name: \"{index}\"\n  end\n"),
    )?;
    let (arn, id) = until_it_asks(&stack, &p.commit, "pf-prod-ok").await?;

    // Attack: whoever can read the waits table ends the wait with a forged "approved".
    let key = format!("migration-approval#{id}");
    let token = stack.wait(&key).await?.context("the wait")?["taskToken"]
        .as_str()
        .context("a token")?
        .to_string();
    stack
        .sfn
        .send_task_success()
        .task_token(&token)
        .output(json!({"decision": "approved", "approvers": ["alice"]}).to_string())
        .send()
        .await?;
    // The wake is re-checked (AskApproval again), found pending, and the run waits again.
    eventually(
        "the run waiting again after the forged wake",
        TIMEOUT,
        || async {
            let asked = stack
                .states_entered(&arn)
                .await?
                .iter()
                .filter(|s| *s == "AskApproval")
                .count();
            let token_now = stack
                .wait(&key)
                .await?
                .and_then(|w| w["taskToken"].as_str().map(String::from));
            Ok((asked >= 2 && token_now.is_some_and(|t| t != token)).then_some(()))
        },
    )
    .await?;
    assert!(
        !index_exists(&stack, &index)?,
        "the forged wake migrated nothing"
    );
    assert_eq!(approval(&stack, &id).await?["status"], "PENDING_APPROVAL");

    // Alice approves from the CLI, signed in through IAM Identity Center (the production
    // people map knows her by that role session): the decision endpoint decides for the
    // caller AWS authenticated. The approved build migrates exactly this pending set.
    let alice = stack
        .role_session_key(
            "arn:aws:iam::123456789012:role/AWSReservedSSO_Developer_0123456789abcdef",
            "alice@example.com",
        )
        .await?;
    let name = arn.rsplit(':').next().context("execution name")?;
    let (code, out, err) = stack.cli_with_key(&alice, &["migrations", "approve", name])?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("approved migration"), "{out}");
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.status, "SUCCEEDED", "{end:?}");
    assert!(index_exists(&stack, &index)?, "migrated after the approval");
    assert!(applied(&stack, &p.version)?);
    let states = stack.states_entered(&arn).await?;
    assert!(
        states.iter().any(|s| s == "StartApprovedBuild"),
        "{states:?}"
    );
    let out = end.output.clone().unwrap_or_default();
    assert_eq!(out["report"]["gate"], "approved", "{out}");
    let runs = stack.table("RunsTable")?;
    let run = stack
        .get_item(&runs, "runId", &arn)
        .await?
        .context("run record")?;
    assert_eq!(run["approvalId"], id.as_str(), "{run}");
    let first = run["preflightBuildId"]
        .as_str()
        .context("the pre-flight build")?;
    assert_ne!(Some(first), run["buildId"].as_str(), "{run}");
    let rec = approval(&stack, &id).await?;
    assert_eq!(rec["approvers"], json!(["alice"]), "{rec}");
    let events = audited(&stack, &id).await?;
    assert_eq!(events, ["REQUESTED", "DECISION", "APPROVED"], "{events:?}");
    Ok(())
}

/// The approval's failure paths on production: the wait's own step fails, the approved
/// build cannot start, and nobody answers until the approval expires (the default 240 min,
/// 4 minutes at the test time scale). Each leaves the schema unchanged.
#[tokio::test]
async fn production_approval_failures_and_expiry_migrate_nothing() -> Result<()> {
    let prod = OtherStack::up(Setup::Production)?;
    let stack = prod.stack().await?;
    stack.clear_faults().await?;
    let sfx = suffix();
    let pending_index = |tag: &str| -> Result<(Pending, String)> {
        let index = format!("idx_preflight_{tag}_{sfx}");
        let p = pending(
            &stack,
            &format!("Prod{tag}"),
            &format!("{sfx}{tag}"),
            &format!("  def change\n    add_index :users, :name, name: \"{index}\"\n  end\n"),
        )?;
        Ok((p, index))
    };

    // A pending migration that does not load (its class is misnamed): the pre-flight cannot
    // complete, so there is no pending set an approval could bind to. The run fails
    // MigrationNeedsApproval at once (ReadReport), nothing asked, nothing migrated.
    let v = version();
    let file = format!("db/migrate/{v}_preflight_misnamed_{sfx}.rb");
    let source = format!(
        "class NotTheFileName{} < ActiveRecord::Migration[6.1]\n  def change\n    add_index :users, :name\n  end\nend\n",
        camel(&sfx)
    );
    let commit = stack.commit_to_app(
        &format!("preflight-misnamed-{sfx}"),
        &[(&file, &source)],
        "a pending migration that does not load",
    )?;
    let (arn, _, end) = migrate_within(&stack, &commit, "pf-no-load", COLD_TIMEOUT).await?;
    assert_eq!(
        end.error.as_deref(),
        Some("MigrationNeedsApproval"),
        "{end:?}"
    );
    let cause = end.cause.clone().unwrap_or_default();
    assert!(cause.contains("could not complete"), "{cause}");
    assert!(cause.contains("How to approve"), "{cause}");
    let states = stack.states_entered(&arn).await?;
    assert!(!states.iter().any(|s| s == "AskApproval"), "{states:?}");
    assert!(!applied(&stack, &v)?);

    // The wait's step fails (not retried): the run errs, nothing is asked or migrated.
    let (p, index) = pending_index("waitfails")?;
    stack
        .faults(&[fault::lambda_error(
            "migration-approval",
            json!({"mode": "wait"}),
            "AwsServiceError",
            1,
        )])
        .await?;
    let (arn, _, end) = migrate_within(&stack, &p.commit, "pf-wait-fails", COLD_TIMEOUT).await?;
    assert_eq!(end.error.as_deref(), Some("AwsServiceError"), "{end:?}");
    let states = stack.states_entered(&arn).await?;
    assert!(states.iter().any(|s| s == "WaitForApproval"), "{states:?}");
    assert!(!index_exists(&stack, &index)?);

    // Approved, and the approved build cannot start: the run errs, nothing migrated.
    let (p, index) = pending_index("startfails")?;
    let (arn, id) = until_it_asks(&stack, &p.commit, "pf-start-fails").await?;
    stack
        .faults(&[fault::lambda_error(
            "start-migration-build",
            json!({"approval": {"approved": true}}),
            "AwsServiceError",
            1,
        )])
        .await?;
    let (code, body) = stack
        .approval_click(&id, "U0ALICE01", APPROVE, json!({}))
        .await?;
    assert_eq!(code, 200, "{body}");
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(end.error.as_deref(), Some("AwsServiceError"), "{end:?}");
    let states = stack.states_entered(&arn).await?;
    assert!(
        states.iter().any(|s| s == "StartApprovedBuild"),
        "{states:?}"
    );
    assert!(!index_exists(&stack, &index)?);

    // A decision written into the approvals table (alice's, the right hash, marked APPROVED) and
    // a wake: its seal does not verify, so the approval does not hold up. The run fails
    // MigrationNeedsApproval, nothing migrated, the forgery audited.
    let (p, index) = pending_index("forged")?;
    let (arn, id) = until_it_asks(&stack, &p.commit, "pf-forged").await?;
    let rec = approval(&stack, &id).await?;
    let hash = rec["requestHash"].as_str().context("hash")?;
    stack
        .plant_approval(
            &stack.table("ApprovalsTable")?,
            "approvalId",
            &id,
            hash,
            None,
            true,
        )
        .await?;
    let token = stack
        .wait(&format!("migration-approval#{id}"))
        .await?
        .context("the wait")?["taskToken"]
        .as_str()
        .context("a token")?
        .to_string();
    stack
        .sfn
        .send_task_success()
        .task_token(&token)
        .output("{}")
        .send()
        .await?;
    let end = stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(
        end.error.as_deref(),
        Some("MigrationNeedsApproval"),
        "{end:?}"
    );
    let cause = end.cause.clone().unwrap_or_default();
    assert!(cause.contains("seal does not verify"), "{cause}");
    let states = stack.states_entered(&arn).await?;
    assert!(
        !states.iter().any(|s| s == "StartApprovedBuild"),
        "{states:?}"
    );
    assert!(!index_exists(&stack, &index)?);
    let events = audited(&stack, &id).await?;
    assert_eq!(
        events,
        ["REQUESTED", "DECISION_FORGED", "NOT_APPROVED"],
        "{events:?}"
    );

    // Nobody answers: the approval expires, the run fails MigrationNeedsApproval.
    let (p, index) = pending_index("expires")?;
    let (arn, id) = until_it_asks(&stack, &p.commit, "pf-expires").await?;
    let end = stack
        .wait_end(&arn, Duration::from_secs(240) + TIMEOUT)
        .await?;
    assert_eq!(
        end.error.as_deref(),
        Some("MigrationNeedsApproval"),
        "{end:?}"
    );
    let cause = end.cause.clone().unwrap_or_default();
    assert!(cause.contains("nobody approved it before"), "{cause}");
    assert!(cause.contains("How to approve"), "{cause}");
    let states = stack.states_entered(&arn).await?;
    assert!(states.iter().any(|s| s == "ExpireApproval"), "{states:?}");
    assert_eq!(approval(&stack, &id).await?["status"], "EXPIRED");
    assert!(!index_exists(&stack, &index)?);
    let events = audited(&stack, &id).await?;
    assert_eq!(events, ["REQUESTED", "EXPIRED"], "{events:?}");
    Ok(())
}
