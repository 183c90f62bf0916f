//! The scheduled-job workflow's steps, one module per Lambda (`functions/jobs/<step>`), in the
//! order `statemachines/scheduled-job.asl.json` runs them; `missed_run_check` runs on its own
//! schedule. Each has `Deps` (built once, `Deps::from_env`), a strict `Input`, an `Output` and
//! `handle`.

pub mod acquire_job_lease;
pub mod claim_occurrence;
pub mod missed_run_check;
pub mod notify_job_result;
pub mod poll_task;
pub mod record_job_run;
pub mod run_job_task;
