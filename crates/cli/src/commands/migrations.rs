//! `batchless migrations list` / `show`: the migration history from the runs table, with each
//! run's pre-flight (pending migrations, findings), per-migration timings and lock waits, and
//! the approval its findings needed (`show`: status, binding, every decision); `approve` /
//! `reject` decide that approval through the IAM-authenticated decision endpoint.

use std::process::ExitCode;

use anyhow::bail;
use anyhow::Result;
use batchless_core::migration::report::MigrationReport;
use batchless_core::platform::dynamo::Table;
use batchless_core::shared::approval::record::ApprovalRecord;
use batchless_core::shared::runs::{self, RunRecord};
use clap::Subcommand;

use crate::context::Context;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List migration runs, newest first.
    List(ListArgs),
    /// One run: its record and result card (pending list, SQL, findings, durations, lock
    /// waits and retries, the failing migration).
    Show(ShowArgs),
    /// Approve a production run's pending set that its findings hold up (through the
    /// IAM-authenticated decision endpoint: it decides who you are; or the Slack buttons).
    Approve(DecideArgs),
    /// Reject a run's pending set: the run ends MigrationNeedsApproval.
    Reject(DecideArgs),
}

#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    /// The execution name (or ARN) of the waiting run.
    pub run: String,
    #[arg(long)]
    pub comment: Option<String>,
}

async fn decide(
    cx: &Context,
    a: DecideArgs,
    decision: batchless_core::shared::approval::Decision,
) -> Result<ExitCode> {
    let name = a.run.rsplit(':').next().unwrap_or(&a.run);
    let mut body = serde_json::json!({
        "action": decision.as_str(),
        "approvalId": batchless_core::shared::approval::record::migration_approval_id(name),
    });
    if let Some(c) = a.comment {
        body["comment"] = c.into();
    }
    crate::signed::decide(cx.aws().await?, body).await
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The execution name or ARN (the run id).
    pub run: String,
    /// Print the run record (with the whole report) as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// How many runs to show.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i32).range(1..))]
    pub limit: i32,
    /// Print the run records as JSON.
    #[arg(long)]
    pub json: bool,
}

pub const HEADERS: [&str; 10] = [
    "STARTED",
    "COMMIT",
    "STATUS",
    "DURATION",
    "STARTED BY",
    "BUILD",
    "FAILED PHASE",
    "PENDING",
    "FINDINGS",
    "LOG",
];

/// `1h02m03s`, `4m05s`, `12s`.
pub fn duration(seconds: i64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

fn report(r: &RunRecord) -> Option<MigrationReport> {
    r.migration_report
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
}

fn row(r: &RunRecord) -> [String; 10] {
    let rep = report(r);
    let pre = rep.as_ref().and_then(|x| x.preflight.as_ref());
    let or_dash = |v: Option<&str>| v.filter(|s| !s.is_empty()).unwrap_or("-").to_string();
    [
        r.started_at.clone(),
        or_dash(
            r.commit
                .as_deref()
                .map(|c| c.chars().take(7).collect::<String>())
                .as_deref(),
        ),
        r.status.to_string(),
        r.duration_seconds
            .map(duration)
            .unwrap_or_else(|| "-".into()),
        or_dash(Some(&r.started_by)),
        or_dash(r.build_id.as_deref()),
        or_dash(r.failed_phase.as_deref()),
        pre.map(|p| p.pending.len().to_string())
            .unwrap_or_else(|| "-".into()),
        pre.map(|p| p.findings.len().to_string())
            .unwrap_or_else(|| "-".into()),
        or_dash(r.log_uri.as_deref()),
    ]
}

/// The records as an aligned table (columns separated by two spaces, no trailing blanks).
pub fn table(records: &[RunRecord]) -> String {
    let rows: Vec<[String; 10]> = records.iter().map(row).collect();
    crate::render::columns(HEADERS, &rows).join("\n")
}

pub async fn run(cx: &Context, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::List(a) => list(cx, a).await,
        Command::Show(a) => show(cx, a).await,
        Command::Approve(a) => {
            decide(cx, a, batchless_core::shared::approval::Decision::Approve).await
        }
        Command::Reject(a) => {
            decide(cx, a, batchless_core::shared::approval::Decision::Reject).await
        }
    }
}

/// A run as text: the record's essentials, then the result card.
pub fn show_text(r: &RunRecord) -> String {
    let mut t = format!(
        "run        {}\nstarted    {} by {}\ncommit     {}\nstatus     {}{}\nbuild      {}\nlog        {}\n",
        r.execution_name,
        r.started_at,
        r.started_by,
        r.commit.as_deref().unwrap_or("-"),
        r.status,
        r.duration_seconds
            .map(|d| format!(" in {}", duration(d)))
            .unwrap_or_default(),
        r.build_id.as_deref().unwrap_or("-"),
        r.log_uri.as_deref().unwrap_or("-"),
    );
    match report(r) {
        Some(rep) => {
            if let Some(f) = rep.failure_text() {
                t.push('\n');
                t.push_str(&f);
            }
            t.push('\n');
            t.push_str(&rep.card(20_000));
            if let Some(p) = &rep.preflight {
                for m in &p.pending {
                    if m.statements.is_empty() {
                        continue;
                    }
                    t.push_str(&format!("\nSQL of {} {}:\n", m.version, m.class_name));
                    for st in &m.statements {
                        t.push_str(&format!(
                            "  {}{}\n",
                            st.line.map(|l| format!("line {l}: ")).unwrap_or_default(),
                            st.sql
                        ));
                    }
                }
            }
        }
        None => t.push_str("\nno pre-flight report recorded\n"),
    }
    if let Some(c) = &r.failure_cause {
        if report(r).is_none() {
            t.push_str(&format!("\n{c}\n"));
        }
    }
    t
}

/// A migration's approval as text: its status, what it binds to, every decision.
pub fn approval_text(a: &ApprovalRecord) -> String {
    let mut t = format!(
        "\napproval   {} {} ({} of {} needed, expires {})\n",
        a.approval_id,
        a.status,
        a.approvers.len(),
        a.required_approvals,
        a.expires_at
    );
    if let Ok(m) = a.migration() {
        t.push_str(&format!(
            "  binds    commit {} · pending set {} · request hash {}\n  pre-flight build {}\n",
            m.commit, m.digest, a.request_hash, m.preflight_build_id
        ));
    }
    let mut decisions: Vec<_> = a.decisions.values().collect();
    decisions.sort_by(|x, y| x.at.cmp(&y.at));
    for d in decisions {
        t.push_str(&format!(
            "  {} {} by {} ({}) at {}\n",
            d.decision.as_str(),
            if d.request_hash == a.request_hash {
                ""
            } else {
                "(another request)"
            },
            d.by_name,
            d.identity,
            d.at
        ));
    }
    if let Some(by) = &a.rejected_by {
        t.push_str(&format!("  rejected by {by}\n"));
    }
    if let Some(at) = &a.expired_at {
        t.push_str(&format!("  expired at {at}\n"));
    }
    t
}

async fn show(cx: &Context, args: ShowArgs) -> Result<ExitCode> {
    let aws = cx.aws().await?;
    let table_name = aws.runs_table();
    let runs = runs::Runs::new(aws.dynamodb(), &table_name);
    let record = if args.run.starts_with("arn:") {
        runs.get(&args.run).await?
    } else {
        runs.list("migration", 500)
            .await?
            .into_iter()
            .find(|r| r.execution_name == args.run)
    };
    let Some(record) = record else {
        bail!("no migration run {} in {table_name}", args.run);
    };
    let approval = match &record.approval_id {
        Some(id) => {
            Table::<ApprovalRecord>::new(aws.dynamodb(), aws.resource("approvals"))
                .get(id)
                .await?
        }
        None => None,
    };
    if args.json {
        let mut v = serde_json::to_value(&record)?;
        v["approval"] = serde_json::to_value(&approval)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", show_text(&record));
        if let Some(a) = &approval {
            print!("{}", approval_text(a));
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(cx: &Context, args: ListArgs) -> Result<ExitCode> {
    let aws = cx.aws().await?;
    let table_name = aws.runs_table();
    let records = runs::Runs::new(aws.dynamodb(), &table_name)
        .list("migration", args.limit)
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&records)?);
    } else if records.is_empty() {
        eprintln!("no migration runs recorded in {table_name}");
    } else {
        println!("{}", table(&records));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<RunRecord> {
        vec![
            RunRecord {
                run_id: "arn:e2".into(),
                workflow: "migration".into(),
                environment: "staging".into(),
                execution_name: "e2".into(),
                started_at: "2026-11-28T14:00:00Z".into(),
                started_by: "alice".into(),
                status: runs::RunStatus::Failed,
                commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
                build_id: Some("batchless-staging-migrate:1f2e".into()),
                duration_seconds: Some(3723),
                failed_phase: Some("BUILD".into()),
                log_uri: Some("s3://logs/migration/e2.log".into()),
                migration_report: Some(serde_json::json!({
                    "policy": "require-approval", "gate": "needs-approval", "uri": "s3://logs/migrations/e2/report/",
                    "preflight": {"approach": "scratch-database", "pending": [{"version": "20261201000000", "class": "AddIndex", "file": "db/migrate/20261201000000_add_index.rb",
                        "statements": [{"sql": "CREATE INDEX \"i\" ON \"users\" (\"name\")", "line": 3}]}],
                        "findings": [{"rule": "index-not-concurrent", "version": "20261201000000", "class": "AddIndex", "file": "db/migrate/20261201000000_add_index.rb", "line": 3, "message": "index created without concurrently on users", "recipe": "algorithm: :concurrently"}]},
                    "migrate": {"migrations": [], "failure": {"version": "20261201000000", "class": "AddIndex", "statement": "CREATE INDEX", "pgError": "ERROR: canceling statement due to lock timeout", "pgCode": "55P03"}}
                })),
                ..Default::default()
            },
            RunRecord {
                run_id: "arn:e1".into(),
                workflow: "migration".into(),
                environment: "staging".into(),
                execution_name: "e1".into(),
                started_at: "2026-11-28T13:00:00Z".into(),
                started_by: "codepipeline".into(),
                status: runs::RunStatus::Running,
                commit: Some("fedcba9".into()),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn the_table_is_aligned_and_shows_what_matters() {
        let t = table(&records());
        let expected = "\
STARTED               COMMIT   STATUS   DURATION  STARTED BY    BUILD                           FAILED PHASE  PENDING  FINDINGS  LOG
2026-11-28T14:00:00Z  0123456  FAILED   1h02m03s  alice         batchless-staging-migrate:1f2e  BUILD         1        1         s3://logs/migration/e2.log
2026-11-28T13:00:00Z  fedcba9  RUNNING  -         codepipeline  -                               -             -        -         -";
        assert_eq!(t, expected);
    }

    #[test]
    fn an_empty_history_has_only_headers() {
        assert_eq!(
            table(&[]),
            "STARTED  COMMIT  STATUS  DURATION  STARTED BY  BUILD  FAILED PHASE  PENDING  FINDINGS  LOG"
        );
    }

    #[test]
    fn list_options() {
        let parse = crate::testing::parse_subcommand::<Command>;
        let Ok(Command::List(l)) = parse(&["list", "--limit", "5", "--json"]) else {
            panic!("list")
        };
        assert_eq!((l.limit, l.json), (5, true));
        assert!(parse(&["list", "--limit", "0"]).is_err());
        let Ok(Command::List(l)) = parse(&["list"]) else {
            panic!("list")
        };
        assert_eq!((l.limit, l.json), (20, false));
        let Ok(Command::Show(s)) = parse(&["show", "e2"]) else {
            panic!("show")
        };
        assert_eq!(s.run, "e2");
    }

    #[test]
    fn show_prints_the_card_the_sql_and_the_failure() {
        let t = show_text(&records()[0]);
        for needle in [
            "Failing migration: 20261201000000 AddIndex",
            "PostgreSQL error 55P03: ERROR: canceling statement due to lock timeout",
            "1 pending, 1 finding(s), gate needs-approval",
            "! index-not-concurrent AddIndex db/migrate/20261201000000_add_index.rb:3",
            "line 3: CREATE INDEX \"i\" ON \"users\" (\"name\")",
        ] {
            assert!(t.contains(needle), "{needle:?} in {t}");
        }
        assert!(show_text(&records()[1]).contains("no pre-flight report recorded"));
    }

    #[test]
    fn show_prints_the_approval_with_every_decision() {
        let a: ApprovalRecord = serde_json::from_value(serde_json::json!({
            "approvalId": "migration-e2", "subject": "migration", "environment": "production",
            "status": "REJECTED", "createdAt": "2026-12-02T07:00:00Z", "updatedAt": "2026-12-02T07:05:00Z",
            "expiresAt": "2026-12-02T11:00:00Z", "requiredApprovals": 1, "requestHash": "h1",
            "details": {"runId": "arn:e2", "executionName": "e2", "commit": "c0ffee", "digest": "d1",
                        "pending": ["20261201000000 AddIndex"], "findings": [], "startedBy": "pipeline",
                        "preflightBuildId": "migrate:7"},
            "decisions": {"carol": {"decision": "reject", "by": "carol", "byName": "Carol Example",
                "via": "slack", "at": "2026-12-02T07:05:00Z", "identity": "slack:U0CAROL01", "requestHash": "h1"}},
            "rejectedBy": "carol"
        }))
        .unwrap();
        let t = approval_text(&a);
        for needle in [
            "migration-e2 REJECTED (0 of 1 needed",
            "commit c0ffee · pending set d1",
            "reject  by Carol Example (slack:U0CAROL01)",
            "rejected by carol",
        ] {
            assert!(t.contains(needle), "{needle:?} in {t}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(65), "1m05s");
        assert_eq!(duration(3600), "1h00m00s");
    }
}
