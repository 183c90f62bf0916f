//! The login: EventBridge's "AWS API Call via CloudTrail" event for ECS `ExecuteCommand` →
//! the watch's input. The watch's execution is named after the session id, so a redelivered
//! event can never open a second watch.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::platform::input::{self, InputError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Login {
    pub session_id: String,
    /// Who ran what where: also the session record's (its fields stand at the top level).
    #[serde(flatten)]
    pub exec: Exec,
    pub principal_type: String,
    #[serde(default)]
    pub cloudtrail_event_id: Option<String>,
    pub region: String,
    pub account: String,
}

/// The `ExecuteCommand` call: who ran which command in which task's container, when and from
/// where. The login carries it; the session record keeps it (both flatten it, so the JSON
/// fields and the stored attributes are `principalArn`, `cluster`, ... as they always were).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exec {
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
}

/// The state machine's input, as the starter builds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WatchInput {
    pub login: Login,
    /// Seconds from the start of the watch to the deadline.
    pub deadline_seconds: u64,
    /// Seconds before the deadline when the reminder is posted.
    pub reminder_before_seconds: u64,
}

impl WatchInput {
    pub fn validate(&self) -> Result<(), InputError> {
        input::identifier("login.sessionId", &self.login.session_id, 200)?;
        input::bounded_text("login.command", &self.login.exec.command, 4096)?;
        if self.deadline_seconds == 0 || self.deadline_seconds > 7 * 86400 {
            return Err(InputError::field(
                "deadlineSeconds",
                "must be between 1 and 604800",
            ));
        }
        if self.reminder_before_seconds >= self.deadline_seconds {
            return Err(InputError::field(
                "reminderBeforeSeconds",
                "must be less than deadlineSeconds",
            ));
        }
        crate::platform::time::parse("login.loginAt", &self.login.exec.login_at)?;
        Ok(())
    }

    /// Seconds of the first wait (until the reminder) and of the second (until the deadline).
    pub fn waits(&self) -> (u64, u64) {
        (
            self.deadline_seconds - self.reminder_before_seconds,
            self.reminder_before_seconds.max(1),
        )
    }
}

/// Whether an ECS Exec `command` is the console entrypoint the hook watches:
/// `[bundle exec] [./]bin/rails|rails console|c`, with at most `--sandbox`/`-s` and an
/// environment (`-e NAME`, `--environment NAME`, `--environment=NAME`). Anything else — a
/// shell (`bash`, `sh -c …`), `rails runner`, `rails dbconsole`, a second command after `;` —
/// is not: what is typed there never reaches the console hook.
pub fn is_console_entrypoint(command: &str) -> bool {
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut rest = words.as_slice();
    if let ["bundle", "exec", tail @ ..] = rest {
        rest = tail;
    }
    let [program, "console" | "c", args @ ..] = rest else {
        return false;
    };
    if !matches!(
        *program,
        "bin/rails" | "./bin/rails" | "rails" | "/app/bin/rails"
    ) {
        return false;
    }
    let env_name = |v: &str| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match *arg {
            "--sandbox" | "-s" => {}
            "-e" | "--environment" => {
                if !args.next().is_some_and(|v| env_name(v)) {
                    return false;
                }
            }
            a => match a.strip_prefix("--environment=") {
                Some(v) if env_name(v) => {}
                _ => return false,
            },
        }
    }
    true
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// The last path segment of an ARN (`.../task/cluster/ID` → `ID`), or the value itself.
pub fn last_segment(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Parse the EventBridge envelope of a CloudTrail `ExecuteCommand` record. `Ok(None)`: a
/// call that opened no session (it failed: `errorCode`, no session in the response).
///
/// Read from the JSON by path rather than through `aws_lambda_events`'
/// `cloudwatch_events::cloudtrail::AWSAPICall` on purpose: that type requires fields this step
/// never uses (`eventVersion`, `userAgent`, `requestID`, `eventType`, and for an assumed role
/// `sessionContext.attributes.creationDate`), so a record missing one would fail the login with
/// serde's generic message; its `requestParameters` / `responseElements` are untyped JSON
/// anyway. Here every field used is named when it is missing (`detail.requestParameters.task`),
/// and a failed call (`errorCode`) is told apart from a malformed record.
pub fn from_event(event: &Value) -> Result<Option<Login>, InputError> {
    let detail = event
        .get("detail")
        .ok_or_else(|| InputError::field("detail", "missing"))?;
    let source = s(detail, &["eventSource"]).unwrap_or_default();
    let name = s(detail, &["eventName"]).unwrap_or_default();
    if source != "ecs.amazonaws.com" || name != "ExecuteCommand" {
        return Err(InputError::field(
            "detail.eventName",
            format!("expected ecs.amazonaws.com ExecuteCommand, got {source} {name}"),
        ));
    }
    if detail.get("errorCode").is_some_and(|v| !v.is_null()) {
        return Ok(None);
    }
    let Some(session_id) = s(detail, &["responseElements", "session", "sessionId"]) else {
        return Ok(None);
    };
    let req = |f: &str| {
        s(detail, &["requestParameters", f])
            .ok_or_else(|| InputError::field(&format!("detail.requestParameters.{f}"), "missing"))
    };
    let task_arn = s(detail, &["responseElements", "taskArn"])
        .map(Ok)
        .unwrap_or_else(|| req("task"))?;
    let cluster_raw = s(detail, &["responseElements", "clusterArn"])
        .map(Ok)
        .unwrap_or_else(|| req("cluster"))?;
    let container = s(detail, &["responseElements", "containerName"])
        .map(Ok)
        .unwrap_or_else(|| req("container"))?;
    let principal_arn = s(detail, &["userIdentity", "arn"])
        .ok_or_else(|| InputError::field("detail.userIdentity.arn", "missing"))?;
    let login_at = s(detail, &["eventTime"])
        .or_else(|| s(event, &["time"]))
        .ok_or_else(|| InputError::field("detail.eventTime", "missing"))?;
    let login_at =
        crate::platform::time::rfc3339(crate::platform::time::parse("detail.eventTime", login_at)?);
    Ok(Some(Login {
        session_id: session_id.to_string(),
        exec: Exec {
            principal_arn: principal_arn.to_string(),
            cluster: last_segment(cluster_raw).to_string(),
            task_arn: task_arn.to_string(),
            task_id: last_segment(task_arn).to_string(),
            container: container.to_string(),
            command: req("command")?.to_string(),
            login_at,
            source_ip: s(detail, &["sourceIPAddress"]).unwrap_or("").to_string(),
            user_agent: s(detail, &["userAgent"]).map(str::to_string),
        },
        principal_type: s(detail, &["userIdentity", "type"])
            .unwrap_or("Unknown")
            .to_string(),
        cloudtrail_event_id: s(detail, &["eventID"]).map(str::to_string),
        region: s(detail, &["awsRegion"])
            .or_else(|| s(event, &["region"]))
            .unwrap_or_default()
            .to_string(),
        account: s(event, &["account"]).unwrap_or_default().to_string(),
    }))
}

/// The execution name: the session id, made valid (≤ 80 chars of `[A-Za-z0-9_-]`).
pub fn execution_name(session_id: &str) -> String {
    let clean: String = session_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.len() <= 80 {
        clean
    } else {
        // Keep it unique: the tail of a long id carries its randomness.
        clean[clean.len() - 80..].to_string()
    }
}

/// A CloudTrail `ExecuteCommand` event as EventBridge delivers it (tests and examples).
pub fn sample_event(
    session_id: &str,
    principal_arn: &str,
    cluster: &str,
    task_id: &str,
    event_time: &str,
) -> Value {
    let task_arn = format!("arn:aws:ecs:us-east-1:123456789012:task/{cluster}/{task_id}");
    serde_json::json!({
        "version": "0",
        "id": format!("evt-{session_id}"),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.ecs",
        "account": "123456789012",
        "time": event_time,
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.08",
            "userIdentity": {
                "type": "IAMUser",
                "principalId": "AIDAEXAMPLE",
                "arn": principal_arn,
                "accountId": "123456789012"
            },
            "eventTime": event_time,
            "eventSource": "ecs.amazonaws.com",
            "eventName": "ExecuteCommand",
            "awsRegion": "us-east-1",
            "sourceIPAddress": "203.0.113.7",
            "userAgent": "aws-cli/2.15.0 Python/3.11 exec-env/ecs",
            "requestParameters": {
                "cluster": cluster,
                "container": "app",
                "command": "bin/rails console",
                "interactive": true,
                "task": task_arn
            },
            "responseElements": {
                "clusterArn": format!("arn:aws:ecs:us-east-1:123456789012:cluster/{cluster}"),
                "containerArn": format!("arn:aws:ecs:us-east-1:123456789012:container/{cluster}/{task_id}/0f0f"),
                "containerName": "app",
                "interactive": true,
                "session": {
                    "sessionId": session_id,
                    "streamUrl": "wss://ssmmessages.us-east-1.amazonaws.com/v1/data-channel/x",
                    "tokenValue": "HIDDEN_DUE_TO_SECURITY_REASONS"
                },
                "taskArn": task_arn
            },
            "requestID": "req-1",
            "eventID": format!("ct-{session_id}"),
            "readOnly": false,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": "123456789012"
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_cloudtrail_record() {
        let ev = sample_event(
            "ecs-execute-command-0a1b2c3d4e",
            "arn:aws:iam::123456789012:user/alice",
            "batchless-staging-bastion",
            "9f8e7d",
            "2026-11-28T13:00:00Z",
        );
        let login = from_event(&ev).unwrap().unwrap();
        assert_eq!(login.session_id, "ecs-execute-command-0a1b2c3d4e");
        assert_eq!(login.exec.cluster, "batchless-staging-bastion");
        assert_eq!(login.exec.task_id, "9f8e7d");
        assert_eq!(login.exec.container, "app");
        assert_eq!(login.exec.command, "bin/rails console");
        assert_eq!(login.exec.source_ip, "203.0.113.7");
        assert_eq!(login.exec.login_at, "2026-11-28T13:00:00Z");
    }

    #[test]
    fn failed_calls_open_nothing_and_other_events_are_rejected() {
        let mut ev = sample_event("s", "arn:x", "c", "t", "2026-11-28T13:00:00Z");
        ev["detail"]["errorCode"] = "AccessDeniedException".into();
        assert_eq!(from_event(&ev).unwrap(), None);
        let mut ev = sample_event("s", "arn:x", "c", "t", "2026-11-28T13:00:00Z");
        ev["detail"]["eventName"] = "RunTask".into();
        assert!(from_event(&ev).unwrap_err().message.contains("eventName"));
    }

    /// The login's JSON (the watch's input, read by the ASL) keeps its field names, and an
    /// unknown field is still refused.
    #[test]
    fn the_login_json_keeps_its_names_and_refuses_unknown_fields() {
        let mut login = crate::bastion::fixtures::login("s1");
        login.exec.user_agent = Some("aws-cli".into());
        login.cloudtrail_event_id = Some("ev-1".into());
        let json = serde_json::to_value(&login).unwrap();
        let mut names: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "account",
                "cloudtrailEventId",
                "cluster",
                "command",
                "container",
                "loginAt",
                "principalArn",
                "principalType",
                "region",
                "sessionId",
                "sourceIp",
                "taskArn",
                "taskId",
                "userAgent",
            ]
        );
        assert_eq!(
            serde_json::from_value::<Login>(json.clone()).unwrap(),
            login
        );
        let mut extra = json;
        extra["sneaky"] = "x".into();
        let err = serde_json::from_value::<Login>(extra).unwrap_err();
        assert!(err.to_string().contains("sneaky"), "{err}");
    }

    #[test]
    fn execution_names_are_valid() {
        assert_eq!(
            execution_name("ecs-execute-command-0a1b"),
            "ecs-execute-command-0a1b"
        );
        assert_eq!(execution_name("a:b"), "a_b");
        assert_eq!(execution_name(&"x".repeat(100)).len(), 80);
    }

    #[test]
    fn input_is_validated() {
        let login = from_event(&sample_event(
            "s-1",
            "arn:x",
            "c",
            "t",
            "2026-11-28T13:00:00Z",
        ))
        .unwrap()
        .unwrap();
        let mut w = WatchInput {
            login,
            deadline_seconds: 86400,
            reminder_before_seconds: 3600,
        };
        assert!(w.validate().is_ok());
        assert_eq!(w.waits(), (82800, 3600));
        w.reminder_before_seconds = 86400;
        assert!(w.validate().is_err());
    }

    #[test]
    fn only_the_console_entrypoint_is_a_console_login() {
        for console in [
            "bin/rails console",
            "bin/rails c",
            "./bin/rails console --sandbox",
            "bundle exec rails console -e production",
            "rails c --environment=staging",
        ] {
            assert!(is_console_entrypoint(console), "{console}");
        }
        for other in [
            "bash",
            "/bin/sh",
            "sh -c 'bin/rails console'",
            "bin/rails runner 'User.delete_all'",
            "bin/rails dbconsole",
            "bin/rails console; bash",
            "bin/rails console && bash",
            "bin/rails console -e",
            "bin/rails console -e 'x;bash'",
            "bundle exec irb",
            "env RUBYOPT=-rx bin/rails console",
            "rails",
            "",
        ] {
            assert!(!is_console_entrypoint(other), "{other}");
        }
    }
}
