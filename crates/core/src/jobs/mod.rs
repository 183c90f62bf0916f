//! Scheduled jobs (issue 4): the jobs file, Scheduler expressions, exactly-once occurrences,
//! the per-job lease that carries the concurrency policy, ECS tasks, and the workflow's domain.

pub mod config;
pub mod lease;
pub mod ledger;
pub mod occurrence;
pub mod pause;
pub mod schedule;
pub mod steps;
pub mod workflow;

pub use config::{Concurrency, Job, JobsFile};
pub use workflow::WORKFLOW;
