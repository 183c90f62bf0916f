//! Platform: what every workflow stands on and that knows no workflow — the AWS client
//! factory and error classification, configuration, time, redaction, strict input, DynamoDB
//! items and conditional writes, KMS signatures, and the Slack client.

pub mod aws;
pub mod config;
pub mod dynamo;
pub mod input;
pub mod metrics;
pub mod redact;
pub mod signing;
pub mod slack;
pub mod time;
