//! Step Functions plumbing: the execution a step runs in, caught step errors, execution
//! statuses, the one idempotent StartExecution ([`execution::start`]), and task-token waits.
//! Knows no workflow; stands on [`crate::platform`] only.

pub mod execution;
pub mod waits;

pub use execution::{
    execution_console_url, Execution, ExecutionStatus, ExecutionStatusChange, Started, StepError,
};
