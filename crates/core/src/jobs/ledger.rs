//! The occurrence ledger (issue 20): for every occurrence a job's schedule implies in a window,
//! what became of it — ran (exit code, duration, log), failed / timed out / ..., skipped
//! (running / stale / paused), missed, pending (still inside its catch-up window) — with the
//! duplicate deliveries suppressed, and the manual runs apart. Two things are alerts: a job that
//! ran more often than its schedule implies (an occurrence item or run at a time that is not on
//! the schedule, or more than one run for one occurrence), and an occurrence with no fate after
//! its catch-up window.
//!
//! Pure: the caller reads the occurrence items (`byJob` index) and the run records
//! (`shared::runs`) of the window; the expected occurrences come from
//! [`Schedule::occurrences`](super::schedule::Schedule::occurrences), so DST gaps and folds are
//! exactly the schedule's (a skipped local time implies nothing, a repeated one once).
//! `batchless jobs history` prints it; the missed-run check claims its unaccounted occurrences.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::config::Job;
use super::occurrence::{Occurrence, OccurrenceStatus};
use crate::platform::time::{rfc3339, truncate_to_minute};
use crate::shared::runs::{RunRecord, RunStatus};

/// At most this many expected occurrences in one ledger (a month of a per-minute job).
pub const MAX_OCCURRENCES: usize = 50_000;

/// Why an occurrence was recorded but not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// `forbid`: a previous run was live.
    Running,
    /// Delivered after its catch-up window.
    Stale,
    /// Delivered while the job was paused.
    Paused,
}

/// What became of one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Ran and succeeded (exit code 0).
    Ran,
    Failed,
    TimedOut,
    /// The workflow could not complete (a step failed).
    Error,
    Aborted,
    /// Stopped by a newer run (`replace`).
    Replaced,
    /// Claimed; its run has not ended yet.
    Running,
    Skipped(Skip),
    /// Claimed as missed by the missed-run check (alerted then; it can never run late).
    Missed,
    /// Claimed by the legacy crontab (`batchless jobs claim`): it ran there, outcome not recorded.
    ClaimedElsewhere,
    /// Not claimed yet, still inside its catch-up window.
    Pending,
    /// Not claimed, past its catch-up window: an alert (the missed-run check claims it).
    NoFate,
}

impl Fate {
    /// The fate as shown (the table and the JSON use the same words).
    pub const fn as_str(self) -> &'static str {
        match self {
            Fate::Ran => "ran",
            Fate::Failed => "failed",
            Fate::TimedOut => "timed out",
            Fate::Error => "error",
            Fate::Aborted => "aborted",
            Fate::Replaced => "replaced",
            Fate::Running => "running",
            Fate::Skipped(Skip::Running) => "skipped (running)",
            Fate::Skipped(Skip::Stale) => "skipped (stale)",
            Fate::Skipped(Skip::Paused) => "skipped (paused)",
            Fate::Missed => "missed",
            Fate::ClaimedElsewhere => "claimed (legacy)",
            Fate::Pending => "pending",
            Fate::NoFate => "no fate",
        }
    }

    /// Whether a task was (or is being) started for it.
    pub const fn started_work(self) -> bool {
        matches!(
            self,
            Fate::Ran
                | Fate::Failed
                | Fate::TimedOut
                | Fate::Error
                | Fate::Aborted
                | Fate::Replaced
                | Fate::Running
                | Fate::ClaimedElsewhere
        )
    }

    fn of_run_status(status: RunStatus) -> Fate {
        match status {
            RunStatus::Running => Fate::Running,
            RunStatus::Succeeded => Fate::Ran,
            RunStatus::Failed => Fate::Failed,
            RunStatus::Error => Fate::Error,
            RunStatus::Aborted => Fate::Aborted,
            RunStatus::TimedOut => Fate::TimedOut,
            RunStatus::Replaced => Fate::Replaced,
            RunStatus::SkippedRunning => Fate::Skipped(Skip::Running),
            RunStatus::SkippedStale => Fate::Skipped(Skip::Stale),
        }
    }
}

impl Serialize for Fate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for Fate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One occurrence's line in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub scheduled_time: String,
    pub fate: Fate,
    /// False for an item or run at a time the schedule does not imply (always an alert).
    pub on_schedule: bool,
    pub claimed_by: Option<String>,
    pub claimed_at: Option<String>,
    pub source: Option<String>,
    /// From the scheduled time to the claim.
    pub late_by_seconds: Option<i64>,
    pub run_id: Option<String>,
    pub exit_code: Option<i32>,
    pub duration_seconds: Option<i64>,
    pub log_uri: Option<String>,
    pub log_console_url: Option<String>,
    /// Duplicate deliveries (or legacy claims) of this occurrence that ran nothing.
    pub duplicates_suppressed: usize,
    pub duplicate_claimers: Vec<String>,
}

/// A manual run (`batchless jobs run`, the console): listed apart, never an occurrence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManualRun {
    pub run_id: String,
    pub started_at: String,
    pub started_by: String,
    pub status: RunStatus,
    pub exit_code: Option<i32>,
    pub duration_seconds: Option<i64>,
    pub log_uri: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AlertKind {
    /// An occurrence item or run at a time that is not on the schedule, or more than one run
    /// for one occurrence.
    RanMoreOftenThanScheduled,
    /// An occurrence with no fate after its catch-up window.
    NoFateAfterCatchUp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub kind: AlertKind,
    pub scheduled_time: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Occurrences the schedule implies in the window (up to now).
    pub expected: usize,
    /// Each fate's count (over every entry, on the schedule or not).
    pub fates: BTreeMap<String, usize>,
    pub duplicates_suppressed: usize,
    pub manual_runs: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    pub job: String,
    pub schedule: String,
    pub timezone: String,
    pub enabled: bool,
    pub catch_up_seconds: u64,
    pub since: String,
    pub until: String,
    pub now: String,
    /// Every occurrence, oldest first (those off the schedule among them, `onSchedule: false`).
    pub occurrences: Vec<Entry>,
    pub manual_runs: Vec<ManualRun>,
    pub alerts: Vec<Alert>,
    pub counts: Counts,
}

impl Ledger {
    /// The entries with no fate after their catch-up window (what the missed-run check claims).
    pub fn unaccounted(&self) -> impl Iterator<Item = &Entry> {
        self.occurrences.iter().filter(|e| e.fate == Fate::NoFate)
    }

    /// The alerts that the job ran more often than its schedule implies.
    pub fn ran_more_often(&self) -> impl Iterator<Item = &Alert> {
        self.alerts
            .iter()
            .filter(|a| a.kind == AlertKind::RanMoreOftenThanScheduled)
    }
}

fn minute_of(text: &str) -> Option<DateTime<Utc>> {
    crate::platform::time::parse("scheduledTime", text)
        .ok()
        .map(truncate_to_minute)
}

/// A scheduled run's occurrence (its `occurrence` field, or the time in its key).
fn run_occurrence(run: &RunRecord) -> Option<DateTime<Utc>> {
    run.occurrence.as_deref().and_then(minute_of).or_else(|| {
        run.occurrence_key
            .as_deref()
            .and_then(|k| k.rsplit_once('#'))
            .and_then(|(_, t)| minute_of(t))
    })
}

fn is_manual(run: &RunRecord) -> bool {
    run.trigger.as_deref() == Some("manual")
        || run
            .occurrence_key
            .as_deref()
            .is_some_and(|k| k.contains("#manual#"))
}

/// The fate of an occurrence item, with its run record if there is one.
fn fate_of(item: &Occurrence, run: Option<&RunRecord>) -> Fate {
    match item.status {
        OccurrenceStatus::Missed => return Fate::Missed,
        OccurrenceStatus::Paused => return Fate::Skipped(Skip::Paused),
        OccurrenceStatus::Claimed => {}
    }
    // The run record is ended by the workflow and, on abort or timeout, by cleanup (which does
    // not touch the occurrence): it is the better witness once it has ended.
    match (run.map(|r| r.status), item.run_status) {
        (Some(s), _) if s != RunStatus::Running => Fate::of_run_status(s),
        (_, Some(s)) => Fate::of_run_status(s),
        (Some(_), None) => Fate::Running,
        (None, None) if item.source == "scheduler" || item.source == "manual" => Fate::Running,
        (None, None) => Fate::ClaimedElsewhere,
    }
}

fn entry(
    t: DateTime<Utc>,
    on_schedule: bool,
    item: Option<&Occurrence>,
    run: Option<&RunRecord>,
) -> Entry {
    let fate = item.map(|i| fate_of(i, run));
    Entry {
        scheduled_time: rfc3339(t),
        fate: fate.unwrap_or(Fate::Running),
        on_schedule,
        claimed_by: item.map(|i| i.claimed_by.clone()),
        claimed_at: item.map(|i| i.claimed_at.clone()),
        source: item.map(|i| i.source.clone()),
        late_by_seconds: item
            .and_then(|i| crate::platform::time::parse("claimedAt", &i.claimed_at).ok())
            .map(|c| (c - t).num_seconds()),
        run_id: run.map(|r| r.run_id.clone()),
        exit_code: run.and_then(|r| r.exit_code),
        duration_seconds: run.and_then(|r| r.duration_seconds),
        log_uri: run.and_then(|r| r.log_uri.clone()),
        log_console_url: run.and_then(|r| r.log_console_url.clone()),
        duplicates_suppressed: item.map_or(0, |i| i.duplicate_claimers.len()),
        duplicate_claimers: item
            .map(|i| i.duplicate_claimers.clone())
            .unwrap_or_default(),
    }
}

/// The ledger of `job` over `[since, until]` at `now` (occurrences after `now` are not yet
/// expected). `items` and `runs` may hold more than the job's and the window's: only the job's,
/// in the window, are used (a run counts by its occurrence, a manual run by its start).
pub fn ledger(
    job: &Job,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
    items: &[Occurrence],
    runs: &[RunRecord],
) -> Ledger {
    let in_window = |t: DateTime<Utc>| t >= since && t <= until;
    let expected: BTreeSet<DateTime<Utc>> = job
        .parsed_schedule()
        .occurrences(since, until.min(now), MAX_OCCURRENCES)
        .into_iter()
        .collect();

    // The job's items and runs in the window, by scheduled minute.
    let mut by_time: BTreeMap<DateTime<Utc>, &Occurrence> = BTreeMap::new();
    for item in items.iter().filter(|i| i.job == job.name) {
        if let Some(t) = minute_of(&item.scheduled_time).filter(|t| in_window(*t)) {
            by_time.insert(t, item);
        }
    }
    let mut manual_runs = Vec::new();
    let mut runs_by_id: BTreeMap<&str, &RunRecord> = BTreeMap::new();
    let mut runs_by_time: BTreeMap<DateTime<Utc>, Vec<&RunRecord>> = BTreeMap::new();
    for run in runs.iter().filter(|r| r.job.as_deref() == Some(&job.name)) {
        if is_manual(run) {
            let started = crate::platform::time::parse("startedAt", &run.started_at).ok();
            if started.is_some_and(in_window) {
                manual_runs.push(ManualRun {
                    run_id: run.run_id.clone(),
                    started_at: run.started_at.clone(),
                    started_by: run.started_by.clone(),
                    status: run.status,
                    exit_code: run.exit_code,
                    duration_seconds: run.duration_seconds,
                    log_uri: run.log_uri.clone(),
                });
            }
            continue;
        }
        runs_by_id.insert(&run.run_id, run);
        if let Some(t) = run_occurrence(run).filter(|t| in_window(*t)) {
            runs_by_time.entry(t).or_default().push(run);
        }
    }
    manual_runs.sort_by(|a, b| a.started_at.cmp(&b.started_at));

    let mut times: BTreeSet<DateTime<Utc>> = expected.clone();
    times.extend(by_time.keys());
    times.extend(runs_by_time.keys());

    let mut occurrences = Vec::new();
    let mut alerts = Vec::new();
    for t in times {
        let on_schedule = expected.contains(&t);
        let item = by_time.get(&t).copied();
        let runs_here = runs_by_time.get(&t).map(Vec::as_slice).unwrap_or_default();
        // The owner's run: the one the item names, else the one recorded for this time.
        let run = item
            .and_then(|i| runs_by_id.get(i.claimed_by.as_str()).copied())
            .or_else(|| runs_here.first().copied());
        let mut e = entry(t, on_schedule, item, run);
        if item.is_none() {
            e.fate = match run {
                Some(r) => Fate::of_run_status(r.status),
                None if now <= t + job.catch_up() => Fate::Pending,
                None => Fate::NoFate,
            };
        }
        let when = rfc3339(t);
        if !on_schedule && (e.fate.started_work() || run.is_some()) {
            alerts.push(Alert {
                kind: AlertKind::RanMoreOftenThanScheduled,
                scheduled_time: when.clone(),
                message: format!(
                    "{} ran at {when}, which is not an occurrence of its schedule ({} in {}){}",
                    job.name,
                    job.schedule,
                    job.timezone,
                    e.claimed_by
                        .as_deref()
                        .map(|b| format!("; claimed by {b}"))
                        .unwrap_or_default()
                ),
            });
        }
        if runs_here.len() > 1 {
            let ids: Vec<&str> = runs_here.iter().map(|r| r.run_id.as_str()).collect();
            alerts.push(Alert {
                kind: AlertKind::RanMoreOftenThanScheduled,
                scheduled_time: when.clone(),
                message: format!(
                    "{} has {} runs recorded for its occurrence at {when} (one is expected): {}",
                    job.name,
                    runs_here.len(),
                    ids.join(", ")
                ),
            });
        }
        if e.fate == Fate::NoFate {
            if !job.enabled {
                continue; // a disabled job's schedule implies nothing: no line, no alert
            }
            alerts.push(Alert {
                kind: AlertKind::NoFateAfterCatchUp,
                scheduled_time: when.clone(),
                message: format!(
                    "{} at {when} has no fate {}s after its time: never claimed within its \
                     catch-up window (schedule disabled? delivery lost?)",
                    job.name, job.catch_up_seconds
                ),
            });
        }
        occurrences.push(e);
    }

    let mut counts = Counts {
        expected: expected.len(),
        manual_runs: manual_runs.len(),
        ..Counts::default()
    };
    for e in &occurrences {
        *counts.fates.entry(e.fate.as_str().to_string()).or_default() += 1;
        counts.duplicates_suppressed += e.duplicates_suppressed;
    }
    Ledger {
        job: job.name.clone(),
        schedule: job.schedule.clone(),
        timezone: job.timezone.clone(),
        enabled: job.enabled,
        catch_up_seconds: job.catch_up_seconds,
        since: rfc3339(since),
        until: rfc3339(until),
        now: rfc3339(now),
        occurrences,
        manual_runs,
        alerts,
        counts,
    }
}

/// The scheduled-job metrics (CloudWatch EMF, namespace `batchless`, dimensions
/// `Environment` + `Job` and `Environment` alone), emitted by the step where each event happens.
pub mod metric {
    use crate::platform::metrics::{self, Unit};

    /// `claim-occurrence`: this delivery won its occurrence.
    pub const CLAIMED: &str = "OccurrencesClaimed";
    /// `claim-occurrence`: a duplicate delivery (or legacy claim) that ran nothing.
    pub const DUPLICATES: &str = "DuplicatesSuppressed";
    /// `missed-run-check`: occurrences claimed as missed.
    pub const MISSED: &str = "OccurrencesMissed";
    /// Recorded but not run; the `Reason` property says why (`stale` at the claim, `running`
    /// at the lease, `paused`).
    pub const SKIPPED: &str = "OccurrencesSkipped";
    /// `run-job-task`: from the scheduled time to the task's start.
    pub const LATENESS: &str = "LatenessMs";
    /// `run-job-task`: 1 when that lateness is over the job's catch-up window, else 0.
    pub const LATE_OVER_CATCH_UP: &str = "LatenessOverCatchUp";

    /// One EMF line for `job`.
    pub fn emit(environment: &str, job: &str, values: &[(&str, Unit, f64)], reason: Option<&str>) {
        let props: Vec<(&str, serde_json::Value)> = reason
            .map(|r| ("Reason", serde_json::Value::from(r)))
            .into_iter()
            .collect();
        metrics::emit(
            &[("Environment", environment), ("Job", job)],
            &[2, 1],
            values,
            &props,
        );
    }

    /// A count of one.
    pub fn count(environment: &str, job: &str, name: &str, reason: Option<&str>) {
        emit(environment, job, &[(name, Unit::Count, 1.0)], reason);
    }

    /// Pure: a scheduled run's lateness at `started` (milliseconds from its occurrence) and
    /// whether it is over the job's catch-up window; `None` for a manual run.
    pub fn lateness(
        run: &crate::jobs::workflow::JobRun,
        started: chrono::DateTime<chrono::Utc>,
    ) -> Option<(i64, bool)> {
        let t = crate::platform::time::parse("occurrence", run.occurrence.as_deref()?).ok()?;
        let ms = (started - t).num_milliseconds();
        Some((ms, ms > run.catch_up_seconds as i64 * 1000))
    }

    /// `run-job-task`: the task of a scheduled run started at `started`.
    pub fn task_started(
        run: &crate::jobs::workflow::JobRun,
        started: chrono::DateTime<chrono::Utc>,
    ) {
        if let Some((ms, over)) = lateness(run, started) {
            emit(
                &run.environment,
                &run.job,
                &[
                    (LATENESS, Unit::Milliseconds, ms as f64),
                    (LATE_OVER_CATCH_UP, Unit::Count, f64::from(u8::from(over))),
                ],
                None,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobsFile;

    fn t(s: &str) -> DateTime<Utc> {
        crate::platform::time::parse("t", s).unwrap()
    }

    fn job(name: &str) -> Job {
        JobsFile::embedded().get(name).unwrap().clone()
    }

    fn item(job: &str, at: &str, by: &str) -> Occurrence {
        Occurrence {
            claimed_at: rfc3339(t(at) + chrono::Duration::seconds(2)),
            ..Occurrence::new(job, t(at), "staging", by)
        }
    }

    fn run(job: &str, at: &str, id: &str, status: RunStatus) -> RunRecord {
        RunRecord {
            run_id: id.into(),
            workflow: "scheduled-job".into(),
            environment: "staging".into(),
            execution_name: id.rsplit(':').next().unwrap().into(),
            started_at: rfc3339(t(at) + chrono::Duration::seconds(2)),
            started_by: "scheduler".into(),
            status,
            job: Some(job.into()),
            trigger: Some("scheduled".into()),
            occurrence: Some(at.into()),
            occurrence_key: Some(crate::jobs::occurrence::key(job, t(at))),
            ..Default::default()
        }
    }

    fn fates(l: &Ledger) -> Vec<(&str, &str)> {
        l.occurrences
            .iter()
            .map(|e| (e.scheduled_time.as_str(), e.fate.as_str()))
            .collect()
    }

    /// purge-expired-sessions: `cron(30 * * * ? *)` UTC, catch-up 1h. Every fate at once.
    #[test]
    fn every_occurrence_gets_its_fate() {
        let j = job("purge-expired-sessions");
        let ran = run(
            "purge-expired-sessions",
            "2026-11-28T01:30:00Z",
            "arn:e1",
            RunStatus::Succeeded,
        );
        let ran = RunRecord {
            exit_code: Some(0),
            duration_seconds: Some(12),
            log_uri: Some("s3://logs/e1.log".into()),
            ..ran
        };
        let mut dup = item("purge-expired-sessions", "2026-11-28T01:30:00Z", "arn:e1");
        dup.run_status = Some(RunStatus::Succeeded);
        dup.duplicate_claimers = vec!["arn:e1b".into(), "legacy:box:7".into()];
        let failed = RunRecord {
            exit_code: Some(3),
            ..run(
                "purge-expired-sessions",
                "2026-11-28T02:30:00Z",
                "arn:e2",
                RunStatus::Failed,
            )
        };
        let items = vec![
            dup,
            item("purge-expired-sessions", "2026-11-28T02:30:00Z", "arn:e2"),
            Occurrence {
                run_status: Some(RunStatus::SkippedStale),
                ..item("purge-expired-sessions", "2026-11-28T03:30:00Z", "arn:e3")
            },
            Occurrence {
                run_status: Some(RunStatus::SkippedRunning),
                ..item("purge-expired-sessions", "2026-11-28T04:30:00Z", "arn:e4")
            },
            Occurrence {
                status: OccurrenceStatus::Paused,
                claimed_by: "paused".into(),
                ..item("purge-expired-sessions", "2026-11-28T05:30:00Z", "paused")
            },
            Occurrence {
                status: OccurrenceStatus::Missed,
                source: "missed-run-check".into(),
                ..item(
                    "purge-expired-sessions",
                    "2026-11-28T06:30:00Z",
                    "missed-run-check",
                )
            },
            Occurrence {
                source: "legacy".into(),
                ..item(
                    "purge-expired-sessions",
                    "2026-11-28T07:30:00Z",
                    "legacy:box:1",
                )
            },
            // 08:30: nothing (no fate, past the window); 09:30: nothing yet (pending).
            item("purge-expired-sessions", "2026-11-28T10:30:00Z", "arn:e10"),
        ];
        let runs = vec![
            ran,
            failed,
            run(
                "purge-expired-sessions",
                "2026-11-28T10:30:00Z",
                "arn:e10",
                RunStatus::Running,
            ),
        ];
        let l = ledger(
            &j,
            t("2026-11-28T01:00:00Z"),
            t("2026-11-28T12:00:00Z"),
            t("2026-11-28T10:30:00Z"),
            &items,
            &runs,
        );
        assert_eq!(
            fates(&l),
            vec![
                ("2026-11-28T01:30:00Z", "ran"),
                ("2026-11-28T02:30:00Z", "failed"),
                ("2026-11-28T03:30:00Z", "skipped (stale)"),
                ("2026-11-28T04:30:00Z", "skipped (running)"),
                ("2026-11-28T05:30:00Z", "skipped (paused)"),
                ("2026-11-28T06:30:00Z", "missed"),
                ("2026-11-28T07:30:00Z", "claimed (legacy)"),
                ("2026-11-28T08:30:00Z", "no fate"),
                ("2026-11-28T09:30:00Z", "pending"),
                ("2026-11-28T10:30:00Z", "running"),
            ]
        );
        let first = &l.occurrences[0];
        assert_eq!(first.exit_code, Some(0));
        assert_eq!(first.duration_seconds, Some(12));
        assert_eq!(first.log_uri.as_deref(), Some("s3://logs/e1.log"));
        assert_eq!(first.duplicates_suppressed, 2);
        assert_eq!(first.late_by_seconds, Some(2));
        assert_eq!(l.occurrences[1].exit_code, Some(3));
        // Up to now (10:30) the schedule implies 01:30 .. 10:30; 11:30 is not expected yet.
        assert_eq!(l.counts.expected, 10);
        assert_eq!(l.counts.duplicates_suppressed, 2);
        assert_eq!(l.counts.fates["no fate"], 1);
        // Exactly one alert: 08:30 has no fate past its catch-up window.
        assert_eq!(l.alerts.len(), 1, "{:?}", l.alerts);
        assert_eq!(l.alerts[0].kind, AlertKind::NoFateAfterCatchUp);
        assert_eq!(l.alerts[0].scheduled_time, "2026-11-28T08:30:00Z");
        assert_eq!(
            l.unaccounted()
                .map(|e| e.scheduled_time.as_str())
                .collect::<Vec<_>>(),
            vec!["2026-11-28T08:30:00Z"]
        );
        // The JSON says the same words.
        let v = serde_json::to_value(&l).unwrap();
        assert_eq!(v["occurrences"][4]["fate"], "skipped (paused)");
        assert_eq!(v["occurrences"][0]["duplicatesSuppressed"], 2);
        assert_eq!(v["alerts"][0]["kind"], "noFateAfterCatchUp");
    }

    /// purge-expired-sessions' ledger over 01:00-02:00 (one occurrence, 01:30) at `now`.
    fn purge_hour(now: &str, items: &[Occurrence], runs: &[RunRecord]) -> Ledger {
        let j = job("purge-expired-sessions");
        ledger(
            &j,
            t("2026-11-28T01:00:00Z"),
            t("2026-11-28T02:00:00Z"),
            t(now),
            items,
            runs,
        )
    }

    #[test]
    fn a_run_record_that_ended_outranks_the_item_cleanup_does_not_touch() {
        let at = "2026-11-28T01:30:00Z";
        let l = purge_hour(
            "2026-11-28T03:00:00Z",
            &[item("purge-expired-sessions", at, "arn:e1")],
            &[run(
                "purge-expired-sessions",
                at,
                "arn:e1",
                RunStatus::Aborted,
            )],
        );
        assert_eq!(fates(&l), vec![(at, "aborted")]);
        assert_eq!(l.occurrences[0].run_id.as_deref(), Some("arn:e1"));
    }

    #[test]
    fn an_item_off_the_schedule_is_an_alert_that_it_ran_too_often() {
        let j = job("purge-expired-sessions");
        // 01:45 is not an occurrence of `cron(30 * * * ? *)`: a forged or hand-made claim.
        let items = vec![
            item("purge-expired-sessions", "2026-11-28T01:30:00Z", "arn:e1"),
            Occurrence {
                source: "legacy".into(),
                ..item(
                    "purge-expired-sessions",
                    "2026-11-28T01:45:00Z",
                    "legacy:box:1",
                )
            },
        ];
        let l = purge_hour("2026-11-28T02:00:00Z", &items, &[]);
        assert_eq!(l.counts.expected, 1);
        assert_eq!(l.occurrences.len(), 2);
        assert!(!l.occurrences[1].on_schedule);
        let alerts: Vec<&Alert> = l.ran_more_often().collect();
        assert_eq!(alerts.len(), 1, "{:?}", l.alerts);
        assert_eq!(alerts[0].scheduled_time, "2026-11-28T01:45:00Z");
        assert!(
            alerts[0].message.contains("not an occurrence"),
            "{}",
            alerts[0].message
        );
        assert!(alerts[0].message.contains("legacy:box:1"));
        // A paused or missed record off the schedule ran nothing: no alert.
        let items = vec![Occurrence {
            status: OccurrenceStatus::Paused,
            ..item("purge-expired-sessions", "2026-11-28T01:45:00Z", "p")
        }];
        let l = ledger(
            &j,
            t("2026-11-28T01:31:00Z"),
            t("2026-11-28T02:00:00Z"),
            t("2026-11-28T02:00:00Z"),
            &items,
            &[],
        );
        assert!(l.alerts.is_empty(), "{:?}", l.alerts);
    }

    #[test]
    fn two_runs_for_one_occurrence_are_an_alert() {
        let at = "2026-11-28T01:30:00Z";
        let l = purge_hour(
            "2026-11-28T03:00:00Z",
            &[item("purge-expired-sessions", at, "arn:e1")],
            &[
                run("purge-expired-sessions", at, "arn:e1", RunStatus::Succeeded),
                run("purge-expired-sessions", at, "arn:e2", RunStatus::Succeeded),
            ],
        );
        let alerts: Vec<&Alert> = l.ran_more_often().collect();
        assert_eq!(alerts.len(), 1, "{:?}", l.alerts);
        assert!(
            alerts[0].message.contains("2 runs"),
            "{}",
            alerts[0].message
        );
        // A run recorded off the schedule, with no item, is one too.
        let l = purge_hour(
            "2026-11-28T03:00:00Z",
            &[item("purge-expired-sessions", at, "arn:e1")],
            &[run(
                "purge-expired-sessions",
                "2026-11-28T01:31:00Z",
                "arn:x",
                RunStatus::Succeeded,
            )],
        );
        assert_eq!(l.ran_more_often().count(), 1, "{:?}", l.alerts);
        assert_eq!(l.occurrences[1].fate, Fate::Ran);
    }

    #[test]
    fn manual_runs_are_listed_apart_and_other_jobs_ignored() {
        let manual = RunRecord {
            trigger: Some("manual".into()),
            occurrence: None,
            occurrence_key: Some("purge-expired-sessions#manual#m1".into()),
            started_by: "alice".into(),
            exit_code: Some(0),
            ..run(
                "purge-expired-sessions",
                "2026-11-28T01:40:00Z",
                "arn:m1",
                RunStatus::Succeeded,
            )
        };
        let other = run(
            "sync-exchange-rates",
            "2026-11-28T01:31:00Z",
            "arn:o",
            RunStatus::Succeeded,
        );
        let items = vec![
            item("purge-expired-sessions", "2026-11-28T01:30:00Z", "arn:e1"),
            item("sync-exchange-rates", "2026-11-28T01:31:00Z", "arn:o"),
        ];
        let l = purge_hour("2026-11-28T03:00:00Z", &items, &[manual, other]);
        assert_eq!(l.occurrences.len(), 1);
        assert_eq!(l.manual_runs.len(), 1);
        assert_eq!(l.manual_runs[0].started_by, "alice");
        assert!(l.alerts.is_empty(), "{:?}", l.alerts);
    }

    /// The ledger's expected occurrences are the schedule's: in New York, 02:30 on 2027-03-14
    /// does not exist (nothing is expected, nothing is missing), and 01:30 on 2027-11-07 happens
    /// twice but is one occurrence (a claim at the later instant would be off the schedule).
    #[test]
    fn dst_gaps_expect_nothing_and_folds_expect_once() {
        let mut j = job("purge-expired-sessions");
        j.schedule = "cron(30 1,2 * * ? *)".into();
        j.timezone = "America/New_York".into();
        let l = ledger(
            &j,
            t("2027-03-14T00:00:00Z"),
            t("2027-03-14T12:00:00Z"),
            t("2027-03-15T00:00:00Z"),
            &[],
            &[],
        );
        // 01:30 EST = 06:30Z; 02:30 does not exist.
        assert_eq!(fates(&l), vec![("2027-03-14T06:30:00Z", "no fate")]);
        let later_instant = "2027-11-07T06:30:00Z"; // 01:30 EST, the fold's second pass
        let l = ledger(
            &j,
            t("2027-11-07T00:00:00Z"),
            t("2027-11-07T12:00:00Z"),
            t("2027-11-08T00:00:00Z"),
            &[
                item("purge-expired-sessions", "2027-11-07T05:30:00Z", "arn:a"),
                item("purge-expired-sessions", "2027-11-07T07:30:00Z", "arn:b"),
                item("purge-expired-sessions", later_instant, "arn:c"),
            ],
            &[],
        );
        assert_eq!(l.counts.expected, 2);
        let alerts: Vec<&str> = l
            .ran_more_often()
            .map(|a| a.scheduled_time.as_str())
            .collect();
        assert_eq!(alerts, vec![later_instant]);
    }

    #[test]
    fn lateness_is_from_the_occurrence_and_compared_with_the_catch_up_window() {
        let jobs = JobsFile::embedded();
        let exec = crate::sfn::Execution {
            id: "arn:aws:states:us-east-1:1:execution:m:e1".into(),
            name: "e1".into(),
            start_time: "2026-11-28T13:15:02Z".into(),
        };
        let run = crate::jobs::workflow::validate(
            serde_json::json!({"job": "sync-exchange-rates", "scheduledTime": "2026-11-28T13:15:00Z"}),
            &exec,
            "staging",
            &jobs,
        )
        .unwrap();
        // catch-up 10 min
        assert_eq!(
            metric::lateness(&run, t("2026-11-28T13:15:02.500Z")),
            Some((2500, false))
        );
        assert_eq!(
            metric::lateness(&run, t("2026-11-28T13:25:00.001Z")),
            Some((600_001, true))
        );
        let manual = crate::jobs::workflow::validate(
            serde_json::json!({"job": "sync-exchange-rates", "manual": {}}),
            &exec,
            "staging",
            &jobs,
        )
        .unwrap();
        assert_eq!(metric::lateness(&manual, t("2026-11-28T13:25:00Z")), None);
    }

    #[test]
    fn a_disabled_job_implies_nothing_missing() {
        let j = job("weekly-digest");
        assert!(!j.enabled, "weekly-digest is disabled in the jobs file");
        let l = ledger(
            &j,
            t("2026-11-01T00:00:00Z"),
            t("2026-11-30T00:00:00Z"),
            t("2026-11-30T00:00:00Z"),
            &[],
            &[],
        );
        assert!(l.occurrences.is_empty() && l.alerts.is_empty(), "{l:?}");
    }
}
