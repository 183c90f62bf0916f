//! `missed-run-check`: on its own schedule, finds occurrences of enabled jobs whose catch-up
//! window has closed and that nobody claimed (schedule disabled in the console, a delivery
//! lost, the workflow broken). Each is claimed as `MISSED` with the same conditional write as a
//! run (so it is alerted once and can never run late) and one Slack alert lists them.

use std::fmt::Write as _;

use aws_types::SdkConfig;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::jobs::occurrence::{self, Claim, Occurrence, OccurrenceStatus, Occurrences};
use crate::jobs::{workflow, JobsFile};
use crate::platform::slack::{Message, SlackClient};
use crate::platform::{aws, config, input, time};

pub const DEFAULT_LOOKBACK_MINUTES: i64 = 120;
/// Who claims a missed occurrence (its `claimedBy` and `source`).
pub const CLAIMANT: &str = "missed-run-check";

pub struct Deps {
    pub occurrences: Occurrences,
    pub slack: SlackClient,
    pub alerts_channel: String,
    pub environment: String,
    pub jobs: JobsFile,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            occurrences: Occurrences::new(
                aws::dynamodb(sdk),
                config::required("OCCURRENCES_TABLE")?,
            ),
            slack: config::slack_client(sdk).await?,
            alerts_channel: config::required("SLACK_ALERTS_CHANNEL")?,
            environment: config::environment()?,
            jobs: JobsFile::embedded(),
        })
    }
}

/// `{}` from the schedule (or no payload at all); `at` and `lookbackMinutes` for a check of
/// another window.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Window {
    #[serde(default)]
    pub at: Option<String>,
    #[serde(default)]
    pub lookback_minutes: Option<i64>,
}

/// The event: a [`Window`], or `null`.
#[derive(Debug, Default, Deserialize)]
pub struct Input(pub Option<Window>);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Missed {
    pub job: String,
    pub scheduled_time: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// Occurrences looked at.
    pub checked: usize,
    /// Those claimed as missed by this check.
    pub missed: Vec<Missed>,
    /// The alert's Slack `ts` (`null`: nothing missed, nothing posted).
    pub slack_ts: Option<String>,
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let w = input.0.unwrap_or_default();
    let now = match &w.at {
        Some(t) => time::parse("at", t)?,
        None => time::now(),
    };
    let lookback = w.lookback_minutes.unwrap_or(DEFAULT_LOOKBACK_MINUTES);
    if !(1..=7 * 24 * 60).contains(&lookback) {
        return Err(input::InputError::field("lookbackMinutes", "must be 1-10080").into());
    }
    let (checked, missed) = claim_missed(deps, now, Duration::minutes(lookback)).await?;
    let slack_ts = match missed.is_empty() {
        true => None,
        false => Some(
            deps.slack
                .post_message(&alert(&deps.alerts_channel, &deps.environment, &missed))
                .await?
                .ts,
        ),
    };
    tracing::info!(checked, missed = missed.len(), "missed-run check");
    Ok(Output {
        checked,
        missed,
        slack_ts,
    })
}

/// Claim every unclaimed occurrence past its catch-up window within `lookback` of `now`.
async fn claim_missed(
    deps: &Deps,
    now: DateTime<Utc>,
    lookback: Duration,
) -> Result<(usize, Vec<Missed>), Error> {
    let mut missed = Vec::new();
    let mut checked = 0;
    for job in deps.jobs.jobs.iter().filter(|j| j.enabled) {
        let (from, to) = workflow::missed_window(job, now, lookback);
        for t in job.parsed_schedule().occurrences(from, to, 1000) {
            checked += 1;
            let key = occurrence::key(&job.name, t);
            if deps.occurrences.get(&key).await?.is_some() {
                continue;
            }
            let occ = Occurrence {
                occurrence_key: key,
                job: job.name.clone(),
                scheduled_time: time::rfc3339(t),
                environment: deps.environment.clone(),
                claimed_by: CLAIMANT.into(),
                claimed_at: time::rfc3339(time::now()),
                source: CLAIMANT.into(),
                status: OccurrenceStatus::Missed,
                run_status: None,
                duplicate_claimers: vec![],
            };
            if deps.occurrences.claim(&occ).await? == Claim::Won {
                missed.push(Missed {
                    job: occ.job,
                    scheduled_time: occ.scheduled_time,
                });
            }
        }
    }
    Ok((checked, missed))
}

/// Pure: the one alert listing what was missed.
fn alert(channel: &str, environment: &str, missed: &[Missed]) -> Message {
    let mut text = format!(
        ":rotating_light: *Missed scheduled job runs* on *{environment}*: due, never claimed, past their catch-up window (schedule disabled? delivery lost?)",
    );
    for m in missed {
        let _ = write!(text, "\n• `{}` at {}", m.job, m.scheduled_time);
    }
    Message {
        channel: channel.to_string(),
        text,
        blocks: None,
        thread_ts: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::dynamo;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use serde_json::json;

    fn deps(rules: &[&Rule]) -> Deps {
        Deps {
            occurrences: Occurrences::new(
                mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules),
                "occ",
            ),
            // Nothing listens here: a test that reaches Slack fails.
            slack: SlackClient::new("http://127.0.0.1:9", "xoxb-test"),
            alerts_channel: "CALERTS".into(),
            environment: "staging".into(),
            jobs: JobsFile::embedded(),
        }
    }

    #[test]
    fn input_is_null_empty_or_a_window() {
        let parse = |v| crate::platform::input::parse_strict::<Input>(v);
        assert!(parse(json!(null)).unwrap().0.is_none());
        assert!(parse(json!({})).unwrap().0.is_some());
        let w = parse(json!({"at": "2026-11-28T14:00:00Z", "lookbackMinutes": 60}))
            .unwrap()
            .0
            .unwrap();
        assert_eq!(w.lookback_minutes, Some(60));
        let err = parse(json!({"lookback": 60})).unwrap_err();
        assert!(err.message.contains("unknown field `lookback`"), "{err}");
    }

    #[tokio::test]
    async fn claimed_occurrences_are_not_missed() {
        let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
            GetItemOutput::builder()
                .set_item(Some(dynamo::to_item(&Occurrence {
                    occurrence_key: "k".into(),
                    job: "j".into(),
                    scheduled_time: "2026-11-28T13:00:00Z".into(),
                    environment: "staging".into(),
                    claimed_by: "arn:e1".into(),
                    claimed_at: "2026-11-28T13:00:01Z".into(),
                    source: "scheduler".into(),
                    status: OccurrenceStatus::Claimed,
                    run_status: None,
                    duplicate_claimers: vec![],
                })))
                .build()
        });
        let d = deps(&[&get]);
        let input = Input(Some(Window {
            at: Some("2026-11-28T14:00:00Z".into()),
            lookback_minutes: Some(60),
        }));
        let out = handle(&d, input).await.unwrap();
        assert!(out.checked > 0);
        assert!(out.missed.is_empty() && out.slack_ts.is_none());
        assert_eq!(get.num_calls(), out.checked);
    }

    #[tokio::test]
    async fn unclaimed_occurrences_are_claimed_as_missed() {
        let none = mock!(aws_sdk_dynamodb::Client::get_item)
            .then_output(|| GetItemOutput::builder().build());
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                let item = r.item().unwrap();
                r.condition_expression() == Some("attribute_not_exists(#k)")
                    && item.get("status") == Some(&dynamo::s("MISSED"))
                    && item.get("claimedBy") == Some(&dynamo::s(CLAIMANT))
            })
            .then_output(|| PutItemOutput::builder().build());
        let d = deps(&[&none, &put]);
        let now = time::parse("t", "2026-11-28T14:00:00Z").unwrap();
        let (checked, missed) = claim_missed(&d, now, Duration::minutes(60)).await.unwrap();
        assert_eq!(missed.len(), checked);
        assert_eq!(put.num_calls(), checked);
        assert!(missed
            .iter()
            .any(|m| m.job == "sync-exchange-rates" && m.scheduled_time == "2026-11-28T13:45:00Z"));
        let text = alert("C", "staging", &missed).text;
        assert!(
            text.contains("• `sync-exchange-rates` at 2026-11-28T13:45:00Z"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_lookback_out_of_range_is_invalid_input() {
        let d = deps(&[]);
        let err = handle(
            &d,
            Input(Some(Window {
                at: None,
                lookback_minutes: Some(0),
            })),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::InvalidInput);
    }
}
