//! Session records in the bastion table (`pk` = `session#<id>`; `sk` = `session` for the
//! session, `hit#<log event id>#<n>` for a flagged command, `reply#<ts>` for a judged thread
//! reply; `pk` = `slack-event#<event_id>` for processed Slack events) and the Slack messages.
//! Indexes: `byThread` (`threadKey` = `channel:ts`) finds the session a reply belongs to;
//! `byTask` (`taskId`, `loginAt`) finds the open sessions of a task for the console hook.

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::Error;
use crate::platform::aws::{AwsResultExt, ConditionalExt};
use crate::platform::dynamo::{self, s};
use crate::platform::slack::Message;
use crate::shared::people::Person;

use super::login::Login;

pub const BY_THREAD: &str = "byThread";
pub const BY_TASK: &str = "byTask";
pub const SESSION_SK: &str = "session";

pub mod status {
    pub const OPEN: &str = "open";
    pub const APPROVED: &str = "approved";
    pub const ALERTED: &str = "alerted";
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
    pub principal_arn: String,
    pub cluster: String,
    pub task_arn: String,
    pub task_id: String,
    pub container: String,
    pub command: String,
    pub login_at: String,
    pub source_ip: String,
    #[serde(default)]
    pub user_agent: Option<String>,
    pub deadline_at: String,
    pub reminder_at: String,
    pub status: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub thread_ts: Option<String>,
    #[serde(default)]
    pub thread_key: Option<String>,
    #[serde(default)]
    pub permalink: Option<String>,
    #[serde(default)]
    pub task_token: Option<String>,
    #[serde(default)]
    pub approval: Option<Approval>,
    #[serde(default)]
    pub reminded_at: Option<String>,
    #[serde(default)]
    pub alert: Option<Value>,
    #[serde(default)]
    pub flagged: Option<i64>,
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
            principal_arn: login.principal_arn.clone(),
            cluster: login.cluster.clone(),
            task_arn: login.task_arn.clone(),
            task_id: login.task_id.clone(),
            container: login.container.clone(),
            command: login.command.clone(),
            login_at: login.login_at.clone(),
            source_ip: login.source_ip.clone(),
            user_agent: login.user_agent.clone(),
            deadline_at: times.deadline_at,
            reminder_at: times.reminder_at,
            status: status::OPEN.into(),
            recorded_at: times.recorded_at,
            ..Default::default()
        }
    }

    /// `Alice Example (alice)`, or the raw principal when nobody in the people map matches.
    pub fn who(&self) -> String {
        match (&self.person_name, &self.person_id) {
            (Some(n), Some(id)) => format!("{n} ({id})"),
            _ => format!("UNKNOWN principal {}", self.principal_arn),
        }
    }

    pub fn mention(&self) -> String {
        match &self.person_slack_user {
            Some(u) => format!("<@{u}> {}", self.who()),
            None => self.who(),
        }
    }
}

// ------------------------------------------------------------------------------- storage

/// Record the session once. A second call (a retried step) returns the stored record.
pub async fn open(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    record: &SessionRecord,
) -> Result<SessionRecord, Error> {
    let res = db
        .put_item()
        .table_name(table)
        .set_item(Some(dynamo::to_item(record)))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .aws("PutItem")
        .conditional()?;
    match res {
        Some(_) => Ok(record.clone()),
        None => get(db, table, &record.session_id)
            .await?
            .ok_or_else(|| Error::Corrupt(format!("session {} vanished", record.session_id))),
    }
}

pub async fn get(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    session_id: &str,
) -> Result<Option<SessionRecord>, Error> {
    dynamo::get(db, table, &[("pk", &pk(session_id)), ("sk", SESSION_SK)]).await
}

/// `SET` the given top-level fields of a session (which must exist) if `condition` holds
/// (`#name` placeholders stand for attributes, `:values` are given); returns the new record.
pub async fn update(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    session_id: &str,
    fields: &[(&str, Value)],
    condition: Option<(&str, Vec<(&str, Value)>)>,
) -> Result<Option<SessionRecord>, Error> {
    let (cond, values) = match condition {
        Some((c, v)) => (Some(c), v),
        None => (None, Vec::new()),
    };
    let pk = pk(session_id);
    dynamo::set_fields(
        db,
        table,
        &[("pk", &pk), ("sk", SESSION_SK)],
        fields,
        cond,
        &values,
    )
    .await?
    .as_ref()
    .map(dynamo::from_item)
    .transpose()
}

async fn query_index(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    index: &str,
    key: &str,
    value: &str,
) -> Result<Vec<SessionRecord>, Error> {
    dynamo::query_newest(db, table, index, key, value, None)
        .await?
        .iter()
        .filter(|i| i.get("sk").and_then(|v| v.as_s().ok()).map(String::as_str) == Some(SESSION_SK))
        .map(dynamo::from_item)
        .collect()
}

pub async fn by_thread(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    channel: &str,
    ts: &str,
) -> Result<Option<SessionRecord>, Error> {
    Ok(
        query_index(db, table, BY_THREAD, "threadKey", &thread_key(channel, ts))
            .await?
            .into_iter()
            .next(),
    )
}

/// Sessions opened on `task_id`, newest first.
pub async fn by_task(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    task_id: &str,
) -> Result<Vec<SessionRecord>, Error> {
    let mut v = query_index(db, table, BY_TASK, "taskId", task_id).await?;
    v.sort_by(|a, b| b.login_at.cmp(&a.login_at));
    Ok(v)
}

/// Put a child item of a session (`sk` given) unless it exists. Returns whether it was new.
pub async fn put_child(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    pk_value: &str,
    sk: &str,
    body: &Value,
) -> Result<bool, Error> {
    let mut item = match dynamo::to_attr(body) {
        AttributeValue::M(m) => m,
        _ => Default::default(),
    };
    item.insert("pk".into(), s(pk_value));
    item.insert("sk".into(), s(sk));
    let res = db
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .aws("PutItem")
        .conditional()?;
    Ok(res.is_some())
}

pub async fn get_child(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    pk_value: &str,
    sk: &str,
) -> Result<Option<Value>, Error> {
    dynamo::get(db, table, &[("pk", pk_value), ("sk", sk)]).await
}

/// Count a flagged command on the session.
pub async fn add_flagged(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    session_id: &str,
) -> Result<(), Error> {
    db.update_item()
        .table_name(table)
        .key("pk", s(pk(session_id)))
        .key("sk", s(SESSION_SK))
        .update_expression("ADD flagged :one")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .send()
        .await
        .aws("UpdateItem")?;
    Ok(())
}

/// Every item of a session (the session, its hits and judged replies).
pub async fn items(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    session_id: &str,
) -> Result<Vec<Value>, Error> {
    let out = db
        .query()
        .table_name(table)
        .key_condition_expression("pk = :p")
        .expression_attribute_values(":p", s(pk(session_id)))
        .consistent_read(true)
        .send()
        .await
        .aws("Query")?;
    Ok(out.items().iter().map(dynamo::item_to_value).collect())
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
         • when: {at} from {ip}\n\
         • session: `{session}`\n\
         *Approvers:* an executive other than the person who logged in replies *in this thread* \
         with approval (e.g. 「承認します」 or \"approved\") before *{deadline}*; otherwise an \
         alert goes to <#{alert}>. Dangerous commands typed in this session are posted here.",
        who = rec.mention(),
        cluster = rec.cluster,
        task = rec.task_id,
        container = rec.container,
        command = crate::platform::redact::redact(&rec.command),
        at = rec.login_at,
        ip = if rec.source_ip.is_empty() {
            "an unknown address"
        } else {
            &rec.source_ip
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
            cluster = rec.cluster,
            task = rec.task_id,
            at = rec.login_at,
            ip = rec.source_ip,
            deadline = rec.deadline_at,
            link = link(rec),
            flagged = rec.flagged.unwrap_or(0),
        ),
        blocks: None,
    }
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
    severity: &str,
    source: &str,
) -> Message {
    let icon = match severity {
        "critical" => ":red_circle:",
        "high" => ":large_orange_circle:",
        _ => ":large_yellow_circle:",
    };
    let who = rec.map(|r| r.who()).unwrap_or_else(|| "someone".into());
    let text = format!(
        "{icon} *Dangerous command* ({severity}) by {who} on task `{task_id}` [{source}]\n\
         ```{command_redacted}```\npattern: {}",
        patterns.join(", ")
    );
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

pub fn approval_json(a: &Approval) -> Value {
    json!(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bastion::login::{from_event, sample_event};

    fn record() -> SessionRecord {
        let login = from_event(&sample_event(
            "ecs-execute-command-1",
            "arn:aws:iam::123456789012:user/alice",
            "bastion",
            "t1",
            "2026-11-28T13:00:00Z",
        ))
        .unwrap()
        .unwrap();
        let people =
            crate::shared::people::People::parse(crate::shared::people::EMBEDDED, "staging")
                .unwrap();
        let person = people.by_principal(&login.principal_arn);
        SessionRecord::new(
            &login,
            person,
            "staging",
            "ecs-execute-command-1",
            None,
            Times {
                deadline_at: "2026-11-29T13:00:00Z".into(),
                reminder_at: "2026-11-29T12:00:00Z".into(),
                recorded_at: "2026-11-28T13:00:01Z".into(),
            },
        )
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
            "high",
            "hook",
        );
        assert_eq!(m.thread_ts.as_deref(), Some("1.0"));
        assert!(m.text.contains("Alice Example (alice)"));
        let m = hit_message(
            None,
            "C0B",
            "t1",
            "x",
            &["rm_rf".into()],
            "critical",
            "transcript",
        );
        assert_eq!(m.channel, "C0B");
        assert!(m.thread_ts.is_none());
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
