//! `notify-patch-result` (`Notify`): the data patch's result in the approval request's Slack
//! thread (or the alerts channel when no request was ever posted), with the log link. Every
//! text is redacted before it leaves.

use aws_types::SdkConfig;
use serde::Deserialize;

use crate::error::Error;
use crate::patch::message;
use crate::patch::workflow::{self, PatchState};
use crate::platform::slack::{Message, Posted, SlackClient};
use crate::platform::{config, redact};

pub struct Deps {
    pub slack: SlackClient,
    pub alerts_channel: String,
}

impl Deps {
    /// Slack and `SLACK_ALERTS_CHANNEL`.
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            slack: config::slack_client(sdk).await?,
            alerts_channel: config::required("SLACK_ALERTS_CHANNEL")?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Input {
    pub state: Box<PatchState>,
}

/// `$.notification`: where the result went.
pub type Output = Posted;

/// Pure: the message for a finished patch.
pub fn result_message(state: &PatchState, alerts_channel: &str) -> Message {
    let text = workflow::result_text(state);
    match state.record.as_ref().and_then(|r| r.thread.as_ref()) {
        Some(t) => message::thread_reply(&t.channel, &t.ts, &text),
        None => Message {
            channel: alerts_channel.to_string(),
            text: redact::redact(&text).into_owned(),
            blocks: None,
            thread_ts: None,
        },
    }
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let msg = result_message(&input.state, &deps.alerts_channel);
    let posted = deps.slack.post_message(&msg).await?;
    tracing::info!(patch = %input.state.patch.patch_id, channel = %posted.channel, ts = %posted.ts, "patch result posted");
    Ok(posted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::store::ApprovalMessage;
    use crate::patch::tests::{exec, people, request};
    use crate::patch::{validate, Policy, Status};
    use serde_json::json;

    fn state(thread: Option<ApprovalMessage>) -> PatchState {
        let run = validate(request(), &exec(), "staging", &people(), Policy::default()).unwrap();
        let rec = crate::patch::store::PatchRecord {
            patch_id: run.patch_id.clone(),
            status: Status::Rejected,
            rejected_by: Some("alice".into()),
            approval_message: thread,
            ..Default::default()
        };
        let mut s: PatchState = serde_json::from_value(json!({"patch": run})).unwrap();
        s.record = Some(workflow::record(&s, &rec));
        s
    }

    #[test]
    fn the_result_goes_to_the_request_thread() {
        let m = result_message(
            &state(Some(ApprovalMessage {
                channel: "CPATCH".into(),
                ts: "1.2".into(),
                permalink: String::new(),
            })),
            "CALERT",
        );
        assert_eq!(
            (m.channel.as_str(), m.thread_ts.as_deref()),
            ("CPATCH", Some("1.2"))
        );
        assert!(m.text.contains("REJECTED"), "{}", m.text);
        assert!(m.text.contains("rejected by alice"), "{}", m.text);
    }

    #[test]
    fn without_a_request_thread_it_goes_to_the_alerts_channel() {
        let m = result_message(&state(None), "CALERT");
        assert_eq!((m.channel.as_str(), m.thread_ts), ("CALERT", None));
    }

    #[test]
    fn the_input_is_strict() {
        let err = crate::platform::input::parse_strict::<Input>(
            json!({"kind": "data-patch", "state": {}}),
        )
        .unwrap_err();
        assert!(err.message.contains("unknown field `kind`"), "{err}");
    }
}
