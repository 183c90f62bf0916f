//! The bastion table, and the one module that writes it. Items (`pk`, `sk`):
//! - `session#<id>`, `session`: a login ([`SessionRecord`]);
//! - `session#<id>` (or `orphan#<task id>` when no session matched), `hit#<log event id>#<n>`:
//!   a flagged command ([`HitRecord`]);
//! - `session#<id>`, `reply#<ts>`: a judged reply in the login thread ([`ReplyRecord`]);
//! - `slack-event#<event_id>`, `event`: a processed Slack event ([`SlackEventRecord`]).
//!
//! Indexes: `byThread` (`threadKey` = `channel:ts`) finds the session a reply belongs to;
//! `byTask` (`taskId`, `loginAt`) finds the open sessions of a task for the console hook.
//! Every "seen before?" write (a session opened twice, a hit delivered twice, a Slack retry)
//! is a [`Table::put_once`]. The approval wait's task token is not stored here: it lives in the
//! waits table (`sfn::waits`, `session-approval#<id>`), which operators cannot read.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::Error;
use crate::platform::dynamo::{Item, Once, Record, Table};
use crate::platform::slack::Message;
use crate::shared::people::Person;

use super::approval::Verdict;
use super::login::{Exec, Login};
use super::scan::Severity;

pub const BY_THREAD: &str = "byThread";
pub const BY_TASK: &str = "byTask";
/// Sessions by environment and login time (`environment`, `loginAt`: only session records
/// carry both), for `hook-watch`.
pub const BY_ENVIRONMENT: &str = "byEnvironment";
pub const SESSION_SK: &str = "session";
const SLACK_EVENT_SK: &str = "event";

/// Where a session stands. Stored lower case (`open`, `approved`, `alerted`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// Logged in; no approval evidence and no alert yet.
    #[default]
    Open,
    /// An executive's approval evidence is recorded.
    Approved,
    /// The deadline passed without approval evidence: the alert went out.
    Alerted,
}

pub fn pk(session_id: &str) -> String {
    format!("session#{session_id}")
}

pub fn thread_key(channel: &str, ts: &str) -> String {
    format!("{channel}:{ts}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub by: String,
    pub by_name: String,
    pub slack_user: String,
    pub text: String,
    pub ts: String,
    pub permalink: String,
    pub recorded_at: String,
    /// `slack-events`' seal over the session and all of the above (the decision signing key,
    /// `shared::approval::seal`): evidence written into the table by anyone else has none
    /// that verifies, and the watch alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

impl Approval {
    /// What the seal signs: session `session_id` and every field but the seal.
    pub fn seal_message(&self, session_id: &str) -> Vec<u8> {
        use sha2::Digest;
        let canonical = json!([
            "batchless-session-approval/1",
            session_id,
            self.by,
            self.by_name,
            self.slack_user,
            self.text,
            self.ts,
            self.permalink,
            self.recorded_at,
        ]);
        format!(
            "batchless-session-approval/1:{}",
            hex::encode(sha2::Sha256::digest(canonical.to_string().as_bytes()))
        )
        .into_bytes()
    }
}

/// The alert posted when the deadline passed without approval evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub at: String,
    pub channel: String,
    pub ts: String,
    pub deadline_at: String,
    /// `session-deadline`'s seal (the decision signing key) over the session and the above: an
    /// alert planted on the record by anyone else does not stop the real one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

impl Alert {
    /// What the seal signs: session `session_id` and every field but the seal.
    pub fn seal_message(&self, session_id: &str) -> Vec<u8> {
        format!(
            "batchless-session-alert/1:{session_id}:{}:{}:{}:{}",
            self.at, self.channel, self.ts, self.deadline_at
        )
        .into_bytes()
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    pub pk: String,
    pub sk: String,
    pub session_id: String,
    pub environment: String,
    pub execution_name: String,
    #[serde(default)]
    pub execution_arn: Option<String>,
    #[serde(default)]
    pub person_id: Option<String>,
    #[serde(default)]
    pub person_name: Option<String>,
    #[serde(default)]
    pub person_slack_user: Option<String>,
    /// The login's `ExecuteCommand` call (its attributes stand at the top level).
    #[serde(flatten)]
    pub exec: Exec,
    pub deadline_at: String,
    pub reminder_at: String,
    pub status: SessionStatus,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub thread_ts: Option<String>,
    #[serde(default)]
    pub thread_key: Option<String>,
    #[serde(default)]
    pub permalink: Option<String>,
    #[serde(default)]
    pub approval: Option<Approval>,
    #[serde(default)]
    pub reminded_at: Option<String>,
    #[serde(default)]
    pub alert: Option<Alert>,
    #[serde(default)]
    pub flagged: Option<i64>,
    /// The console hook's last heartbeat on this session's task (`console-heartbeat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_last_seen_at: Option<String>,
    /// When the hook said the console ended (`console-end`, at exit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_ended_at: Option<String>,
    /// The silence the last "console hook not reporting" alert was about (`hook-watch`): the
    /// last heartbeat it saw, or `never`; one alert per silence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_alert_for: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_alert_at: Option<String>,
    pub recorded_at: String,
}

/// When the watch's deadline and reminder fall, and when the record was made (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Times {
    pub deadline_at: String,
    pub reminder_at: String,
    pub recorded_at: String,
}

impl SessionRecord {
    pub fn new(
        login: &Login,
        person: Option<&Person>,
        environment: &str,
        execution_name: &str,
        execution_arn: Option<&str>,
        times: Times,
    ) -> Self {
        SessionRecord {
            pk: pk(&login.session_id),
            sk: SESSION_SK.into(),
            session_id: login.session_id.clone(),
            environment: environment.into(),
            execution_name: execution_name.into(),
            execution_arn: execution_arn.map(str::to_string),
            person_id: person.map(|p| p.id.clone()),
            person_name: person.map(|p| p.name.clone()),
            person_slack_user: person.map(|p| p.slack_user_id.clone()),
            exec: login.exec.clone(),
            deadline_at: times.deadline_at,
            reminder_at: times.reminder_at,
            status: SessionStatus::Open,
            recorded_at: times.recorded_at,
            ..Default::default()
        }
    }

    /// `Alice Example (alice)`, or the raw principal when nobody in the people map matches.
    pub fn who(&self) -> String {
        match (&self.person_name, &self.person_id) {
            (Some(n), Some(id)) => format!("{n} ({id})"),
            _ => format!("UNKNOWN principal {}", self.exec.principal_arn),
        }
    }

    pub fn mention(&self) -> String {
        match &self.person_slack_user {
            Some(u) => format!("<@{u}> {}", self.who()),
            None => self.who(),
        }
    }
}

/// What a session's child item is (the `kind` attribute).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    Hit,
    Reply,
}

/// Where a flagged command was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HitSource {
    /// A line of the console hook (the console task's log group).
    Hook,
    /// An ECS Exec session transcript.
    Transcript,
    /// The console hook reporting that it was tampered with (`console-tamper`: a method of the
    /// hook redefined, IRB's patch overridden, its destination changed).
    Tamper,
    /// A console command in the session's transcript that the hook never reported.
    Unhooked,
}

impl HitSource {
    pub fn as_str(self) -> &'static str {
        match self {
            HitSource::Hook => "hook",
            HitSource::Transcript => "transcript",
            HitSource::Tamper => "hook tampered",
            HitSource::Unhooked => "typed without the hook",
        }
    }
}

/// A flagged command, once per (log event, hit, session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HitRecord {
    pub pk: String,
    pub sk: String,
    pub kind: ItemKind,
    #[serde(default)]
    pub session_id: Option<String>,
    /// Redacted.
    pub command: String,
    pub patterns: Vec<String>,
    pub severity: Severity,
    pub source: HitSource,
    pub hit_task_id: String,
    pub at: String,
    pub log_group: String,
    pub log_stream: String,
    pub log_event_id: String,
    /// The Slack `ts` of the post, once posted.
    #[serde(default)]
    pub posted_ts: Option<String>,
}

impl HitRecord {
    /// The partition a hit is kept under: its session, or the task when no session matched.
    pub fn pk_for(session_id: Option<&str>, task_id: &str) -> String {
        match session_id {
            Some(id) => pk(id),
            None => format!("orphan#{task_id}"),
        }
    }

    pub fn sk_for(log_event_id: &str, n: usize) -> String {
        format!("hit#{log_event_id}#{n}")
    }
}

/// A console command the hook reported on a session (`console-command`), by its key
/// ([`hook_command_key`]): what the session's transcript is compared with at its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookCommandRecord {
    pub pk: String,
    pub sk: String,
    pub at: String,
}

impl HookCommandRecord {
    pub fn sk_for(key: &str) -> String {
        format!("hookcmd#{key}")
    }
}

/// The key a console command is known by on both sides: SHA-256 of its first line with the
/// whitespace collapsed (the transcript echoes the first line after the prompt; the hook
/// reports the whole statement).
pub fn hook_command_key(command: &str) -> String {
    use sha2::Digest;
    let first = command
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let collapsed = first.split_whitespace().collect::<Vec<_>>().join(" ");
    hex::encode(sha2::Sha256::digest(collapsed.as_bytes()))
}

/// A judged reply in a login thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplyRecord {
    pub pk: String,
    pub sk: String,
    pub kind: ItemKind,
    pub session_id: String,
    pub slack_user: String,
    #[serde(default)]
    pub person_id: Option<String>,
    /// Redacted.
    pub text: String,
    pub ts: String,
    pub verdict: Verdict,
    pub judged_at: String,
}

impl ReplyRecord {
    pub fn sk_for(ts: &str) -> String {
        format!("reply#{ts}")
    }
}

/// A processed Slack Events API event (`event_id`): a redelivery is acknowledged, not redone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlackEventRecord {
    pub pk: String,
    pub sk: String,
    pub event_id: String,
    #[serde(default)]
    pub retry_num: Option<String>,
    pub processed_at: String,
    pub outcome: Value,
    /// TTL (seconds since the epoch): a week is far beyond Slack's retries.
    pub expires_at_epoch: i64,
}

impl SlackEventRecord {
    pub fn pk_for(event_id: &str) -> String {
        format!("slack-event#{event_id}")
    }

    pub fn new(
        event_id: &str,
        retry_num: Option<String>,
        processed_at: chrono::DateTime<chrono::Utc>,
        outcome: Value,
    ) -> Self {
        SlackEventRecord {
            pk: Self::pk_for(event_id),
            sk: SLACK_EVENT_SK.into(),
            event_id: event_id.into(),
            retry_num,
            processed_at: crate::platform::time::rfc3339(processed_at),
            outcome,
            expires_at_epoch: (processed_at + chrono::Duration::days(7)).timestamp(),
        }
    }
}

// ------------------------------------------------------------------------------- storage

/// The bastion table: the one writer of its items. Built once in a step's `Deps`.
#[derive(Debug, Clone)]
pub struct Store {
    sessions: Table<SessionRecord>,
    hits: Table<HitRecord>,
    hook_commands: Table<HookCommandRecord>,
    replies: Table<ReplyRecord>,
    events: Table<SlackEventRecord>,
}

fn is_session(item: &Item) -> bool {
    item.get("sk")
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        == Some(SESSION_SK)
}

impl Store {
    pub fn new(db: aws_sdk_dynamodb::Client, table: &str) -> Self {
        Store {
            sessions: Table::new(db.clone(), table),
            hits: Table::new(db.clone(), table),
            hook_commands: Table::new(db.clone(), table),
            replies: Table::new(db.clone(), table),
            events: Table::new(db, table),
        }
    }

    /// Record the session once. A second call (a retried step) returns the stored record.
    pub async fn open(&self, record: &SessionRecord) -> Result<SessionRecord, Error> {
        Ok(match self.sessions.put_once(record).await? {
            Once::First => record.clone(),
            Once::Seen(stored) => stored,
        })
    }

    pub async fn get(&self, session_id: &str) -> Result<Option<SessionRecord>, Error> {
        self.sessions
            .get_at(&pk(session_id), Some(SESSION_SK))
            .await
    }

    /// The session, which must exist (`NotFound` otherwise).
    pub async fn must_get(&self, session_id: &str) -> Result<SessionRecord, Error> {
        self.get(session_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("bastion session {session_id}")))
    }

    /// `SET` fields of the session (which must exist) if `condition` holds; the new record, or
    /// `None` when the condition did not hold.
    async fn update(
        &self,
        session_id: &str,
        fields: &[(&str, Value)],
        condition: Option<&str>,
        values: &[(&str, Value)],
    ) -> Result<Option<SessionRecord>, Error> {
        self.sessions
            .set_fields_at(&pk(session_id), Some(SESSION_SK), fields, condition, values)
            .await
    }

    /// The login post's place: the session's thread.
    pub async fn set_thread(
        &self,
        session_id: &str,
        channel: &str,
        ts: &str,
        permalink: Option<&str>,
    ) -> Result<SessionRecord, Error> {
        let mut fields = vec![
            ("channel", json!(channel)),
            ("threadTs", json!(ts)),
            ("threadKey", json!(thread_key(channel, ts))),
        ];
        if let Some(p) = permalink {
            fields.push(("permalink", json!(p)));
        }
        self.update(session_id, &fields, None, &[])
            .await?
            .ok_or_else(|| Error::Corrupt(format!("session {session_id} vanished")))
    }

    pub async fn set_reminded(&self, session_id: &str, at: &str) -> Result<(), Error> {
        self.update(session_id, &[("remindedAt", json!(at))], None, &[])
            .await?;
        Ok(())
    }

    pub async fn set_alerted(&self, session_id: &str, alert: &Alert) -> Result<(), Error> {
        self.update(
            session_id,
            &[
                ("alert", json!(alert)),
                ("status", json!(SessionStatus::Alerted)),
            ],
            None,
            &[],
        )
        .await?;
        Ok(())
    }

    /// Record approval evidence; the first evidence wins (`None`: the session was approved
    /// before). An open session becomes approved.
    pub async fn record_approval(
        &self,
        session_id: &str,
        approval: &Approval,
    ) -> Result<Option<SessionRecord>, Error> {
        let updated = self
            .update(
                session_id,
                &[("approval", json!(approval))],
                Some("attribute_not_exists(approval)"),
                &[],
            )
            .await?;
        let Some(mut updated) = updated else {
            return Ok(None);
        };
        if updated.status == SessionStatus::Open {
            if let Some(now) = self
                .update(
                    session_id,
                    &[("status", json!(SessionStatus::Approved))],
                    Some("#status = :open"),
                    &[(":open", json!(SessionStatus::Open))],
                )
                .await?
            {
                updated = now;
            }
        }
        Ok(Some(updated))
    }

    pub async fn by_thread(&self, channel: &str, ts: &str) -> Result<Option<SessionRecord>, Error> {
        Ok(self
            .sessions
            .newest_where(BY_THREAD, "threadKey", &thread_key(channel, ts), is_session)
            .await?
            .into_iter()
            .next())
    }

    /// Sessions opened on `task_id`, newest first.
    pub async fn by_task(&self, task_id: &str) -> Result<Vec<SessionRecord>, Error> {
        let mut v = self
            .sessions
            .newest_where(BY_TASK, "taskId", task_id, is_session)
            .await?;
        v.sort_by(|a, b| b.exec.login_at.cmp(&a.exec.login_at));
        Ok(v)
    }

    /// Record a flagged command once: [`Once::Seen`] carries the stored hit (was it posted?).
    pub async fn record_hit(&self, hit: &HitRecord) -> Result<Once<HitRecord>, Error> {
        self.hits.put_once(hit).await
    }

    /// The Slack `ts` of a hit's post.
    pub async fn set_hit_posted(&self, hit: &HitRecord, ts: &str) -> Result<(), Error> {
        self.hits
            .set_fields_at(
                &hit.pk,
                Some(&hit.sk),
                &[("postedTs", json!(ts))],
                None,
                &[],
            )
            .await?;
        Ok(())
    }

    /// The hook reported `command` on the session (first report kept).
    pub async fn hook_command(
        &self,
        session_id: &str,
        command: &str,
        at: &str,
    ) -> Result<(), Error> {
        self.hook_commands
            .put_once(&HookCommandRecord {
                pk: pk(session_id),
                sk: HookCommandRecord::sk_for(&hook_command_key(command)),
                at: at.to_string(),
            })
            .await?;
        Ok(())
    }

    /// Did the hook report `command` on the session?
    pub async fn hook_reported(&self, session_id: &str, command: &str) -> Result<bool, Error> {
        Ok(self
            .hook_commands
            .get_at(
                &pk(session_id),
                Some(&HookCommandRecord::sk_for(&hook_command_key(command))),
            )
            .await?
            .is_some())
    }

    /// Count a flagged command on the session.
    pub async fn add_flagged(&self, session_id: &str) -> Result<(), Error> {
        self.sessions
            .add_at(&pk(session_id), Some(SESSION_SK), "flagged", 1)
            .await
    }

    /// Sessions of `environment` that logged in between `from` and `to` (RFC 3339), oldest first.
    pub async fn logged_in_between(
        &self,
        environment: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<SessionRecord>, Error> {
        self.sessions
            .between(
                BY_ENVIRONMENT,
                ("environment", environment),
                ("loginAt", from, to),
            )
            .await
    }

    /// The console hook said the console ended at `at` (`console-end`); the first end counts.
    pub async fn hook_ended(&self, session_id: &str, at: &str) -> Result<(), Error> {
        self.sessions
            .set_fields_at(
                &pk(session_id),
                Some(SESSION_SK),
                &[("hookEndedAt", json!(at))],
                Some("attribute_not_exists(#hookEndedAt)"),
                &[],
            )
            .await?;
        Ok(())
    }

    /// Claim the "not reporting" alert about the silence `silence` (the last heartbeat, or
    /// `never`): true for the one caller that may post it.
    pub async fn claim_hook_alert(
        &self,
        session_id: &str,
        silence: &str,
        at: &str,
    ) -> Result<bool, Error> {
        Ok(self
            .sessions
            .set_fields_at(
                &pk(session_id),
                Some(SESSION_SK),
                &[("hookAlertFor", json!(silence)), ("hookAlertAt", json!(at))],
                Some("attribute_not_exists(#hookAlertFor) OR #hookAlertFor <> :silence"),
                &[(":silence", json!(silence))],
            )
            .await?
            .is_some())
    }

    /// Give a claimed alert back (its post failed): the next run claims and posts it again.
    pub async fn release_hook_alert(&self, session_id: &str, silence: &str) -> Result<(), Error> {
        self.sessions
            .set_fields_at(
                &pk(session_id),
                Some(SESSION_SK),
                &[("hookAlertFor", json!(""))],
                Some("#hookAlertFor = :silence"),
                &[(":silence", json!(silence))],
            )
            .await?;
        Ok(())
    }

    /// The console hook was heard from at `at` (RFC 3339, a heartbeat): `hookLastSeenAt` only
    /// moves forward, so a late, out-of-order delivery never moves it back.
    pub async fn hook_seen(&self, session_id: &str, at: &str) -> Result<(), Error> {
        self.sessions
            .set_fields_at(
                &pk(session_id),
                Some(SESSION_SK),
                &[("hookLastSeenAt", json!(at))],
                Some("attribute_not_exists(#hookLastSeenAt) OR #hookLastSeenAt < :at"),
                &[(":at", json!(at))],
            )
            .await?;
        Ok(())
    }

    /// Record a judged reply once (a redelivered reply is judged the same).
    pub async fn record_reply(&self, reply: &ReplyRecord) -> Result<Once<ReplyRecord>, Error> {
        self.replies.put_once(reply).await
    }

    /// The Slack event `event_id` if it was processed before.
    pub async fn slack_event(&self, event_id: &str) -> Result<Option<SlackEventRecord>, Error> {
        self.events
            .get_at(&SlackEventRecord::pk_for(event_id), Some(SLACK_EVENT_SK))
            .await
    }

    /// Claim a Slack event before processing it (once: a concurrent or later duplicate
    /// finds it stored and does nothing).
    pub async fn remember_slack_event(
        &self,
        event: &SlackEventRecord,
    ) -> Result<Once<SlackEventRecord>, Error> {
        self.events.put_once(event).await
    }

    /// Store what became of a claimed Slack event.
    pub async fn slack_event_outcome(&self, event_id: &str, outcome: &Value) -> Result<(), Error> {
        let pk = SlackEventRecord::pk_for(event_id);
        crate::platform::dynamo::set_fields(
            self.events.client(),
            self.events.name(),
            &[("pk", pk.as_str()), ("sk", SLACK_EVENT_SK)],
            &[("outcome", outcome.clone())],
            None,
            &[],
        )
        .await?;
        Ok(())
    }

    /// Release the claim of an event whose processing failed, so that Slack's retry runs it.
    pub async fn forget_slack_event(&self, event_id: &str) -> Result<(), Error> {
        use crate::platform::aws::AwsResultExt;
        self.events
            .client()
            .delete_item()
            .table_name(self.events.name())
            .key(
                "pk",
                crate::platform::dynamo::s(SlackEventRecord::pk_for(event_id)),
            )
            .key("sk", crate::platform::dynamo::s(SLACK_EVENT_SK))
            .send()
            .await
            .aws("DeleteItem")?;
        Ok(())
    }
}

// ------------------------------------------------------------------------------- Slack

fn link(rec: &SessionRecord) -> String {
    rec.permalink
        .clone()
        .map(|p| format!("<{p}|login post>"))
        .unwrap_or_else(|| "the login post".into())
}

pub fn login_message(rec: &SessionRecord, channel: &str, alert_channel: &str) -> Message {
    let text = format!(
        ":rotating_light: *Bastion login* — {who}\n\
         • where: cluster `{cluster}`, task `{task}`, container `{container}`\n\
         • what: `{command}`\n\
         {not_console}\
         • when: {at} from {ip}\n\
         • session: `{session}`\n\
         *Approvers:* an executive other than the person who logged in replies *in this thread* \
         with approval (e.g. 「承認します」 or \"approved\") before *{deadline}*; otherwise an \
         alert goes to <#{alert}>. Dangerous commands typed in this session are posted here.",
        who = rec.mention(),
        cluster = rec.exec.cluster,
        task = rec.exec.task_id,
        container = rec.exec.container,
        command = crate::platform::redact::redact(&rec.exec.command),
        not_console = if super::login::is_console_entrypoint(&rec.exec.command) {
            ""
        } else {
            ":warning: *Not the console entrypoint* (a shell or another program): the console \
             hook does not see what is typed in this session.\n"
        },
        at = rec.exec.login_at,
        ip = if rec.exec.source_ip.is_empty() {
            "an unknown address"
        } else {
            &rec.exec.source_ip
        },
        session = rec.session_id,
        deadline = rec.deadline_at,
        alert = alert_channel,
    );
    Message {
        channel: channel.into(),
        text,
        blocks: None,
        thread_ts: None,
    }
}

pub fn reminder_message(rec: &SessionRecord) -> Option<Message> {
    Some(Message {
        channel: rec.channel.clone()?,
        thread_ts: rec.thread_ts.clone(),
        text: format!(
            ":hourglass: Reminder: no executive has approved {who}'s bastion session `{session}` \
             yet. Deadline *{deadline}* — an executive (not {who}) replies here with approval.",
            who = rec.who(),
            session = rec.session_id,
            deadline = rec.deadline_at
        ),
        blocks: None,
    })
}

pub fn alert_message(rec: &SessionRecord, alert_channel: &str) -> Message {
    Message {
        channel: alert_channel.into(),
        thread_ts: None,
        text: format!(
            ":warning: *No executive approval* for the bastion session `{session}` of {who} \
             (cluster `{cluster}`, task `{task}`, logged in {at} from {ip}): the deadline \
             {deadline} passed without approval evidence in {link}. Flagged commands: {flagged}.",
            session = rec.session_id,
            who = rec.who(),
            cluster = rec.exec.cluster,
            task = rec.exec.task_id,
            at = rec.exec.login_at,
            ip = rec.exec.source_ip,
            deadline = rec.deadline_at,
            link = link(rec),
            flagged = rec.flagged.unwrap_or(0),
        ),
        blocks: None,
    }
}

/// The note in the login thread that the deadline passed and the alert went out.
pub fn alert_note_message(rec: &SessionRecord, alert_channel: &str) -> Option<Message> {
    Some(Message {
        channel: rec.channel.clone()?,
        thread_ts: rec.thread_ts.clone(),
        text: format!(
            ":warning: Deadline {} passed without approval evidence: alerted <#{}>.",
            rec.deadline_at, alert_channel
        ),
        blocks: None,
    })
}

pub fn approved_message(rec: &SessionRecord, approval: &Approval) -> Option<Message> {
    Some(Message {
        channel: rec.channel.clone()?,
        thread_ts: rec.thread_ts.clone(),
        text: format!(
            ":white_check_mark: Approval recorded: {} ({}) at {} — \"{}\".",
            approval.by_name,
            approval.by,
            approval.recorded_at,
            crate::platform::input::truncate(&crate::platform::redact::redact(&approval.text), 200)
        ),
        blocks: None,
    })
}

pub fn hit_message(
    rec: Option<&SessionRecord>,
    fallback_channel: &str,
    task_id: &str,
    command_redacted: &str,
    patterns: &[String],
    severity: Severity,
    source: HitSource,
) -> Message {
    let icon = match severity {
        Severity::Critical => ":red_circle:",
        Severity::High => ":large_orange_circle:",
        _ => ":large_yellow_circle:",
    };
    let (severity, source) = (severity.as_str(), source.as_str());
    let who = rec.map(|r| r.who()).unwrap_or_else(|| "someone".into());
    let text = if source == HitSource::Unhooked.as_str() {
        format!(
            ":rotating_light: *Typed without the hook* by {who} on task `{task_id}`: the session's transcript holds this console command, which the console hook never reported\n\
             ```{command_redacted}```"
        )
    } else if source == HitSource::Tamper.as_str() {
        format!(
            ":rotating_light: *Console hook tampered with* ({severity}) by {who} on task `{task_id}`\n\
             ```{command_redacted}```\nthe hook reported this about itself: commands typed after it may not be reported"
        )
    } else {
        format!(
            "{icon} *Dangerous command* ({severity}) by {who} on task `{task_id}` [{source}]\n\
             ```{command_redacted}```\npattern: {}",
            patterns.join(", ")
        )
    };
    match rec.and_then(|r| Some((r.channel.clone()?, r.thread_ts.clone()?))) {
        Some((channel, ts)) => Message {
            channel,
            text,
            blocks: None,
            thread_ts: Some(ts),
        },
        None => Message {
            channel: fallback_channel.into(),
            text: format!("{text}\n(no open session found for this task: not in a login thread)"),
            blocks: None,
            thread_ts: None,
        },
    }
}

/// The bastion table's records are keyed by `pk` and `sk`, both fields of the record.
macro_rules! keyed_by_pk_sk {
    ($($record:ty),+) => {$(
        impl Record for $record {
            const KEY: &'static str = "pk";
            const SORT_KEY: Option<&'static str> = Some("sk");
            fn key(&self) -> &str {
                &self.pk
            }
            fn sort_key(&self) -> Option<&str> {
                Some(&self.sk)
            }
        }
    )+};
}

keyed_by_pk_sk!(
    SessionRecord,
    HitRecord,
    HookCommandRecord,
    ReplyRecord,
    SlackEventRecord
);

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> SessionRecord {
        crate::bastion::fixtures::session("ecs-execute-command-1", true)
    }

    #[test]
    fn login_post_says_who_where_when_and_what_to_do() {
        let rec = record();
        let m = login_message(&rec, "C0BASTION", "C0ALERTS");
        for needle in [
            "<@U0ALICE01> Alice Example (alice)",
            "cluster `bastion`",
            "task `t1`",
            "container `app`",
            "`bin/rails console`",
            "2026-11-28T13:00:00Z from 203.0.113.7",
            "in this thread",
            "2026-11-29T13:00:00Z",
            "<#C0ALERTS>",
        ] {
            assert!(m.text.contains(needle), "{needle} not in {}", m.text);
        }
        assert!(!m.text.contains("Not the console entrypoint"), "{}", m.text);
        let mut shell = record();
        shell.exec.command = "bash".into();
        let m = login_message(&shell, "C0BASTION", "C0ALERTS");
        assert!(m.text.contains("Not the console entrypoint"), "{}", m.text);
    }

    #[test]
    fn hits_go_to_the_thread_or_the_channel() {
        let mut rec = record();
        rec.channel = Some("C0BASTION".into());
        rec.thread_ts = Some("1.0".into());
        let m = hit_message(
            Some(&rec),
            "C0B",
            "t1",
            "User.destroy_all",
            &["destroy_all".into()],
            Severity::High,
            HitSource::Hook,
        );
        assert_eq!(m.thread_ts.as_deref(), Some("1.0"));
        assert!(m.text.contains("Alice Example (alice)"));
        let m = hit_message(
            None,
            "C0B",
            "t1",
            "x",
            &["rm_rf".into()],
            Severity::Critical,
            HitSource::Transcript,
        );
        assert_eq!(m.channel, "C0B");
        assert!(m.thread_ts.is_none());
    }

    /// The session item's attribute names are what the table, the CLI and the audit read: a
    /// change of the Rust shape must not rename, add or drop one.
    #[test]
    fn the_stored_attribute_names_stay_the_same() {
        let mut rec = crate::bastion::fixtures::posted("s1", true);
        rec.execution_arn = Some("arn:e".into());
        rec.exec.user_agent = Some("aws-cli".into());
        rec.thread_key = Some("k".into());
        rec.permalink = Some("https://x".into());
        rec.approval = Some(crate::bastion::fixtures::carol_approves("ok", "1.6"));
        rec.reminded_at = Some("2026-11-29T12:00:00Z".into());
        rec.alert = Some(Alert {
            at: "2026-11-29T13:00:00Z".into(),
            channel: "C0ALERTS".into(),
            ts: "2.0".into(),
            deadline_at: "2026-11-29T13:00:00Z".into(),
            seal: None,
        });
        rec.flagged = Some(1);
        let item = crate::platform::dynamo::to_item(&rec);
        let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "alert",
                "approval",
                "channel",
                "cluster",
                "command",
                "container",
                "deadlineAt",
                "environment",
                "executionArn",
                "executionName",
                "flagged",
                "loginAt",
                "permalink",
                "personId",
                "personName",
                "personSlackUser",
                "pk",
                "principalArn",
                "recordedAt",
                "remindedAt",
                "reminderAt",
                "sessionId",
                "sk",
                "sourceIp",
                "status",
                "taskArn",
                "taskId",
                "threadKey",
                "threadTs",
                "userAgent",
            ]
        );
        assert_eq!(item["cluster"].as_s().unwrap(), "bastion");
        assert_eq!(item["taskId"].as_s().unwrap(), "t1");
        let back: SessionRecord = crate::platform::dynamo::from_item(&item).unwrap();
        assert_eq!(back, rec);
    }

    #[test]
    fn unknown_principals_are_named_as_such() {
        let mut rec = record();
        rec.person_id = None;
        rec.person_name = None;
        rec.person_slack_user = None;
        assert!(rec.mention().starts_with("UNKNOWN principal arn:aws:iam"));
    }
}
