//! `batchless migrations list`: the migration history from the runs table.

use std::process::ExitCode;

use anyhow::Result;
use batchless_core::shared::runs::{self, RunRecord};
use clap::Subcommand;

use crate::context::Context;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List migration runs, newest first.
    List(ListArgs),
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

pub const HEADERS: [&str; 8] = [
    "STARTED",
    "COMMIT",
    "STATUS",
    "DURATION",
    "STARTED BY",
    "BUILD",
    "FAILED PHASE",
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

fn row(r: &RunRecord) -> [String; 8] {
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
        or_dash(r.log_uri.as_deref()),
    ]
}

/// The records as an aligned table (columns separated by two spaces, no trailing blanks).
pub fn table(records: &[RunRecord]) -> String {
    let rows: Vec<[String; 8]> = records.iter().map(row).collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(cell);
            s.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        s.trim_end().to_string()
    };
    let mut out = line(HEADERS.to_vec());
    for r in &rows {
        out.push('\n');
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

pub async fn run(cx: &Context, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::List(a) => list(cx, a).await,
    }
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
STARTED               COMMIT   STATUS   DURATION  STARTED BY    BUILD                           FAILED PHASE  LOG
2026-11-28T14:00:00Z  0123456  FAILED   1h02m03s  alice         batchless-staging-migrate:1f2e  BUILD         s3://logs/migration/e2.log
2026-11-28T13:00:00Z  fedcba9  RUNNING  -         codepipeline  -                               -             -";
        assert_eq!(t, expected);
    }

    #[test]
    fn an_empty_history_has_only_headers() {
        assert_eq!(
            table(&[]),
            "STARTED  COMMIT  STATUS  DURATION  STARTED BY  BUILD  FAILED PHASE  LOG"
        );
    }

    #[test]
    fn list_options() {
        let parse = crate::testing::parse_subcommand::<Command>;
        let Command::List(l) = parse(&["list", "--limit", "5", "--json"]).unwrap();
        assert_eq!((l.limit, l.json), (5, true));
        assert!(parse(&["list", "--limit", "0"]).is_err());
        let Command::List(l) = parse(&["list"]).unwrap();
        assert_eq!((l.limit, l.json), (20, false));
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(65), "1m05s");
        assert_eq!(duration(3600), "1h00m00s");
    }
}
