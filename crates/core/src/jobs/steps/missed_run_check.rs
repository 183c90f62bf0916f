//! `missed-run-check`: on its own schedule, a check of the occurrence ledger
//! (`jobs::ledger`) of every job over the occurrences whose catch-up window has closed:
//! - each occurrence with no fate (nobody claimed it: schedule disabled in the console, a
//!   delivery lost, the workflow broken) is claimed as `MISSED` with the same conditional write
//!   as a run (so it is alerted once and can never run late); unless the job was paused before
//!   it was due (its schedule `DISABLED` with a pause that `jobs::pause::verify` finds borne out
//!   by CloudTrail's `UpdateSchedule` or the deployed jobs file): then it is claimed `PAUSED`.
//!   A schedule disabled with no pause recorded, or with one nothing bears out (a description
//!   anyone with `UpdateSchedule` could write), is missed, and the alert names who CloudTrail
//!   says disabled it. Paused occurrences are posted too (who paused, when, why, and the
//!   evidence), so a pause is never silent; the reading is kept on the item (`pause`);
//! - a job that ran more often than its schedule implies (an occurrence item or run at a time
//!   that is not on the schedule, or two runs for one occurrence) is alerted once per occurrence
//!   (marked on its item with a conditional write).
//!
//! An occurrence item batchless did not write (its seal does not verify: planted to account for
//! a run that never happened, or to silence a missed one) counts for nothing: the occurrence is
//! judged as if unclaimed, and the check's own sealed claim replaces the item (kept as
//! `replaced`), so it is alerted as missed, naming what was planted.
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
use crate::platform::signing::Signer;
use crate::platform::slack::{Message, SlackClient};
use crate::platform::{aws, config, input, time};
use crate::shared::people::People;
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
    pub cloudtrail: aws_sdk_cloudtrail::Client,
    pub people: People,
    pub slack: SlackClient,
    pub alerts_channel: String,
    pub environment: String,
    pub jobs: JobsFile,
    /// Seals the check's claims and verifies those it finds (`OCCURRENCE_SIGNING_KEY`).
    pub claims: Signer,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        let db = aws::dynamodb(sdk);
        let environment = config::environment()?;
        Ok(Deps {
            occurrences: Occurrences::new(db.clone(), config::required("OCCURRENCES_TABLE")?),
            runs: Runs::new(db, config::required("RUNS_TABLE")?),
            scheduler: aws::scheduler(sdk),
            cloudtrail: aws::cloudtrail(sdk),
            people: People::load(&environment)?,
            slack: config::slack_client(sdk).await?,
            alerts_channel: config::required("SLACK_ALERTS_CHANNEL")?,
            environment,
            jobs: JobsFile::embedded(),
            claims: occurrence::claim_signer(sdk)?,
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
    /// The schedule's pause as the check read it (`PauseCheck::summary`), when it was disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause: Option<String>,
    /// The item batchless did not write that stood for this occurrence, replaced by the claim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced: Option<String>,
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
    /// Those claimed as paused by this check (the pause borne out; posted, not alerted).
    pub paused: Vec<Missed>,
    /// Left for a later check: a pause CloudTrail does not bear out yet, too young to judge
    /// (`PauseCheck::awaits_cloudtrail`).
    pub deferred: usize,
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
    let quiet =
        found.missed.is_empty() && found.ran_more_often.is_empty() && found.paused.is_empty();
    let slack_ts = match quiet {
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
        deferred = found.deferred,
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
        deferred: 0,
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
        // Only batchless's claims count: a planted item leaves its occurrence unaccounted.
        let mut claims = Vec::with_capacity(items.len());
        for item in items {
            match item.is_batchless_claim(&deps.claims).await? {
                true => claims.push(item),
                false => {
                    tracing::warn!(key = %item.occurrence_key, claimed_by = %item.claimed_by, status = %item.status.as_str(), "an occurrence item batchless did not write: it counts for nothing")
                }
            }
        }
        let items = claims;
        let l = ledger::ledger(job, from, to, now, &items, &runs);
        if job.enabled {
            out.checked += l.counts.expected;
        }
        let mut missed_here = 0;
        let unaccounted: Vec<_> = l.unaccounted().collect();
        // A disabled schedule: its pause and CloudTrail's updates of it, read once per job.
        let disabled = match unaccounted.first() {
            Some(first) if job.enabled => {
                let live = pause::live(&deps.scheduler, &deps.environment, &job.name).await?;
                match live.is_paused(job) {
                    true => {
                        let earliest = time::parse("scheduledTime", &first.scheduled_time)?;
                        let since = pause::updates_since(&live, earliest);
                        let ups =
                            pause::updates(&deps.cloudtrail, &deps.environment, &job.name, since)
                                .await?;
                        Some((live, ups))
                    }
                    false => None,
                }
            }
            _ => None,
        };
        for e in unaccounted {
            let scheduled = time::parse("scheduledTime", &e.scheduled_time)?;
            let check = disabled
                .as_ref()
                .map(|(live, ups)| pause::verify(job, live, ups, &deps.people, scheduled));
            if check
                .as_ref()
                .is_some_and(|c| c.awaits_cloudtrail(scheduled, now))
            {
                out.deferred += 1;
                continue;
            }
            let paused = check.as_ref().is_some_and(pause::PauseCheck::counts);
            let occ = Occurrence {
                source: CLAIMANT.into(),
                status: match paused {
                    true => OccurrenceStatus::Paused,
                    false => OccurrenceStatus::Missed,
                },
                pause: check.clone(),
                ..Occurrence::new(&job.name, scheduled, &deps.environment, CLAIMANT)
            };
            let claimed = deps.occurrences.claim(&occ, Some(&deps.claims)).await?;
            if claimed.won() {
                let m = Missed {
                    job: occ.job,
                    scheduled_time: occ.scheduled_time,
                    pause: check.map(|c| c.summary()),
                    replaced: match claimed {
                        Claim::Replaced(forged) => Some(format!(
                            "replaced an item batchless did not write ({} by {} at {}, source {})",
                            forged.status.as_str(),
                            forged.claimed_by,
                            forged.claimed_at,
                            forged.source
                        )),
                        _ => None,
                    },
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

/// One line per occurrence, with the pause as read when there is one.
fn bullets(text: &mut String, list: &[Missed]) {
    for m in list {
        let _ = write!(text, "\n• `{}` at {}", m.job, m.scheduled_time);
        if let Some(p) = &m.pause {
            let _ = write!(text, ": {p}");
        }
        if let Some(r) = &m.replaced {
            let _ = write!(text, " :warning: {r}");
        }
    }
}

/// Pure: the one alert listing what was missed and what ran more often than scheduled.
fn alert(channel: &str, environment: &str, found: &Output) -> Message {
    let mut text = String::new();
    if !found.missed.is_empty() {
        let _ = write!(
            text,
            ":rotating_light: *Missed scheduled job runs* on *{environment}*: due, never claimed, past their catch-up window (schedule disabled? delivery lost?)",
        );
        bullets(&mut text, &found.missed);
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
    if !found.paused.is_empty() {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        let _ = write!(
            text,
            ":double_vertical_bar: *Paused scheduled job occurrences* on *{environment}*: recorded PAUSED, not run",
        );
        bullets(&mut text, &found.paused);
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

    /// CloudTrail's UpdateSchedule of purge's schedule by `caller` at 09:00:30, writing the
    /// pause [`schedules`] shows.
    fn trail(caller: &'static str) -> Rule {
        use aws_sdk_cloudtrail::operation::lookup_events::LookupEventsOutput;
        use aws_sdk_cloudtrail::types::Event;
        mock!(aws_sdk_cloudtrail::Client::lookup_events).then_output(move || {
            let record = json!({
                "eventName": "UpdateSchedule", "eventID": "ev-1",
                "eventTime": "2026-11-28T09:00:30Z",
                "userIdentity": {"arn": caller},
                "requestParameters": {
                    "name": "batchless-staging-job-purge-expired-sessions", "state": "DISABLED",
                    "description": "job [paused by alice at 2026-11-28T09:00:00Z: vendor outage]",
                },
            });
            LookupEventsOutput::builder()
                .events(
                    Event::builder()
                        .cloud_trail_event(record.to_string())
                        .build(),
                )
                .build()
        })
    }

    const ALICE: &str = "arn:aws:iam::123456789012:user/alice";

    fn deps_paused(rules: &[&Rule], jobs: JobsFile, paused: bool) -> Deps {
        deps_trail(rules, jobs, paused, &trail(ALICE))
    }

    fn deps_trail(rules: &[&Rule], jobs: JobsFile, paused: bool, trail: &Rule) -> Deps {
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules);
        Deps {
            occurrences: Occurrences::new(db.clone(), "occ"),
            runs: Runs::new(db, "runs"),
            scheduler: mock_client!(aws_sdk_scheduler, RuleMode::MatchAny, &[&schedules(paused)]),
            cloudtrail: mock_client!(aws_sdk_cloudtrail, RuleMode::MatchAny, &[trail]),
            people: People::parse(crate::shared::people::EMBEDDED, "staging").unwrap(),
            // Nothing listens here: a test that reaches Slack fails.
            slack: SlackClient::new("http://127.0.0.1:9", "xoxb-test"),
            alerts_channel: "CALERTS".into(),
            environment: "staging".into(),
            jobs,
            claims: crate::shared::approval::seal::tests::sealer(true),
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
        let t = time::parse("at", at).unwrap();
        Occurrence {
            source: source.into(),
            claimed_at: at.into(),
            // What the test KMS takes for batchless's seal.
            seal: Some("c2VhbGVk".into()),
            ..Occurrence::new("purge-expired-sessions", t, "staging", by)
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

    /// Issue 15: items planted to account for runs that never happened (no seal) count for
    /// nothing: the check's sealed claim replaces each and the occurrence is missed, naming the
    /// planted item; a legacy claim (unsealable) still counts.
    #[tokio::test]
    async fn planted_occurrence_items_count_for_nothing_and_are_replaced_as_missed() {
        let planted = |h: &str, source: &str| Occurrence {
            seal: None,
            status: OccurrenceStatus::Paused,
            ..item(&format!("2026-11-28T{h}:30:00Z"), "mallory", source)
        };
        let found = mock!(aws_sdk_dynamodb::Client::query)
            .match_requests(|r| r.index_name() == Some("byJob"))
            .then_output(move || {
                let mut out = QueryOutput::builder();
                out = out.items(dynamo::to_item(&planted("10", "scheduler")));
                out = out.items(dynamo::to_item(&item(
                    "2026-11-28T11:30:00Z",
                    "legacy:box",
                    "legacy",
                )));
                out = out.items(dynamo::to_item(&Occurrence {
                    seal: None,
                    ..item("2026-11-28T12:30:00Z", "legacy:box", "legacy")
                }));
                out.build()
            });
        let taken = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| r.condition_expression() == Some("attribute_not_exists(#k)"))
            .then_error(crate::testing::put_item_failed);
        let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(move || {
            GetItemOutput::builder()
                .set_item(Some(dynamo::to_item(&planted("10", "scheduler"))))
                .build()
        });
        let replace = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.condition_expression()
                    == Some("#claimedBy = :claimedBy AND attribute_not_exists(#seal)")
                    && r.item()
                        .and_then(|i| i.get("status"))
                        .and_then(|v| v.as_s().ok())
                        == Some(&"MISSED".to_string())
            })
            .then_output(|| PutItemOutput::builder().build());
        let runs = no_runs();
        let d = deps_with(&[&found, &runs, &taken, &get, &replace], purge_only());
        let now = time::parse("t", "2026-11-28T14:00:00Z").unwrap();
        let out = check(&d, now, Duration::minutes(180)).await.unwrap();
        assert_eq!(out.checked, 3);
        assert_eq!(out.missed.len(), 1, "{:?}", out.missed);
        let m = &out.missed[0];
        assert_eq!(m.scheduled_time, "2026-11-28T10:30:00Z");
        let why = m.replaced.as_deref().unwrap_or_default();
        assert!(why.contains("PAUSED by mallory"), "{why}");
        assert_eq!((taken.num_calls(), replace.num_calls()), (1, 1));
        let text = alert("CALERTS", "staging", &out).text;
        assert!(
            text.contains("replaced an item batchless did not write"),
            "{text}"
        );
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

    /// Purge (10:30, 11:30, 12:30 unclaimed) checked at 14:00 over 3h, its schedule paused by
    /// alice at 09:00 as its description says; CloudTrail's UpdateSchedule by `caller`.
    async fn check_paused(caller: &'static str, status: &'static str) -> (Output, usize) {
        let none = mock!(aws_sdk_dynamodb::Client::query)
            .match_requests(|r| r.index_name() == Some("byJob"))
            .then_output(|| QueryOutput::builder().build());
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(move |r| {
                let item = r.item().unwrap();
                item.get("status") == Some(&dynamo::s(status)) && item.contains_key("pause")
            })
            .then_output(|| PutItemOutput::builder().build());
        let runs = no_runs();
        let d = deps_trail(&[&none, &runs, &put], purge_only(), true, &trail(caller));
        let now = time::parse("t", "2026-11-28T14:00:00Z").unwrap();
        let out = check(&d, now, Duration::minutes(180)).await.unwrap();
        (out, put.num_calls())
    }

    /// A pause CloudTrail bears out (alice's own UpdateSchedule wrote it before the occurrences
    /// were due): claimed PAUSED, with the evidence, and posted (a pause is never silent).
    #[tokio::test]
    async fn a_paused_jobs_occurrences_are_claimed_paused_and_posted_with_the_evidence() {
        let (out, puts) = check_paused(ALICE, "PAUSED").await;
        assert_eq!(out.checked, 3);
        assert_eq!((out.paused.len(), out.missed.len(), puts), (3, 0, 3));
        let text = alert("C", "staging", &out).text;
        assert!(text.contains("Paused scheduled job occurrences"), "{text}");
        assert!(!text.contains("Missed"), "{text}");
        assert!(
            text.contains("• `purge-expired-sessions` at 2026-11-28T10:30:00Z: paused by alice at 2026-11-28T09:00:00Z: vendor outage (cloudtrail:ev-1; UpdateSchedule by arn:aws:iam::123456789012:user/alice at 2026-11-28T09:00:30Z)"),
            "{text}"
        );
    }

    /// The attack: bob disables the schedule himself and writes alice's name into its
    /// description. CloudTrail names bob: every occurrence is MISSED and alerted, naming both.
    #[tokio::test]
    async fn a_pause_in_someone_elses_name_is_missed_and_names_the_real_caller() {
        let (out, puts) = check_paused("arn:aws:iam::123456789012:user/bob", "MISSED").await;
        assert_eq!((out.paused.len(), out.missed.len(), puts), (0, 3, 3));
        let text = alert("C", "staging", &out).text;
        assert!(text.contains("Missed scheduled job runs"), "{text}");
        assert!(
            text.contains("it names alice, but CloudTrail ev-1 says arn:aws:iam::123456789012:user/bob (bob) wrote it"),
            "{text}"
        );
    }

    fn purge() -> crate::jobs::Job {
        purge_only().jobs.remove(0)
    }

    fn alices_pause() -> pause::Pause {
        pause::Pause {
            by: "alice".into(),
            at: "2026-11-28T09:00:00Z".into(),
            note: "vendor outage".into(),
        }
    }

    fn disabled(p: Option<pause::Pause>) -> pause::Live {
        pause::Live {
            schedule: "batchless-staging-job-purge-expired-sessions".into(),
            enabled: false,
            pause: p,
            resumed: None,
        }
    }

    fn update(
        caller: &str,
        at: &str,
        enabled: bool,
        p: Option<&pause::Pause>,
    ) -> pause::ScheduleUpdate {
        pause::ScheduleUpdate {
            event_id: "ev-9".into(),
            event_time: time::parse("t", at).unwrap(),
            caller: caller.into(),
            enabled,
            description: pause::description("purge-expired-sessions: x", p),
        }
    }

    /// Every way a pause claim can fail to hold, and the two ways it holds.
    #[test]
    fn a_pause_counts_only_when_borne_out_and_in_force_before_the_occurrence() {
        let people = People::parse(crate::shared::people::EMBEDDED, "staging").unwrap();
        let due = time::parse("t", "2026-11-28T10:30:00Z").unwrap();
        let p = alices_pause();
        let alice_at = |at: &str| update(ALICE, at, false, Some(&p));
        let verify = |live: &pause::Live, ups: &[pause::ScheduleUpdate], job: &crate::jobs::Job| {
            pause::verify(job, live, ups, &people, due)
        };
        let live = disabled(Some(p.clone()));
        // Held: alice's UpdateSchedule wrote it, 30 s after its `at`, before 10:30.
        let ok = verify(&live, &[alice_at("2026-11-28T09:00:30Z")], &purge());
        assert!(ok.counts(), "{ok:?}");
        assert_eq!(ok.corroborated_by.as_deref(), Some("cloudtrail:ev-9"));
        // Held: the deployed jobs file records that very pause (the last update a deploy's).
        let mut in_file = purge();
        in_file.paused = Some(p.clone());
        let deploy = update(
            "arn:aws:sts::123456789012:assumed-role/cfn/x",
            "2026-11-28T09:30:00Z",
            false,
            Some(&p),
        );
        let f = verify(&live, std::slice::from_ref(&deploy), &in_file);
        assert_eq!(
            (f.counts(), f.corroborated_by.as_deref()),
            (true, Some("jobs-file"))
        );
        for (why, check) in [
            (
                "no pause recorded",
                verify(
                    &disabled(None),
                    &[alice_at("2026-11-28T09:00:30Z")],
                    &purge(),
                ),
            ),
            ("no UpdateSchedule", verify(&live, &[], &purge())),
            (
                "a deploy wrote it, the file does not say so",
                verify(&live, &[deploy], &purge()),
            ),
            (
                "another caller",
                verify(
                    &live,
                    &[update(
                        "arn:aws:iam::123456789012:user/mallory",
                        "2026-11-28T09:00:30Z",
                        false,
                        Some(&p),
                    )],
                    &purge(),
                ),
            ),
            (
                "its `at` is not CloudTrail's",
                verify(&live, &[alice_at("2026-11-28T09:06:00Z")], &purge()),
            ),
            (
                "paused after the occurrence was due",
                verify(
                    &disabled(Some(pause::Pause {
                        at: "2026-11-28T10:45:00Z".into(),
                        ..p.clone()
                    })),
                    &[update(
                        ALICE,
                        "2026-11-28T10:45:10Z",
                        false,
                        Some(&pause::Pause {
                            at: "2026-11-28T10:45:00Z".into(),
                            ..p.clone()
                        }),
                    )],
                    &purge(),
                ),
            ),
            (
                "the last update was another one",
                verify(
                    &live,
                    &[
                        alice_at("2026-11-28T09:00:30Z"),
                        update(ALICE, "2026-11-28T09:10:00Z", false, None),
                    ],
                    &purge(),
                ),
            ),
        ] {
            assert!(!check.counts(), "{why}: {check:?}");
            assert!(check.finding.is_some(), "{why}: {check:?}");
            assert!(
                check.summary().contains("schedule DISABLED"),
                "{why}: {}",
                check.summary()
            );
        }
    }

    /// CloudTrail lags: a young pause it does not list yet is left for a later check, an old
    /// one (or one over a long-past occurrence) is decided now.
    #[test]
    fn a_pause_cloudtrail_cannot_list_yet_is_decided_later() {
        let people = People::parse(crate::shared::people::EMBEDDED, "staging").unwrap();
        let t = |s: &str| time::parse("t", s).unwrap();
        let live = disabled(Some(alices_pause())); // at 09:00
        let unseen = pause::verify(&purge(), &live, &[], &people, t("2026-11-28T09:05:00Z"));
        assert!(!unseen.counts());
        let at = |occ: &str, now: &str| unseen.awaits_cloudtrail(t(occ), t(now));
        assert!(at("2026-11-28T09:05:00Z", "2026-11-28T09:15:00Z"));
        assert!(
            !at("2026-11-28T09:05:00Z", "2026-11-28T09:21:00Z"),
            "the pause is 21 min old"
        );
        assert!(
            !at("2026-11-28T08:05:00Z", "2026-11-28T09:15:00Z"),
            "the occurrence is 70 min old"
        );
        let ok = pause::verify(
            &purge(),
            &live,
            &[update(
                ALICE,
                "2026-11-28T09:00:30Z",
                false,
                Some(&alices_pause()),
            )],
            &people,
            t("2026-11-28T09:05:00Z"),
        );
        assert!(!ok.awaits_cloudtrail(t("2026-11-28T09:05:00Z"), t("2026-11-28T09:15:00Z")));
    }

    /// CloudTrail records of other calls and other schedules are not this schedule's updates.
    #[test]
    fn only_this_schedules_update_schedule_records_are_read() {
        let name = "batchless-staging-job-purge-expired-sessions";
        let rec = |event: &str, schedule: &str| {
            json!({"eventName": event, "eventID": "e", "eventTime": "2026-11-28T09:00:30Z",
                   "userIdentity": {"arn": ALICE},
                   "requestParameters": {"name": schedule, "state": "DISABLED", "description": "d"}})
        };
        let u = pause::schedule_update(&rec("UpdateSchedule", name), name).unwrap();
        assert!(!u.enabled && u.caller == ALICE && u.description == "d");
        assert!(pause::schedule_update(&rec("CreateSchedule", name), name).is_none());
        assert!(pause::schedule_update(&rec("UpdateSchedule", "other"), name).is_none());
        let mut failed = rec("UpdateSchedule", name);
        failed["errorCode"] = json!("AccessDenied");
        assert!(pause::schedule_update(&failed, name).is_none());
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
