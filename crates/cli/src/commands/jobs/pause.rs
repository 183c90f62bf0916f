//! `batchless jobs pause <job> --note ...` / `jobs resume <job> [--note ...]` (issue 20).
//!
//! 1. The schedule on AWS: `GetSchedule`, then `UpdateSchedule` with every field as read and only
//!    `State` (and the pause in `Description`) changed — [`batchless_core::jobs::pause`]. The
//!    requester is the caller's identity (STS, then the people map), never a flag.
//! 2. The jobs file: `paused: {by, at, note}` is written under the job (removed on resume) and
//!    the template's generated schedules are rewritten, so the schedule is generated
//!    `DISABLED` with the same description and the next deploy keeps the pause. Commit both
//!    files. `jobs generate --check --live` fails while the file and AWS disagree.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use batchless_core::jobs::pause::{self, Change, Live, Pause};
use batchless_core::jobs::{Job, JobsFile};
use chrono::Utc;
use clap::Args;

use super::template;
use crate::context::{repo_root, Aws};
use crate::identity;

#[derive(Debug, Args)]
pub struct PauseArgs {
    pub job: String,
    /// Why (1-200 characters, one line): shown by `jobs list`, kept in the jobs file.
    #[arg(long)]
    pub note: String,
    #[command(flatten)]
    pub files: FilesArgs,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    pub job: String,
    /// Why (shown by `jobs list` until the next deploy).
    #[arg(long)]
    pub note: Option<String>,
    #[command(flatten)]
    pub files: FilesArgs,
}

#[derive(Debug, Args)]
pub struct FilesArgs {
    /// The jobs file to record the pause in [default: <repo>/infra/jobs.yaml].
    #[arg(long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// The template whose generated schedules are rewritten [default: <repo>/infra/template.yaml].
    #[arg(long, value_name = "PATH")]
    pub template: Option<PathBuf>,
    /// Change only the schedule on AWS (the next deploy then undoes it: say so in review).
    #[arg(long, conflicts_with_all = ["file", "template"])]
    pub aws_only: bool,
}

/// Pure: the jobs file's text with the job's `paused:` block set (or removed), everything else
/// (comments, order) untouched. The result parses and carries exactly that pause.
pub fn set_paused(text: &str, job: &str, paused: Option<&Pause>) -> Result<String, String> {
    let lines: Vec<&str> = text.lines().collect();
    let header = format!("  - name: {job}");
    let start = lines
        .iter()
        .position(|l| l.trim_end() == header)
        .ok_or_else(|| format!("no line {header:?} in the jobs file"))?;
    // The job's block: up to the next item or the end of the list.
    let mut end = lines.len();
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        if l.starts_with("  - ") || (!l.is_empty() && !l.starts_with(' ') && !l.starts_with('#')) {
            end = i;
            break;
        }
    }
    // Drop an existing `paused:` block (its key line and the deeper-indented lines under it).
    let mut body: Vec<String> = Vec::new();
    let mut skipping = false;
    for l in &lines[start + 1..end] {
        if l.starts_with("    paused:") {
            skipping = true;
            continue;
        }
        if skipping && l.starts_with("      ") {
            continue;
        }
        skipping = false;
        body.push((*l).to_string());
    }
    // Insert after the job's last non-blank line.
    let last = body
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(0, |i| i + 1);
    if let Some(p) = paused {
        let q = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let block = [
            "    paused:".to_string(),
            format!("      by: {}", q(&p.by)),
            format!("      at: {}", q(&p.at)),
            format!("      note: {}", q(&p.note)),
        ];
        body.splice(last..last, block);
    }
    let mut out: Vec<String> = lines[..=start].iter().map(|l| l.to_string()).collect();
    out.extend(body);
    out.extend(lines[end..].iter().map(|l| l.to_string()));
    let mut out = out.join("\n");
    if text.ends_with('\n') {
        out.push('\n');
    }
    let parsed = JobsFile::parse(&out).map_err(|e| e.join("; "))?;
    if parsed.get(job).and_then(|j| j.paused.as_ref()) != paused {
        return Err(format!(
            "could not record the pause of {job} in the jobs file"
        ));
    }
    Ok(out)
}

/// The checks, then the change on AWS. Nothing is written when the job cannot change.
pub async fn change(
    client: &aws_sdk_scheduler::Client,
    environment: &str,
    job: &Job,
    change: &Change,
) -> Result<Live> {
    if !job.enabled {
        bail!(
            "{} is `enabled: false` in the jobs file (its schedule is DISABLED by design): enable it instead",
            job.name
        );
    }
    let live = pause::live(client, environment, &job.name).await?;
    match change {
        Change::Pause(p) => {
            p.check().map_err(anyhow::Error::msg)?;
            if !live.enabled {
                bail!(
                    "{} is already paused{}: nothing changed",
                    job.name,
                    live.pause
                        .as_ref()
                        .map(|p| format!(" (by {} at {}: {})", p.by, p.at, p.note))
                        .unwrap_or_default()
                );
            }
        }
        Change::Resume(note) => {
            if let Some(n) = note {
                n.check().map_err(anyhow::Error::msg)?;
            }
            if live.enabled {
                bail!(
                    "{} is not paused (its schedule is ENABLED): nothing changed",
                    job.name
                );
            }
        }
    }
    Ok(pause::set_state(client, environment, &job.name, change).await?)
}

/// The job's pause (or its absence) in the jobs file and the template's generated schedules.
fn record_in_files(files: &FilesArgs, job: &str, paused: Option<&Pause>) -> Result<()> {
    if files.aws_only {
        eprintln!(
            "warning: --aws-only: infra/jobs.yaml still says otherwise, so the next deploy undoes this"
        );
        return Ok(());
    }
    let root = || repo_root();
    let file = match &files.file {
        Some(p) => p.clone(),
        None => root()?.join("infra").join("jobs.yaml"),
    };
    let tpl = match &files.template {
        Some(p) => p.clone(),
        None => root()?.join("infra").join("template.yaml"),
    };
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let new = set_paused(&text, job, paused).map_err(anyhow::Error::msg)?;
    let jobs = JobsFile::parse(&new).map_err(|e| anyhow::anyhow!(e.join("; ")))?;
    let t = std::fs::read_to_string(&tpl).with_context(|| format!("reading {}", tpl.display()))?;
    let t = template::rewrite(&t, &jobs).map_err(anyhow::Error::msg)?;
    std::fs::write(&file, new).with_context(|| format!("writing {}", file.display()))?;
    std::fs::write(&tpl, t).with_context(|| format!("writing {}", tpl.display()))?;
    println!(
        "recorded in {} and {}: commit both, so the next deploy keeps it",
        file.display(),
        tpl.display()
    );
    Ok(())
}

/// Who is asking: the person behind the caller's identity (or its ARN).
async fn requester(aws: &Aws) -> Result<String> {
    let arn = identity::caller(aws).await?.arn;
    let (who, warning) = identity::requester_for(aws, &arn);
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    Ok(who)
}

fn job<'a>(jobs: &'a JobsFile, name: &str) -> Result<&'a Job> {
    jobs.get(name)
        .with_context(|| format!("no job {name:?} in the jobs file"))
}

pub async fn pause_job(aws: &Aws, a: PauseArgs) -> Result<ExitCode> {
    let jobs = JobsFile::embedded();
    let job = job(&jobs, &a.job)?;
    let p = Pause {
        by: requester(aws).await?,
        at: batchless_core::platform::time::rfc3339(Utc::now()),
        note: a.note.trim().to_string(),
    };
    change(
        &aws.scheduler(),
        &aws.environment,
        job,
        &Change::Pause(p.clone()),
    )
    .await?;
    println!(
        "paused {} ({}): by {} at {}: {}",
        job.name,
        pause::schedule_name(&aws.environment, &job.name),
        p.by,
        p.at,
        p.note
    );
    record_in_files(&a.files, &job.name, Some(&p))?;
    Ok(ExitCode::SUCCESS)
}

pub async fn resume_job(aws: &Aws, a: ResumeArgs) -> Result<ExitCode> {
    let jobs = JobsFile::embedded();
    let job = job(&jobs, &a.job)?;
    let by = requester(aws).await?;
    let at = batchless_core::platform::time::rfc3339(Utc::now());
    let note = a.note.as_ref().map(|n| Pause {
        by: by.clone(),
        at: at.clone(),
        note: n.trim().to_string(),
    });
    let was = change(
        &aws.scheduler(),
        &aws.environment,
        job,
        &Change::Resume(note),
    )
    .await?;
    println!(
        "resumed {} by {by} at {at}{}",
        job.name,
        was.pause
            .map(|p| format!(" (was paused by {} at {}: {})", p.by, p.at, p.note))
            .unwrap_or_default()
    );
    record_in_files(&a.files, &job.name, None)?;
    Ok(ExitCode::SUCCESS)
}

/// `jobs generate --check --live`: each job's schedule state on AWS against the jobs file.
pub async fn disagreements(
    client: &aws_sdk_scheduler::Client,
    environment: &str,
    jobs: &JobsFile,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for j in &jobs.jobs {
        let want = j.enabled && j.paused.is_none();
        let live = pause::live(client, environment, &j.name).await?;
        if live.enabled != want {
            out.push(format!(
                "{}: the jobs file says {}, the schedule on AWS is {}{}",
                j.name,
                if !j.enabled {
                    "disabled"
                } else if want {
                    "running (not paused)"
                } else {
                    "paused"
                },
                if live.enabled { "ENABLED" } else { "DISABLED" },
                if want && !live.enabled {
                    ": record the pause (`jobs pause` writes it) or resume it"
                } else {
                    ": deploy, or run `jobs pause`/`jobs resume`"
                }
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput;
    use aws_sdk_scheduler::operation::update_schedule::UpdateScheduleOutput;
    use aws_sdk_scheduler::types::{
        FlexibleTimeWindow, FlexibleTimeWindowMode, ScheduleState, Target,
    };
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn p() -> Pause {
        Pause {
            by: "alice".into(),
            at: "2026-12-01T19:00:00Z".into(),
            note: "vendor's API is down (INC-42)".into(),
        }
    }

    #[test]
    fn the_pause_is_written_into_the_jobs_file_and_removed_again() {
        let text = batchless_core::jobs::config::EMBEDDED;
        let paused = set_paused(text, "sync-exchange-rates", Some(&p())).unwrap();
        let jobs = JobsFile::parse(&paused).unwrap();
        assert_eq!(jobs.get("sync-exchange-rates").unwrap().paused, Some(p()));
        assert_eq!(jobs.get("nightly-billing-report").unwrap().paused, None);
        assert!(paused.contains("      note: 'vendor''s API is down (INC-42)'\n"));
        // Pausing again replaces the block; resuming removes it: the file is as it was.
        let again = set_paused(&paused, "sync-exchange-rates", Some(&p())).unwrap();
        assert_eq!(again, paused);
        assert_eq!(
            set_paused(&paused, "sync-exchange-rates", None).unwrap(),
            text
        );
        // The last job of the file, too.
        let last = set_paused(text, "purge-expired-sessions", Some(&p())).unwrap();
        assert_eq!(
            set_paused(&last, "purge-expired-sessions", None).unwrap(),
            text
        );
        assert!(set_paused(text, "nope", Some(&p())).is_err());
        // A disabled job cannot be paused (the file would not parse).
        assert!(set_paused(text, "weekly-digest", Some(&p())).is_err());
    }

    /// The template keeps the pause: DISABLED, with the pause in the description.
    #[test]
    fn a_paused_job_is_generated_disabled_with_its_pause() {
        let paused = set_paused(
            batchless_core::jobs::config::EMBEDDED,
            "sync-exchange-rates",
            Some(&p()),
        )
        .unwrap();
        let block = template::generate(&JobsFile::parse(&paused).unwrap());
        let sched = block
            .split("\n\n")
            .find(|s| s.contains("JobScheduleSyncExchangeRates:"))
            .unwrap();
        assert!(sched.contains("State: DISABLED"), "{sched}");
        assert!(
            sched.contains(
                "[paused by alice at 2026-12-01T19:00:00Z: vendor''s API is down (INC-42)]"
            ),
            "{sched}"
        );
        let other = block
            .split("\n\n")
            .find(|s| s.contains("JobSchedulePurgeExpiredSessions:"))
            .unwrap();
        assert!(other.contains("State: ENABLED"));
    }

    fn schedule(state: ScheduleState) -> GetScheduleOutput {
        GetScheduleOutput::builder()
            .name("batchless-staging-job-sync-exchange-rates")
            .description("sync-exchange-rates: x")
            .schedule_expression("cron(* * * * ? *)")
            .state(state)
            .flexible_time_window(
                FlexibleTimeWindow::builder()
                    .mode(FlexibleTimeWindowMode::Off)
                    .build()
                    .unwrap(),
            )
            .target(Target::builder().arn("a").role_arn("r").build().unwrap())
            .build()
    }

    fn updated() -> UpdateScheduleOutput {
        UpdateScheduleOutput::builder()
            .schedule_arn("a")
            .build()
            .unwrap()
    }

    /// GetSchedule answers the schedule in `state`.
    fn reads(state: ScheduleState) -> aws_smithy_mocks::Rule {
        mock!(aws_sdk_scheduler::Client::get_schedule).then_output(move || schedule(state.clone()))
    }

    #[tokio::test]
    async fn pause_and_resume_change_only_what_they_must() {
        let jobs = JobsFile::embedded();
        let job = jobs.get("sync-exchange-rates").unwrap();
        // Pausing a running job: one UpdateSchedule to DISABLED.
        let get = reads(ScheduleState::Enabled);
        let update = mock!(aws_sdk_scheduler::Client::update_schedule)
            .match_requests(|r| r.state() == Some(&ScheduleState::Disabled))
            .then_output(updated);
        let c = mock_client!(aws_sdk_scheduler, RuleMode::MatchAny, [&get, &update]);
        change(&c, "staging", job, &Change::Pause(p()))
            .await
            .unwrap();
        assert_eq!(update.num_calls(), 1);
        // Pausing a paused job, or resuming a running one: refused, nothing written.
        for (state, ch) in [
            (ScheduleState::Disabled, Change::Pause(p())),
            (ScheduleState::Enabled, Change::Resume(None)),
        ] {
            let get = reads(state);
            let update = mock!(aws_sdk_scheduler::Client::update_schedule).then_output(updated);
            let c = mock_client!(aws_sdk_scheduler, RuleMode::MatchAny, [&get, &update]);
            let e = change(&c, "staging", job, &ch).await.unwrap_err();
            assert!(e.to_string().contains("nothing changed"), "{e}");
            assert_eq!(update.num_calls(), 0);
        }
        // A bad note: refused before anything is written.
        let get = reads(ScheduleState::Enabled);
        let update = mock!(aws_sdk_scheduler::Client::update_schedule).then_output(updated);
        let c = mock_client!(aws_sdk_scheduler, RuleMode::MatchAny, [&get, &update]);
        let bad = Pause {
            note: " ".into(),
            ..p()
        };
        assert!(change(&c, "staging", job, &Change::Pause(bad))
            .await
            .is_err());
        assert_eq!(update.num_calls(), 0);
        // A disabled job is not pausable.
        let c = mock_client!(aws_sdk_scheduler, RuleMode::MatchAny, [&get, &update]);
        let digest = jobs.get("weekly-digest").unwrap();
        assert!(change(&c, "staging", digest, &Change::Pause(p()))
            .await
            .unwrap_err()
            .to_string()
            .contains("enabled: false"));
        // Resuming a paused job: ENABLED, with the resume note in the description.
        let get = reads(ScheduleState::Disabled);
        let update = mock!(aws_sdk_scheduler::Client::update_schedule)
            .match_requests(|r| {
                r.state() == Some(&ScheduleState::Enabled)
                    && r.description()
                        .is_some_and(|d| d.contains("[resumed by alice"))
            })
            .then_output(updated);
        let c = mock_client!(aws_sdk_scheduler, RuleMode::MatchAny, [&get, &update]);
        change(&c, "staging", job, &Change::Resume(Some(p())))
            .await
            .unwrap();
        assert_eq!(update.num_calls(), 1);
    }

    #[tokio::test]
    async fn the_live_check_names_each_disagreement() {
        // Every schedule reads DISABLED: the three enabled jobs disagree, the disabled one agrees.
        let get = reads(ScheduleState::Disabled);
        let c = mock_client!(aws_sdk_scheduler, RuleMode::MatchAny, [&get]);
        let d = disagreements(&c, "staging", &JobsFile::embedded())
            .await
            .unwrap();
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d.iter().all(|l| !l.starts_with("weekly-digest")));
        assert!(d[0].contains("DISABLED"));
    }
}
