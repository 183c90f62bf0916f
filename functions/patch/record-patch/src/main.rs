//! `record-patch`: the data-patch workflow's record keeper.
//! - `{"action": "request", "patch": {...}}`: create the patch record (`PENDING_APPROVAL`) and
//!   append `REQUESTED` to the audit trail (idempotent: a retry finds both).
//! - `{"action": "finish", "state": {...}}`: the final status (succeeded, failed, rejected,
//!   expired, cancelled, not approved, error) on the record, `FINISHED` in the audit trail, and
//!   what the workflow outputs or fails with, plus the Slack thread to post the result in.

use batchless_core::patch::events;
use batchless_core::patch::store::{self, Backend};
use batchless_core::patch::workflow::{self, PatchState};
use batchless_core::patch::{status, PatchRun};
use batchless_core::platform::input::parse_strict;
use batchless_core::{platform::aws, platform::redact, shared::audit, Error};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use serde_json::{json, Value};

struct Deps {
    backend: Backend,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, tag = "action", rename_all = "lowercase")]
enum Event {
    Request { patch: Box<PatchRun> },
    Finish { state: Box<PatchState> },
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let st = deps.backend.store();
    match parse_strict::<Event>(event)? {
        Event::Request { patch } => {
            let rec = store::create(&st, &patch).await?;
            tracing::info!(patch = %rec.patch_id, requester = %patch.requester, "patch requested");
            Ok(json!({ "status": rec.status }))
        }
        Event::Finish { state } => {
            let run = &state.patch;
            let rec = store::must_get(st.db, st.table, &run.patch_id).await?;
            let recorded = workflow::record(&state, &rec);
            let mut fields = vec![(
                "finishedAt",
                json!(batchless_core::platform::time::rfc3339(
                    batchless_core::platform::time::now()
                )),
            )];
            for (name, value) in [
                ("failureCause", recorded.failure_cause.clone()),
                ("logUri", recorded.output.log_uri.clone()),
                ("logSha256", recorded.output.log_sha256.clone()),
                ("verdict", recorded.verdict.clone()),
            ] {
                if let Some(v) = value {
                    fields.push((name, json!(v)));
                }
            }
            let open = [
                status::PENDING_APPROVAL,
                status::APPROVED,
                status::RUNNING,
                // The decision already ended the approval: keep it, add the finish fields.
                status::REJECTED,
                status::CANCELLED,
            ];
            store::transition(
                st.db,
                st.table,
                &run.patch_id,
                &open,
                &recorded.status,
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
                        "executionArn": run.execution_arn,
                    }),
                ),
            )
            .await?;
            tracing::info!(patch = %run.patch_id, status = %recorded.status, "patch finished");
            Ok(serde_json::to_value(recorded).expect("serializes"))
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        backend: Backend::from_env(&sdk)?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
