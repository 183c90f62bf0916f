//! `command-watch`: CloudWatch Logs subscription target for (a) the ECS Exec session
//! transcripts and (b) the console hook's JSON lines (the console task's log group). Noise is
//! stripped and every command line matched against the configured patterns in one pass; a
//! hit is recorded on its session and posted into the session's Slack thread (who, redacted
//! command, pattern, severity). A malformed, truncated or oversized payload is a clear
//! `InvalidInput` error; a bad log event is reported and the rest of the batch still processed.
//!
//! Input: the subscription payload `{"awslogs": {"data": ...}}`, or an array of them (a
//! batch, e.g. a replay): each payload is processed on its own and errors are listed.

use std::collections::HashMap;

use batchless_core::bastion::scan::Scanner;
use batchless_core::bastion::session::{self, SessionRecord};
use batchless_core::bastion::subscription::{self, LogsData, Source};
use batchless_core::bastion::WatchConfig;
use batchless_core::platform::input::InputError;
use batchless_core::platform::slack::SlackClient;
use batchless_core::{platform::aws, platform::config, platform::redact, platform::time, Error};
use chrono::{DateTime, Duration, Utc};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};

struct Deps {
    db: aws_sdk_dynamodb::Client,
    slack: SlackClient,
    scanner: Scanner,
    table: String,
    channel: String,
    console_log_group: String,
    session_window: Duration,
}

#[derive(Default)]
struct Report {
    payloads: usize,
    events: usize,
    hits: usize,
    posted: usize,
    duplicates: usize,
    errors: Vec<Value>,
}

fn payload_data(v: &Value) -> Result<&str, InputError> {
    v.get("awslogs")
        .and_then(|a| a.get("data"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            InputError::field(
                "awslogs.data",
                "missing: not a CloudWatch Logs subscription payload",
            )
        })
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let mut report = Report::default();
    let mut cache: HashMap<String, Vec<SessionRecord>> = HashMap::new();
    match &event {
        Value::Array(batch) => {
            for (i, p) in batch.iter().enumerate() {
                report.payloads += 1;
                let decoded = payload_data(p)
                    .map_err(|e| e.to_string())
                    .and_then(|d| subscription::decode(d).map_err(|e| e.to_string()));
                match decoded {
                    Ok(data) => process(&data, deps, &mut cache, &mut report).await?,
                    Err(e) => {
                        tracing::error!(payload = i, error = %e, "bad subscription payload skipped");
                        report.errors.push(json!({ "payload": i, "error": e }));
                    }
                }
            }
        }
        single => {
            report.payloads = 1;
            let data = subscription::decode(payload_data(single)?)
                .map_err(|e| InputError::new(e.to_string()))?;
            process(&data, deps, &mut cache, &mut report).await?;
        }
    }
    Ok(json!({
        "payloads": report.payloads,
        "events": report.events,
        "hits": report.hits,
        "posted": report.posted,
        "duplicates": report.duplicates,
        "errors": report.errors,
    }))
}

async fn sessions_for(
    deps: &Deps,
    cache: &mut HashMap<String, Vec<SessionRecord>>,
    key: &str,
    by_session: bool,
) -> Result<Vec<SessionRecord>, Error> {
    let ck = format!("{by_session}:{key}");
    if let Some(v) = cache.get(&ck) {
        return Ok(v.clone());
    }
    let v = if by_session {
        session::get(&deps.db, &deps.table, key)
            .await?
            .into_iter()
            .collect()
    } else {
        session::by_task(&deps.db, &deps.table, key).await?
    };
    cache.insert(ck, v.clone());
    Ok(v)
}

async fn process(
    data: &LogsData,
    deps: &Deps,
    cache: &mut HashMap<String, Vec<SessionRecord>>,
    report: &mut Report,
) -> Result<(), Error> {
    if data.message_type == "CONTROL_MESSAGE" {
        return Ok(());
    }
    let from_console = data.log_group == deps.console_log_group;
    for ev in &data.log_events {
        report.events += 1;
        let source = match subscription::classify(&ev.message, from_console) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(event = %ev.id, error = %e, "bad log event skipped");
                report
                    .errors
                    .push(json!({ "logStream": data.log_stream, "event": ev.id, "error": e }));
                continue;
            }
        };
        let at: DateTime<Utc> =
            DateTime::from_timestamp_millis(ev.timestamp).unwrap_or_else(time::now);
        let (hits, sessions, task_id, kind) = match &source {
            Source::Ignored => continue,
            Source::Hook(line) => {
                let hits = deps.scanner.scan(&line.command);
                if hits.is_empty() {
                    continue;
                }
                let all = sessions_for(deps, cache, &line.task_id, false).await?;
                // The task's open sessions: logged in before the command, within the window.
                let open: Vec<SessionRecord> = all
                    .into_iter()
                    .filter(|s| {
                        time::parse("loginAt", &s.login_at).is_ok_and(|login| {
                            login <= at + Duration::seconds(60) && at < login + deps.session_window
                        })
                    })
                    .collect();
                (hits, open, line.task_id.clone(), "hook")
            }
            Source::Transcript => {
                let hits = deps.scanner.scan(&ev.message);
                if hits.is_empty() {
                    continue;
                }
                let sid = subscription::session_id_from_stream(&data.log_stream)
                    .unwrap_or(&data.log_stream)
                    .to_string();
                let found = sessions_for(deps, cache, &sid, true).await?;
                let task = found.first().map(|s| s.task_id.clone()).unwrap_or_default();
                (hits, found, task, "transcript")
            }
        };
        for (n, hit) in hits.iter().enumerate() {
            report.hits += 1;
            let command = redact::redact(&hit.command).into_owned();
            let targets: Vec<Option<&SessionRecord>> = if sessions.is_empty() {
                vec![None]
            } else {
                sessions.iter().map(Some).collect()
            };
            for target in targets {
                let pk = match target {
                    Some(s) => session::pk(&s.session_id),
                    None => format!("orphan#{task_id}"),
                };
                let sk = format!("hit#{}#{n}", ev.id);
                let body = json!({
                    "kind": "hit",
                    "sessionId": target.map(|s| s.session_id.clone()),
                    "command": command,
                    "patterns": hit.patterns,
                    "severity": hit.severity.as_str(),
                    "source": kind,
                    "hitTaskId": task_id,
                    "at": time::rfc3339(at),
                    "logGroup": data.log_group,
                    "logStream": data.log_stream,
                    "logEventId": ev.id,
                });
                let new = session::put_child(&deps.db, &deps.table, &pk, &sk, &body).await?;
                if !new {
                    let existing = session::get_child(&deps.db, &deps.table, &pk, &sk).await?;
                    if existing.is_some_and(|e| e.get("postedTs").is_some()) {
                        report.duplicates += 1;
                        continue;
                    }
                }
                let msg = session::hit_message(
                    target,
                    &deps.channel,
                    &task_id,
                    &command,
                    &hit.patterns,
                    hit.severity.as_str(),
                    kind,
                );
                match deps.slack.post_message(&msg).await {
                    Ok(posted) => {
                        report.posted += 1;
                        mark_posted(deps, &pk, &sk, &posted.ts).await?;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not post a flagged command");
                        report
                            .errors
                            .push(json!({ "event": ev.id, "error": e.to_string() }));
                    }
                }
                if new {
                    if let Some(s) = target {
                        session::add_flagged(&deps.db, &deps.table, &s.session_id).await?;
                    }
                }
                tracing::warn!(task = %task_id, severity = hit.severity.as_str(), patterns = ?hit.patterns, "dangerous command");
            }
        }
    }
    Ok(())
}

async fn mark_posted(deps: &Deps, pk: &str, sk: &str, ts: &str) -> Result<(), Error> {
    use batchless_core::platform::aws::AwsResultExt;
    use batchless_core::platform::dynamo::s;
    deps.db
        .update_item()
        .table_name(&deps.table)
        .key("pk", s(pk))
        .key("sk", s(sk))
        .update_expression("SET postedTs = :t")
        .expression_attribute_values(":t", s(ts))
        .send()
        .await
        .aws("UpdateItem")?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let watch = WatchConfig::load()?;
    let hours: i64 = config::optional("BASTION_SESSION_WINDOW_HOURS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let deps = Deps {
        db: aws::dynamodb(&sdk),
        slack: config::slack_client(&sdk).await?,
        scanner: Scanner::new(&watch.patterns)?,
        table: config::required("BASTION_TABLE")?,
        channel: config::required("SLACK_BASTION_CHANNEL")?,
        console_log_group: config::required("BASTION_CONSOLE_LOG_GROUP")?,
        session_window: Duration::hours(hours),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use batchless_core::bastion::subscription::LogEvent;

    fn deps() -> Deps {
        let watch = WatchConfig::parse(batchless_core::bastion::EMBEDDED).unwrap();
        Deps {
            // Nothing below reaches AWS: no payload here has a hit.
            db: aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::Config::builder()
                    .behavior_version_latest()
                    .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
                    .endpoint_url("http://127.0.0.1:9")
                    .build(),
            ),
            slack: SlackClient::new("http://127.0.0.1:9/api", "t"),
            scanner: Scanner::new(&watch.patterns).unwrap(),
            table: "t".into(),
            channel: "C".into(),
            console_log_group: "/console".into(),
            session_window: Duration::hours(24),
        }
    }

    fn payload(group: &str, messages: &[&str]) -> Value {
        let data = LogsData {
            message_type: "DATA_MESSAGE".into(),
            owner: "1".into(),
            log_group: group.into(),
            log_stream: "s".into(),
            subscription_filters: vec![],
            log_events: messages
                .iter()
                .enumerate()
                .map(|(i, m)| LogEvent {
                    id: i.to_string(),
                    timestamp: 0,
                    message: m.to_string(),
                })
                .collect(),
        };
        json!({"awslogs": {"data": subscription::encode(&data)}})
    }

    #[tokio::test]
    async fn a_bad_payload_is_invalid_input() {
        let err = handler(json!({"awslogs": {"data": "%%"}}), &deps())
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
        assert!(err.to_string().contains("base64"), "{err}");
        let err = handler(json!({"records": []}), &deps()).await.unwrap_err();
        assert!(err.to_string().contains("awslogs.data"), "{err}");
    }

    #[tokio::test]
    async fn benign_lines_and_bad_events_are_reported_without_hits() {
        let hook = r#"{"batchless":"console-command","v":1,"taskId":"t","command":"User.find(1)","time":"2026-11-28T13:00:00Z"}"#;
        let out = handler(
            payload(
                "/console",
                &[
                    hook,
                    "Started GET /",
                    "{\"batchless\":\"console-command\",\"v\":1}",
                ],
            ),
            &deps(),
        )
        .await
        .unwrap();
        assert_eq!(out["events"], 3);
        assert_eq!(out["hits"], 0);
        assert_eq!(out["errors"].as_array().unwrap().len(), 1, "{out}");
        let out = handler(
            json!([payload("/exec", &["irb> # destroy_all later"]), {"awslogs": {"data": "%%"}}]),
            &deps(),
        )
        .await
        .unwrap();
        assert_eq!(
            (out["payloads"].as_i64(), out["hits"].as_i64()),
            (Some(2), Some(0))
        );
        assert_eq!(out["errors"].as_array().unwrap().len(), 1, "{out}");
    }
}
