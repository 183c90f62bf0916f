//! `notify-job-result` (`Notify`): a failed, timed-out or errored run's message — composed by
//! `RecordJobRun` (`$.record.slack`: the job's channel, its mentions, the log link and tail) —
//! posted to Slack. The text is redacted again before it leaves. A Slack outage does not change
//! the job's result (the ASL catches every error of this step).

use aws_types::SdkConfig;
use serde::Deserialize;

use crate::error::Error;
use crate::jobs::workflow::JobState;
use crate::platform::input::InputError;
use crate::platform::slack::{Message, Posted, SlackClient};
use crate::platform::{config, redact};

pub struct Deps {
    pub slack: SlackClient,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            slack: config::slack_client(sdk).await?,
        })
    }
}

/// The workflow's state after `RecordJobRun` (`{"state.$": "$"}`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Input {
    pub state: Box<JobState>,
}

/// `$.notification`: where the message went.
pub type Output = Posted;

/// Pure: the message of a recorded run; `InvalidInput` when the record has none (a run that
/// succeeded or was skipped posts nothing).
pub fn message(state: &JobState) -> Result<Message, InputError> {
    let slack = state
        .record
        .as_ref()
        .and_then(|r| r.slack.as_ref())
        .ok_or_else(|| InputError::field("state.record.slack", "missing: nothing to post"))?;
    Ok(Message {
        channel: slack.channel.clone(),
        text: redact::redact(&slack.text).into_owned(),
        blocks: None,
        thread_ts: None,
    })
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let msg = message(&input.state)?;
    let posted = deps.slack.post_message(&msg).await?;
    tracing::info!(job = %input.state.run.job, channel = %posted.channel, ts = %posted.ts, "job result posted");
    Ok(posted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::workflow::{self, Recorded, SlackPost};
    use crate::jobs::JobsFile;
    use serde_json::json;

    fn state(slack: Option<SlackPost>) -> JobState {
        let run = workflow::validate(
            json!({"job": "weekly-digest", "manual": {"requestedBy": "alice"}}),
            &crate::sfn::Execution {
                id: "arn:e1".into(),
                name: "e1".into(),
                start_time: "2026-11-28T13:15:02Z".into(),
            },
            "staging",
            &JobsFile::embedded(),
        )
        .unwrap();
        let mut s: JobState = serde_json::from_value(json!({
            "run": run,
            "claim": {"outcome": "claimed", "occurrenceKey": "k", "claimedBy": "arn:e1", "stale": false},
        }))
        .unwrap();
        s.record = Some(Recorded {
            status: crate::shared::runs::RunStatus::Failed,
            failure_cause: Some("x".into()),
            slack,
            output: serde_json::from_value(json!({
                "job": "weekly-digest", "status": "FAILED", "trigger": "manual",
                "occurrence": null, "occurrenceKey": "k", "taskArn": null, "exitCode": 2,
                "durationSeconds": null, "logUri": null, "logSha256": null, "skippedBecause": null
            }))
            .unwrap(),
        });
        s
    }

    #[test]
    fn the_recorded_message_is_posted_redacted_to_the_jobs_channel() {
        let m = message(&state(Some(SlackPost {
            channel: "CJOBS".into(),
            text: ":x: Job failed; token xoxb-1-2-secret".into(),
        })))
        .unwrap();
        assert_eq!(m.channel, "CJOBS");
        assert!(
            m.text.starts_with(":x: Job failed") && !m.text.contains("secret"),
            "{}",
            m.text
        );
    }

    #[test]
    fn no_message_is_invalid_input_and_the_input_is_strict() {
        let err = message(&state(None)).unwrap_err();
        assert!(err.message.contains("state.record.slack"), "{err}");
        let state = serde_json::to_value(state(None)).unwrap();
        let err =
            crate::platform::input::parse_strict::<Input>(json!({"state": state, "channel": "C1"}))
                .unwrap_err();
        assert!(err.message.contains("unknown field `channel`"), "{err}");
    }
}
