//! The data-patch workflow's steps, one module per Lambda (`functions/patch/<step>`), in the
//! order `statemachines/data-patch.asl.json` runs them. Each has `Deps` (built once,
//! `Deps::from_env`), a strict `Input`, an `Output` and `handle`.
//!
//! - [`validate_patch_request`]: `ValidateInput`, the request checked strictly.
//! - [`record_patch`]: `RecordRequest` and `RecordOutcome`, the record and its audit trail.
//! - [`request_approval`]: `RequestApproval`, the Slack request and the approval wait.
//! - [`approval`]: the Slack buttons (a function URL) that decide and end that wait.
//! - [`start_patch_build`]: `StartPatchBuild`, the approval re-checked, the build started.
//! - [`audit_check`]: `AuditCheck`, the build against the approval; and the daily sweep.
//! - [`notify_patch_result`]: `Notify`, the result in the request's thread.

pub mod approval;
pub mod audit_check;
pub mod notify_patch_result;
pub mod record_patch;
pub mod request_approval;
pub mod start_patch_build;
pub mod validate_patch_request;
