//! The migration workflow's steps, one module per Lambda (`functions/migration/<step>`), in the
//! order `statemachines/migration.asl.json` runs them. Each has `Deps` (built once,
//! `Deps::from_env`), a strict `Input`, an `Output` and `handle`.

pub mod migration_approval;
pub mod migration_lock;
pub mod notify;
/// Not a state: the CodePipeline action that starts the workflow and reports its end.
pub mod pipeline_bridge;
pub mod read_migration_report;
pub mod record_migration_run;
pub mod start_migration_build;
pub mod validate_input;
