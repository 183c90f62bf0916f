//! `batchless jobs history <job> [--since T] [--until T] [--json]`: the occurrence ledger
//! (`batchless_core::jobs::ledger`) — every occurrence the job's schedule implies in the window
//! with its fate, the duplicate deliveries suppressed, the manual runs apart, and the alerts
//! (ran more often than scheduled; no fate after the catch-up window). Reads the occurrences
//! (`byJob` index) and the run records (`byWorkflow` index), every page. The exit code is
//! non-zero only for errors: alerts are printed (and in the JSON), not an exit status.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use batchless_core::jobs::ledger::{self, AlertKind, Ledger};
use batchless_core::jobs::occurrence::{Occurrence, Occurrences, BY_JOB_INDEX};
use batchless_core::jobs::{Job, WORKFLOW};
use batchless_core::platform::time::rfc3339;
use batchless_core::shared::runs::{RunRecord, Runs, BY_WORKFLOW_INDEX};
use chrono::{DateTime, Duration, Utc};
use clap::Args;

use crate::context::Aws;

/// The longest window one ledger covers.
pub const MAX_WINDOW_DAYS: i64 = 31;
/// Runs start after their occurrence (by the delivery's lateness): runs are read up to this
/// long past the window's end, beyond the job's catch-up window.
const RUN_START_MARGIN: Duration = Duration::hours(1);
/// At most this many run records are looked up one by one (a claimant's run that started
/// outside the runs read).
const MAX_RUN_LOOKUPS: usize = 200;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The job (as named in the jobs file).
    pub job: String,
    /// From (RFC 3339, or a duration ago: 90m, 24h, 7d) [default: 24h].
    #[arg(long, value_name = "T", value_parser = when)]
    pub since: Option<When>,
    /// Until (RFC 3339, or a duration ago) [default: now].
    #[arg(long, value_name = "T", value_parser = when)]
    pub until: Option<When>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub file: super::FileArgs,
}

/// A time given on the command line: absolute, or that long before now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    At(DateTime<Utc>),
    Ago(Duration),
}

impl When {
    fn at(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            When::At(t) => t,
            When::Ago(d) => now - d,
        }
    }
}

fn when(s: &str) -> Result<When, String> {
    if let Ok(t) = crate::parse::time(s) {
        return Ok(When::At(t));
    }
    batchless_core::jobs::config::parse_duration(s)
        .map(|secs| When::Ago(Duration::seconds(secs as i64)))
        .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a duration ago (90m, 24h, 7d)"))
}

/// The window `[since, until]` at `now`, checked.
pub fn window(
    since: Option<When>,
    until: Option<When>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let until = until.map_or(now, |u| u.at(now));
    let since = since.map_or(until - Duration::hours(24), |s| s.at(now));
    if since >= until {
        bail!(
            "--since {} is not before --until {}",
            rfc3339(since),
            rfc3339(until)
        );
    }
    if until - since > Duration::days(MAX_WINDOW_DAYS) {
        bail!("the window is longer than {MAX_WINDOW_DAYS} days: give a later --since or an earlier --until");
    }
    Ok((since, until))
}

/// The job's occurrence items with a scheduled time in the window, and the scheduled-job run
/// records that can belong to them (and the manual runs of the window).
pub async fn read(
    db: &aws_sdk_dynamodb::Client,
    occurrences_table: &str,
    runs_table: &str,
    job: &Job,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<(Vec<Occurrence>, Vec<RunRecord>)> {
    let items = Occurrences::new(db.clone(), occurrences_table)
        .between(
            BY_JOB_INDEX,
            ("job", &job.name),
            ("scheduledTime", &rfc3339(since), &rfc3339(until)),
        )
        .await
        .context("reading the job's occurrences")?;
    let runs_db = Runs::new(db.clone(), runs_table);
    let mut runs: Vec<RunRecord> = runs_db
        .between(
            BY_WORKFLOW_INDEX,
            ("workflow", WORKFLOW),
            (
                "startedAt",
                &rfc3339(since),
                &rfc3339(until + job.catch_up() + RUN_START_MARGIN),
            ),
        )
        .await
        .context("reading the scheduled-job runs")?
        .into_iter()
        .filter(|r| r.job.as_deref() == Some(&job.name))
        .collect();
    // A claimant whose run started outside that read (a very late delivery): read it by id.
    let known: BTreeSet<String> = runs.iter().map(|r| r.run_id.clone()).collect();
    let missing: Vec<&str> = items
        .iter()
        .map(|i| i.claimed_by.as_str())
        .filter(|by| by.starts_with("arn:") && !known.contains(*by))
        .take(MAX_RUN_LOOKUPS)
        .collect();
    for id in missing {
        if let Some(r) = runs_db.get(id).await.context("reading a run record")? {
            runs.push(r);
        }
    }
    Ok((items, runs))
}

fn secs(s: Option<i64>) -> String {
    s.map(|s| format!("{s}s")).unwrap_or_else(|| "-".into())
}

/// The ledger as a table.
pub fn render(l: &Ledger) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  {} in {}  catch-up {}s{}",
        l.job,
        l.schedule,
        l.timezone,
        l.catch_up_seconds,
        if l.enabled { "" } else { "  (disabled)" }
    );
    let _ = writeln!(out, "window {} .. {} (now {})", l.since, l.until, l.now);
    let _ = writeln!(
        out,
        "{:<22}{:<19}{:>7}{:>6}{:>10}{:>6}  CLAIMED BY / LOG",
        "SCHEDULED", "FATE", "LATE", "EXIT", "DURATION", "DUPS"
    );
    for e in &l.occurrences {
        let mut fate = e.fate.to_string();
        if !e.on_schedule {
            fate.push('!');
        }
        let _ = writeln!(
            out,
            "{:<22}{:<19}{:>7}{:>6}{:>10}{:>6}  {}",
            e.scheduled_time,
            fate,
            secs(e.late_by_seconds),
            e.exit_code.map_or("-".into(), |c| c.to_string()),
            secs(e.duration_seconds),
            e.duplicates_suppressed,
            [e.claimed_by.as_deref(), e.log_uri.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("  ")
        );
    }
    if l.occurrences.is_empty() {
        let _ = writeln!(out, "(no occurrences in the window)");
    }
    if !l.manual_runs.is_empty() {
        let _ = writeln!(out, "manual runs:");
        for m in &l.manual_runs {
            let _ = writeln!(
                out,
                "  {}  {}  by {}  exit {}  {}  {}",
                m.started_at,
                m.status,
                m.started_by,
                m.exit_code.map_or("-".into(), |c| c.to_string()),
                secs(m.duration_seconds),
                m.log_uri.as_deref().unwrap_or(&m.run_id)
            );
        }
    }
    let fates: Vec<String> = l
        .counts
        .fates
        .iter()
        .map(|(f, n)| format!("{n} {f}"))
        .collect();
    let _ = writeln!(
        out,
        "{} expected: {}; {} duplicate deliveries suppressed; {} manual runs",
        l.counts.expected,
        if fates.is_empty() {
            "none".into()
        } else {
            fates.join(", ")
        },
        l.counts.duplicates_suppressed,
        l.counts.manual_runs
    );
    for a in &l.alerts {
        let kind = match a.kind {
            AlertKind::RanMoreOftenThanScheduled => "ran more often than scheduled",
            AlertKind::NoFateAfterCatchUp => "no fate after the catch-up window",
        };
        let _ = writeln!(out, "ALERT ({kind}): {}", a.message);
    }
    if l.alerts.is_empty() {
        let _ = writeln!(out, "no alerts");
    }
    out
}

pub async fn run(aws: &Aws, a: HistoryArgs) -> Result<ExitCode> {
    let jobs = super::load(&a.file)?;
    let job = jobs
        .get(&a.job)
        .with_context(|| format!("no job {:?} in the jobs file", a.job))?;
    let now = Utc::now();
    let (since, until) = window(a.since, a.until, now)?;
    let (items, runs) = read(
        &aws.dynamodb(),
        &super::occurrences_table(aws),
        &aws.runs_table(),
        job,
        since,
        until,
    )
    .await?;
    let l = ledger::ledger(job, since, until, now, &items, &runs);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&l)?);
    } else {
        print!("{}", render(&l));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::query::{QueryInput, QueryOutput};
    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use batchless_core::jobs::JobsFile;
    use batchless_core::platform::dynamo;
    use batchless_core::shared::runs::RunStatus;

    fn t(s: &str) -> DateTime<Utc> {
        crate::parse::time(s).unwrap()
    }

    fn item(at: &str, by: &str) -> Occurrence {
        Occurrence {
            claimed_at: at.into(),
            ..Occurrence::new("purge-expired-sessions", t(at), "staging", by)
        }
    }

    fn run_of(at: &str, id: &str, status: RunStatus) -> RunRecord {
        RunRecord {
            run_id: id.into(),
            workflow: WORKFLOW.into(),
            environment: "staging".into(),
            execution_name: "e".into(),
            started_at: at.into(),
            started_by: "scheduler".into(),
            status,
            job: Some("purge-expired-sessions".into()),
            trigger: Some("scheduled".into()),
            occurrence: Some(at.into()),
            occurrence_key: Some(format!("purge-expired-sessions#{at}")),
            exit_code: Some(0),
            duration_seconds: Some(4),
            log_uri: Some(format!("s3://logs/{id}.log")),
            ..Default::default()
        }
    }

    fn value<'a>(r: &'a QueryInput, k: &str) -> Option<&'a str> {
        r.expression_attribute_values()
            .and_then(|v| v.get(k))
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    }

    #[test]
    fn windows_are_checked() {
        let now = t("2026-11-28T12:00:00Z");
        assert_eq!(
            window(None, None, now).unwrap(),
            (t("2026-11-27T12:00:00Z"), now)
        );
        let since = when("2h").unwrap();
        assert_eq!(
            window(Some(since), None, now).unwrap().0,
            t("2026-11-28T10:00:00Z")
        );
        let at = when("2026-11-20T00:00:00Z").unwrap();
        assert_eq!(at, When::At(t("2026-11-20T00:00:00Z")));
        assert!(
            window(Some(when("1h").unwrap()), Some(when("2h").unwrap()), now)
                .unwrap_err()
                .to_string()
                .contains("is not before")
        );
        assert!(window(Some(when("40d").unwrap()), None, now)
            .unwrap_err()
            .to_string()
            .contains("31 days"));
        assert!(when("yesterday").unwrap_err().contains("neither"));
        let parse = crate::testing::parse_args::<HistoryArgs>;
        let a = parse(&["purge-expired-sessions", "--since", "7d", "--json"]).unwrap();
        assert!(a.json && a.until.is_none());
        assert!(parse(&["purge-expired-sessions", "--since", "soon"]).is_err());
    }

    /// The occurrences come from the `byJob` index in the window, every page; the runs from
    /// `byWorkflow` (scheduled-job) from the window's start; a claimant's run outside that read
    /// is read by its id. Then the ledger: each fate, the duplicates, the alerts.
    #[tokio::test]
    async fn reads_every_page_and_builds_the_ledger() {
        let mut first = item("2026-11-28T01:30:00Z", "arn:e1");
        first.duplicate_claimers = vec!["arn:d1".into(), "arn:d2".into()];
        let late = Occurrence {
            run_status: Some(RunStatus::SkippedStale),
            ..item("2026-11-28T02:30:00Z", "arn:late")
        };
        let page1 = mock!(aws_sdk_dynamodb::Client::query)
            .match_requests(|r| {
                r.index_name() == Some("byJob")
                    && r.table_name() == Some("occ")
                    && r.key_condition_expression() == Some("#k = :v AND #s BETWEEN :from AND :to")
                    && value(r, ":v") == Some("purge-expired-sessions")
                    && value(r, ":from") == Some("2026-11-28T01:00:00Z")
                    && value(r, ":to") == Some("2026-11-28T05:00:00Z")
                    && r.exclusive_start_key().is_none()
            })
            .then_output(move || {
                QueryOutput::builder()
                    .items(dynamo::to_item(&first))
                    .last_evaluated_key("occurrenceKey", AttributeValue::S("p1".into()))
                    .build()
            });
        let page2 = mock!(aws_sdk_dynamodb::Client::query)
            .match_requests(|r| {
                r.index_name() == Some("byJob") && r.exclusive_start_key().is_some()
            })
            .then_output(move || QueryOutput::builder().items(dynamo::to_item(&late)).build());
        let runs = mock!(aws_sdk_dynamodb::Client::query)
            .match_requests(|r| {
                r.index_name() == Some("byWorkflow")
                    && r.table_name() == Some("runs")
                    && value(r, ":v") == Some("scheduled-job")
                    && value(r, ":from") == Some("2026-11-28T01:00:00Z")
                    // until + the 1h catch-up window + the 1h margin
                    && value(r, ":to") == Some("2026-11-28T07:00:00Z")
            })
            .then_output(|| {
                let mut other = run_of("2026-11-28T01:31:00Z", "arn:o", RunStatus::Succeeded);
                other.job = Some("sync-exchange-rates".into());
                QueryOutput::builder()
                    .items(dynamo::to_item(&run_of(
                        "2026-11-28T01:30:00Z",
                        "arn:e1",
                        RunStatus::Succeeded,
                    )))
                    .items(dynamo::to_item(&other))
                    .build()
            });
        let by_id = mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| {
                r.table_name() == Some("runs")
                    && r.key().and_then(|k| k.get("runId"))
                        == Some(&AttributeValue::S("arn:late".into()))
            })
            .then_output(|| {
                GetItemOutput::builder()
                    .set_item(Some(dynamo::to_item(&RunRecord {
                        exit_code: None,
                        duration_seconds: None,
                        log_uri: None,
                        ..run_of("2026-11-28T02:30:00Z", "arn:late", RunStatus::SkippedStale)
                    })))
                    .build()
            });
        let db = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::MatchAny,
            [&page1, &page2, &runs, &by_id]
        );
        let jobs = JobsFile::embedded();
        let job = jobs.get("purge-expired-sessions").unwrap();
        let (since, until) = (t("2026-11-28T01:00:00Z"), t("2026-11-28T05:00:00Z"));
        let (items, runs_read) = read(&db, "occ", "runs", job, since, until).await.unwrap();
        assert_eq!(
            (
                page1.num_calls(),
                page2.num_calls(),
                runs.num_calls(),
                by_id.num_calls()
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(items.len(), 2);
        assert_eq!(runs_read.len(), 2, "the other job's run is dropped");
        let l = ledger::ledger(
            job,
            since,
            until,
            t("2026-11-28T04:00:00Z"),
            &items,
            &runs_read,
        );
        let fates: Vec<(&str, &str)> = l
            .occurrences
            .iter()
            .map(|e| (e.scheduled_time.as_str(), e.fate.as_str()))
            .collect();
        assert_eq!(
            fates,
            vec![
                ("2026-11-28T01:30:00Z", "ran"),
                ("2026-11-28T02:30:00Z", "skipped (stale)"),
                ("2026-11-28T03:30:00Z", "pending"),
            ]
        );
        let text = render(&l);
        assert!(text.contains("2026-11-28T01:30:00Z  ran"), "{text}");
        assert!(text.contains("s3://logs/arn:e1.log"), "{text}");
        assert!(text.contains("2 duplicate deliveries suppressed"), "{text}");
        assert!(text.contains("no alerts"), "{text}");
        // The JSON carries every field the table shows.
        let v = serde_json::to_value(&l).unwrap();
        assert_eq!(v["occurrences"][0]["exitCode"], 0);
        assert_eq!(v["occurrences"][0]["durationSeconds"], 4);
        assert_eq!(v["occurrences"][0]["duplicateClaimers"][1], "arn:d2");
        assert_eq!(v["occurrences"][1]["fate"], "skipped (stale)");
    }

    #[test]
    fn alerts_are_printed_clearly() {
        let jobs = JobsFile::embedded();
        let job = jobs.get("purge-expired-sessions").unwrap();
        let items = vec![Occurrence {
            source: "legacy".into(),
            ..item("2026-11-28T01:45:00Z", "legacy:box:1")
        }];
        let l = ledger::ledger(
            job,
            t("2026-11-28T01:00:00Z"),
            t("2026-11-28T05:00:00Z"),
            t("2026-11-28T05:00:00Z"),
            &items,
            &[],
        );
        let text = render(&l);
        for needle in [
            "ALERT (ran more often than scheduled): purge-expired-sessions ran at 2026-11-28T01:45:00Z",
            "2026-11-28T01:45:00Z  claimed (legacy)!",
            "ALERT (no fate after the catch-up window): purge-expired-sessions at 2026-11-28T01:30:00Z",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert!(!text.contains("no alerts"), "{text}");
    }
}
