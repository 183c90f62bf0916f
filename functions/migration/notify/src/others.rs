//! TEMPORARY — removed when data-patch has its own validate/notify (and the scheduled job its
//! own notify): the data-patch workflow still posts its result here (`"kind": "data-patch"`,
//! to the approval request's thread) and the scheduled-job workflow a plain
//! `{"channel", "text", "threadTs"?}` message. Dispatched from the main (calling
//! `batchless_core::patch`, never from `migration`). Every text is redacted before it leaves.

use aws_types::SdkConfig;
use batchless_core::migration::steps::notify as step;
use batchless_core::patch::message::thread_reply;
use batchless_core::patch::workflow::{self, PatchState};
use batchless_core::platform::input::parse_strict;
use batchless_core::platform::{config, redact, slack::Message};
use batchless_core::Error;
use serde::Deserialize;
use serde_json::{json, Value};

/// The migration step's deps, and the alerts channel for a data patch without a thread.
pub struct Deps {
    pub migration: step::Deps,
    alerts_channel: String,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Deps, Error> {
        Ok(Deps {
            migration: step::Deps::from_env(sdk).await?,
            alerts_channel: config::required("SLACK_ALERTS_CHANNEL")?,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataPatch {
    #[allow(dead_code)] // always "data-patch": checked before parsing
    kind: String,
    state: Box<PatchState>,
}

/// The message for a data-patch or plain event; `None` for the migration step's own input.
pub fn message(deps: &Deps, event: &Value) -> Result<Option<Message>, Error> {
    let redacted = |channel: String, text: &str, thread_ts| Message {
        channel,
        text: redact::redact(text).into_owned(),
        blocks: None,
        thread_ts,
    };
    match event.get("kind").map(|k| k.as_str()) {
        Some(Some("data-patch")) => {
            let DataPatch { state, .. } = parse_strict(event.clone())?;
            let text = workflow::result_text(&state);
            Ok(Some(
                match state.record.as_ref().and_then(|r| r.thread.clone()) {
                    Some(t) => thread_reply(&t.channel, &t.ts, &text),
                    None => redacted(deps.alerts_channel.clone(), &text, None),
                },
            ))
        }
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
            alerts_channel: "CALERT".into(),
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
