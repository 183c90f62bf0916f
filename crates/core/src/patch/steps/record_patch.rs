//! `record-patch`: the data-patch workflow's record keeper.
//! - `{"action": "request", "patch": {...}}` (`RecordRequest`): create the patch record
//!   (`PENDING_APPROVAL`, once: a retry finds it) and append `REQUESTED` to the audit trail.
//! - `{"action": "finish", "state": {...}}` (`RecordOutcome`): the final status (succeeded,
//!   failed, rejected, expired, cancelled, not approved, error) on the record, `FINISHED` in
//!   the audit trail, and what the workflow outputs or fails with, plus the Slack thread to
//!   post the result in; the real run's measure beside its preview, with the differences
//!   flagged.
//! - `{"action": "preview", "patch": {...}, "outcome": {...}}` (`RecordPreview`): the dry
//!   run's preview (read from its artifacts in S3) on the record, its digest joined into the
//!   request hash (the new `$.patch`), `PREVIEWED` in the audit trail. A preview that failed or
//!   was cut short ends `NotApproved` where the environment says such a patch cannot be
//!   approved (`PATCH_FAILED_PREVIEW_APPROVABLE`, default `no`).

use aws_types::SdkConfig;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest;

use crate::error::Error;
use crate::patch::preview::{self, Measure, Settings};
use crate::patch::store::{self, Backend};
use crate::patch::workflow::{self, PatchState, Recorded};
use crate::patch::{events, request_hash, PatchRun, Status};
use crate::platform::aws::{normalize_build_id, AwsResultExt};
use crate::platform::{redact, time};
use crate::shared::audit;
use crate::shared::build::BuildOutcome;

pub struct Deps {
    pub backend: Backend,
    pub settings: Settings,
}

impl Deps {
    /// `PATCHES_TABLE`, `AUDIT_TABLE`, `LOGS_BUCKET`, the dry-run settings.
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            backend: Backend::from_env(sdk)?,
            settings: Settings::from_env()?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, tag = "action", rename_all = "lowercase")]
pub enum Input {
    Request {
        patch: Box<PatchRun>,
    },
    Preview {
        patch: Box<PatchRun>,
        outcome: Box<BuildOutcome>,
    },
    Finish {
        state: Box<PatchState>,
    },
}

/// An S3 object's bytes, or `None` when there is no such key.
async fn object(deps: &Deps, key: &str) -> Result<Option<Vec<u8>>, Error> {
    let got = deps
        .backend
        .s3
        .get_object()
        .bucket(&deps.backend.bucket)
        .key(key)
        .send()
        .await;
    match got {
        Ok(o) => Ok(Some(
            o.body
                .collect()
                .await
                .map_err(|e| {
                    Error::Corrupt(format!("reading s3://{}/{key}: {e}", deps.backend.bucket))
                })?
                .into_bytes()
                .to_vec(),
        )),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
        Err(e) => {
            let r: Result<(), _> = Err(e);
            r.aws("GetObject")?;
            Ok(None)
        }
    }
}

/// The measure the shim wrote (`mode` as expected), its URI and sha256; `None` when absent or
/// unreadable (the reason is logged; the preview then says "no preview").
async fn read_measure(
    deps: &Deps,
    key: &str,
    mode: &str,
) -> Result<(Option<Measure>, Option<String>, Option<String>), Error> {
    let uri = format!("s3://{}/{key}", deps.backend.bucket);
    let Some(bytes) = object(deps, key).await? else {
        return Ok((None, None, None));
    };
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    match preview::parse_measure(&bytes) {
        Ok(m) if m.mode == mode => Ok((Some(m), Some(uri), Some(sha))),
        Ok(m) => {
            tracing::warn!(%uri, mode = %m.mode, "measure of another mode ignored");
            Ok((None, Some(uri), Some(sha)))
        }
        Err(e) => {
            tracing::warn!(%uri, error = %e, "unreadable measure ignored");
            Ok((None, Some(uri), Some(sha)))
        }
    }
}

/// The key of a dry run's preview, and of a real run's measure.
pub fn preview_key(patch_id: &str) -> String {
    format!(
        "{}/preview/{}",
        super::start_patch_build::preview_path(patch_id),
        preview::PREVIEW_FILE
    )
}

pub fn measure_key(patch_id: &str) -> String {
    format!("patches/{patch_id}/output/{}", preview::MEASURE_FILE)
}

async fn record_preview(
    deps: &Deps,
    patch: &PatchRun,
    outcome: &BuildOutcome,
) -> Result<PatchRun, Error> {
    let st = deps.backend.store();
    let rec = store::must_get(st.db, st.table, &patch.patch_id).await?;
    let run = rec.run()?.clone();
    let stored = match &rec.preview {
        // A retry: the preview is recorded and the request on record carries its digest.
        Some(p) => p.clone(),
        None => {
            if run.request_hash != patch.request_hash || run.request_hash != request_hash(&run) {
                return Err(Error::NotApproved(format!(
                    "patch {}: the request in the workflow is not the request on record",
                    patch.patch_id
                )));
            }
            let build_id = normalize_build_id(&outcome.build_id);
            if rec.preview_build_id.as_deref().map(normalize_build_id) != Some(build_id) {
                return Err(Error::NotApproved(format!(
                    "patch {}: build {build_id} is not its dry run ({})",
                    patch.patch_id,
                    rec.preview_build_id.as_deref().unwrap_or("none recorded")
                )));
            }
            let (measure, uri, sha) =
                read_measure(deps, &preview_key(&run.patch_id), "dry-run").await?;
            let measure = measure.filter(|m| m.rolled_back);
            let p = preview::preview(
                &run,
                build_id,
                &outcome.status,
                measure,
                uri,
                sha,
                &deps.settings,
            );
            let mut next = run.clone();
            next.preview_digest = Some(p.digest.clone());
            next.request_hash = request_hash(&next);
            let written = store::update(
                st.db,
                st.table,
                &run.patch_id,
                &[("preview", json!(p)), ("request", json!(next))],
                Some("#status = :pending AND attribute_not_exists(#preview)"),
                &[(":pending", json!(Status::PendingApproval))],
            )
            .await?;
            let rec = match written {
                Some(r) => r,
                None => store::must_get(st.db, st.table, &run.patch_id).await?,
            };
            let Some(p) = rec.preview.clone() else {
                return Err(Error::NotApproved(format!(
                    "patch {} is {}; its preview was not recorded",
                    run.patch_id, rec.status
                )));
            };
            let now = rec.run()?;
            audit::append(
                &st.trail,
                &store::entry(
                    now,
                    format!("previewed:{}", run.patch_id),
                    events::PREVIEWED,
                    "workflow",
                    json!({
                        "buildId": p.build_id,
                        "outcome": p.outcome,
                        "problem": p.problem,
                        "approvable": p.approvable,
                        "digest": p.digest,
                        "uri": p.uri,
                        "sha256": p.sha256,
                        "summary": p.measure.as_ref().map(preview::summary_lines),
                        "requestHashBefore": run.request_hash,
                        "requestHash": now.request_hash,
                    }),
                ),
            )
            .await?;
            p
        }
    };
    let rec = store::must_get(st.db, st.table, &patch.patch_id).await?;
    let next = rec.run()?.clone();
    // A dry run only is never approved: its preview is the result, whatever it shows.
    if !stored.approvable && !next.dry_run_only {
        return Err(Error::NotApproved(format!(
            "patch {}: {}; in {} a patch whose dry run failed or was cut short cannot be approved: fix it (or the lock it waited on) and submit it again",
            next.patch_id,
            stored.problem.as_deref().unwrap_or("the dry run failed"),
            next.environment
        )));
    }
    tracing::info!(patch = %next.patch_id, digest = %stored.digest, "preview recorded");
    Ok(next)
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Output {
    /// `RecordRequest` (its result is discarded by the ASL).
    Requested { status: Status },
    /// `RecordOutcome`: `$.record`, which `Outcome?` routes on.
    Finished(Box<Recorded>),
    /// `RecordPreview`: the request as recorded now (its hash includes the preview), `$.patch`.
    Previewed(Box<PatchRun>),
}

/// The statuses a finish may end: the open ones, and the ones a decision already ended
/// (`REJECTED`, `CANCELLED`: kept, with the finish fields added).
const FINISHABLE: [Status; 5] = [
    Status::PendingApproval,
    Status::Approved,
    Status::Running,
    Status::Rejected,
    Status::Cancelled,
];

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let st = deps.backend.store();
    match input {
        Input::Request { patch } => {
            let rec = store::create(&st, &patch).await?;
            tracing::info!(patch = %rec.patch_id, requester = %patch.requester, "patch requested");
            Ok(Output::Requested { status: rec.status })
        }
        Input::Preview { patch, outcome } => Ok(Output::Previewed(Box::new(
            Box::pin(record_preview(deps, &patch, &outcome)).await?,
        ))),
        Input::Finish { state } => {
            let run = &state.patch;
            let rec = store::must_get(st.db, st.table, &run.patch_id).await?;
            let mut recorded = workflow::record(&state, &rec);
            let mut fields = vec![("finishedAt", json!(time::rfc3339(time::now())))];
            // The real run's measure beside its preview (when a build ran).
            if state.outcome.is_some() {
                let (actual, _, _) = read_measure(deps, &measure_key(&run.patch_id), "run").await?;
                if let Some(actual) = actual {
                    let preview = rec.preview.as_ref().and_then(|p| p.measure.as_ref());
                    let flags = preview
                        .map(|p| preview::compare(p, &actual, deps.settings.flag_factor))
                        .unwrap_or_default();
                    recorded.comparison = Some(workflow::Comparison {
                        preview: preview.map(preview::summary_lines).unwrap_or_default(),
                        actual: preview::summary_lines(&actual),
                        flags: flags.clone(),
                    });
                    fields.push(("actual", json!(actual)));
                    if !flags.is_empty() {
                        fields.push(("previewFlags", json!(flags)));
                    }
                }
            }
            for (name, value) in [
                (
                    "failureCause",
                    recorded.failure_cause.as_ref().map(|v| json!(v)),
                ),
                ("logUri", recorded.output.log_uri.as_ref().map(|v| json!(v))),
                (
                    "logSha256",
                    recorded.output.log_sha256.as_ref().map(|v| json!(v)),
                ),
                ("verdict", recorded.verdict.map(|v| json!(v))),
            ] {
                if let Some(v) = value {
                    fields.push((name, v));
                }
            }
            store::transition(
                st.db,
                st.table,
                &run.patch_id,
                &FINISHABLE,
                recorded.status,
                &fields,
            )
            .await?;
            audit::append(
                &st.trail,
                &store::entry(
                    run,
                    format!("finished:{}", run.patch_id),
                    events::FINISHED,
                    "workflow",
                    json!({
                        "status": recorded.status,
                        "buildId": recorded.output.build_id,
                        "verdict": recorded.verdict,
                        "logUri": recorded.output.log_uri,
                        "logSha256": recorded.output.log_sha256,
                        "failureCause": recorded.failure_cause.as_deref().map(|c| redact::redact(c).into_owned()),
                        "previewDigest": rec.preview.as_ref().map(|p| &p.digest),
                        "comparison": recorded.comparison,
                        "executionArn": run.execution_arn,
                    }),
                ),
            )
            .await?;
            tracing::info!(patch = %run.patch_id, status = %recorded.status, "patch finished");
            Ok(Output::Finished(Box::new(recorded)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;
    use crate::patch::steps::fixtures::{self, anchor, audit_append, backend, stored, PATCHES};
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;

    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

    fn deps(db: &[&Rule], s3: &[&Rule]) -> Deps {
        Deps {
            backend: backend(
                mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, db),
                mock_client!(aws_sdk_s3, RuleMode::MatchAny, s3),
            ),
            settings: Settings::default(),
        }
    }

    fn create() -> Rule {
        mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.table_name() == Some(PATCHES)
                    && r.condition_expression() == Some("attribute_not_exists(#k)")
                    && crate::testing::attr_s(r.item(), "status") == Some("PENDING_APPROVAL")
                    && r.item()
                        .and_then(|i| i.get("decisions"))
                        .is_some_and(|v| v.is_m())
            })
            .then_output(|| PutItemOutput::builder().build())
    }

    fn seen() -> Rule {
        crate::testing::put_item_exists()
    }

    #[tokio::test]
    async fn a_request_is_recorded_once_and_audited() {
        let put = create();
        let [audit_get, audit_tx] = audit_append();
        let s3 = anchor();
        let d = deps(&[&put, &audit_get, &audit_tx], &[&s3]);
        let out = handle(
            &d,
            Input::Request {
                patch: Box::new(fixtures::run()),
            },
        )
        .await
        .unwrap();
        assert_eq!(
            serde_json::to_value(out).unwrap(),
            json!({"status": "PENDING_APPROVAL"})
        );
        assert_eq!((put.num_calls(), audit_tx.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_retried_request_finds_its_record() {
        let put = seen();
        let get = stored(fixtures::record(Status::PendingApproval));
        let [audit_get, audit_tx] = audit_append();
        let s3 = anchor();
        let d = deps(&[&put, &get, &audit_get, &audit_tx], &[&s3]);
        let patch = Box::new(fixtures::run());
        let out = handle(&d, Input::Request { patch }).await.unwrap();
        assert!(matches!(
            out,
            Output::Requested {
                status: Status::PendingApproval
            }
        ));
    }

    #[tokio::test]
    async fn a_different_request_under_the_same_id_is_a_conflict() {
        let put = seen();
        let mut other = fixtures::record(Status::PendingApproval);
        other.request.as_mut().unwrap().request_hash = "another".into();
        let get = stored(other);
        let d = deps(&[&put, &get], &[]);
        let patch = Box::new(fixtures::run());
        let err = handle(&d, Input::Request { patch }).await.unwrap_err();
        assert_eq!(err.kind(), Kind::Conflict);
    }

    #[tokio::test]
    async fn a_finish_moves_only_an_open_or_decided_record() {
        use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
        let get = stored(fixtures::record(Status::Rejected));
        let update = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                let values = r.expression_attribute_values().cloned().unwrap_or_default();
                let from: Vec<&str> = (0..5)
                    .filter_map(|i| values.get(&format!(":from{i}")))
                    .filter_map(|v| v.as_s().ok().map(String::as_str))
                    .collect();
                r.condition_expression().is_some_and(|c| {
                    c.contains("#status IN (:from0, :from1, :from2, :from3, :from4)")
                }) && from
                    == [
                        "PENDING_APPROVAL",
                        "APPROVED",
                        "RUNNING",
                        "REJECTED",
                        "CANCELLED",
                    ]
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let [audit_get, audit_tx] = audit_append();
        let s3 = anchor();
        let d = deps(&[&get, &update, &audit_get, &audit_tx], &[&s3]);
        let state: PatchState = serde_json::from_value(json!({"patch": fixtures::run()})).unwrap();
        let out = handle(
            &d,
            Input::Finish {
                state: Box::new(state),
            },
        )
        .await
        .unwrap();
        let Output::Finished(recorded) = out else {
            panic!("a finish records")
        };
        assert_eq!(recorded.status, Status::Rejected);
        assert_eq!(update.num_calls(), 1);
        assert_eq!(audit_tx.num_calls(), 1);
    }
}
