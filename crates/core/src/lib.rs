//! batchless core: domain types, policies, AWS adapters and the Slack client.
//!
//! Lambda binaries under `functions/` are thin: they build their clients once and call the
//! plain functions here. Every failure a state machine routes on carries a stable
//! `error_type` (see [`error`]).

pub mod audit;
pub mod aws;
pub mod bastion;
pub mod build;
pub mod cause;
pub mod cleanup;
pub mod config;
pub mod coverage;
pub mod dynamo;
pub mod error;
pub mod input;
pub mod jobs;
pub mod lock;
pub mod logs;
pub mod migration;
pub mod patch;
pub mod people;
pub mod pipeline;
pub mod redact;
pub mod runs;
pub mod slack;
pub mod time;
pub mod waits;

pub use error::Error;

#[cfg(test)]
pub(crate) mod testing {
    /// Error metadata as the SDK's deserializers set it (mocked modeled errors lack it).
    pub fn meta(code: &str) -> aws_smithy_types::error::ErrorMetadata {
        aws_smithy_types::error::ErrorMetadata::builder()
            .code(code)
            .build()
    }
}
