//! Resources several workflows use: the runs table (one record type, one writer), locks,
//! CodeBuild builds, ECS tasks, log archiving, failure causes, the people map, the audit trail
//! and cleanup on abort. Stands on [`crate::platform`] and [`crate::sfn`]; knows no workflow.

pub mod audit;
pub mod build;
pub mod cause;
pub mod lock;
pub mod logs;
pub mod people;
pub mod runs;
pub mod steps;
pub mod task;
