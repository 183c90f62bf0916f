//! Bastion watch (issue 6): every ECS Exec login into the bastion task is recorded and posted to
//! Slack, every dangerous console/shell command is posted into that login's thread, and when no
//! executive replies with approval evidence before the deadline an alert fires.
//!
//! Plain, unit-tested policies live in the submodules:
//! - [`scan`]: terminal-noise stripping and dangerous-command matching (one `RegexSet` pass);
//! - [`approval`]: what counts as approval evidence in the login thread;
//! - [`phrases`]: which reply texts are affirmative approval statements (configuration);
//! - [`subscription`]: CloudWatch Logs subscription payloads (base64 + gzip) and the hook's lines;
//! - [`login`]: the CloudTrail `ExecuteCommand` event → the watch's input;
//! - [`session`]: the session records (DynamoDB) and the Slack messages.

pub mod approval;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod login;
pub mod phrases;
pub mod scan;
pub mod session;
pub mod steps;
pub mod subscription;

use serde::Deserialize;

use crate::error::Error;

/// The configuration shipped with the functions (embedded at build time).
pub const EMBEDDED: &str = include_str!("../../../../infra/bastion/watch.yaml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    pub patterns: Vec<scan::PatternSpec>,
    pub approval: approval::PhraseSpec,
}

impl WatchConfig {
    pub fn parse(yaml: &str) -> Result<Self, Error> {
        serde_norway::from_str(yaml)
            .map_err(|e| Error::config(format!("bastion watch config: {e}")))
    }

    /// The embedded configuration, or the file named by `BASTION_WATCH_FILE`.
    pub fn load() -> Result<Self, Error> {
        match std::env::var("BASTION_WATCH_FILE") {
            Ok(path) if !path.trim().is_empty() => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| Error::config(format!("BASTION_WATCH_FILE {path}: {e}")))?;
                WatchConfig::parse(&text)
            }
            _ => WatchConfig::parse(EMBEDDED),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_config_compiles() {
        let c = WatchConfig::parse(EMBEDDED).unwrap();
        scan::Scanner::new(&c.patterns).unwrap();
        approval::Phrases::new(&c.approval).unwrap();
        assert!(c.patterns.len() >= 12);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e =
            WatchConfig::parse("patterns: []\napproval: {phrases: [], negations: []}\nextra: 1\n")
                .unwrap_err();
        assert!(e.to_string().contains("unknown field `extra`"), "{e}");
    }
}
