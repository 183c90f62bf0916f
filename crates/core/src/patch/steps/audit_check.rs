//! `audit-check`: did what ran match what was approved?
//! - `{"mode": "run", "patch": {...}, "buildId": "..."}` (`AuditCheck`): the build's resolved
//!   source version, command, request hash and start time against the approved record →
//!   `COMPLIANT` / `VIOLATION`, on the record and in the audit trail.
//! - `{"mode": "sweep", "windowHours": 26}` (the daily schedule): every build of the patch
//!   project in the window must be a compliant run of an approved patch; every CloudTrail
//!   `StartExecution` of the data-patch workflow must come from the requester the patch names.
//!   Each finding is appended to the audit trail once and alerted to Slack once.
//! - `{"mode": "seal", "chain": "patches", "seq": N}` (from every other function's
//!   `audit::append`): this function is the audit writer, the only role that may write
//!   `audit/` in S3 and `kms:Sign` with the audit signing key; it anchors the chain up to `N`
//!   and writes a signed checkpoint of it (`audit::seal`).

use std::collections::BTreeMap;

use aws_types::SdkConfig;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::patch::check::{self, BuildFacts, Verdict};
use crate::patch::store::{self, Backend, PatchRecord};
use crate::patch::{build_env, events, preview, PatchRun, Status};
use crate::platform::dynamo::{Record, Table};
use crate::platform::input::{self, InputError};
use crate::platform::slack::{Message, SlackClient};
use crate::platform::{aws, config, redact, time};
use crate::shared::approval::Sealer;
use crate::shared::people::People;
use crate::shared::{audit, build, runs};

pub struct Deps {
    pub backend: Backend,
    /// The other batchless CodeBuild project (`MIGRATION_PROJECT`), and the runs table whose
    /// migration and job runs name the builds and tasks batchless started (`RUNS_TABLE`).
    pub migration_project: String,
    pub runs: crate::shared::runs::Runs,
    /// The task definitions whose `RunTask` / `ExecuteCommand` the sweep examines
    /// (`JOB_TASK_DEFINITION`, `BASTION_TASK_DEFINITION`).
    pub job_task_definition: String,
    pub bastion_task_definition: String,
    /// Where the sweep keeps its watermark (the patches table, item `sweep-watermark`).
    pub watermarks: Table<Watermark>,
    pub codebuild: aws_sdk_codebuild::Client,
    pub cloudtrail: aws_sdk_cloudtrail::Client,
    pub slack: SlackClient,
    pub people: People,
    pub project: String,
    pub state_machine_arn: String,
    /// The migration and job state machines (`MIGRATION_STATE_MACHINE_ARN`,
    /// `JOB_STATE_MACHINE_ARN`), whose person-started runs are cross-checked the same way.
    pub migration_state_machine_arn: String,
    pub job_state_machine_arn: String,
    pub alerts_channel: String,
    pub environment: String,
    /// This function is the audit writer: the only role that writes `audit/` and signs.
    pub writer: audit::Writer,
    /// The dry-run settings (`PATCH_DRY_RUN*`, as start-patch-build has them): the buildspecs
    /// batchless sends are rebuilt from them, so only those count as batchless's own.
    pub settings: preview::Settings,
    /// Verifies the decisions' seals (`DECISION_SIGNING_KEY`): an unsealed decision does not
    /// make a build compliant.
    pub sealer: Sealer,
    /// What signs evidence, whose changes outside a deploy the sweep alerts: the signing keys'
    /// ARNs (`SIGNING_KEY_ARNS`), the signing functions' names and their roles' ARNs
    /// (`SIGNING_ROLE_ARNS`; both lists comma-separated).
    pub signers: check::Signers,
    /// CloudTrail in the region that records IAM's events ([`check::IAM_EVENTS_REGION`]).
    pub iam_cloudtrail: aws_sdk_cloudtrail::Client,
}

impl Deps {
    /// The patch backend, the people map, Slack (`SLACK_ALERTS_CHANNEL`), `PATCH_PROJECT` and
    /// `PATCH_STATE_MACHINE_ARN` (whose CloudTrail `StartExecution` records are cross-checked).
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        let environment = config::environment()?;
        let backend = Backend::from_env(sdk)?;
        Ok(Deps {
            migration_project: config::required("MIGRATION_PROJECT")?,
            runs: Table::new(aws::dynamodb(sdk), config::required("RUNS_TABLE")?),
            job_task_definition: config::required("JOB_TASK_DEFINITION")?,
            bastion_task_definition: config::optional("BASTION_TASK_DEFINITION")
                .unwrap_or_else(|| format!("batchless-{environment}-bastion")),
            watermarks: Table::new(backend.db.clone(), backend.patches_table.clone()),
            backend,
            codebuild: aws::codebuild(sdk),
            cloudtrail: aws::cloudtrail(sdk),
            slack: config::slack_client(sdk).await?,
            people: People::load(&environment)?,
            project: config::required("PATCH_PROJECT")?,
            state_machine_arn: config::required("PATCH_STATE_MACHINE_ARN")?,
            migration_state_machine_arn: config::required("MIGRATION_STATE_MACHINE_ARN")?,
            job_state_machine_arn: config::required("JOB_STATE_MACHINE_ARN")?,
            alerts_channel: config::required("SLACK_ALERTS_CHANNEL")?,
            signers: check::Signers {
                keys: config::list("SIGNING_KEY_ARNS"),
                functions: check::SIGNING_FUNCTIONS
                    .iter()
                    .map(|f| format!("batchless-{environment}-{f}"))
                    .collect(),
                roles: config::list("SIGNING_ROLE_ARNS"),
            },
            iam_cloudtrail: aws_sdk_cloudtrail::Client::from_conf(
                aws_sdk_cloudtrail::config::Builder::from(sdk)
                    .region(aws_sdk_cloudtrail::config::Region::new(
                        check::IAM_EVENTS_REGION,
                    ))
                    .build(),
            ),
            environment,
            writer: audit::Writer::from_env(sdk)?,
            settings: preview::Settings::from_env()?,
            sealer: Sealer::from_env(sdk)?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "mode", rename_all = "lowercase")]
pub enum Input {
    #[serde(rename_all = "camelCase")]
    Run {
        patch: Box<PatchRun>,
        build_id: String,
    },
    /// From another function's `audit::append` (`AUDIT_WRITER_FUNCTION`): anchor and sign the
    /// chain up to `seq`.
    Seal { chain: String, seq: u64 },
    #[serde(rename_all = "camelCase")]
    Sweep {
        #[serde(default)]
        window_hours: Option<u32>,
    },
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Output {
    /// `$.check` of the workflow.
    Run(Box<Verdict>),
    Seal(audit::Sealed),
    Sweep(SweepReport),
}

/// The sweep's watermark: every instant before `examined_until` was examined by a sweep that
/// ended without an error; the next sweep starts there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Watermark {
    /// Always [`WATERMARK_KEY`] (the patches table's key attribute).
    pub patch_id: String,
    pub examined_until: String,
    pub swept_at: String,
    /// The audit writer's signature (`AUDIT_SIGNING_KEY`, which only this function may use)
    /// over the two instants: a watermark moved by anyone else does not verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

impl Watermark {
    /// What the seal signs.
    pub fn seal_message(&self) -> Vec<u8> {
        format!(
            "batchless-sweep-watermark/1:{}:{}",
            self.examined_until, self.swept_at
        )
        .into_bytes()
    }
}

/// The audit signing key as a [`Sealer`] (the audit writer's own; `None` without one: unit
/// tests and tools, where the watermark is neither sealed nor checked).
fn watermark_sealer(deps: &Deps) -> Option<crate::platform::signing::Signer> {
    deps.writer
        .kms
        .as_ref()
        .map(|(kms, key)| crate::platform::signing::Signer {
            kms: kms.clone(),
            key: key.clone(),
        })
}

/// The watermark as read: absent (no sweep ever ended clean), deleted (one did: the audit
/// trail says so), trusted, or forged (its seal does not verify, or it claims an instant after
/// `now`: moved by someone else to make the sweep skip a window).
#[derive(Debug)]
enum Mark {
    Absent,
    Deleted,
    Trusted(Watermark),
    Forged(Watermark),
}

async fn read_watermark(deps: &Deps, now: chrono::DateTime<chrono::Utc>) -> Result<Mark, Error> {
    let Some(m) = deps.watermarks.get(WATERMARK_KEY).await? else {
        let st = deps.backend.store();
        return Ok(
            match audit::appended(&st.trail, SWEEPS_STARTED_KEY).await? {
                Some(_) => Mark::Deleted,
                None => Mark::Absent,
            },
        );
    };
    let future = time::parse("examinedUntil", &m.examined_until).map_or(true, |t| t > now);
    let sealed = match watermark_sealer(deps) {
        Some(s) => s.valid(m.seal_message(), m.seal.as_deref()).await?,
        None => true,
    };
    Ok(if sealed && !future {
        Mark::Trusted(m)
    } else {
        Mark::Forged(m)
    })
}

impl Record for Watermark {
    const KEY: &'static str = "patchId";
    fn key(&self) -> &str {
        &self.patch_id
    }
}

pub const WATERMARK_KEY: &str = "sweep-watermark";
/// The watermark stays this far behind the sweep's end: CloudTrail delivers events up to about
/// 15 minutes late, so the next sweep looks at those minutes again (findings are idempotent).
const CLOUDTRAIL_LAG_MINUTES: i64 = 20;
/// A build, task or call batchless did not start (the migration project, ECS).
pub const UNSANCTIONED: &str = "UNSANCTIONED";
/// The sweep's watermark was moved or deleted by someone other than the sweep.
pub const WATERMARK_FORGED: &str = "WATERMARK_FORGED";
/// Appended (once) by the first sweep that ends clean: from then on a sweep that finds no
/// watermark knows it was deleted. The trail is append-only and verified, so removing this
/// record is itself a problem `audit verify` reports.
pub const SWEEPS_STARTED: &str = "SWEEPS_STARTED";
const SWEEPS_STARTED_KEY: &str = "sweeps-started";

/// What a sweep looked at and found.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub since: String,
    pub until: String,
    /// Where the next sweep starts (unchanged when this one had errors).
    pub watermark: String,
    pub migration_builds: usize,
    pub ecs_calls: usize,
    pub unsanctioned: Vec<Finding>,
    /// Everything that failed (an alert, a read); the sweep went on and ends with an error.
    pub errors: Vec<String>,
    pub builds: usize,
    pub compliant: usize,
    pub unapproved: Vec<Finding>,
    pub executions: usize,
    pub requester_mismatches: Vec<Finding>,
}

/// One finding of a sweep; `new`: appended by this sweep (not by an earlier one).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_id: Option<String>,
    pub message: String,
    pub new: bool,
}

const DEFAULT_WINDOW_HOURS: u32 = 26;
const MAX_WINDOW_HOURS: u32 = 24 * 90;

async fn run_check(deps: &Deps, patch: &PatchRun, build_id: &str) -> Result<Verdict, Error> {
    let st = deps.backend.store();
    let facts = check::facts(&build::fetch(&deps.codebuild, build_id).await?);
    let rec = store::must_get(st.db, st.table, &patch.patch_id).await?;
    let seals = deps
        .sealer
        .check(&rec.environment, &rec.patch_id, &rec.decisions)
        .await?;
    let verdict = check::check_run(&rec, &facts, &deps.people, &seals);
    let mut fields = vec![("verdict", json!(verdict.verdict))];
    if let Some(sha) = &facts.resolved_source_version {
        fields.push(("resolvedSourceVersion", json!(sha)));
    }
    store::update(st.db, st.table, &patch.patch_id, &fields, None, &[]).await?;
    audit::append(
        &st.trail,
        &store::entry(
            patch,
            format!("verdict:{}", patch.patch_id),
            events::VERDICT,
            "audit-check",
            serde_json::to_value(&verdict).expect("serializes"),
        ),
    )
    .await?;
    tracing::info!(patch = %patch.patch_id, build_id, verdict = %verdict.verdict, findings = ?verdict.findings, "audit check");
    Ok(verdict)
}

/// Append a sweep finding once and alert it once: the alert is recorded after Slack took it,
/// so a Slack outage leaves the finding to be alerted by the next sweep, never lost.
///
/// The "alerted before?" mark is the audit trail's own `alerted:<finding>` entry, not a
/// `Table::put_once`: a put-once before the post would claim the alert even when Slack then
/// fails (the finding would never be alerted), and the mark belongs in the hash chain, whose
/// append is one transaction of record, head and key marker (`audit::append` is that
/// chain's idempotency, which a single conditional put cannot be part of).
async fn finding(
    deps: &Deps,
    key: String,
    event: &str,
    patch_id: &str,
    message: String,
    data: Value,
) -> Result<bool, Error> {
    let st = deps.backend.store();
    let mut data = data;
    data["message"] = json!(message);
    let entry = |key: String, event: &str, data: Value| audit::Entry {
        key,
        environment: deps.environment.clone(),
        patch_id: patch_id.to_string(),
        event: event.to_string(),
        actor: "audit-check".into(),
        data,
    };
    let (_, new) = audit::append(&st.trail, &entry(key.clone(), event, data)).await?;
    let alerted_key = format!("alerted:{key}");
    if audit::appended(&st.trail, &alerted_key).await?.is_none() {
        deps.slack
            .post_message(&Message {
                channel: deps.alerts_channel.clone(),
                text: redact::redact(&format!(
                    ":rotating_light: Data-patch audit ({}): {message}",
                    deps.environment
                ))
                .into_owned(),
                blocks: None,
                thread_ts: None,
            })
            .await?;
        audit::append(
            &st.trail,
            &entry(
                alerted_key,
                events::ALERTED,
                json!({"channel": deps.alerts_channel, "finding": key}),
            ),
        )
        .await?;
    }
    Ok(new)
}

fn unapproved_message(b: &BuildFacts, rec: Option<&PatchRecord>, findings: &[String]) -> String {
    let who = b.initiator.as_deref().unwrap_or("an unknown initiator");
    let when = b.start_time.as_deref().unwrap_or("an unknown time");
    match rec {
        None => format!(
            "build {} of the patch project was started by {who} at {when} without an approved request{}",
            b.build_id,
            match b.env.get(build_env::PATCH_ID) {
                Some(id) => format!(" (it names patch {id:?}, which does not exist)"),
                None => " (started outside the workflow)".to_string(),
            }
        ),
        Some(r) => format!(
            "build {} (started by {who} at {when}) does not match approved patch {}: {}",
            b.build_id,
            r.patch_id,
            findings.join("; ")
        ),
    }
}

/// Where this sweep starts: the watermark, else `window_hours` back (never past 90 days).
fn sweep_start(
    now: chrono::DateTime<chrono::Utc>,
    mark: Option<&Watermark>,
    window_hours: u32,
) -> chrono::DateTime<chrono::Utc> {
    let floor = now - chrono::Duration::hours(MAX_WINDOW_HOURS as i64);
    match mark.and_then(|m| time::parse("examinedUntil", &m.examined_until).ok()) {
        Some(t) => t.max(floor),
        None => now - chrono::Duration::hours(window_hours as i64),
    }
}

/// What one of the sweep's reads found; when the read failed, nothing (`T::default()`) with
/// the error kept in `errors`: the sweep goes on with its other reads and reports it.
fn or_noted<T: Default>(errors: &mut Vec<Error>, read: Result<T, Error>) -> T {
    read.unwrap_or_else(|e| {
        errors.push(e);
        T::default()
    })
}

/// A CodeBuild project's builds since `since` and the buildspec it is configured with (each
/// read [`or_noted`]).
async fn project_builds(
    deps: &Deps,
    project: &str,
    since: chrono::DateTime<chrono::Utc>,
    errors: &mut Vec<Error>,
) -> (Vec<BuildFacts>, Option<String>) {
    let builds = or_noted(
        errors,
        check::builds_since(&deps.codebuild, project, since).await,
    );
    let spec = or_noted(
        errors,
        check::project_buildspec(&deps.codebuild, project).await,
    );
    (builds, spec)
}

/// One sweep: everything since the watermark is examined even when a read or an alert fails;
/// only a sweep without errors moves the watermark, so a failed one's window is examined
/// again by the next.
async fn sweep(deps: &Deps, window_hours: u32) -> Result<SweepReport, Error> {
    let now = time::now();
    let mark = read_watermark(deps, now).await?;
    let since = match &mark {
        Mark::Absent => sweep_start(now, None, window_hours),
        Mark::Trusted(m) => sweep_start(now, Some(m), window_hours),
        // Someone moved it: nothing it says is believed; everything the sweep may reach is
        // examined again (findings are idempotent).
        Mark::Forged(_) | Mark::Deleted => now - chrono::Duration::hours(MAX_WINDOW_HOURS as i64),
    };
    let st = deps.backend.store();
    let mut errors: Vec<Error> = Vec::new();
    let (mut compliant, mut alerts, mut unsanctioned) = (0, Vec::new(), Vec::new());
    let days = MAX_WINDOW_HOURS / 24;
    let moved = match &mark {
        Mark::Absent | Mark::Trusted(_) => None,
        // One finding a day while it stays gone (a failed sweep re-finds the same one).
        Mark::Deleted => Some((
            format!("watermark:deleted:{}", now.format("%Y-%m-%d")),
            format!("The audit sweep's watermark is gone (deleted by someone other than the sweep: sweeps ended clean before, the audit trail says so). This sweep examined the last {days} days instead."),
            json!({"deleted": true}),
        )),
        Mark::Forged(m) => Some((
            format!("watermark:{}:{}", m.examined_until, m.swept_at),
            format!(
                "The audit sweep's watermark was not written by the sweep (its seal does not verify, or it lies in the future): examined until {}, swept at {}. This sweep examined the last {days} days instead.",
                m.examined_until, m.swept_at
            ),
            json!({"examinedUntil": m.examined_until, "sweptAt": m.swept_at, "sealed": m.seal.is_some()}),
        )),
    };
    if let Some((key, message, data)) = moved {
        tracing::warn!(%message, "the sweep watermark is not the sweep's");
        match finding(deps, key, WATERMARK_FORGED, "-", message.clone(), data).await {
            Ok(new) => unsanctioned.push(Finding {
                build_id: None,
                patch_id: None,
                message,
                new,
            }),
            Err(e) => errors.push(e),
        }
    }

    // The patch project: every build a compliant run of an approved patch.
    let (builds, patch_spec) = project_builds(deps, &deps.project, since, &mut errors).await;
    // batchless's buildspec for a real run (one for every run; a dry run's depends on its limit).
    let run_spec = preview::buildspec(preview::Mode::Run, &deps.settings, 0);
    for b in &builds {
        // A real run carries the patch id, a dry run its preview id (the same patch id).
        let dry_run = !b.env.contains_key(build_env::PATCH_ID);
        let id = b
            .env
            .get(build_env::PATCH_ID)
            .or_else(|| b.env.get(preview::PREVIEW_ID_ENV));
        let rec = match id {
            Some(id) if input::identifier("patchId", id, 80).is_ok() => {
                match store::get(st.db, st.table, id).await {
                    Ok(r) => r,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                }
            }
            _ => None,
        };
        if rec.as_ref().is_some_and(|r| {
            (!dry_run && r.status == Status::Approved && r.build_id.is_none())
                || (dry_run && r.status == Status::PendingApproval && r.preview_build_id.is_none())
        }) {
            continue; // start-patch-build is recording this very build
        }
        let (mut findings, expected_spec) = match &rec {
            Some(r) if dry_run => match r.run() {
                Ok(run) if r.preview_build_id.as_deref() == Some(b.build_id.as_str()) => {
                    let limit = deps.settings.time_limit_for(run.dry_run_time_limit_seconds);
                    let spec = preview::buildspec(preview::Mode::DryRun, &deps.settings, limit);
                    (Vec::new(), Some(spec))
                }
                _ => (vec!["a dry run no patch record started".to_string()], None),
            },
            Some(r) => {
                let seals = match deps
                    .sealer
                    .check(&r.environment, &r.patch_id, &r.decisions)
                    .await
                {
                    Ok(s) => s,
                    Err(e) => {
                        errors.push(e);
                        continue;
                    }
                };
                (
                    check::check_run(r, b, &deps.people, &seals).findings,
                    Some(run_spec.clone()),
                )
            }
            None => (vec!["no approved request".to_string()], None),
        };
        // batchless's own buildspec for a recorded run; the project's for anything else.
        let spec = expected_spec.or_else(|| patch_spec.clone());
        if let Some(f) = check::buildspec_override(b, spec.as_deref()) {
            findings.push(f);
        }
        if findings.is_empty() {
            compliant += 1;
            continue;
        }
        let message = unapproved_message(b, rec.as_ref(), &findings);
        match finding(
            deps,
            format!("sweep:{}", b.build_id),
            events::UNAPPROVED_BUILD,
            rec.as_ref().map(|r| r.patch_id.as_str()).unwrap_or("-"),
            message.clone(),
            json!({"buildId": b.build_id, "initiator": b.initiator, "startTime": b.start_time,
                   "sourceVersion": b.source_version, "resolvedSourceVersion": b.resolved_source_version,
                   "command": b.env.get(build_env::COMMAND), "findings": findings}),
        )
        .await
        {
            Ok(new) => alerts.push(Finding {
                build_id: Some(b.build_id.clone()),
                patch_id: None,
                message,
                new,
            }),
            Err(e) => errors.push(e),
        }
    }

    // The migration project: every build one a migration run recorded, with its buildspec.
    let mut pending = Vec::new();
    let migration_runs = or_noted(
        &mut errors,
        deps.runs
            .newest(runs::BY_WORKFLOW_INDEX, "workflow", "migration", None)
            .await,
    );
    // Build id → the SHA-256 of the buildspec batchless sent with it (if any).
    let recorded_builds: BTreeMap<String, Option<&str>> = migration_runs
        .iter()
        .flat_map(|r| {
            // A run that needed an approval started two builds: its pre-flight's and the
            // approved one, both with batchless's buildspec.
            [r.build_id.as_deref(), r.preflight_build_id.as_deref()]
                .into_iter()
                .flatten()
                .map(|b| {
                    (
                        aws::normalize_build_id(b).to_string(),
                        r.buildspec_sha256.as_deref(),
                    )
                })
        })
        .collect();
    let recording = migration_runs
        .iter()
        .any(|r| r.status == runs::RunStatus::Running && r.build_id.is_none());
    let (migration_builds, migration_spec) =
        project_builds(deps, &deps.migration_project, since, &mut errors).await;
    for b in &migration_builds {
        let mut findings = Vec::new();
        let recorded = recorded_builds.get(aws::normalize_build_id(&b.build_id));
        if recorded.is_none() && !recording {
            findings.push(format!(
                "build {} of the migration project was started by {} at {} without a migration run",
                b.build_id,
                b.initiator.as_deref().unwrap_or("an unknown initiator"),
                b.start_time.as_deref().unwrap_or("an unknown time")
            ));
        }
        let sent_by_batchless = recorded.copied().flatten().is_some_and(|sha| {
            b.buildspec
                .as_deref()
                .is_some_and(|ran| hex::encode(Sha256::digest(ran.as_bytes())) == sha)
        });
        if !sent_by_batchless {
            if let Some(f) = check::buildspec_override(b, migration_spec.as_deref()) {
                findings.push(f);
            }
        }
        if !findings.is_empty() {
            pending.push((
                format!("sweep:{}", b.build_id),
                findings.join("; "),
                json!({"buildId": b.build_id, "project": b.project, "initiator": b.initiator,
                       "startTime": b.start_time, "sourceVersion": b.source_version,
                       "buildspecOverridden": !sent_by_batchless && b.buildspec.as_deref() != migration_spec.as_deref()}),
            ));
        }
    }

    // ECS: RunTask of the job / bastion task definition, ExecuteCommand into job tasks.
    let job_runs = or_noted(
        &mut errors,
        deps.runs
            .newest(runs::BY_WORKFLOW_INDEX, "workflow", "scheduled-job", None)
            .await,
    );
    let recorded_tasks: std::collections::BTreeSet<String> = job_runs
        .iter()
        .filter_map(|r| r.task_arn.as_deref())
        .map(|t| check::task_id(t).to_string())
        .collect();
    let starting = job_runs
        .iter()
        .any(|r| r.status == runs::RunStatus::Running && r.task_arn.is_none());
    let job_family = check::family_of(&deps.job_task_definition);
    let bastion_family = check::family_of(&deps.bastion_task_definition);
    let mut ecs_calls = 0;
    for name in ["RunTask", "ExecuteCommand"] {
        let records = match aws::cloudtrail_events(&deps.cloudtrail, name, since).await {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for call in records.iter().filter_map(check::ecs_call) {
            ecs_calls += 1;
            if starting
                && call.event_name == "RunTask"
                && check::family_of(&call.task_definition) == job_family
            {
                continue; // a job run is recording the task it just started
            }
            if let Some(message) =
                check::unsanctioned_ecs_call(&call, job_family, bastion_family, &recorded_tasks)
            {
                pending.push((
                    format!("ecs:{}", call.event_id),
                    message,
                    serde_json::to_value(&call).expect("serializes"),
                ));
            }
        }
    }
    // Changes to what signs: a signing key's policy, a signing function's code or configuration,
    // a signing role given to another function, or its trust or permissions changed (IAM).
    let trails = check::SIGNING_CHANGE_EVENTS
        .iter()
        .map(|n| (n, &deps.cloudtrail))
        .chain(
            check::SIGNING_ROLE_EVENTS
                .iter()
                .map(|n| (n, &deps.iam_cloudtrail)),
        );
    for (name, trail) in trails {
        match aws::cloudtrail_events(trail, name, since).await {
            Ok(records) => {
                for v in &records {
                    if let Some(message) = check::unsanctioned_signing_change(v, &deps.signers) {
                        pending.push((
                            format!("signing:{}", v["eventID"].as_str().unwrap_or_default()),
                            message,
                            json!({"eventName": v["eventName"], "eventID": v["eventID"],
                                   "eventTime": v["eventTime"], "principal": v["userIdentity"]["arn"],
                                   "requestParameters": v["requestParameters"]}),
                        ));
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    for (key, message, data) in pending {
        match finding(deps, key, UNSANCTIONED, "-", message.clone(), data).await {
            Ok(new) => unsanctioned.push(Finding {
                build_id: None,
                patch_id: None,
                message,
                new,
            }),
            Err(e) => errors.push(e),
        }
    }

    // Data-patch executions: started by the requester the patch names.
    let started = or_noted(
        &mut errors,
        check::started_executions(
            &deps.cloudtrail,
            &[
                &deps.state_machine_arn,
                &deps.migration_state_machine_arn,
                &deps.job_state_machine_arn,
            ],
            since,
        )
        .await,
    );
    let mut mismatches = Vec::new();
    for s in started
        .iter()
        .filter(|s| s.state_machine_arn == deps.state_machine_arn)
    {
        let rec = match store::get(st.db, st.table, &s.execution_name).await {
            Ok(Some(r)) => r,
            Ok(None) => continue, // rejected as invalid input: nothing was recorded, nothing ran
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if let Some(message) = check::requester_mismatch(s, &rec, &deps.people) {
            match finding(
                deps,
                format!("requester:{}", rec.patch_id),
                events::REQUESTER_MISMATCH,
                &rec.patch_id,
                message.clone(),
                json!({"principal": s.principal, "eventId": s.event_id, "eventTime": s.event_time}),
            )
            .await
            {
                Ok(new) => mismatches.push(Finding {
                    build_id: None,
                    patch_id: Some(rec.patch_id.clone()),
                    message,
                    new,
                }),
                Err(e) => errors.push(e),
            }
        }
    }

    // Migration and job runs a person started: started by that person (a sealed input handed to
    // someone else and started by them shows here; the scheduler's and a pipeline's do not).
    let starters: BTreeMap<&str, &str> = migration_runs
        .iter()
        .chain(job_runs.iter())
        .map(|r| (r.run_id.as_str(), r.started_by.as_str()))
        .collect();
    for s in started
        .iter()
        .filter(|s| s.state_machine_arn != deps.state_machine_arn)
    {
        let arn = crate::sfn::execution::execution_arn(&s.state_machine_arn, &s.execution_name);
        let Some(person) = starters
            .get(arn.as_str())
            .and_then(|by| check::run_starter(by, &deps.people))
        else {
            continue; // not recorded (refused as invalid input), or not a person's run
        };
        let what = if s.state_machine_arn == deps.migration_state_machine_arn {
            "migration run"
        } else {
            "job run"
        };
        let Some(message) = check::starter_mismatch(
            s,
            &format!("{what} {}", s.execution_name),
            "starter",
            person,
            &deps.people,
        ) else {
            continue;
        };
        match finding(
            deps,
            format!("starter:{arn}"),
            events::REQUESTER_MISMATCH,
            "-",
            message.clone(),
            json!({"executionArn": arn, "principal": s.principal, "eventId": s.event_id, "eventTime": s.event_time}),
        )
        .await
        {
            Ok(new) => mismatches.push(Finding {
                build_id: None,
                patch_id: None,
                message,
                new,
            }),
            Err(e) => errors.push(e),
        }
    }

    let examined_until = (now - chrono::Duration::minutes(CLOUDTRAIL_LAG_MINUTES)).max(since);
    let watermark = if errors.is_empty() {
        let mut m = Watermark {
            patch_id: WATERMARK_KEY.into(),
            examined_until: time::rfc3339(examined_until),
            swept_at: time::rfc3339(now),
            seal: None,
        };
        if let Some(s) = watermark_sealer(deps) {
            m.seal = Some(s.sign(m.seal_message()).await?);
        }
        deps.watermarks.put(&m).await?;
        if audit::appended(&st.trail, SWEEPS_STARTED_KEY)
            .await?
            .is_none()
        {
            let entry = audit::Entry {
                key: SWEEPS_STARTED_KEY.into(),
                environment: deps.environment.clone(),
                patch_id: "-".into(),
                event: SWEEPS_STARTED.into(),
                actor: "audit-check".into(),
                data: json!({"examinedUntil": m.examined_until, "sweptAt": m.swept_at}),
            };
            audit::append(&st.trail, &entry).await?;
        }
        m.examined_until
    } else {
        time::rfc3339(since)
    };
    tracing::info!(
        since = %time::rfc3339(since),
        builds = builds.len(),
        compliant,
        alerts = alerts.len(),
        migration_builds = migration_builds.len(),
        ecs_calls,
        unsanctioned = unsanctioned.len(),
        executions = started.len(),
        mismatches = mismatches.len(),
        errors = errors.len(),
        watermark = %watermark,
        "audit sweep"
    );
    if let Some(first) = errors.into_iter().next() {
        // Everything else was examined and alerted; the watermark stays, so the next sweep
        // looks at this window again.
        tracing::error!(error = %first, "audit sweep had errors; the watermark did not move");
        return Err(first);
    }
    Ok(SweepReport {
        since: time::rfc3339(since),
        until: time::rfc3339(now),
        watermark,
        migration_builds: migration_builds.len(),
        ecs_calls,
        unsanctioned,
        errors: Vec::new(),
        builds: builds.len(),
        compliant,
        unapproved: alerts,
        executions: started.len(),
        requester_mismatches: mismatches,
    })
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    match input {
        Input::Run { patch, build_id } => Ok(Output::Run(Box::new(
            run_check(deps, &patch, &build_id).await?,
        ))),
        Input::Seal { chain, seq } => {
            input::identifier("chain", &chain, 80)?;
            let t = audit::Trail {
                chain: &chain,
                ..deps.backend.trail()
            };
            Ok(Output::Seal(audit::seal(&t, &deps.writer, seq).await?))
        }
        Input::Sweep { window_hours } => {
            let hours = window_hours.unwrap_or(DEFAULT_WINDOW_HOURS);
            if hours == 0 || hours > MAX_WINDOW_HOURS {
                return Err(InputError::field(
                    "windowHours",
                    format!("must be 1..={MAX_WINDOW_HOURS}"),
                )
                .into());
            }
            Ok(Output::Sweep(sweep(deps, hours).await?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;
    use crate::patch::check::Compliance;
    use crate::patch::steps::fixtures::{self, anchor, audit_append, backend, stored};
    use crate::patch::tests::people;
    use aws_sdk_codebuild::operation::batch_get_builds::BatchGetBuildsOutput;
    use aws_sdk_codebuild::types::Build;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

    fn deps(db: &[&Rule], s3: &[&Rule], codebuild: &[&Rule]) -> Deps {
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, db);
        Deps {
            migration_project: "batchless-staging-migration".into(),
            runs: Table::new(db.clone(), "runs"),
            job_task_definition:
                "arn:aws:ecs:us-east-1:123456789012:task-definition/batchless-staging-job:1".into(),
            bastion_task_definition: "batchless-staging-bastion".into(),
            watermarks: Table::new(db.clone(), "patches"),
            backend: backend(db, mock_client!(aws_sdk_s3, RuleMode::MatchAny, s3)),
            codebuild: mock_client!(aws_sdk_codebuild, RuleMode::MatchAny, codebuild),
            cloudtrail: unreached_cloudtrail(),
            iam_cloudtrail: unreached_cloudtrail(),
            slack: SlackClient::new("http://127.0.0.1:9/api", "t"),
            people: people(),
            project: "batchless-staging-patch".into(),
            state_machine_arn: "arn:sm".into(),
            migration_state_machine_arn: "arn:sm-migration".into(),
            job_state_machine_arn: "arn:sm-job".into(),
            alerts_channel: "CALERT".into(),
            environment: "staging".into(),
            writer: audit::Writer {
                kms: None,
                lock_days: 0,
            },
            settings: preview::Settings::default(),
            sealer: crate::shared::approval::seal::tests::sealer(true),
            signers: check::Signers::default(),
        }
    }

    /// Not reached by these tests (the SDK is built without its test utilities).
    fn unreached_cloudtrail() -> aws_sdk_cloudtrail::Client {
        aws_sdk_cloudtrail::Client::from_conf(
            aws_sdk_cloudtrail::Config::builder()
                .behavior_version_latest()
                .region(aws_sdk_cloudtrail::config::Region::new("us-east-1"))
                .endpoint_url("http://127.0.0.1:9")
                .build(),
        )
    }

    #[tokio::test]
    async fn a_sweep_window_out_of_bounds_is_invalid_input() {
        let d = deps(&[], &[], &[]);
        for hours in [0, MAX_WINDOW_HOURS + 1] {
            let err = handle(
                &d,
                Input::Sweep {
                    window_hours: Some(hours),
                },
            )
            .await
            .unwrap_err();
            assert_eq!(err.kind(), Kind::InvalidInput);
            assert!(err.to_string().contains("windowHours"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_build_of_an_unapproved_patch_is_a_violation_on_the_record() {
        let run = fixtures::run();
        let build = mock!(aws_sdk_codebuild::Client::batch_get_builds).then_output(move || {
            BatchGetBuildsOutput::builder()
                .builds(
                    Build::builder()
                        .id("batchless-staging-patch:1")
                        .project_name("batchless-staging-patch")
                        .source_version(run.commit.clone())
                        .resolved_source_version(run.commit.clone())
                        .build(),
                )
                .build()
        });
        let get = stored(fixtures::record(Status::Running));
        let update = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                r.expression_attribute_values().is_some_and(|v| {
                    v.values()
                        .any(|a| a.as_s().ok().is_some_and(|s| s == "VIOLATION"))
                })
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let [audit_get, audit_tx] = audit_append();
        let s3 = anchor();
        let d = deps(&[&get, &update, &audit_get, &audit_tx], &[&s3], &[&build]);
        let out = handle(
            &d,
            Input::Run {
                patch: Box::new(fixtures::run()),
                build_id: "batchless-staging-patch:1".into(),
            },
        )
        .await
        .unwrap();
        let Output::Run(verdict) = out else {
            panic!("a run check gives a verdict")
        };
        assert_eq!(verdict.verdict, Compliance::Violation);
        assert!(
            verdict.findings.iter().any(|f| f.contains("not approved")),
            "{:?}",
            verdict.findings
        );
        assert_eq!((update.num_calls(), audit_tx.num_calls()), (1, 1));
    }

    /// The watermark as stored, read back under a writer whose KMS says signatures are `valid`.
    async fn read_back(m: &Watermark, valid: bool) -> Mark {
        let item = crate::platform::dynamo::to_item(m);
        let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(move || {
            aws_sdk_dynamodb::operation::get_item::GetItemOutput::builder()
                .set_item(Some(item.clone()))
                .build()
        });
        let mut d = deps(&[&get], &[], &[]);
        d.writer.kms = Some((
            crate::shared::approval::seal::tests::sealer(valid).kms,
            "alias/audit-signing".into(),
        ));
        read_watermark(&d, time::parse("t", "2026-11-28T13:00:00Z").unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_watermark_the_sweep_did_not_seal_or_one_in_the_future_is_forged() {
        let sealed = Watermark {
            patch_id: WATERMARK_KEY.into(),
            examined_until: "2026-11-28T12:00:00Z".into(),
            swept_at: "2026-11-28T12:20:00Z".into(),
            seal: Some("c2VhbGVk".into()),
        };
        assert!(matches!(read_back(&sealed, true).await, Mark::Trusted(_)));
        // Moved by someone else: KMS rejects the seal, or there is none at all.
        assert!(matches!(read_back(&sealed, false).await, Mark::Forged(_)));
        let unsealed = Watermark {
            seal: None,
            ..sealed.clone()
        };
        assert!(matches!(read_back(&unsealed, true).await, Mark::Forged(_)));
        // Sealed (say, replayed from another stack's key) but claiming a time not yet come.
        let future = Watermark {
            examined_until: "2026-12-28T12:00:00Z".into(),
            ..sealed
        };
        assert!(matches!(read_back(&future, true).await, Mark::Forged(_)));
        assert_eq!(
            Watermark {
                examined_until: "a".into(),
                swept_at: "b".into(),
                ..unsealed
            }
            .seal_message(),
            b"batchless-sweep-watermark/1:a:b"
        );
    }

    #[test]
    fn the_sweep_starts_at_the_watermark_else_the_window() {
        let now = time::parse("t", "2026-11-28T13:00:00Z").unwrap();
        assert_eq!(
            time::rfc3339(sweep_start(now, None, 26)),
            "2026-11-27T11:00:00Z"
        );
        let mark = Watermark {
            patch_id: WATERMARK_KEY.into(),
            examined_until: "2026-11-20T06:00:00Z".into(),
            swept_at: "2026-11-20T06:20:00Z".into(),
            seal: None,
        };
        // A failed week left the watermark behind: the sweep starts there, not 26 h back.
        assert_eq!(
            time::rfc3339(sweep_start(now, Some(&mark), 26)),
            "2026-11-20T06:00:00Z"
        );
        let ancient = Watermark {
            examined_until: "2020-01-01T00:00:00Z".into(),
            ..mark
        };
        assert_eq!(
            sweep_start(now, Some(&ancient), 26),
            now - chrono::Duration::hours(MAX_WINDOW_HOURS as i64)
        );
    }
}
