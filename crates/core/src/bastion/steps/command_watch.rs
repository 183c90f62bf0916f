//! `command-watch`: CloudWatch Logs subscription target for (a) the ECS Exec session
//! transcripts and (b) the console hook's JSON lines (the console task's log group). Noise is
//! stripped and every command line matched against the configured patterns in one pass; a
//! hit is recorded once on its session (`put_once`: a redelivered batch posts nothing twice)
//! and posted into the session's Slack thread (who, redacted command, pattern, severity). A
//! malformed, truncated or oversized payload is a clear `InvalidInput` error; a bad log event
//! is reported and the rest of the batch still processed.

use std::collections::HashMap;

use aws_types::SdkConfig;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bastion::scan::{self, Hit, Scanner, Severity};
use crate::bastion::session::{self, HitRecord, HitSource, ItemKind, SessionRecord, Store};
use crate::bastion::subscription::{self, LogsData, Source};
use crate::bastion::WatchConfig;
use crate::error::Error;
use crate::platform::dynamo::Once;
use crate::platform::input::InputError;
use crate::platform::slack::SlackClient;
use crate::platform::{aws, config, redact, time};

pub struct Deps {
    pub store: Store,
    pub slack: SlackClient,
    pub scanner: Scanner,
    pub channel: String,
    pub console_log_group: String,
    pub session_window: Duration,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        let watch = WatchConfig::load()?;
        let hours: i64 = config::optional("BASTION_SESSION_WINDOW_HOURS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(24);
        Ok(Deps {
            store: Store::new(aws::dynamodb(sdk), &config::required("BASTION_TABLE")?),
            slack: config::slack_client(sdk).await?,
            scanner: Scanner::new(&watch.patterns)?,
            channel: config::required("SLACK_BASTION_CHANNEL")?,
            console_log_group: config::required("BASTION_CONSOLE_LOG_GROUP")?,
            session_window: Duration::hours(hours),
        })
    }
}

/// The subscription payload `{"awslogs": {"data": ...}}`, or an array of them (a batch, e.g. a
/// replay): each payload of a batch is processed on its own and its errors are listed. Payloads
/// stay JSON here so that a bad one is reported (naming `awslogs.data`) rather than refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Batch(Vec<Value>),
    One(Value),
}

/// One payload or log event that could not be processed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    pub error: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Output {
    pub payloads: usize,
    pub events: usize,
    pub hits: usize,
    pub posted: usize,
    pub duplicates: usize,
    /// Console hook heartbeats recorded on their sessions.
    pub heartbeats: usize,
    /// Console hook `console-end` lines recorded on their sessions.
    pub ends: usize,
    /// Console hook command lines recorded on their sessions (for the transcript's check).
    pub hook_commands: usize,
    /// Transcript console commands the hook never reported ("typed without the hook").
    pub unhooked: usize,
    pub errors: Vec<Problem>,
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

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let mut report = Output::default();
    let mut cache = Sessions::default();
    match input {
        Input::Batch(batch) => {
            for (i, p) in batch.iter().enumerate() {
                report.payloads += 1;
                let decoded = payload_data(p)
                    .map_err(|e| e.to_string())
                    .and_then(|d| subscription::decode(d).map_err(|e| e.to_string()));
                match decoded {
                    Ok(data) => process(&data, deps, &mut cache, &mut report).await?,
                    Err(e) => {
                        tracing::error!(payload = i, error = %e, "bad subscription payload skipped");
                        report.errors.push(Problem {
                            payload: Some(i),
                            log_stream: None,
                            event: None,
                            error: e,
                        });
                    }
                }
            }
        }
        Input::One(single) => {
            report.payloads = 1;
            let data = subscription::decode(payload_data(&single)?)
                .map_err(|e| InputError::new(e.to_string()))?;
            process(&data, deps, &mut cache, &mut report).await?;
        }
    }
    Ok(report)
}

/// Sessions looked up during one invocation (by session id, or a task's sessions).
#[derive(Default)]
struct Sessions(HashMap<(bool, String), Vec<SessionRecord>>);

impl Sessions {
    async fn of(
        &mut self,
        store: &Store,
        key: &str,
        by_session: bool,
    ) -> Result<Vec<SessionRecord>, Error> {
        let ck = (by_session, key.to_string());
        if let Some(v) = self.0.get(&ck) {
            return Ok(v.clone());
        }
        let v = if by_session {
            store.get(key).await?.into_iter().collect()
        } else {
            store.by_task(key).await?
        };
        self.0.insert(ck, v.clone());
        Ok(v)
    }
}

async fn process(
    data: &LogsData,
    deps: &Deps,
    cache: &mut Sessions,
    report: &mut Output,
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
                report.errors.push(Problem {
                    payload: None,
                    log_stream: Some(data.log_stream.clone()),
                    event: Some(ev.id.clone()),
                    error: e,
                });
                continue;
            }
        };
        let at: DateTime<Utc> =
            DateTime::from_timestamp_millis(ev.timestamp).unwrap_or_else(time::now);
        let (hits, kinds, sessions, task_id) = match &source {
            Source::Ignored => continue,
            Source::Hook(line) => {
                let (hits, kind) = match line.batchless.as_str() {
                    // What the hook says about itself is a critical finding of its own.
                    subscription::HOOK_TAMPER => (
                        vec![Hit {
                            command: line.what.clone().unwrap_or_default(),
                            patterns: vec!["console-hook-tampered".into()],
                            severity: Severity::Critical,
                        }],
                        HitSource::Tamper,
                    ),
                    subscription::HOOK_HEARTBEAT | subscription::HOOK_END => {
                        (Vec::new(), HitSource::Hook)
                    }
                    _ => (deps.scanner.scan(&line.command), HitSource::Hook),
                };
                let end = line.batchless == subscription::HOOK_END;
                let heartbeat = end || line.batchless == subscription::HOOK_HEARTBEAT;
                let command = line.batchless == subscription::HOOK_COMMAND;
                if hits.is_empty() && !heartbeat && !command {
                    continue;
                }
                let all = cache.of(&deps.store, &line.task_id, false).await?;
                // The task's open sessions: logged in before the command, within the window.
                let open: Vec<SessionRecord> = all
                    .into_iter()
                    .filter(|s| {
                        time::parse("loginAt", &s.exec.login_at).is_ok_and(|login| {
                            login <= at + Duration::seconds(60) && at < login + deps.session_window
                        })
                    })
                    .collect();
                if heartbeat {
                    if end {
                        report.ends += 1;
                    } else {
                        report.heartbeats += 1;
                    }
                    for s in &open {
                        let at = time::rfc3339(at);
                        deps.store.hook_seen(&s.session_id, &at).await?;
                        if end {
                            deps.store.hook_ended(&s.session_id, &at).await?;
                        }
                    }
                    continue;
                }
                if command {
                    // What the transcript is compared with when it arrives.
                    for s in &open {
                        deps.store
                            .hook_command(&s.session_id, &line.command, &time::rfc3339(at))
                            .await?;
                    }
                    report.hook_commands += 1;
                }
                if hits.is_empty() {
                    continue;
                }
                let kinds = vec![kind; hits.len()];
                (hits, kinds, open, line.task_id.clone())
            }
            Source::Transcript => {
                let mut hits = deps.scanner.scan(&ev.message);
                let typed = scan::console_commands(&ev.message);
                if hits.is_empty() && typed.is_empty() {
                    continue;
                }
                let sid = subscription::session_id_from_stream(&data.log_stream)
                    .unwrap_or(&data.log_stream)
                    .to_string();
                let found = cache.of(&deps.store, &sid, true).await?;
                let task = found
                    .first()
                    .map(|s| s.exec.task_id.clone())
                    .unwrap_or_default();
                let mut kinds = vec![HitSource::Transcript; hits.len()];
                // A console command the hook never reported on the session: typed without it.
                for cmd in typed {
                    let mut reported = false;
                    for s in &found {
                        reported |= deps.store.hook_reported(&s.session_id, &cmd).await?;
                    }
                    if !reported && !found.is_empty() {
                        report.unhooked += 1;
                        hits.push(Hit {
                            command: cmd,
                            patterns: vec!["typed-without-the-hook".into()],
                            severity: Severity::Critical,
                        });
                        kinds.push(HitSource::Unhooked);
                    }
                }
                if hits.is_empty() {
                    continue;
                }
                (hits, kinds, found, task)
            }
        };
        for (n, (hit, kind)) in hits.iter().zip(kinds).enumerate() {
            report.hits += 1;
            let command = redact::redact(&hit.command).into_owned();
            let targets: Vec<Option<&SessionRecord>> = if sessions.is_empty() {
                vec![None]
            } else {
                sessions.iter().map(Some).collect()
            };
            for target in targets {
                let session_id = target.map(|s| s.session_id.clone());
                let record = HitRecord {
                    pk: HitRecord::pk_for(session_id.as_deref(), &task_id),
                    sk: HitRecord::sk_for(&ev.id, n),
                    kind: ItemKind::Hit,
                    session_id,
                    command: command.clone(),
                    patterns: hit.patterns.clone(),
                    severity: hit.severity,
                    source: kind,
                    hit_task_id: task_id.clone(),
                    at: time::rfc3339(at),
                    log_group: data.log_group.clone(),
                    log_stream: data.log_stream.clone(),
                    log_event_id: ev.id.clone(),
                    posted_ts: None,
                };
                let first = match deps.store.record_hit(&record).await? {
                    Once::First => true,
                    // Posted before: a redelivery. Not posted (the post failed): post now.
                    Once::Seen(stored) if stored.posted_ts.is_some() => {
                        report.duplicates += 1;
                        continue;
                    }
                    Once::Seen(_) => false,
                };
                let msg = session::hit_message(
                    target,
                    &deps.channel,
                    &task_id,
                    &command,
                    &hit.patterns,
                    hit.severity,
                    kind,
                );
                match deps.slack.post_message(&msg).await {
                    Ok(posted) => {
                        report.posted += 1;
                        deps.store.set_hit_posted(&record, &posted.ts).await?;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not post a flagged command");
                        report.errors.push(Problem {
                            payload: None,
                            log_stream: None,
                            event: Some(ev.id.clone()),
                            error: e.to_string(),
                        });
                    }
                }
                if first {
                    if let Some(s) = target {
                        deps.store.add_flagged(&s.session_id).await?;
                    }
                }
                tracing::warn!(task = %task_id, severity = hit.severity.as_str(), patterns = ?hit.patterns, "dangerous command");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bastion::steps::fake_slack;
    use crate::bastion::subscription::LogEvent;
    use crate::platform::dynamo::to_item;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::query::QueryOutput;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_smithy_mocks::{mock, Rule};
    use serde_json::json;

    async fn deps(db: &[&Rule]) -> (Deps, fake_slack::Calls) {
        let watch = WatchConfig::parse(crate::bastion::EMBEDDED).unwrap();
        let (slack, calls) = fake_slack::start(false).await;
        let d = Deps {
            store: crate::bastion::fixtures::store(db),
            slack,
            scanner: Scanner::new(&watch.patterns).unwrap(),
            channel: "C0BASTION".into(),
            console_log_group: "/console".into(),
            session_window: Duration::hours(24),
        };
        (d, calls)
    }

    fn input(v: Value) -> Input {
        crate::platform::input::parse_strict(v).unwrap()
    }

    fn payload(group: &str, messages: &[&str], timestamp: i64) -> Value {
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
                    timestamp,
                    message: m.to_string(),
                })
                .collect(),
        };
        json!({"awslogs": {"data": subscription::encode(&data)}})
    }

    fn hook(command: &str) -> String {
        json!({"batchless": "console-command", "v": 1, "taskId": "t1", "command": command,
               "time": "2026-11-28T13:00:05Z"})
        .to_string()
    }

    fn login_ms() -> i64 {
        time::parse("t", "2026-11-28T13:00:05Z")
            .unwrap()
            .timestamp_millis()
    }

    fn session() -> SessionRecord {
        crate::bastion::fixtures::posted("s1", false)
    }

    /// The step's report on one console hook line typing `command` after the login.
    async fn console(d: &Deps, command: &str) -> Output {
        handle(d, input(payload("/console", &[&hook(command)], login_ms())))
            .await
            .unwrap()
    }

    fn by_task() -> Rule {
        mock!(aws_sdk_dynamodb::Client::query)
            .match_requests(|r| r.index_name() == Some("byTask"))
            .then_output(|| QueryOutput::builder().items(to_item(&session())).build())
    }

    /// The hook's command recorded on the session (what the transcript is compared with).
    fn hook_command_put() -> Rule {
        mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.item().unwrap()["sk"]
                    .as_s()
                    .is_ok_and(|sk| sk.starts_with("hookcmd#"))
            })
            .then_output(|| aws_sdk_dynamodb::operation::put_item::PutItemOutput::builder().build())
    }

    #[tokio::test]
    async fn a_transcript_command_the_hook_never_reported_is_typed_without_the_hook() {
        // The transcript's session (found by its id), and no hook command recorded on it.
        let stored = session();
        let get = mock!(aws_sdk_dynamodb::Client::get_item)
            .then_output(|| GetItemOutput::builder().build());
        let session_get = mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| {
                r.key().unwrap()["sk"]
                    .as_s()
                    .is_ok_and(|sk| sk == "session")
            })
            .then_output(move || {
                GetItemOutput::builder()
                    .set_item(Some(to_item(&stored)))
                    .build()
            });
        let put = mock!(aws_sdk_dynamodb::Client::put_item).then_output(|| {
            aws_sdk_dynamodb::operation::put_item::PutItemOutput::builder().build()
        });
        let update = mock!(aws_sdk_dynamodb::Client::update_item)
            .then_output(|| UpdateItemOutput::builder().build());
        let (d, calls) = deps(&[&session_get, &get, &put, &update]).await;
        let out = handle(
            &d,
            input(payload(
                "/exec",
                &["irb(main):001:0> User.count\r\n=> 3"],
                0,
            )),
        )
        .await
        .unwrap();
        assert_eq!(out.unhooked, 1, "{out:?}");
        let posts = calls.of("chat.postMessage");
        assert_eq!(posts.len(), 1, "{posts:?}");
        let text = posts[0]["text"].as_str().unwrap();
        assert!(text.contains("Typed without the hook"), "{text}");
        assert!(text.contains("User.count"), "{text}");
    }

    #[tokio::test]
    async fn a_bad_payload_is_invalid_input() {
        let (d, _) = deps(&[]).await;
        let err = handle(&d, input(json!({"awslogs": {"data": "%%"}})))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "InvalidInput");
        assert!(err.to_string().contains("base64"), "{err}");
        let err = handle(&d, input(json!({"records": []}))).await.unwrap_err();
        assert!(err.to_string().contains("awslogs.data"), "{err}");
    }

    #[tokio::test]
    async fn benign_lines_and_bad_events_are_reported_without_hits() {
        let (query, recorded) = (by_task(), hook_command_put());
        let (d, calls) = deps(&[&query, &recorded]).await;
        let out = handle(
            &d,
            input(payload(
                "/console",
                &[
                    &hook("User.find(1)"),
                    "Started GET /",
                    "{\"batchless\":\"console-command\",\"v\":1}",
                ],
                0,
            )),
        )
        .await
        .unwrap();
        assert_eq!((out.events, out.hits), (3, 0));
        assert_eq!(out.errors.len(), 1, "{out:?}");
        assert_eq!(out.hook_commands, 1, "{out:?}");
        let out = handle(
            &d,
            input(json!([payload("/exec", &["irb> # destroy_all later"], 0), {"awslogs": {"data": "%%"}}])),
        )
        .await
        .unwrap();
        assert_eq!((out.payloads, out.hits), (2, 0));
        assert_eq!(out.errors.len(), 1, "{out:?}");
        assert_eq!(out.errors[0].payload, Some(1));
        assert!(calls.all().is_empty());
    }

    #[tokio::test]
    async fn a_hit_is_recorded_once_posted_in_the_thread_and_counted() {
        let query = by_task();
        let put = crate::bastion::fixtures::put_once_of(&[
            ("pk", "session#s1"),
            ("sk", "hit#0#0"),
            ("kind", "hit"),
            ("severity", "high"),
            ("source", "hook"),
        ]);
        let posted = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| r.update_expression().is_some_and(|e| e.starts_with("SET")))
            .then_output(|| UpdateItemOutput::builder().build());
        let flagged = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                r.update_expression() == Some("ADD #f :n")
                    && r.key().unwrap()["sk"].as_s().unwrap() == "session"
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let recorded = hook_command_put();
        let (d, calls) = deps(&[&query, &put, &posted, &flagged, &recorded]).await;
        let out = console(&d, "User.where(active: false).destroy_all").await;
        assert_eq!((out.hits, out.posted, out.duplicates), (1, 1, 0), "{out:?}");
        assert_eq!(
            recorded.num_calls(),
            1,
            "the command recorded on its session"
        );
        assert_eq!(
            (put.num_calls(), posted.num_calls(), flagged.num_calls()),
            (1, 1, 1)
        );
        let posts = calls.of("chat.postMessage");
        assert_eq!(posts.len(), 1);
        assert_eq!(posts[0]["thread_ts"], "1.5");
        assert!(posts[0]["text"].as_str().unwrap().contains("destroy_all"));
    }

    #[tokio::test]
    async fn a_redelivered_hit_that_was_posted_is_a_duplicate() {
        let query = by_task();
        let put = crate::testing::put_item_exists();
        let stored = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
            GetItemOutput::builder()
                .set_item(Some(to_item(&HitRecord {
                    pk: "session#s1".into(),
                    sk: "hit#0#0".into(),
                    kind: ItemKind::Hit,
                    session_id: Some("s1".into()),
                    command: "Order.delete_all".into(),
                    patterns: vec!["delete_all".into()],
                    severity: crate::bastion::scan::Severity::High,
                    source: HitSource::Hook,
                    hit_task_id: "t1".into(),
                    at: "2026-11-28T13:00:05Z".into(),
                    log_group: "/console".into(),
                    log_stream: "s".into(),
                    log_event_id: "0".into(),
                    posted_ts: Some("1.9".into()),
                })))
                .build()
        });
        let (d, calls) = deps(&[&query, &put, &stored]).await;
        let out = console(&d, "Order.delete_all").await;
        assert_eq!((out.posted, out.duplicates), (0, 1), "{out:?}");
        assert!(calls.all().is_empty());
    }
}
