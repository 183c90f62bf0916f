//! Resources several workflows use: the runs table (one record type, one writer), locks,
//! CodeBuild builds, ECS tasks, log archiving, failure causes, the people map and the audit
//! trail; [`steps`] holds the Lambda steps every workflow uses (register / complete a wait, poll
//! a build, collect logs, cleanup on abort). Stands on [`crate::platform`] and [`crate::sfn`];
//! knows no workflow.

pub mod approval;
pub mod audit;
pub mod build;
pub mod cause;
pub mod lock;
pub mod logs;
pub mod people;
pub mod runs;
pub mod steps;
pub mod submission;
pub mod task;
