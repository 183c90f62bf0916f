//! `start-patch-build` (`StartPatchBuild`): start the approved patch's build. It trusts
//! nothing the wait returned: it re-reads the patch record and re-checks every decision against
//! the people map (a `SendTaskSuccess` with a forged payload ends `NotApproved`), checks the
//! request is the one approved (request hash), then runs CodeBuild `StartBuild` on the patch
//! project with `sourceVersion` = the approved commit (never the branch) and the command built
//! from the approved request. Idempotent: a retried step finds the build on the record.
//!
//! With `"dryRun": true` (`StartDryRun`, before the approval request): the same project,
//! commit and command, with batchless's dry-run buildspec (the shim runs the command in one
//! transaction that is always rolled back, [`crate::patch::preview`]); the patch must be
//! pending approval and have no dry run yet.

use std::collections::BTreeMap;

use aws_types::SdkConfig;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::patch::preview::{self, Settings};
use crate::patch::store::{self, Backend};
use crate::patch::{build_env, events, request_hash, PatchRun, Status, OUTPUT_DIR, WORKFLOW};
use crate::platform::{aws, config, time};
use crate::shared::approval::{self as shared_approval, Sealer};
use crate::shared::build::{self, StartedBuild};
use crate::shared::people::People;
use crate::shared::{audit, runs};

pub struct Deps {
    pub backend: Backend,
    pub codebuild: aws_sdk_codebuild::Client,
    pub people: People,
    pub project: String,
    pub runs_table: String,
    pub settings: Settings,
    /// Verifies every decision's seal (`DECISION_SIGNING_KEY`) before it counts.
    pub sealer: Sealer,
}

impl Deps {
    /// The patch backend, the people map, `PATCH_PROJECT`, `RUNS_TABLE`.
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            backend: Backend::from_env(sdk)?,
            codebuild: aws::codebuild(sdk),
            people: People::load(&config::environment()?)?,
            project: config::required("PATCH_PROJECT")?,
            runs_table: config::required("RUNS_TABLE")?,
            settings: Settings::from_env()?,
            sealer: Sealer::from_env(sdk)?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Input {
    pub patch: PatchRun,
    #[serde(default)]
    pub dry_run: bool,
}

/// `$.build`, which `WaitForBuild` and `AuditCheck` read.
pub type Output = StartedBuild;

/// Where a patch's output directory is uploaded: `s3://<bucket>/patches/<id>/output/`.
fn output_path(patch_id: &str) -> String {
    format!("patches/{patch_id}")
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    if input.dry_run {
        start_dry_run(deps, input.patch).await
    } else {
        start(deps, input.patch).await
    }
}

/// Where a dry run's preview is uploaded: `s3://<bucket>/patches/<id>/dry-run/preview/`.
pub fn preview_path(patch_id: &str) -> String {
    format!("patches/{patch_id}/dry-run")
}

async fn start_dry_run(deps: &Deps, patch: PatchRun) -> Result<Output, Error> {
    let st = deps.backend.store();
    let rec = store::must_get(st.db, st.table, &patch.patch_id).await?;
    if let Some(build_id) = &rec.preview_build_id {
        return Ok(StartedBuild {
            build_id: build_id.clone(),
        });
    }
    let run = rec.run()?;
    if run.request_hash != request_hash(run) || run.request_hash != patch.request_hash {
        return Err(Error::NotApproved(format!(
            "patch {}: the request in the workflow is not the request on record",
            patch.patch_id
        )));
    }
    if rec.status != Status::PendingApproval || rec.preview.is_some() {
        return Err(Error::NotApproved(format!(
            "patch {} is {}; no dry run was started",
            patch.patch_id, rec.status
        )));
    }
    let env: BTreeMap<String, String> = [
        (preview::PREVIEW_ID_ENV, run.patch_id.clone()),
        (build_env::COMMAND, run.command.clone()),
        (build_env::OUTPUT_DIR, OUTPUT_DIR.to_string()),
        ("BATCHLESS_RUN_ID", run.execution_arn.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let limit = deps.settings.time_limit_for(run.dry_run_time_limit_seconds);
    let spec = preview::buildspec(preview::Mode::DryRun, &deps.settings, limit);
    let token = hex::encode(&Sha256::digest(format!("dry-run:{}", run.patch_id).as_bytes())[..16]);
    let path = preview_path(&run.patch_id);
    let build_id = build::start(
        &deps.codebuild,
        build::StartRequest {
            project: &deps.project,
            source_version: &run.commit,
            environment: &env,
            idempotency_token: &token,
            artifacts: Some((&deps.backend.bucket, &path, "preview")),
            buildspec: Some(&spec),
            // The project's timeout: the shim enforces the dry run's own (shorter) limit.
            timeout_minutes: None,
        },
    )
    .await?;
    store::update(
        st.db,
        st.table,
        &run.patch_id,
        &[("previewBuildId", json!(build_id))],
        Some("attribute_not_exists(#previewBuildId)"),
        &[],
    )
    .await?;
    audit::append(
        &st.trail,
        &store::entry(
            run,
            format!("dry-run:{}", run.patch_id),
            events::DRY_RUN_STARTED,
            "workflow",
            json!({
                "buildId": build_id,
                "project": deps.project,
                "sourceVersion": run.commit,
                "command": run.command,
                "timeLimitSeconds": limit,
                "lockTimeoutMs": deps.settings.lock_timeout_ms,
                "statementTimeoutMs": deps.settings.statement_timeout_ms,
            }),
        ),
    )
    .await?;
    tracing::info!(patch = %run.patch_id, %build_id, "dry-run build started");
    Ok(StartedBuild { build_id })
}

async fn start(deps: &Deps, patch: PatchRun) -> Result<Output, Error> {
    let st = deps.backend.store();
    let rec = store::must_get(st.db, st.table, &patch.patch_id).await?;
    if let Some(build_id) = &rec.build_id {
        tracing::info!(%build_id, "build already started for this patch");
        return Ok(StartedBuild {
            build_id: build_id.clone(),
        });
    }
    let approved = rec.run()?;
    if approved.request_hash != request_hash(approved)
        || approved.request_hash != patch.request_hash
    {
        return Err(Error::NotApproved(format!(
            "patch {}: the request in the workflow is not the request on record",
            patch.patch_id
        )));
    }
    if let Some(by) = &rec.cancelled_by {
        return Err(Error::NotApproved(format!(
            "patch {} was cancelled by {by}",
            patch.patch_id
        )));
    }
    if let Some(p) = rec.preview.as_ref().filter(|p| !p.approvable) {
        return Err(Error::NotApproved(format!(
            "patch {}: its dry run is not approvable ({})",
            patch.patch_id,
            p.problem.as_deref().unwrap_or("failed")
        )));
    }
    if approved.dry_run_only {
        return Err(Error::NotApproved(format!(
            "patch {}: a dry run only never runs for real",
            patch.patch_id
        )));
    }
    if approved.dry_run && rec.preview.is_none() {
        return Err(Error::NotApproved(format!(
            "patch {}: no dry run is recorded",
            patch.patch_id
        )));
    }
    // Every decision's seal first: one written by anyone but a decision endpoint does not
    // count, and is audited as the forgery attempt it is.
    let tally = shared_approval::counted(&deps.sealer, &deps.people, &rec).await?;
    shared_approval::audit_forgeries(&st.trail, &rec, &tally, "start-patch-build").await?;
    if rec.status != Status::Approved || !tally.approved() {
        return Err(Error::NotApproved(format!(
            "patch {} is {} with {} of {} valid approvals{}; nothing was started",
            patch.patch_id,
            rec.status,
            tally.approvers.len(),
            tally.required,
            if tally.ignored.is_empty() {
                String::new()
            } else {
                format!(" (ignored: {})", tally.ignored.join("; "))
            }
        )));
    }
    let env: BTreeMap<String, String> = [
        (build_env::PATCH_ID, approved.patch_id.clone()),
        (build_env::COMMAND, approved.command.clone()),
        (build_env::REQUEST_HASH, approved.request_hash.clone()),
        (build_env::OUTPUT_DIR, OUTPUT_DIR.to_string()),
        ("BATCHLESS_RUN_ID", approved.execution_arn.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let token = hex::encode(&Sha256::digest(approved.patch_id.as_bytes())[..16]);
    let path = output_path(&approved.patch_id);
    let spec = preview::buildspec(preview::Mode::Run, &deps.settings, 0);
    let build_id = build::start(
        &deps.codebuild,
        build::StartRequest {
            project: &deps.project,
            source_version: &approved.commit,
            environment: &env,
            idempotency_token: &token,
            artifacts: Some((&deps.backend.bucket, &path, "output")),
            buildspec: Some(&spec),
            timeout_minutes: None,
        },
    )
    .await?;
    let now = time::rfc3339(time::now());
    let output_uri = format!("s3://{}/{path}/output/", deps.backend.bucket);
    let moved = store::transition(
        st.db,
        st.table,
        &approved.patch_id,
        &[Status::Approved],
        Status::Running,
        &[
            ("buildId", json!(build_id)),
            ("buildStartedAt", json!(now)),
            ("outputUri", json!(output_uri)),
        ],
    )
    .await?;
    if moved.is_none() {
        // Cancelled in the instant between the check and the start: undo.
        build::stop(&deps.codebuild, &build_id).await?;
        return Err(Error::NotApproved(format!(
            "patch {} changed while its build started; build {build_id} was stopped",
            approved.patch_id
        )));
    }
    audit::append(
        &st.trail,
        &store::entry(
            approved,
            format!("build:{}", approved.patch_id),
            events::BUILD_STARTED,
            "workflow",
            json!({
                "buildId": build_id,
                "project": deps.project,
                "sourceVersion": approved.commit,
                "command": approved.command,
                "approvers": tally.approvers,
                "outputUri": output_uri,
            }),
        ),
    )
    .await?;
    // The run record lets the abort/timeout cleanup find and stop the build.
    let record = runs::RunRecord {
        run_id: approved.execution_arn.clone(),
        workflow: WORKFLOW.into(),
        environment: approved.environment.clone(),
        execution_name: approved.patch_id.clone(),
        started_at: approved.requested_at.clone(),
        started_by: approved.requester.clone(),
        status: runs::RunStatus::Running,
        commit: Some(approved.commit.clone()),
        build_id: Some(build_id.clone()),
        ..Default::default()
    };
    runs::Runs::new(st.db.clone(), &deps.runs_table)
        .create(&record)
        .await?;
    tracing::info!(patch = %approved.patch_id, %build_id, commit = %approved.commit, "patch build started");
    Ok(StartedBuild { build_id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;
    use crate::patch::steps::fixtures::{self, backend, stored};
    use crate::patch::tests::people;
    use aws_sdk_codebuild::operation::start_build::StartBuildOutput;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

    fn deps(db: &[&Rule], codebuild: &[&Rule]) -> Deps {
        Deps {
            backend: backend(
                mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, db),
                mock_client!(aws_sdk_s3, RuleMode::MatchAny, []),
            ),
            codebuild: mock_client!(aws_sdk_codebuild, RuleMode::MatchAny, codebuild),
            people: people(),
            project: "batchless-staging-patch".into(),
            runs_table: "runs".into(),
            settings: Settings::default(),
            sealer: crate::shared::approval::seal::tests::sealer(true),
        }
    }

    fn start_build() -> Rule {
        mock!(aws_sdk_codebuild::Client::start_build)
            .then_output(|| StartBuildOutput::builder().build())
    }

    fn input() -> Input {
        Input {
            patch: fixtures::run(),
            dry_run: false,
        }
    }

    #[tokio::test]
    async fn a_forged_approval_starts_nothing() {
        // The wait was ended with "approved", but the record holds no valid decision.
        let mut rec = fixtures::record(Status::Approved);
        rec.approvers = vec!["alice".into(), "carol".into()];
        rec.approved_at = Some("2026-11-28T13:05:00Z".into());
        let (get, start) = (stored(rec), start_build());
        let d = deps(&[&get], &[&start]);
        let err = handle(&d, input()).await.unwrap_err();
        assert_eq!(err.kind(), Kind::NotApproved);
        assert!(err.to_string().contains("0 of 1 valid approvals"), "{err}");
        assert_eq!(start.num_calls(), 0);
    }

    #[tokio::test]
    async fn an_unsealed_decision_starts_nothing_and_is_audited_as_forged() {
        // alice's approval on the right request, as a decision endpoint would have recorded it,
        // but the seal does not verify: written by someone else.
        let mut rec = fixtures::record(Status::Approved);
        let hash = rec.run().unwrap().request_hash.clone();
        let mut alice = crate::shared::approval::tests::decision(
            "alice",
            crate::shared::approval::Decision::Approve,
            &hash,
        );
        alice.seal = Some("c2VhbGVkLWJ5LXRlc3Q=".into());
        rec.decisions.insert("alice".into(), alice);
        rec.approvers = vec!["alice".into()];
        rec.approved_at = Some("2026-11-28T13:05:00Z".into());
        let (get, start) = (stored(rec.clone()), start_build());
        let [audit_get, audit_put] = fixtures::audit_append();
        let anchor = fixtures::anchor();
        let mut d = deps(&[&get, &audit_get, &audit_put], &[&start]);
        d.backend.s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&anchor]);
        d.sealer = crate::shared::approval::seal::tests::sealer(false);
        let err = handle(&d, input()).await.unwrap_err();
        assert_eq!(err.kind(), Kind::NotApproved);
        assert!(err.to_string().contains("seal does not verify"), "{err}");
        assert_eq!(start.num_calls(), 0);
        assert_eq!(audit_put.num_calls(), 1, "DECISION_FORGED appended");
        // The same decision with a seal that verifies starts the build.
        d.sealer = crate::shared::approval::seal::tests::sealer(true);
        let second = handle(&d, input()).await;
        assert_eq!(start.num_calls(), 1, "{second:?}");
    }

    #[tokio::test]
    async fn a_pending_or_cancelled_patch_starts_nothing() {
        let start = start_build();
        let get = stored(fixtures::record(Status::PendingApproval));
        let err = handle(&deps(&[&get], &[&start]), input())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("is PENDING_APPROVAL"), "{err}");
        let mut cancelled = fixtures::record(Status::Approved);
        cancelled.cancelled_by = Some("bob".into());
        let get = stored(cancelled);
        let err = handle(&deps(&[&get], &[&start]), input())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cancelled by bob"), "{err}");
        assert_eq!(start.num_calls(), 0);
    }

    #[tokio::test]
    async fn a_dry_run_only_patch_never_starts_a_build_even_marked_approved() {
        // A record written to look approved (status, approvers): a dry run only still never runs.
        let mut rec = fixtures::record(Status::Approved);
        rec.approvers = vec!["alice".into()];
        let run = rec.request.as_mut().unwrap();
        run.dry_run_only = true;
        run.request_hash = crate::patch::request_hash(run);
        let patch = run.clone();
        let (get, start) = (stored(rec), start_build());
        let d = deps(&[&get], &[&start]);
        let err = handle(
            &d,
            Input {
                patch,
                dry_run: false,
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), Kind::NotApproved);
        assert!(
            err.to_string()
                .contains("a dry run only never runs for real"),
            "{err}"
        );
        assert_eq!(start.num_calls(), 0);
    }

    #[tokio::test]
    async fn a_request_other_than_the_recorded_one_starts_nothing() {
        let start = start_build();
        let get = stored(fixtures::record(Status::Approved));
        let mut other = input();
        other.patch.request_hash = "tampered".into();
        let err = handle(&deps(&[&get], &[&start]), other).await.unwrap_err();
        assert_eq!(err.kind(), Kind::NotApproved);
        assert!(
            err.to_string().contains("not the request on record"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_retry_finds_the_build_on_the_record() {
        let mut rec = fixtures::record(Status::Running);
        rec.build_id = Some("batchless-staging-patch:1".into());
        let (get, start) = (stored(rec), start_build());
        let out = handle(&deps(&[&get], &[&start]), input()).await.unwrap();
        assert_eq!(out.build_id, "batchless-staging-patch:1");
        assert_eq!(start.num_calls(), 0);
    }
}
