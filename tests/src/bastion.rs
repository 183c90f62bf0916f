//! The bastion watch on a replica stack, shared by the `bastion` and `trust` scenario tests:
//! its state machine, tables and cluster, the session record, and signed Slack Events requests
//! (replies in a session's login thread) through the fake Slack.

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::{unique_name, Stack};

/// The alert channel of the replica's Slack.
pub const ALERTS_CHANNEL: &str = "C0ALERTS";

/// A stack's bastion watch: its state machine, the bastion table and the cluster.
pub struct Sessions {
    pub stack: Stack,
    pub sm: String,
    pub table: String,
    pub cluster: String,
}

/// A session id as ECS Exec makes them (`ecs-execute-command-<prefix><unique>`).
pub fn session_id(prefix: &str) -> String {
    format!(
        "ecs-execute-command-{prefix}{}",
        unique_name("").replace('-', "")
    )
}

/// A Slack Events `message` callback (`event_id`) by `user`, at `ts` in the login thread of
/// `session` (its `channel` and `threadTs`).
pub fn message_event(event_id: &str, session: &Value, user: &str, text: &str, ts: &str) -> Value {
    json!({
        "token": "verification-token-unused",
        "team_id": "T0REPLICA",
        "api_app_id": "A0BATCHLESS",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": chrono::Utc::now().timestamp(),
        "event": {
            "type": "message",
            "channel": session["channel"],
            "user": user,
            "text": text,
            "ts": ts,
            "thread_ts": session["threadTs"],
            "channel_type": "channel",
        }
    })
}

impl Sessions {
    /// The bastion watch of the stack named by `BATCHLESS_STACK`, its faults cleared.
    pub async fn setup() -> Result<Sessions> {
        let stack = Stack::cleared().await?;
        Ok(Sessions {
            sm: stack.state_machine("BastionSessionStateMachine")?,
            table: stack.table("BastionTable")?,
            cluster: stack.physical_id("BastionCluster")?,
            stack,
        })
    }

    /// The session's record in the bastion table, if there is one.
    pub async fn session(&self, sid: &str) -> Result<Option<Value>> {
        self.stack
            .get_item_pk_sk(&self.table, &format!("session#{sid}"), "session")
            .await
    }

    /// The alerts posted about the session (their text names it).
    pub async fn alerts_about(&self, sid: &str) -> Result<Vec<Value>> {
        Ok(self
            .stack
            .slack_messages(ALERTS_CHANNEL)
            .await?
            .into_iter()
            .filter(|m| m["text"].as_str().is_some_and(|t| t.contains(sid)))
            .collect())
    }

    /// The slack-events function URL.
    pub fn events_url(&self) -> String {
        self.stack.info["function_urls"]["SlackEventsFunction"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A signed (or, with `extra` overriding the signing, mis-signed) Slack Events request
    /// through the fake Slack.
    pub async fn send(&self, body: &Value, extra: Value) -> Result<(u16, Value)> {
        let spec = json!({
            "url": self.events_url(),
            "body": body.to_string(),
            "content_type": "application/json",
        });
        self.stack.slack_send_with(spec, &extra).await
    }

    /// The `n`th signed reply (its own event id and `ts`) in the session's login thread.
    pub async fn reply(
        &self,
        session: &Value,
        user: &str,
        text: &str,
        n: u32,
    ) -> Result<(u16, Value)> {
        let thread_ts = session["threadTs"].as_str().context("threadTs")?;
        let ts = format!("{}{:03}", &thread_ts[..thread_ts.len() - 3], n);
        let event_id = format!("Ev{}{}", n, unique_name("r").replace('-', ""));
        let body = message_event(&event_id, session, user, text, &ts);
        self.send(&body, json!({})).await
    }
}
