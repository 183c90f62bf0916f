//! The data-patch workflow's steps, one module per Lambda (`functions/patch/<step>`), in the
//! order `statemachines/data-patch.asl.json` runs them. Each has `Deps` (built once,
//! `Deps::from_env`), a strict `Input`, an `Output` and `handle`.
//!
//! - [`validate_patch_request`]: `ValidateInput`, the request checked strictly.
//! - [`record_patch`]: `RecordRequest` and `RecordOutcome`, the record and its audit trail.
//! - [`request_approval`]: `RequestApproval`, the Slack request and the approval wait.
//! - [`start_patch_build`] with `dryRun` (`StartDryRun`) and [`record_patch`] `preview`
//!   (`RecordPreview`): the dry run before the approval request, its preview recorded.
//! - [`approval`]: the Slack buttons (a function URL) that decide and end that wait.
//! - [`decision`]: the same decisions and cancels from an IAM-authenticated caller (the CLI).
//! - [`start_patch_build`]: `StartPatchBuild`, the approval re-checked, the build started.
//! - [`audit_check`]: `AuditCheck`, the build against the approval; and the daily sweep.
//! - [`notify_patch_result`]: `Notify`, the result in the request's thread.

pub mod approval;
pub mod audit_check;
pub mod decision;
pub mod notify_patch_result;
pub mod record_patch;
pub mod request_approval;
pub mod start_patch_build;
pub mod validate_patch_request;

/// What the steps' tests share: a validated patch, its record, and mocked AWS answers.
#[cfg(test)]
pub(crate) mod fixtures {
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;
    use aws_sdk_s3::operation::put_object::PutObjectOutput;
    use aws_smithy_mocks::{mock, Rule};

    use crate::patch::store::{Backend, PatchRecord};
    use crate::patch::tests::{exec, people, request};
    use crate::patch::{validate, PatchRun, Policy, Status};
    use crate::platform::dynamo::to_item;

    pub const PATCHES: &str = "patches";
    pub const AUDIT: &str = "audit";

    /// A validated patch of an environment without the dry run (the dry run's own tests set
    /// `dry_run`).
    pub fn run() -> PatchRun {
        let policy = Policy {
            dry_run: false,
            ..Policy::default()
        };
        validate(request(), &exec(), "staging", &people(), policy).unwrap()
    }

    pub fn record(status: Status) -> PatchRecord {
        let run = run();
        PatchRecord {
            patch_id: run.patch_id.clone(),
            environment: run.environment.clone(),
            status,
            created_at: run.requested_at.clone(),
            updated_at: run.requested_at.clone(),
            request: Some(run),
            ..Default::default()
        }
    }

    pub fn backend(db: aws_sdk_dynamodb::Client, s3: aws_sdk_s3::Client) -> Backend {
        Backend {
            db,
            s3,
            patches_table: PATCHES.into(),
            audit_table: AUDIT.into(),
            bucket: "logs".into(),
        }
    }

    /// `GetItem` of the patches table answers `rec`.
    pub fn stored(rec: PatchRecord) -> Rule {
        mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| r.table_name() == Some(PATCHES))
            .then_output(move || {
                GetItemOutput::builder()
                    .set_item(Some(to_item(&rec)))
                    .build()
            })
    }

    /// An empty audit chain that takes one append: no key marker, no head, the transaction
    /// succeeds. With [`anchor`] for its S3 anchor.
    pub fn audit_append() -> [Rule; 2] {
        [
            mock!(aws_sdk_dynamodb::Client::get_item)
                .match_requests(|r| r.table_name() == Some(AUDIT))
                .then_output(|| GetItemOutput::builder().build()),
            mock!(aws_sdk_dynamodb::Client::transact_write_items)
                .then_output(|| TransactWriteItemsOutput::builder().build()),
        ]
    }

    pub fn anchor() -> Rule {
        mock!(aws_sdk_s3::Client::put_object).then_output(|| PutObjectOutput::builder().build())
    }
}
