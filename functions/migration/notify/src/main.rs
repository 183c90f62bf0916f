//! `notify`: post to Slack. Either a plain message `{"channel", "text", "threadTs"?}` or a
//! workflow result `{"kind": "migration", "state": {...}}` rendered by core. Every text is
//! redacted before it leaves.

use batchless_core::migration::{self, MigrationState};
use batchless_core::patch::message;
use batchless_core::patch::workflow::{self, PatchState};
use batchless_core::platform::input::parse_strict;
use batchless_core::platform::slack::{Message, SlackClient};
use batchless_core::{platform::aws, platform::config, platform::redact, Error};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use serde_json::{json, Value};

struct Deps {
    slack: SlackClient,
    migrations_channel: String,
    alerts_channel: String,
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
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
enum Workflow {
    Migration {
        state: Box<MigrationState>,
    },
    /// The result goes to the approval request's thread.
    #[serde(rename = "data-patch")]
    DataPatch {
        state: Box<PatchState>,
    },
}

fn message(event: Value, deps: &Deps) -> Result<Message, Error> {
    if event.get("kind").is_some() {
        match parse_strict::<Workflow>(event)? {
            Workflow::Migration { state } => {
                Ok(migration::slack_message(&state, &deps.migrations_channel))
            }
            Workflow::DataPatch { state } => {
                let thread = state.record.as_ref().and_then(|r| r.thread.clone());
                let text = workflow::result_text(&state);
                Ok(match thread {
                    Some(t) => message::thread_reply(&t.channel, &t.ts, &text),
                    None => Message {
                        channel: deps.alerts_channel.clone(),
                        text: redact::redact(&text).into_owned(),
                        blocks: None,
                        thread_ts: None,
                    },
                })
            }
        }
    } else {
        let p: Plain = parse_strict(event)?;
        Ok(Message {
            channel: p.channel,
            text: redact::redact(&p.text).into_owned(),
            blocks: None,
            thread_ts: p.thread_ts,
        })
    }
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let msg = message(event, deps)?;
    let posted = deps.slack.post_message(&msg).await?;
    tracing::info!(channel = %posted.channel, ts = %posted.ts, "posted to Slack");
    Ok(json!({ "channel": posted.channel, "ts": posted.ts }))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        slack: config::slack_client(&sdk).await?,
        migrations_channel: config::required("SLACK_MIGRATIONS_CHANNEL")?,
        alerts_channel: config::required("SLACK_ALERTS_CHANNEL")?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps() -> Deps {
        Deps {
            slack: SlackClient::new("http://127.0.0.1:9/api", "t"),
            migrations_channel: "CMIG".into(),
            alerts_channel: "CALERT".into(),
        }
    }

    #[test]
    fn plain_messages_are_redacted_and_strict() {
        let m = message(
            json!({"channel": "C1", "text": "token xoxb-1-2-secret"}),
            &deps(),
        )
        .unwrap();
        assert!(!m.text.contains("secret"));
        let err = message(
            json!({"channel": "C1", "text": "x", "colour": "red"}),
            &deps(),
        )
        .unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
        let err = message(json!({"kind": "deploy", "state": {}}), &deps()).unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
    }
}
