//! `open-session`: first step of the bastion-session watch. Records the session (the person
//! behind the IAM/SSO principal from the people map, cluster, task, container, command, time,
//! source IP, deadline) and posts the login to the bastion channel. Idempotent: a retry finds
//! the stored record and does not post twice.

use batchless_core::bastion::login::WatchInput;
use batchless_core::bastion::session::{self, SessionRecord, Times};
use batchless_core::platform::input::parse_strict;
use batchless_core::platform::slack::SlackClient;
use batchless_core::shared::people::People;
use batchless_core::{platform::aws, platform::config, platform::time, Error};
use chrono::Duration;
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use serde_json::{json, Value};

struct Deps {
    db: aws_sdk_dynamodb::Client,
    slack: SlackClient,
    people: People,
    table: String,
    channel: String,
    alert_channel: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Execution {
    id: String,
    name: String,
    start_time: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    watch: WatchInput,
    execution: Execution,
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let input: Input = parse_strict(event)?;
    input.watch.validate()?;
    let started = time::parse("execution.startTime", &input.execution.start_time)?;
    let (until_reminder, reminder_to_deadline) = input.watch.waits();
    let deadline = started + Duration::seconds(input.watch.deadline_seconds as i64);
    let reminder = started + Duration::seconds(until_reminder as i64);
    let login = &input.watch.login;
    let person = deps.people.by_principal(&login.principal_arn);
    if person.is_none() {
        tracing::warn!(principal = %login.principal_arn, "bastion login by a principal not in the people map");
    }
    let fresh = SessionRecord::new(
        login,
        person,
        deps.people.environment(),
        &input.execution.name,
        Some(&input.execution.id),
        Times {
            deadline_at: time::rfc3339(deadline),
            reminder_at: time::rfc3339(reminder),
            recorded_at: time::rfc3339(time::now()),
        },
    );
    let mut rec = session::open(&deps.db, &deps.table, &fresh).await?;
    if rec.thread_ts.is_none() {
        let msg = session::login_message(&rec, &deps.channel, &deps.alert_channel);
        let posted = deps.slack.post_message(&msg).await?;
        let permalink = match deps.slack.permalink(&posted.channel, &posted.ts).await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "no permalink for the login post");
                None
            }
        };
        let mut fields = vec![
            ("channel", json!(posted.channel)),
            ("threadTs", json!(posted.ts)),
            (
                "threadKey",
                json!(session::thread_key(&posted.channel, &posted.ts)),
            ),
        ];
        if let Some(p) = &permalink {
            fields.push(("permalink", json!(p)));
        }
        rec = session::update(&deps.db, &deps.table, &rec.session_id, &fields, None)
            .await?
            .ok_or_else(|| Error::Corrupt(format!("session {} vanished", rec.session_id)))?;
        tracing::info!(session = %rec.session_id, ts = %posted.ts, "login posted");
    }
    Ok(json!({
        "sessionId": rec.session_id,
        "personId": rec.person_id,
        "channel": rec.channel,
        "threadTs": rec.thread_ts,
        "deadlineAt": rec.deadline_at,
        "reminderAt": rec.reminder_at,
        "untilReminderSeconds": until_reminder,
        "reminderToDeadlineSeconds": reminder_to_deadline,
    }))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        db: aws::dynamodb(&sdk),
        slack: config::slack_client(&sdk).await?,
        people: People::load(&config::environment()?)?,
        table: config::required("BASTION_TABLE")?,
        channel: config::required("SLACK_BASTION_CHANNEL")?,
        alert_channel: config::required("SLACK_ALERTS_CHANNEL")?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}
