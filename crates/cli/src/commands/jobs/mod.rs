//! `batchless jobs ...`: the scheduled jobs — list, validate, generate the template's schedules,
//! claim an occurrence for the legacy crontab (the cut-over), run now, cancel, and (locally)
//! fire a schedule's deliveries. `validate`, `generate` and `list --offline` need no AWS.

pub mod backfill;
pub mod history;
pub mod pause;
pub mod template;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use batchless_core::jobs::occurrence::{self, Claim, Occurrence};
use batchless_core::jobs::JobsFile;
use batchless_core::platform::aws::AwsResultExt;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::context::{repo_root, Aws, Context};
use crate::parse;
use crate::sfn;

/// `jobs claim`: the occurrence was already claimed (by the scheduler or another host): do not run.
pub const EXIT_ALREADY_CLAIMED: u8 = 3;
/// `jobs claim`: no occurrence of the job is due at that time (not on its schedule, or past
/// its catch-up window): do not run.
pub const EXIT_NOT_DUE: u8 = 4;
/// `jobs claim`: the job is paused (`jobs pause`): the occurrence is claimed PAUSED; do not run.
pub const EXIT_PAUSED: u8 = 5;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Each job: schedule, policy, next occurrences and last runs.
    List(ListArgs),
    /// Validate the jobs file (errors name the job and the field); exit 1 if invalid.
    Validate(FileArgs),
    /// Rewrite the template's generated schedules from the jobs file (or --check them).
    Generate(GenerateArgs),
    /// Claim an occurrence for the legacy crontab: exit 0 to run it, 3 if already claimed, 4 if none is due.
    Claim(ClaimArgs),
    /// Run a job now (never collides with a scheduled occurrence) and follow it.
    Run(RunArgs),
    /// Stop a running job: its execution is stopped and cleanup stops its task.
    Cancel(CancelArgs),
    /// Local replica only: deliver a schedule's target input N times concurrently.
    Fire(FireArgs),
    /// The occurrences around a date, with the time zone's DST gaps and folds and what they do.
    Next(NextArgs),
    /// The occurrence ledger: each occurrence the schedule implies, with its fate, and alerts.
    History(history::HistoryArgs),
    /// Pause a job's schedule with a note (recorded on AWS and in the jobs file).
    Pause(pause::PauseArgs),
    /// Resume a paused job's schedule.
    Resume(pause::ResumeArgs),
    /// Run the occurrences of a past range through the same claim (never one that already ran).
    Backfill(backfill::BackfillArgs),
}

#[derive(Debug, Args)]
pub struct NextArgs {
    pub job: String,
    /// The date (or time) to look around (RFC 3339, or YYYY-MM-DD) [default: now].
    #[arg(long, value_name = "DATE")]
    pub around: Option<String>,
    /// How many days either side.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(i64).range(1..=31))]
    pub days: i64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub file: FileArgs,
}

#[derive(Debug, Args)]
pub struct FileArgs {
    /// The jobs file [default: the one built into this binary (infra/jobs.yaml)].
    #[arg(long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// How many next occurrences to show.
    #[arg(long, default_value_t = 3)]
    pub next: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Only the jobs file (no history from AWS).
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// The template to rewrite [default: <repo>/infra/template.yaml].
    #[arg(long, value_name = "PATH")]
    pub template: Option<PathBuf>,
    /// Do not write; exit 1 if the template disagrees with the jobs file.
    #[arg(long)]
    pub check: bool,
    /// With --check: also exit 1 while a schedule's state on AWS (paused or not) disagrees
    /// with the jobs file.
    #[arg(long, requires = "check")]
    pub live: bool,
}

#[derive(Debug, Args)]
pub struct ClaimArgs {
    /// The job (as named in the jobs file).
    pub job: String,
    /// Claim the latest occurrence due now (within the job's catch-up window).
    #[arg(long, conflicts_with = "at", required_unless_present = "at")]
    pub now: bool,
    /// Claim the occurrence at this time (RFC 3339; must be on the job's schedule).
    #[arg(long, value_name = "RFC3339", value_parser = parse::time)]
    pub at: Option<DateTime<Utc>>,
    /// Who claims (recorded) [default: legacy:<hostname>:<pid>].
    #[arg(long)]
    pub claimant: Option<String>,
    #[command(flatten)]
    pub file: FileArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub job: String,
    /// A parameter the job declares in the jobs file (`manual.parameters`; repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse::key_value)]
    pub parameters: Vec<(String, String)>,
    /// An environment variable the job allows (`manual.environment`; repeatable).
    #[arg(long = "var", value_name = "K=V", value_parser = parse::key_value)]
    pub variables: Vec<(String, String)>,
    /// A timeout for this run instead of the job's.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Print the execution ARN and return.
    #[arg(long)]
    pub no_follow: bool,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run: its execution ARN or name.
    pub run: String,
}

#[derive(Debug, Args)]
pub struct FireArgs {
    pub job: String,
    /// The scheduled time to deliver (RFC 3339) [default: now].
    #[arg(long, value_name = "RFC3339", value_parser = parse::time)]
    pub at: Option<DateTime<Utc>>,
    /// Deliveries of the same occurrence, concurrently (at-least-once delivery).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub deliveries: u32,
}

pub fn load(file: &FileArgs) -> Result<JobsFile> {
    let (text, source) = match &file.file {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (
            batchless_core::jobs::config::EMBEDDED.to_string(),
            "infra/jobs.yaml (built in)".into(),
        ),
    };
    JobsFile::parse(&text)
        .map_err(|errors| anyhow::anyhow!("{source} is invalid:\n  {}", errors.join("\n  ")))
}

fn occurrences_table(aws: &Aws) -> String {
    aws.resource("job-occurrences")
}

pub async fn run(cx: &Context, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Validate(a) => match load(&a) {
            Ok(f) => {
                println!("{} jobs, valid", f.jobs.len());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Generate(a) if a.live => {
            let aws = cx.aws().await?;
            let jobs = load(&a.file)?;
            let code = generate(a)?;
            let d = pause::disagreements(&aws.scheduler(), &aws.environment, &jobs).await?;
            for l in &d {
                eprintln!("{l}");
            }
            Ok(if d.is_empty() {
                code
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Generate(a) => generate(a),
        Command::Pause(a) => pause::pause_job(cx.aws().await?, a).await,
        Command::Resume(a) => pause::resume_job(cx.aws().await?, a).await,
        Command::Backfill(a) => backfill::run(cx.aws().await?, a).await,
        Command::List(a) if a.offline => list(None, a).await,
        Command::List(a) => list(Some(cx.aws().await?), a).await,
        Command::Claim(a) => claim(cx.aws().await?, a).await,
        Command::Run(a) => run_now(cx.aws().await?, a).await,
        Command::Cancel(a) => cancel(cx.aws().await?, a).await,
        Command::Fire(a) => fire(cx.aws().await?, a).await,
        Command::Next(a) => next(a),
        Command::History(a) => history::run(cx.aws().await?, a).await,
    }
}

fn generate(a: GenerateArgs) -> Result<ExitCode> {
    let jobs = load(&a.file)?;
    let path = match a.template {
        Some(p) => p,
        None => repo_root()?.join("infra").join("template.yaml"),
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    if a.check {
        return match template::check(&text, &jobs) {
            Ok(()) => {
                println!("{}: schedules agree with the jobs file", path.display());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
        };
    }
    let new = template::rewrite(&text, &jobs).map_err(anyhow::Error::msg)?;
    if new != text {
        std::fs::write(&path, new).with_context(|| format!("writing {}", path.display()))?;
        println!("{}: {} schedules written", path.display(), jobs.jobs.len());
    } else {
        println!("{}: already up to date", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn claimant_default() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    format!("legacy:{host}:{}", std::process::id())
}

/// Pure: the occurrence a claim is for, or why there is none.
pub fn occurrence_for(
    job: &batchless_core::jobs::Job,
    now: DateTime<Utc>,
    at: Option<DateTime<Utc>>,
) -> Result<DateTime<Utc>, String> {
    let schedule = job.parsed_schedule();
    match at {
        Some(t) => {
            let t = batchless_core::platform::time::truncate_to_minute(t);
            if schedule.is_occurrence(t) {
                Ok(t)
            } else {
                Err(format!(
                    "{} is not an occurrence of {} ({} in {})",
                    batchless_core::platform::time::rfc3339(t),
                    job.name,
                    job.schedule,
                    job.timezone
                ))
            }
        }
        None => schedule
            .latest_at_or_before(now, job.catch_up())
            .ok_or_else(|| {
                format!(
                "no occurrence of {} is due now: none within its catch-up window of {}s ({} in {})",
                job.name, job.catch_up_seconds, job.schedule, job.timezone
            )
            }),
    }
}

async fn claim(aws: &Aws, a: ClaimArgs) -> Result<ExitCode> {
    let jobs = load(&a.file)?;
    let job = jobs
        .get(&a.job)
        .with_context(|| format!("no job {:?} in the jobs file", a.job))?;
    let now = Utc::now();
    let t = match occurrence_for(job, now, a.at) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}: not claimed, do not run");
            return Ok(ExitCode::from(EXIT_NOT_DUE));
        }
    };
    // A paused job's occurrence is claimed PAUSED (so it is accounted for) and not run.
    let paused = batchless_core::jobs::pause::live(&aws.scheduler(), &aws.environment, &job.name)
        .await
        .context("is the job paused? (scheduler:GetSchedule on its schedule)")?
        .is_paused(job);
    let claimant = a.claimant.unwrap_or_else(claimant_default);
    let occ = Occurrence {
        claimed_at: batchless_core::platform::time::rfc3339(now),
        source: "legacy".into(),
        status: if paused {
            occurrence::OccurrenceStatus::Paused
        } else {
            occurrence::OccurrenceStatus::Claimed
        },
        ..Occurrence::new(&job.name, t, &aws.environment, &claimant)
    };
    let table = occurrences_table(aws);
    match occurrence::claim(&aws.dynamodb(), &table, &occ).await? {
        // (A legacy claim is unsealed: it never replaces what it finds.)
        Claim::Won | Claim::Replaced(_) if paused => {
            eprintln!(
                "{} is paused: {} claimed PAUSED for {}: do not run",
                job.name, occ.occurrence_key, occ.claimed_by
            );
            Ok(ExitCode::from(EXIT_PAUSED))
        }
        Claim::Won | Claim::Replaced(_) => {
            println!(
                "claimed {} for {}: run it",
                occ.occurrence_key, occ.claimed_by
            );
            Ok(ExitCode::SUCCESS)
        }
        Claim::Duplicate(owner) => {
            occurrence::record_duplicate(
                &aws.dynamodb(),
                &table,
                &occ.occurrence_key,
                &occ.claimed_by,
            )
            .await?;
            eprintln!(
                "{} was already claimed by {} at {}: do not run",
                occ.occurrence_key, owner.claimed_by, owner.claimed_at
            );
            Ok(ExitCode::from(EXIT_ALREADY_CLAIMED))
        }
    }
}

async fn list(aws: Option<&Aws>, a: ListArgs) -> Result<ExitCode> {
    let jobs = load(&a.file)?;
    let now = Utc::now();
    let mut out = Vec::new();
    for j in &jobs.jobs {
        let next: Vec<String> = j
            .parsed_schedule()
            .next(now, a.next)
            .into_iter()
            .map(batchless_core::platform::time::rfc3339)
            .collect();
        let last = match aws {
            Some(aws) => occurrence::list(&aws.dynamodb(), &occurrences_table(aws), &j.name, 3)
                .await
                .unwrap_or_default(),
            None => vec![],
        };
        // Paused? The schedule on AWS says (who, when, why in its description); offline, the
        // jobs file's `paused:`.
        let live = match aws {
            Some(aws) => {
                batchless_core::jobs::pause::live(&aws.scheduler(), &aws.environment, &j.name)
                    .await
                    .ok()
            }
            None => None,
        };
        let paused = match &live {
            Some(l) if l.is_paused(j) => Some(l.pause.clone().map_or(json!({}), |p| json!(p))),
            Some(_) => None,
            None => j.paused.as_ref().map(|p| json!(p)),
        };
        out.push(json!({
            "job": j.name,
            "schedule": j.schedule,
            "timezone": j.timezone,
            "enabled": j.enabled,
            "concurrency": j.concurrency.as_str(),
            "timeoutSeconds": j.timeout_seconds,
            "catchUpSeconds": j.catch_up_seconds,
            "command": j.command,
            "next": next,
            "paused": paused,
            "scheduleState": live.as_ref().map(|l| if l.enabled { "ENABLED" } else { "DISABLED" }),
            "resumed": live.as_ref().and_then(|l| l.resumed.as_ref()).map(|p| json!(p)),
            "last": last.iter().map(|o| json!({
                "scheduledTime": o.scheduled_time,
                "claimedBy": o.claimed_by,
                "status": o.run_status.map_or(o.status.as_str(), |s| s.as_str()),
                "duplicates": o.duplicate_claimers.len(),
            })).collect::<Vec<_>>(),
        }));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    for j in &out {
        println!(
            "{}  {} {}  {}  {}{}",
            j["job"].as_str().unwrap_or_default(),
            j["schedule"].as_str().unwrap_or_default(),
            j["timezone"].as_str().unwrap_or_default(),
            j["concurrency"].as_str().unwrap_or_default(),
            j["command"].as_str().unwrap_or_default(),
            if j["enabled"] == false {
                "  (disabled)"
            } else {
                ""
            }
        );
        let next: Vec<&str> = j["next"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(p) = j["paused"].as_object() {
            println!(
                "    PAUSED by {} at {}: {}",
                p.get("by")
                    .and_then(Value::as_str)
                    .unwrap_or("? (schedule DISABLED outside `jobs pause`)"),
                p.get("at").and_then(Value::as_str).unwrap_or("?"),
                p.get("note").and_then(Value::as_str).unwrap_or("")
            );
        } else if let Some(r) = j["resumed"].as_object() {
            println!(
                "    resumed by {} at {}: {}",
                r.get("by").and_then(Value::as_str).unwrap_or_default(),
                r.get("at").and_then(Value::as_str).unwrap_or_default(),
                r.get("note").and_then(Value::as_str).unwrap_or_default()
            );
        }
        println!("    next: {}", next.join(", "));
        for l in j["last"].as_array().into_iter().flatten() {
            println!(
                "    last: {}  {}  by {}{}",
                l["scheduledTime"].as_str().unwrap_or_default(),
                l["status"].as_str().unwrap_or_default(),
                l["claimedBy"].as_str().unwrap_or_default(),
                match l["duplicates"].as_u64() {
                    Some(n) if n > 0 => format!("  ({n} duplicate deliveries)"),
                    _ => String::new(),
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The execution input of a manual run (the decision endpoint writes in who asks).
pub fn manual_input(a: &RunArgs) -> Value {
    let map = |kv: &[(String, String)]| -> serde_json::Map<String, Value> {
        kv.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect()
    };
    let mut manual = json!({
        "parameters": map(&a.parameters),
        "environment": map(&a.variables),
    });
    if let Some(t) = a.timeout {
        manual["timeoutSeconds"] = json!(t);
    }
    json!({"job": a.job, "manual": manual})
}

/// `jobs run`: a manual run of the job, followed.
async fn run_now(aws: &Aws, a: RunArgs) -> Result<ExitCode> {
    let jobs = batchless_core::jobs::JobsFile::embedded();
    if jobs.get(&a.job).is_none() {
        bail!("no job {:?} in the jobs file", a.job);
    }
    let input = manual_input(&a);
    let client = aws.sfn();
    let machine = sfn::require_state_machine(aws, &client, "scheduled-job").await?;
    let mut name = format!(
        "manual-{}-{}-{}",
        a.job,
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    name.truncate(80);
    let arn = sfn::submit(aws, &client, "scheduled-job", &machine, &name, &input).await?;
    eprintln!("started {arn}");
    if a.no_follow {
        println!("{arn}");
        return Ok(ExitCode::SUCCESS);
    }
    sfn::follow(&client, &arn, Duration::from_millis(1000)).await
}

async fn cancel(aws: &Aws, a: CancelArgs) -> Result<ExitCode> {
    let client = aws.sfn();
    let arn = if a.run.starts_with("arn:") {
        a.run.clone()
    } else {
        let machine = sfn::require_state_machine(aws, &client, "scheduled-job").await?;
        format!(
            "{}:{}",
            machine.replacen(":stateMachine:", ":execution:", 1),
            a.run
        )
    };
    client
        .stop_execution()
        .execution_arn(&arn)
        .error("JobCancelled")
        .cause("cancelled with `batchless jobs cancel`")
        .send()
        .await
        .aws("StopExecution")?;
    println!("stopped {arn}; cleanup stops its task and releases its lease");
    Ok(ExitCode::SUCCESS)
}

/// `jobs next --around`: pure (no AWS).
fn next(a: NextArgs) -> Result<ExitCode> {
    let jobs = load(&a.file)?;
    let job = jobs
        .get(&a.job)
        .with_context(|| format!("no job {:?} in the jobs file", a.job))?;
    let around = match &a.around {
        None => Utc::now(),
        Some(d) if d.len() == 10 => {
            parse::time(&format!("{d}T12:00:00Z")).map_err(|e| anyhow::anyhow!("--around: {e}"))?
        }
        Some(d) => parse::time(d).map_err(|e| anyhow::anyhow!("--around: {e}"))?,
    };
    let p = batchless_core::jobs::schedule::preview(
        &job.parsed_schedule(),
        &job.timezone,
        around,
        a.days,
        500,
    )
    .map_err(anyhow::Error::msg)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}  {} in {}", job.name, job.schedule, p.timezone);
    for tr in &p.transitions {
        println!(
            "  {} {}: {} -> {}, local {} to {} {}",
            batchless_core::platform::time::rfc3339(tr.at),
            if tr.gap {
                "spring forward"
            } else {
                "fall back"
            },
            tr.offset_before,
            tr.offset_after,
            tr.local_from,
            tr.local_to,
            if tr.gap {
                "does not exist"
            } else {
                "happens twice"
            }
        );
        for line in &tr.affected {
            println!("    {line}");
        }
    }
    if p.transitions.is_empty() {
        println!("  no offset change within {} days", a.days);
    }
    for (utc, local) in &p.occurrences {
        println!(
            "  {}  {local}",
            batchless_core::platform::time::rfc3339(*utc)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn fire(aws: &Aws, a: FireArgs) -> Result<ExitCode> {
    let Some(stack) = &aws.stack else {
        bail!(
            "`jobs fire` works on a local replica stack (--stack NAME); on AWS the Scheduler fires"
        );
    };
    let at = a.at.unwrap_or_else(Utc::now);
    let body = json!({
        "schedule": template::schedule_name(&aws.environment, &a.job),
        "at": batchless_core::platform::time::rfc3339(at),
        "deliveries": a.deliveries,
    });
    let resp = reqwest::Client::new()
        .post(format!("{}/_replica/scheduler/fire", stack.endpoint))
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("fire failed: {status} {v}");
    }
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse::time(s).unwrap()
    }

    #[test]
    fn claims_find_the_due_occurrence() {
        let jobs = JobsFile::embedded();
        let job = jobs.get("purge-expired-sessions").unwrap();
        assert_eq!(
            occurrence_for(job, t("2026-11-28T13:31:10Z"), None).unwrap(),
            t("2026-11-28T13:30:00Z")
        );
        assert_eq!(
            occurrence_for(job, t("2026-11-28T14:29:00Z"), None).unwrap(),
            t("2026-11-28T13:30:00Z")
        );
        assert_eq!(
            occurrence_for(
                job,
                t("2026-11-28T00:00:00Z"),
                Some(t("2026-11-28T13:30:40Z"))
            )
            .unwrap(),
            t("2026-11-28T13:30:00Z")
        );
        assert!(occurrence_for(
            job,
            t("2026-11-28T00:00:00Z"),
            Some(t("2026-11-28T13:31:00Z"))
        )
        .unwrap_err()
        .contains("not an occurrence"));
        let report = jobs.get("nightly-billing-report").unwrap();
        assert!(occurrence_for(report, t("2026-11-28T13:00:00Z"), None)
            .unwrap_err()
            .contains("catch-up window"));
    }

    #[test]
    fn the_commands_parse() {
        let parse = crate::testing::parse_subcommand::<Command>;
        let Command::Run(r) =
            parse(&["run", "x", "--var", "A=1", "--param", "b=c", "--no-follow"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.variables, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(r.parameters, vec![("b".to_string(), "c".to_string())]);
        assert!(parse(&["run", "x", "--arg", "db:drop"]).is_err());
        assert!(parse(&["claim", "x"]).is_err());
        assert!(parse(&["claim", "x", "--now", "--at", "2026-11-28T13:30:00Z"]).is_err());
        assert!(parse(&["fire", "x", "--deliveries", "50"]).is_ok());
        assert!(parse(&["fire", "x", "--deliveries", "0"]).is_err());
        assert!(parse(&["next", "x", "--around", "2027-11-07"]).is_ok());
        assert!(parse(&["next", "x", "--days", "0"]).is_err());
    }

    #[test]
    fn manual_inputs() {
        let a = RunArgs {
            job: "purge-expired-sessions".into(),
            parameters: vec![("month".into(), "2026-10".into())],
            variables: vec![("FAKE_EXIT_CODE".into(), "3".into())],
            timeout: Some(60),
            no_follow: true,
        };
        let v = manual_input(&a);
        assert_eq!(v["manual"]["environment"]["FAKE_EXIT_CODE"], "3");
        assert_eq!(v["manual"]["timeoutSeconds"], 60);
        // Who asks is the decision endpoint's to write, never the CLI's.
        assert!(v["manual"].get("requestedBy").is_none());
        assert_eq!(v["manual"]["parameters"]["month"], "2026-10");
    }
}
