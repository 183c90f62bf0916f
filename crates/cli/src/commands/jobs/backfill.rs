//! `batchless jobs backfill <job> --from T --to T [--dry-run] [--policy P]` (issue 20): the
//! occurrences of a past range (the schedule module's own iteration, DST rules included), each
//! with what is stored for it, then run through the scheduled-job workflow with the SAME claim
//! and occurrence key as a Scheduler delivery. What the claim step does differently for a
//! backfill (`"backfill": {"requestedBy", "policy"}` in the input) is only: no staleness past
//! the catch-up window, and an occurrence the missed-run check claimed `MISSED` may be taken
//! over (conditionally). An occurrence already `CLAIMED` (it ran, or was skipped) or `PAUSED`
//! is never run again: it is listed as skipped and not started (and were it started, the claim
//! would end it `duplicate`).
//!
//! Pacing: `forbid` and `replace` run one at a time (each followed live to its end before the
//! next starts); `allow` starts them all, then follows each. `--policy` overrides the job's
//! policy for these runs (it is also what the lease step applies).

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use batchless_core::jobs::occurrence::{self, Occurrence, OccurrenceStatus};
use batchless_core::jobs::{pause, Concurrency, Job, JobsFile};
use batchless_core::platform::time::rfc3339;
use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;
use serde_json::{json, Value};

use crate::context::Aws;
use crate::parse;
use crate::sfn::{self, PollArgs};

#[derive(Debug, Args)]
pub struct BackfillArgs {
    pub job: String,
    /// The range's start (RFC 3339, inclusive).
    #[arg(long, value_name = "RFC3339", value_parser = parse::time)]
    pub from: DateTime<Utc>,
    /// The range's end (RFC 3339, inclusive; not in the future).
    #[arg(long, value_name = "RFC3339", value_parser = parse::time)]
    pub to: DateTime<Utc>,
    /// List what would run and what is skipped; start nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The overlap policy for these runs [default: the job's]: forbid | allow | replace.
    #[arg(long, value_parser = policy)]
    pub policy: Option<Concurrency>,
    /// Refuse a range with more occurrences than this.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub max: u64,
    /// Print the plan as JSON (with --dry-run).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub poll: PollArgs,
}

fn policy(s: &str) -> Result<Concurrency, String> {
    match s {
        "forbid" => Ok(Concurrency::Forbid),
        "allow" => Ok(Concurrency::Allow),
        "replace" => Ok(Concurrency::Replace),
        _ => Err(format!("{s:?}: one of forbid, allow, replace")),
    }
}

/// What backfill does with one occurrence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum Action {
    /// Nothing is stored: run it.
    Run,
    /// The missed-run check claimed it MISSED: run it (the claim takes it over).
    RunMissed,
    /// Already claimed (ran, was skipped, or paused): never run again.
    Skip { status: String, claimed_by: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Planned {
    pub scheduled_time: String,
    pub occurrence_key: String,
    #[serde(flatten)]
    pub action: Action,
}

impl Planned {
    pub fn runs(&self) -> bool {
        matches!(self.action, Action::Run | Action::RunMissed)
    }
}

/// Pure: the range's occurrences (the schedule's own iteration) and what is stored for each.
pub fn plan(
    job: &Job,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
    max: usize,
    stored: &HashMap<String, Occurrence>,
) -> Result<Vec<Planned>, String> {
    if from > to {
        return Err(format!(
            "--from {} is after --to {}",
            rfc3339(from),
            rfc3339(to)
        ));
    }
    if to > now {
        return Err(format!(
            "--to {} is in the future: future occurrences are the scheduler's",
            rfc3339(to)
        ));
    }
    let times = job.parsed_schedule().occurrences(from, to, max + 1);
    if times.len() > max {
        return Err(format!(
            "more than {max} occurrences of {} between {} and {}: narrow the range or raise --max",
            job.name,
            rfc3339(from),
            rfc3339(to)
        ));
    }
    Ok(times
        .into_iter()
        .map(|t| {
            let key = occurrence::key(&job.name, t);
            let action = match stored.get(&key) {
                None => Action::Run,
                Some(o) if o.status == OccurrenceStatus::Missed => Action::RunMissed,
                Some(o) => Action::Skip {
                    status: o
                        .run_status
                        .map_or(o.status.as_str(), |s| s.as_str())
                        .to_string(),
                    claimed_by: o.claimed_by.clone(),
                },
            };
            Planned {
                scheduled_time: rfc3339(t),
                occurrence_key: key,
                action,
            }
        })
        .collect())
}

/// The execution input of one backfilled occurrence (the decision endpoint writes in who
/// asks).
pub fn input(job: &str, p: &Planned, policy: Option<Concurrency>) -> Value {
    let mut backfill = json!({});
    if let Some(p) = policy {
        backfill["policy"] = json!(p.as_str());
    }
    json!({"job": job, "scheduledTime": p.scheduled_time, "backfill": backfill})
}

fn execution_name(job: &str, p: &Planned) -> String {
    let t = p.scheduled_time.replace([':', '-'], "");
    let mut name = format!(
        "backfill-{job}-{}-{}",
        t.trim_end_matches("00Z"),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    name.truncate(80);
    name
}

fn print_plan(job: &Job, plan: &[Planned], policy: Concurrency) {
    println!(
        "{}: {} occurrences ({} to run, policy {})",
        job.name,
        plan.len(),
        plan.iter().filter(|p| p.runs()).count(),
        policy.as_str()
    );
    for p in plan {
        match &p.action {
            Action::Run => println!("  {}  run", p.scheduled_time),
            Action::RunMissed => println!("  {}  run (was MISSED)", p.scheduled_time),
            Action::Skip { status, claimed_by } => println!(
                "  {}  skip: already {status} by {claimed_by}",
                p.scheduled_time
            ),
        }
    }
}

pub async fn run(aws: &Aws, a: BackfillArgs) -> Result<ExitCode> {
    let jobs = JobsFile::embedded();
    let job = jobs
        .get(&a.job)
        .with_context(|| format!("no job {:?} in the jobs file", a.job))?;
    let table = aws.resource("job-occurrences");
    let db = aws.dynamodb();
    // The occurrences first (pure, bounded), then what is stored for each.
    let times = plan(
        job,
        a.from,
        a.to,
        Utc::now(),
        a.max as usize,
        &HashMap::new(),
    )
    .map_err(anyhow::Error::msg)?;
    let mut stored = HashMap::new();
    for p in &times {
        if let Some(o) = occurrence::get(&db, &table, &p.occurrence_key).await? {
            stored.insert(p.occurrence_key.clone(), o);
        }
    }
    let plan =
        plan(job, a.from, a.to, Utc::now(), a.max as usize, &stored).map_err(anyhow::Error::msg)?;
    let policy = a.policy.unwrap_or(job.concurrency);
    let live = pause::live(&aws.scheduler(), &aws.environment, &job.name).await?;
    if a.dry_run {
        if a.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print_plan(job, &plan, policy);
            if live.is_paused(job) {
                println!("  (the job is paused: resume it before backfilling)");
            }
            println!("dry run: nothing started");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if live.is_paused(job) {
        bail!(
            "{} is paused: resume it first (a backfilled occurrence would be claimed PAUSED)",
            job.name
        );
    }
    print_plan(job, &plan, policy);
    let client = aws.sfn();
    let machine = sfn::require_state_machine(aws, &client, "scheduled-job").await?;
    let todo: Vec<&Planned> = plan.iter().filter(|p| p.runs()).collect();
    let mut failed = 0;
    let start = |p: &Planned| {
        let body = input(&job.name, p, a.policy);
        let name = execution_name(&job.name, p);
        let (client, machine) = (client.clone(), machine.clone());
        async move { sfn::submit(aws, &client, "scheduled-job", &machine, &name, &body).await }
    };
    if policy == Concurrency::Allow {
        let mut arns = Vec::new();
        for p in &todo {
            let arn = start(p).await?;
            eprintln!("started {} {arn}", p.scheduled_time);
            arns.push(arn);
        }
        for arn in &arns {
            if sfn::follow(&client, arn, a.poll.interval()).await? != ExitCode::SUCCESS {
                failed += 1;
            }
        }
    } else {
        for p in &todo {
            let arn = start(p).await?;
            eprintln!("started {} {arn}", p.scheduled_time);
            if sfn::follow(&client, &arn, a.poll.interval()).await? != ExitCode::SUCCESS {
                failed += 1;
            }
        }
    }
    println!(
        "backfilled {} of {} occurrences of {}{}",
        todo.len(),
        plan.len(),
        job.name,
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse::time(s).unwrap()
    }

    fn stored(key: &str, status: OccurrenceStatus) -> (String, Occurrence) {
        (
            key.to_string(),
            Occurrence {
                occurrence_key: key.into(),
                source: "legacy".into(),
                status,
                ..Occurrence::new(
                    "purge-expired-sessions",
                    Utc::now(),
                    "staging",
                    "legacy:batch1",
                )
            },
        )
    }

    #[test]
    fn the_plan_runs_only_what_never_ran() {
        let jobs = JobsFile::embedded();
        let job = jobs.get("purge-expired-sessions").unwrap();
        let now = t("2026-12-01T20:00:00Z");
        let s: HashMap<_, _> = [
            stored(
                "purge-expired-sessions#2026-11-28T10:30:00Z",
                OccurrenceStatus::Claimed,
            ),
            stored(
                "purge-expired-sessions#2026-11-28T11:30:00Z",
                OccurrenceStatus::Missed,
            ),
            stored(
                "purge-expired-sessions#2026-11-28T13:30:00Z",
                OccurrenceStatus::Paused,
            ),
        ]
        .into_iter()
        .collect();
        let p = plan(
            job,
            t("2026-11-28T10:00:00Z"),
            t("2026-11-28T13:59:00Z"),
            now,
            50,
            &s,
        )
        .unwrap();
        let actions: Vec<_> = p
            .iter()
            .map(|p| (p.scheduled_time.as_str(), p.runs()))
            .collect();
        assert_eq!(
            actions,
            [
                ("2026-11-28T10:30:00Z", false),
                ("2026-11-28T11:30:00Z", true),
                ("2026-11-28T12:30:00Z", true),
                ("2026-11-28T13:30:00Z", false),
            ]
        );
        assert_eq!(p[1].action, Action::RunMissed);
        assert!(matches!(&p[0].action, Action::Skip { status, .. } if status == "CLAIMED"));
        // Bad ranges: a clear error, nothing planned.
        assert!(plan(
            job,
            t("2026-11-28T11:00:00Z"),
            t("2026-11-28T10:00:00Z"),
            now,
            50,
            &s
        )
        .unwrap_err()
        .contains("after"));
        assert!(plan(
            job,
            t("2026-11-28T10:00:00Z"),
            t("2026-12-02T10:00:00Z"),
            now,
            50,
            &s
        )
        .unwrap_err()
        .contains("future"));
        assert!(plan(
            job,
            t("2026-11-01T10:00:00Z"),
            t("2026-11-28T10:00:00Z"),
            now,
            50,
            &s
        )
        .unwrap_err()
        .contains("more than 50"));
    }

    #[test]
    fn the_input_is_a_delivery_marked_backfill() {
        let p = Planned {
            scheduled_time: "2026-11-28T11:30:00Z".into(),
            occurrence_key: "k".into(),
            action: Action::Run,
        };
        let mut v = input("purge-expired-sessions", &p, Some(Concurrency::Forbid));
        assert_eq!(
            v,
            json!({"job": "purge-expired-sessions", "scheduledTime": "2026-11-28T11:30:00Z",
                   "backfill": {"policy": "forbid"}})
        );
        // The decision endpoint writes in who asks ...
        use batchless_core::shared::submission::{fill, Workflow};
        fill(
            Workflow::ScheduledJob,
            &mut v,
            "arn:aws:iam::123456789012:user/alice",
            "alice",
        )
        .unwrap();
        assert_eq!(v["backfill"]["requestedBy"], "alice");
        // The workflow accepts it strictly, as the same occurrence key a delivery claims.
        let run = batchless_core::jobs::workflow::validate(
            v,
            &batchless_core::sfn::Execution {
                id: "arn:e".into(),
                name: "e".into(),
                start_time: "2026-12-01T20:00:00Z".into(),
            },
            "staging",
            &JobsFile::embedded(),
        )
        .unwrap();
        assert_eq!(
            run.occurrence_key,
            "purge-expired-sessions#2026-11-28T11:30:00Z"
        );
        assert!(run.backfill);
        assert_eq!(run.concurrency, Concurrency::Forbid);
        assert!(execution_name("purge-expired-sessions", &p).len() <= 80);
    }

    #[test]
    fn the_command_parses() {
        let parse = crate::testing::parse_subcommand::<crate::commands::jobs::Command>;
        let range = |more: &[&'static str]| {
            let mut args = vec![
                "backfill",
                "x",
                "--from",
                "2026-11-28T10:00:00Z",
                "--to",
                "2026-11-28T12:00:00Z",
            ];
            args.extend_from_slice(more);
            parse(&args)
        };
        assert!(range(&["--dry-run", "--policy", "allow"]).is_ok());
        assert!(range(&["--policy", "sometimes"]).is_err());
        assert!(parse(&["backfill", "x", "--from", "2026-11-28T10:00:00Z"]).is_err());
        assert!(parse(&["pause", "x"]).is_err(), "--note is required");
        assert!(parse(&["pause", "x", "--note", "why"]).is_ok());
        assert!(parse(&["resume", "x"]).is_ok());
    }
}
