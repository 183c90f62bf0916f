//! `open-session`: first step of the bastion-session watch. Records the session (the person
//! behind the IAM/SSO principal from the people map, cluster, task, container, command, time,
//! source IP, deadline) and posts the login to the bastion channel. Idempotent: the session is
//! recorded once (`put_once`), and a retry finds the stored record with its post and does not
//! post twice.

use aws_types::SdkConfig;
use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::bastion::login::WatchInput;
use crate::bastion::session::{self, SessionRecord, Store, Times};
use crate::error::Error;
use crate::platform::slack::SlackClient;
use crate::platform::{aws, config, time};
use crate::shared::people::People;

pub struct Deps {
    pub store: Store,
    pub slack: SlackClient,
    pub people: People,
    pub channel: String,
    pub alert_channel: String,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            store: Store::new(aws::dynamodb(sdk), &config::required("BASTION_TABLE")?),
            slack: config::slack_client(sdk).await?,
            people: People::load(&config::environment()?)?,
            channel: config::required("SLACK_BASTION_CHANNEL")?,
            alert_channel: config::required("SLACK_ALERTS_CHANNEL")?,
        })
    }
}

/// The execution, from the context object (`$$.Execution`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Execution {
    pub id: String,
    pub name: String,
    pub start_time: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub watch: WatchInput,
    pub execution: Execution,
}

/// `$.session` of the workflow: what the waits, the reminder and the alert read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    pub session_id: String,
    pub person_id: Option<String>,
    pub channel: Option<String>,
    pub thread_ts: Option<String>,
    pub deadline_at: String,
    pub reminder_at: String,
    pub until_reminder_seconds: u64,
    pub reminder_to_deadline_seconds: u64,
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    input.watch.validate()?;
    let started = time::parse("execution.startTime", &input.execution.start_time)?;
    let (until_reminder, reminder_to_deadline) = input.watch.waits();
    let deadline = started + Duration::seconds(input.watch.deadline_seconds as i64);
    let reminder = started + Duration::seconds(until_reminder as i64);
    let login = &input.watch.login;
    let person = deps.people.by_principal(&login.exec.principal_arn);
    let unknown = deps.people.why_unknown(&login.exec.principal_arn);
    if let Some(why) = &unknown {
        tracing::warn!(principal = %login.exec.principal_arn, %why, "bastion login by a principal not in the people map");
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
    let mut rec = deps.store.open(&fresh).await?;
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
        rec = deps
            .store
            .set_thread(
                &rec.session_id,
                &posted.channel,
                &posted.ts,
                permalink.as_deref(),
            )
            .await?;
        tracing::info!(session = %rec.session_id, ts = %posted.ts, "login posted");
        if let Some(why) = &unknown {
            // Alerted with the login post (once: a retry finds the post and skips this). A
            // failed alert post does not stop the watch: the login post names the principal.
            if let Err(e) = deps
                .slack
                .post_message(&unknown_principal_alert(&rec, why, &deps.alert_channel))
                .await
            {
                tracing::warn!(error = %e, "could not alert the unknown principal");
            }
        }
    }
    Ok(Output {
        session_id: rec.session_id,
        person_id: rec.person_id,
        channel: rec.channel,
        thread_ts: rec.thread_ts,
        deadline_at: rec.deadline_at,
        reminder_at: rec.reminder_at,
        until_reminder_seconds: until_reminder,
        reminder_to_deadline_seconds: reminder_to_deadline,
    })
}

/// The alert for a login by a principal the people map does not resolve to a person.
pub fn unknown_principal_alert(
    rec: &SessionRecord,
    why: &str,
    alert_channel: &str,
) -> crate::platform::slack::Message {
    crate::platform::slack::Message {
        channel: alert_channel.into(),
        thread_ts: None,
        blocks: None,
        text: format!(
            ":warning: *Bastion login by an unknown principal* `{arn}` (session `{session}`, \
             cluster `{cluster}`, task `{task}`, from {ip}): {why}. Nobody in the people map is \
             recorded as having logged in.",
            arn = rec.exec.principal_arn,
            session = rec.session_id,
            cluster = rec.exec.cluster,
            task = rec.exec.task_id,
            ip = rec.exec.source_ip,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bastion::steps::fake_slack;
    use crate::platform::dynamo::to_item;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_smithy_mocks::{mock, Rule};

    fn input() -> Input {
        Input {
            watch: WatchInput {
                login: crate::bastion::fixtures::login("ecs-execute-command-1"),
                deadline_seconds: 86_400,
                reminder_before_seconds: 3_600,
            },
            execution: Execution {
                id: "arn:exec:ecs-execute-command-1".into(),
                name: "ecs-execute-command-1".into(),
                start_time: "2026-11-28T13:00:01.123Z".into(),
            },
        }
    }

    use crate::bastion::fixtures::people;

    /// The step's dependencies on a mocked table and a fake Slack.
    async fn deps(db: &[&Rule]) -> (Deps, fake_slack::Calls) {
        let (slack, calls) = fake_slack::start(false).await;
        let d = Deps {
            store: crate::bastion::fixtures::store(db),
            slack,
            people: people(),
            channel: "C0BASTION".into(),
            alert_channel: "C0ALERTS".into(),
        };
        (d, calls)
    }

    fn stored(with_thread: bool) -> SessionRecord {
        let i = input();
        let mut rec = SessionRecord::new(
            &i.watch.login,
            people().by_principal(&i.watch.login.exec.principal_arn),
            "staging",
            "ecs-execute-command-1",
            Some("arn:exec:ecs-execute-command-1"),
            Times {
                deadline_at: "2026-11-29T13:00:01Z".into(),
                reminder_at: "2026-11-29T12:00:01Z".into(),
                recorded_at: "2026-11-28T13:00:02Z".into(),
            },
        );
        if with_thread {
            rec.channel = Some("C0BASTION".into());
            rec.thread_ts = Some("1.5".into());
            rec.thread_key = Some("C0BASTION:1.5".into());
        }
        rec
    }

    #[tokio::test]
    async fn the_first_run_records_the_session_once_and_posts_the_login() {
        let put = crate::bastion::fixtures::put_once_of(&[
            ("pk", "session#ecs-execute-command-1"),
            ("sk", "session"),
            ("status", "open"),
            ("personId", "alice"),
            ("deadlineAt", "2026-11-29T13:00:01Z"),
        ]);
        let update = mock!(aws_sdk_dynamodb::Client::update_item)
            .match_requests(|r| {
                let values = r.expression_attribute_values().unwrap();
                r.key().unwrap()["sk"].as_s().unwrap() == "session"
                    && values.values().any(|v| {
                        v.as_s()
                            .is_ok_and(|s| s.starts_with("C0BASTION:1700000000."))
                    })
            })
            .then_output(|| {
                UpdateItemOutput::builder()
                    .set_attributes(Some(to_item(&stored(true))))
                    .build()
            });
        let (d, calls) = deps(&[&put, &update]).await;
        let out = handle(&d, input()).await.unwrap();
        assert_eq!(out.session_id, "ecs-execute-command-1");
        assert_eq!(out.person_id.as_deref(), Some("alice"));
        assert_eq!(
            (out.until_reminder_seconds, out.reminder_to_deadline_seconds),
            (82_800, 3_600)
        );
        assert_eq!((put.num_calls(), update.num_calls()), (1, 1));
        let posts = calls.of("chat.postMessage");
        assert_eq!(posts.len(), 1);
        assert_eq!(posts[0]["channel"], "C0BASTION");
        assert!(posts[0]["text"]
            .as_str()
            .unwrap()
            .contains("Alice Example (alice)"));
        assert_eq!(calls.of("chat.getPermalink").len(), 1);
    }

    #[tokio::test]
    async fn a_retry_finds_the_post_and_does_not_post_twice() {
        let put = crate::testing::put_item_exists();
        let get = mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| r.key().unwrap()["sk"].as_s().unwrap() == "session")
            .then_output(|| {
                GetItemOutput::builder()
                    .set_item(Some(to_item(&stored(true))))
                    .build()
            });
        let (d, calls) = deps(&[&put, &get]).await;
        let out = handle(&d, input()).await.unwrap();
        assert_eq!(out.thread_ts.as_deref(), Some("1.5"));
        assert!(calls.all().is_empty(), "{:?}", calls.all());
    }

    #[tokio::test]
    async fn a_role_session_named_after_an_executive_is_an_unknown_principal_and_alerted() {
        // Anyone who may assume some role can name the session after carol.
        let forged = "arn:aws:sts::123456789012:assumed-role/ci-runner/carol@example.com";
        let mut i = input();
        i.watch.login.exec.principal_arn = forged.into();
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                let item = r.item().unwrap();
                !item.contains_key("personId")
                    && item["principalArn"].as_s().unwrap()
                        == "arn:aws:sts::123456789012:assumed-role/ci-runner/carol@example.com"
            })
            .then_output(|| PutItemOutput::builder().build());
        let update = mock!(aws_sdk_dynamodb::Client::update_item).then_output(|| {
            let mut rec = stored(true);
            rec.person_id = None;
            rec.person_name = None;
            rec.person_slack_user = None;
            rec.exec.principal_arn =
                "arn:aws:sts::123456789012:assumed-role/ci-runner/carol@example.com".into();
            UpdateItemOutput::builder()
                .set_attributes(Some(to_item(&rec)))
                .build()
        });
        let (d, calls) = deps(&[&put, &update]).await;
        let out = handle(&d, i).await.unwrap();
        assert_eq!(out.person_id, None);
        assert_eq!(put.num_calls(), 1);
        let posts = calls.of("chat.postMessage");
        assert_eq!(posts.len(), 2, "the login and the alert: {posts:?}");
        assert_eq!(posts[1]["channel"], "C0ALERTS");
        let text = posts[1]["text"].as_str().unwrap();
        for needle in [
            "unknown principal",
            forged,
            "carol's e-mail",
            "chooses its session name",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
    }

    #[tokio::test]
    async fn a_bad_watch_input_is_invalid_and_records_nothing() {
        let (d, _) = deps(&[]).await;
        let mut i = input();
        i.watch.reminder_before_seconds = i.watch.deadline_seconds;
        let err = handle(&d, i).await.unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::InvalidInput);
        assert!(err.to_string().contains("reminderBeforeSeconds"), "{err}");
    }
}
