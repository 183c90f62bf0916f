//! TEMPORARY — removed when the scheduled job has its own notify step: the scheduled-job
//! workflow posts a plain `{"channel", "text", "threadTs"?}` message here. Dispatched from the
//! main. Every text is redacted before it leaves.

use aws_types::SdkConfig;
use batchless_core::migration::steps::notify as step;
use batchless_core::platform::input::parse_strict;
use batchless_core::platform::{redact, slack::Message};
use batchless_core::Error;
use serde::Deserialize;
use serde_json::{json, Value};

/// The migration step's deps (its Slack client posts the plain messages too).
pub struct Deps {
    pub migration: step::Deps,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Deps, Error> {
        Ok(Deps {
            migration: step::Deps::from_env(sdk).await?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Plain {
    channel: String,
    text: String,
    #[serde(default)]
    thread_ts: Option<String>,
}

/// The message for a plain event; `None` for the migration step's own input.
pub fn message(_deps: &Deps, event: &Value) -> Result<Option<Message>, Error> {
    let redacted = |channel: String, text: &str, thread_ts| Message {
        channel,
        text: redact::redact(text).into_owned(),
        blocks: None,
        thread_ts,
    };
    match event.get("kind").map(|k| k.as_str()) {
        Some(_) => Ok(None),
        None => {
            let p: Plain = parse_strict(event.clone())?;
            Ok(Some(redacted(p.channel, &p.text, p.thread_ts)))
        }
    }
}

pub async fn post(deps: &Deps, message: Message) -> Result<Value, Error> {
    let posted = deps.migration.slack.post_message(&message).await?;
    tracing::info!(channel = %posted.channel, ts = %posted.ts, "posted to Slack");
    Ok(json!({ "channel": posted.channel, "ts": posted.ts }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use batchless_core::platform::slack::SlackClient;

    fn deps() -> Deps {
        Deps {
            migration: step::Deps {
                slack: SlackClient::new("http://127.0.0.1:9/api", "t"),
                channel: "CMIG".into(),
            },
        }
    }

    #[test]
    fn plain_messages_are_redacted_and_strict() {
        let m = message(
            &deps(),
            &json!({"channel": "C1", "text": "token xoxb-1-2-secret"}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(m.channel, "C1");
        assert!(!m.text.contains("secret"));
        let err = message(
            &deps(),
            &json!({"channel": "C1", "text": "x", "colour": "red"}),
        )
        .unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
    }

    #[tokio::test]
    async fn other_kinds_go_to_the_migration_step_which_refuses_them() {
        let ev = json!({"kind": "deploy", "state": {}});
        assert!(message(&deps(), &ev).unwrap().is_none());
        let err = crate::handle(&deps(), ev).await.unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
        let err = crate::handle(&deps(), json!({"kind": "data-patch", "state": {}}))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
    }
}
