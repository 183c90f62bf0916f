//! `notify` (the migration's `Notify` state): the run's result posted to the migrations
//! channel — what happened, where the log is and, on failure, the redacted log tail. Every
//! text is redacted before it leaves.

use aws_types::SdkConfig;
use serde::Deserialize;

use crate::error::Error;
use crate::migration::{self, MigrationState};
use crate::platform::config;
use crate::platform::slack::{Posted, SlackClient};

pub struct Deps {
    pub slack: SlackClient,
    pub channel: String,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            slack: config::slack_client(sdk).await?,
            channel: config::required("SLACK_MIGRATIONS_CHANNEL")?,
        })
    }
}

/// What is being notified (the ASL passes `"kind": "migration"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Migration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub kind: Kind,
    pub state: Box<MigrationState>,
}

pub type Output = Posted;

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let message = migration::slack_message(&input.state, &deps.channel);
    let posted = deps.slack.post_message(&message).await?;
    tracing::info!(channel = %posted.channel, ts = %posted.ts, "migration result posted to Slack");
    Ok(posted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lambda::invoke;
    use crate::migration::tests::{outcome, state};
    use serde_json::json;

    /// A one-shot Slack Web API: answers `response` and hands back the request it got.
    async fn slack(response: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        crate::testing::serve_once(crate::testing::answer("200 OK", "", response)).await
    }

    #[tokio::test]
    async fn a_failed_migration_is_posted_redacted_to_the_migrations_channel() {
        let (base, served) =
            slack(r#"{"ok": true, "channel": "CMIG", "ts": "1700000000.000100"}"#).await;
        let d = Deps {
            slack: SlackClient::new(base, "xoxb-test"),
            channel: "CMIG".into(),
        };
        let mut s = state(Some(outcome(false)), None);
        s.logs.as_mut().unwrap().tail = "DATABASE_URL=postgres://app:hunter2@db/app".into();
        let out = invoke(
            &d,
            &handle,
            json!({"kind": "migration", "state": serde_json::to_value(&s).unwrap()}),
        )
        .await
        .unwrap();
        assert_eq!(out, json!({"channel": "CMIG", "ts": "1700000000.000100"}));
        let request = served.await.unwrap();
        assert!(request.contains("chat.postMessage"), "{request}");
        assert!(request.contains("\"channel\":\"CMIG\""), "{request}");
        assert!(request.contains("*failed*"), "{request}");
        assert!(!request.contains("hunter2"), "{request}");
    }

    #[tokio::test]
    async fn other_kinds_and_fields_are_refused() {
        let d = Deps {
            slack: SlackClient::new("http://127.0.0.1:9/api", "t"),
            channel: "CMIG".into(),
        };
        let s = serde_json::to_value(state(Some(outcome(true)), None)).unwrap();
        for ev in [
            json!({"kind": "deploy", "state": s.clone()}),
            json!({"kind": "migration", "state": s.clone(), "colour": "red"}),
            json!({"kind": "migration", "state": {}}),
        ] {
            let err = invoke(&d, &handle, ev).await.unwrap_err();
            assert_eq!(err.kind(), crate::error::Kind::InvalidInput);
        }
    }
}
