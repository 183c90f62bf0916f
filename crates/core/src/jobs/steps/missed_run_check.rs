//! `missed-run-check`: on its own schedule, a check of the occurrence ledger
//! (`jobs::ledger`) of every job over the occurrences whose catch-up window has closed:
//! - each occurrence with no fate (nobody claimed it: schedule disabled in the console, a
//!   delivery lost, the workflow broken) is claimed as `MISSED` with the same conditional write
//!   as a run (so it is alerted once and can never run late); unless the job is paused (its
//!   schedule `DISABLED` with a pause recorded by `jobs pause`, `jobs::pause`): then it is
//!   claimed `PAUSED`, not alerted (a schedule disabled with no pause recorded is missed);
//! - a job that ran more often than its schedule implies (an occurrence item or run at a time
//!   that is not on the schedule, or two runs for one occurrence) is alerted once per occurrence
//!   (marked on its item with a conditional write).
//!
//! One Slack alert lists both; `OccurrencesMissed` is emitted per job (EMF).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use aws_types::SdkConfig;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::jobs::ledger::{self, metric};
use crate::jobs::occurrence::{
    self, Claim, Occurrence, OccurrenceStatus, Occurrences, BY_JOB_INDEX,
};
use crate::jobs::{pause, workflow, JobsFile};
use crate::platform::slack::{Message, SlackClient};
use crate::platform::{aws, config, input, time};
use crate::shared::runs::{RunRecord, Runs, BY_WORKFLOW_INDEX};

pub const DEFAULT_LOOKBACK_MINUTES: i64 = 120;
/// Who claims a missed occurrence (its `claimedBy` and `source`).
pub const CLAIMANT: &str = "missed-run-check";
/// Set on an occurrence item once "ran more often than scheduled" was alerted for it.
pub const RAN_MORE_OFTEN_ALERTED: &str = "ranMoreOftenAlertedAt";

pub struct Deps {
    pub occurrences: Occurrences,
    pub runs: Runs,
    pub scheduler: aws_sdk_scheduler::Client,
    pub slack: SlackClient,
    pub alerts_channel: String,
    pub environment: String,
    pub jobs: JobsFile,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        let db = aws::dynamodb(sdk);
        Ok(Deps {
            occurrences: Occurrences::new(db.clone(), config::required("OCCURRENCES_TABLE")?),
            runs: Runs::new(db, config::required("RUNS_TABLE")?),
            scheduler: aws::scheduler(sdk),
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

/// An occurrence at which the job ran more often than its schedule implies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RanMoreOften {
    pub job: String,
    pub scheduled_time: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// Occurrences looked at (those the schedules of enabled jobs imply in the window).
    pub checked: usize,
    /// Those claimed as missed by this check.
    pub missed: Vec<Missed>,
    /// Those claimed as paused by this check (the job paused: not alerted).
    pub paused: Vec<Missed>,
    /// Newly alerted: runs the schedules do not imply.
    pub ran_more_often: Vec<RanMoreOften>,
    /// The alert's Slack `ts` (`null`: nothing to alert, nothing posted).
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
    let found = check(deps, now, Duration::minutes(lookback)).await?;
    let slack_ts = match found.missed.is_empty() && found.ran_more_often.is_empty() {
        true => None,
        false => Some(
            deps.slack
                .post_message(&alert(&deps.alerts_channel, &deps.environment, &found))
                .await?
                .ts,
        ),
    };
    tracing::info!(
        checked = found.checked,
        missed = found.missed.len(),
        paused = found.paused.len(),
        ran_more_often = found.ran_more_often.len(),
        "missed-run check"
    );
    Ok(Output { slack_ts, ..found })
}

/// The scheduled-job runs that can belong to occurrences in `[from, now]`.
async fn runs_since(
    deps: &Deps,
    from: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<RunRecord>, Error> {
    deps.runs
        .between(
            BY_WORKFLOW_INDEX,
            ("workflow", workflow::WORKFLOW),
            ("startedAt", &time::rfc3339(from), &time::rfc3339(now)),
        )
        .await
}

/// The ledger of every job over the occurrences within `lookback` whose catch-up window has
/// closed at `now`: claim the unaccounted ones as missed, mark and collect the new
/// "ran more often" alerts.
async fn check(deps: &Deps, now: DateTime<Utc>, lookback: Duration) -> Result<Output, Error> {
    let windows: Vec<_> = deps
        .jobs
        .jobs
        .iter()
        .map(|job| (job, workflow::missed_window(job, now, lookback)))
        .collect();
    let earliest = windows
        .iter()
        .map(|(_, (from, _))| *from)
        .min()
        .unwrap_or(now);
    let runs = runs_since(deps, earliest, now).await?;
    let mut out = Output {
        checked: 0,
        missed: Vec::new(),
        paused: Vec::new(),
        ran_more_often: Vec::new(),
        slack_ts: None,
    };
    for (job, (from, to)) in windows {
        let items = deps
            .occurrences
            .between(
                BY_JOB_INDEX,
                ("job", &job.name),
                ("scheduledTime", &time::rfc3339(from), &time::rfc3339(to)),
            )
            .await?;
        let l = ledger::ledger(job, from, to, now, &items, &runs);
        if job.enabled {
            out.checked += l.counts.expected;
        }
        let mut missed_here = 0;
        let unaccounted: Vec<_> = l.unaccounted().collect();
        let paused = match unaccounted.is_empty() || !job.enabled {
            true => false,
            false => {
                let live = pause::live(&deps.scheduler, &deps.environment, &job.name).await?;
                live.is_paused(job) && live.pause.is_some()
            }
        };
        for e in unaccounted {
            let occ = Occurrence {
                occurrence_key: occurrence::key(
                    &job.name,
                    time::parse("scheduledTime", &e.scheduled_time)?,
                ),
                job: job.name.clone(),
                scheduled_time: e.scheduled_time.clone(),
                environment: deps.environment.clone(),
                claimed_by: CLAIMANT.into(),
                claimed_at: time::rfc3339(time::now()),
                source: CLAIMANT.into(),
                status: match paused {
                    true => OccurrenceStatus::Paused,
                    false => OccurrenceStatus::Missed,
                },
                run_status: None,
                duplicate_claimers: vec![],
            };
            if deps.occurrences.claim(&occ).await? == Claim::Won {
                let m = Missed {
                    job: occ.job,
                    scheduled_time: occ.scheduled_time,
                };
                match paused {
                    true => out.paused.push(m),
                    false => {
                        missed_here += 1;
                        out.missed.push(m);
                    }
                }
            }
        }
        if missed_here > 0 {
            metric::emit(
                &deps.environment,
                &job.name,
                &[(
                    metric::MISSED,
                    crate::platform::metrics::Unit::Count,
                    missed_here as f64,
                )],
                None,
            );
        }
        // One alert per occurrence (its messages joined), once: marked on its item.
        let mut by_time: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for a in l.ran_more_often() {
            by_time
                .entry(&a.scheduled_time)
                .or_default()
                .push(&a.message);
        }
        for (at, messages) in by_time {
            let key = format!("{}#{at}", job.name);
            let has_item = l
                .occurrences
                .iter()
                .any(|e| e.scheduled_time == at && e.claimed_by.is_some());
            let first = !has_item
                || deps
                    .occurrences
                    .set_fields(
                        &key,
                        &[(RAN_MORE_OFTEN_ALERTED, Value::from(time::rfc3339(now)))],
                        Some(&format!("attribute_not_exists(#{RAN_MORE_OFTEN_ALERTED})")),
                        &[],
                    )
                    .await?
                    .is_some();
            if first {
                out.ran_more_often.push(RanMoreOften {
                    job: job.name.clone(),
                    scheduled_time: at.to_string(),
                    message: messages.join("; "),
                });
            }
        }
    }
    Ok(out)
}

/// Pure: the one alert listing what was missed and what ran more often than scheduled.
fn alert(channel: &str, environment: &str, found: &Output) -> Message {
    let mut text = String::new();
    if !found.missed.is_empty() {
        let _ = write!(
            text,
            ":rotating_light: *Missed scheduled job runs* on *{environment}*: due, never claimed, past their catch-up window (schedule disabled? delivery lost?)",
        );
        for m in &found.missed {
            let _ = write!(text, "\n• `{}` at {}", m.job, m.scheduled_time);
        }
    }
    if !found.ran_more_often.is_empty() {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        let _ = write!(
            text,
            ":rotating_light: *Scheduled jobs ran more often than their schedules imply* on *{environment}* (a claim or run at a time off the schedule, or two runs of one occurrence)",
        );
        for r in &found.ran_more_often {
            let _ = write!(
                text,
                "\n• `{}` at {}: {}",
                r.job, r.scheduled_time, r.message
            );
        }
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
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_dynamodb::operation::query::QueryOutput;
    use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use serde_json::json;

    /// Every job's schedule as `jobs pause` leaves it (`DISABLED`, the pause recorded), or
    /// as deployed (`ENABLED`).
    fn schedules(paused: bool) -> Rule {
        use aws_sdk_scheduler::operation::get_schedule::GetScheduleOutput;
        use aws_sdk_scheduler::types::ScheduleState;
        mock!(aws_sdk_scheduler::Client::get_schedule).then_output(move || {
            let (state, description) = match paused {
                true => (
                    ScheduleState::Disabled,
                    "job [paused by alice at 2026-11-28T09:00:00Z: vendor outage]",
                ),
                false => (ScheduleState::Enabled, "job"),
            };
            GetScheduleOutput::builder()
                .state(state)
                .description(description)
                .build()
        })
    }

    fn deps_with(rules: &[&Rule], jobs: JobsFile) -> Deps {
        deps_paused(rules, jobs, false)
    }

    fn deps_paused(rules: &[&Rule], jobs: JobsFile, paused: bool) -> Deps {
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules);
        Deps {
            occurrences: Occurrences::new(db.clone(), "occ"),
            runs: Runs::new(db, "runs"),
            scheduler: mock_client!(aws_sdk_scheduler, RuleMode::MatchAny, &[&schedules(paused)]),
            // Nothing listens here: a test that reaches Slack fails.
            slack: SlackClient::new("http://127.0.0.1:9", "xoxb-test"),
            alerts_channel: "CALERTS".into(),
            environment: "staging".into(),
            jobs,
        }
    }

    fn deps(rules: &[&Rule]) -> Deps {
        deps_with(rules, JobsFile::embedded())
    }

    /// One job: purge-expired-sessions alone (`cron(30 * * * ? *)` UTC, catch-up 1h).
    fn purge_only() -> JobsFile {
        let mut f = JobsFile::embedded();
        f.jobs.retain(|j| j.name == "purge-expired-sessions");
        f
    }

    fn item(at: &str, by: &str, source: &str) -> Occurrence {
        Occurrence {
            occurrence_key: format!("purge-expired-sessions#{at}"),
            job: "purge-expired-sessions".into(),
            scheduled_time: at.into(),
            environment: "staging".into(),
            claimed_by: by.into(),
            claimed_at: at.into(),
            source: source.into(),
            status: OccurrenceStatus::Claimed,
            run_status: None,
            duplicate_claimers: vec![],
        }
    }

    fn no_runs() -> Rule {
        mock!(aws_sdk_dynamodb::Client::query)
            .match_requests(|r| r.index_name() == Some("byWorkflow"))
            .then_output(|| QueryOutput::builder().build())
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
        // At 14:00 over 3h, purge's window closes at 12:59:59: 10:30, 11:30 and 12:30.
        let claimed = mock!(aws_sdk_dynamodb::Client::query)
            .match_requests(|r| {
                r.index_name() == Some("byJob")
                    && r.expression_attribute_values().and_then(|v| v.get(":to"))
                        == Some(&dynamo::s("2026-11-28T12:59:59Z"))
            })
            .then_output(|| {
                let mut out = QueryOutput::builder();
                for h in ["10", "11", "12"] {
                    out = out.items(dynamo::to_item(&item(
                        &format!("2026-11-28T{h}:30:00Z"),
                        "arn:e",
                        "scheduler",
                    )));
                }
                out.build()
            });
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .then_output(|| PutItemOutput::builder().build());
        let runs = no_runs();
        let d = deps_with(&[&claimed, &runs, &put], purge_only());
        let input = Input(Some(Window {
            at: Some("2026-11-28T14:00:00Z".into()),
            lookback_minutes: Some(180),
        }));
        let out = handle(&d, input).await.unwrap();
        assert_eq!(out.checked, 3);
        assert!(out.missed.is_empty() && out.ran_more_often.is_empty() && out.slack_ts.is_none());
        assert_eq!(
            (claimed.num_calls(), runs.num_calls(), put.num_calls()),
            (1, 1, 0)
        );
    }

    #[tokio::test]
    async fn a_paused_jobs_occurrences_are_claimed_paused_and_not_alerted() {
        let none = mock!(aws_sdk_dynamodb::Client::query)
            .match_requests(|r| r.index_name() == Some("byJob"))
            .then_output(|| QueryOutput::builder().build());
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| r.item().unwrap().get("status") == Some(&dynamo::s("PAUSED")))
            .then_output(|| PutItemOutput::builder().build());
        let runs = no_runs();
        let d = deps_paused(&[&none, &runs, &put], purge_only(), true);
        let input = Input(Some(Window {
            at: Some("2026-11-28T14:00:00Z".into()),
            lookback_minutes: Some(180),
        }));
        // Nothing listens on the Slack URL: an alert would fail the call.
        let out = handle(&d, input).await.unwrap();
        assert_eq!(out.checked, 3);
        assert_eq!(out.paused.len(), 3);
        assert!(out.missed.is_empty() && out.slack_ts.is_none());
        assert_eq!(put.num_calls(), 3);
    }

    #[tokio::test]
    async fn unclaimed_occurrences_are_claimed_as_missed() {
        let none = mock!(aws_sdk_dynamodb::Client::query)
            .match_requests(|r| r.index_name() == Some("byJob"))
            .then_output(|| QueryOutput::builder().build());
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                let item = r.item().unwrap();
                r.condition_expression() == Some("attribute_not_exists(#k)")
                    && item.get("status") == Some(&dynamo::s("MISSED"))
                    && item.get("claimedBy") == Some(&dynamo::s(CLAIMANT))
            })
            .then_output(|| PutItemOutput::builder().build());
        let runs = no_runs();
        let d = deps(&[&none, &runs, &put]);
        let now = time::parse("t", "2026-11-28T14:00:00Z").unwrap();
        let found = check(&d, now, Duration::minutes(60)).await.unwrap();
        assert_eq!(found.missed.len(), found.checked);
        assert_eq!(put.num_calls(), found.checked);
        assert!(found
            .missed
            .iter()
            .any(|m| m.job == "sync-exchange-rates" && m.scheduled_time == "2026-11-28T13:45:00Z"));
        // The disabled job is not checked, and nothing of it is claimed.
        assert!(!found.missed.iter().any(|m| m.job == "weekly-digest"));
        let text = alert("C", "staging", &found).text;
        assert!(
            text.contains("• `sync-exchange-rates` at 2026-11-28T13:45:00Z"),
            "{text}"
        );
        assert!(text.contains("Missed scheduled job runs"), "{text}");
        assert!(!text.contains("ran more often"), "{text}");
    }

    /// Issue 20: the check is a check of the ledger: a claim at a time off the schedule (or a
    /// second run of one occurrence) is "ran more often than its schedule implies", alerted
    /// once (the second check finds the item marked).
    #[tokio::test]
    async fn a_run_off_the_schedule_is_alerted_once() {
        let items = mock!(aws_sdk_dynamodb::Client::query)
            .match_requests(|r| r.index_name() == Some("byJob"))
            .then_output(|| {
                QueryOutput::builder()
                    .items(dynamo::to_item(&item(
                        "2026-11-28T12:30:00Z",
                        "arn:e1",
                        "scheduler",
                    )))
                    .items(dynamo::to_item(&item(
                        "2026-11-28T12:45:00Z",
                        "legacy:box:9",
                        "legacy",
                    )))
                    .build()
            });
        let mark = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                r.key().and_then(|k| k.get("occurrenceKey"))
                    == Some(&dynamo::s("purge-expired-sessions#2026-11-28T12:45:00Z"))
                    && r.condition_expression()
                        .is_some_and(|c| c.contains("attribute_not_exists(#ranMoreOftenAlertedAt)"))
            })
            .sequence()
            .output(|| {
                UpdateItemOutput::builder()
                    .set_attributes(Some(dynamo::to_item(&item(
                        "2026-11-28T12:45:00Z",
                        "legacy:box:9",
                        "legacy",
                    ))))
                    .build()
            })
            .error(|| {
                UpdateItemError::ConditionalCheckFailedException(
                    crate::testing::conditional_check_failed(),
                )
            })
            .build();
        let runs = no_runs();
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .then_output(|| PutItemOutput::builder().build());
        let d = deps_with(&[&items, &runs, &mark, &put], purge_only());
        let now = time::parse("t", "2026-11-28T14:00:00Z").unwrap();
        let found = check(&d, now, Duration::minutes(60)).await.unwrap();
        assert!(found.missed.is_empty(), "{:?}", found.missed);
        assert_eq!(found.ran_more_often.len(), 1, "{:?}", found.ran_more_often);
        assert_eq!(
            found.ran_more_often[0].scheduled_time,
            "2026-11-28T12:45:00Z"
        );
        assert!(found.ran_more_often[0].message.contains("legacy:box:9"));
        let text = alert("C", "staging", &found).text;
        for needle in [
            "ran more often than their schedules imply",
            "• `purge-expired-sessions` at 2026-11-28T12:45:00Z",
        ] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
        assert!(!text.contains("Missed scheduled job runs"), "{text}");
        let again = check(&d, now, Duration::minutes(60)).await.unwrap();
        assert!(again.ran_more_often.is_empty(), "alerted once");
        assert_eq!((mark.num_calls(), put.num_calls()), (2, 0));
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
