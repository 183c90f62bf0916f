//! `missed-run-check`: on its own schedule, finds occurrences of enabled jobs whose catch-up
//! window has closed and that nobody claimed (schedule disabled in the console, a delivery
//! lost, the workflow broken). Each is claimed as `MISSED` with the same conditional write as a
//! run (so it is alerted once and can never run late) and one Slack alert lists them.

use std::fmt::Write as _;

use batchless_core::jobs::occurrence::{self, Claim, Occurrence};
use batchless_core::jobs::{workflow, JobsFile};
use batchless_core::platform::slack::{Message, SlackClient};
use batchless_core::{platform::aws, platform::config, platform::input, platform::time, Error};
use chrono::Duration;
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use serde_json::{json, Value};

struct Deps {
    db: aws_sdk_dynamodb::Client,
    slack: SlackClient,
    occurrences_table: String,
    alerts_channel: String,
    environment: String,
    jobs: JobsFile,
}

/// `{}` from the schedule; `at` and `lookbackMinutes` for a check of another window.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Event {
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    lookback_minutes: Option<i64>,
}

pub const DEFAULT_LOOKBACK_MINUTES: i64 = 120;

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let e: Event = if event.is_null() {
        Event::default()
    } else {
        input::parse_strict(event)?
    };
    let now = match &e.at {
        Some(t) => time::parse("at", t)?,
        None => time::now(),
    };
    let lookback = e.lookback_minutes.unwrap_or(DEFAULT_LOOKBACK_MINUTES);
    if !(1..=7 * 24 * 60).contains(&lookback) {
        return Err(input::InputError::field("lookbackMinutes", "must be 1-10080").into());
    }
    let mut missed = Vec::new();
    let mut checked = 0;
    for job in deps.jobs.jobs.iter().filter(|j| j.enabled) {
        let (from, to) = workflow::missed_window(job, now, Duration::minutes(lookback));
        for t in job.parsed_schedule().occurrences(from, to, 1000) {
            checked += 1;
            let key = occurrence::key(&job.name, t);
            if occurrence::get(&deps.db, &deps.occurrences_table, &key)
                .await?
                .is_some()
            {
                continue;
            }
            let occ = Occurrence {
                occurrence_key: key.clone(),
                job: job.name.clone(),
                scheduled_time: time::rfc3339(t),
                environment: deps.environment.clone(),
                claimed_by: "missed-run-check".into(),
                claimed_at: time::rfc3339(time::now()),
                source: "missed-run-check".into(),
                status: occurrence::status::MISSED.into(),
                run_status: None,
                duplicate_claimers: vec![],
            };
            if occurrence::claim(&deps.db, &deps.occurrences_table, &occ).await? == Claim::Won {
                missed.push((job.name.clone(), time::rfc3339(t)));
            }
        }
    }
    let mut posted = None;
    if !missed.is_empty() {
        let mut text = format!(
            ":rotating_light: *Missed scheduled job runs* on *{}*: due, never claimed, past their catch-up window (schedule disabled? delivery lost?)",
            deps.environment
        );
        for (job, t) in &missed {
            let _ = write!(text, "\n• `{job}` at {t}");
        }
        let p = deps
            .slack
            .post_message(&Message {
                channel: deps.alerts_channel.clone(),
                text,
                blocks: None,
                thread_ts: None,
            })
            .await?;
        posted = Some(p.ts);
    }
    tracing::info!(checked, missed = missed.len(), "missed-run check");
    Ok(json!({
        "checked": checked,
        "missed": missed.iter().map(|(j, t)| json!({"job": j, "scheduledTime": t})).collect::<Vec<_>>(),
        "slackTs": posted,
    }))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        db: aws::dynamodb(&sdk),
        slack: config::slack_client(&sdk).await?,
        occurrences_table: config::required("OCCURRENCES_TABLE")?,
        alerts_channel: config::required("SLACK_ALERTS_CHANNEL")?,
        environment: config::environment()?,
        jobs: JobsFile::embedded(),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
