//! `batchless sessions [--since T] [--json]`: bastion sessions (issue 6) from the bastion table,
//! newest first — who logged in where and when, the approval evidence or the alert, and the
//! dangerous commands flagged in each session.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;
use batchless_core::platform::dynamo;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::context::Context;
use crate::parse;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only sessions that logged in at or after this time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse::time)]
    pub since: Option<DateTime<Utc>>,
    /// Print the sessions (with flagged commands and judged replies) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One session with its flagged commands and judged replies.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionView {
    pub session: Value,
    pub hits: Vec<Value>,
    pub replies: Vec<Value>,
}

/// Group the table's items into sessions (login at or after `since`), newest first.
pub fn group(items: Vec<Value>, since: Option<DateTime<Utc>>) -> Vec<SessionView> {
    let mut by_pk: BTreeMap<String, SessionView> = BTreeMap::new();
    let mut children: Vec<Value> = Vec::new();
    for item in items {
        let pk = item["pk"].as_str().unwrap_or_default().to_string();
        if !pk.starts_with("session#") {
            continue;
        }
        if item["sk"] == "session" {
            by_pk.insert(
                pk,
                SessionView {
                    session: item,
                    hits: vec![],
                    replies: vec![],
                },
            );
        } else {
            children.push(item);
        }
    }
    for c in children {
        let pk = c["pk"].as_str().unwrap_or_default();
        if let Some(v) = by_pk.get_mut(pk) {
            match c["kind"].as_str() {
                Some("hit") => v.hits.push(c),
                Some("reply") => v.replies.push(c),
                _ => {}
            }
        }
    }
    let since = since.map(batchless_core::platform::time::rfc3339);
    let mut out: Vec<SessionView> = by_pk
        .into_values()
        .filter(|v| {
            since
                .as_deref()
                .is_none_or(|s| v.session["loginAt"].as_str().unwrap_or_default() >= s)
        })
        .collect();
    for v in &mut out {
        v.hits
            .sort_by(|a, b| a["at"].as_str().cmp(&b["at"].as_str()));
        v.replies
            .sort_by(|a, b| a["ts"].as_str().cmp(&b["ts"].as_str()));
    }
    out.sort_by(|a, b| {
        b.session["loginAt"]
            .as_str()
            .cmp(&a.session["loginAt"].as_str())
    });
    out
}

fn s(v: &Value) -> String {
    v.as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| "-".into())
}

/// The human-readable report.
pub fn render(views: &[SessionView]) -> String {
    let headers = [
        "LOGIN",
        "WHO",
        "TASK",
        "STATUS",
        "APPROVED BY",
        "FLAGGED",
        "SESSION",
    ];
    let rows: Vec<[String; 7]> = views
        .iter()
        .map(|v| {
            let x = &v.session;
            let who = x["personId"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("UNKNOWN {}", s(&x["principalArn"])));
            [
                s(&x["loginAt"]),
                who,
                s(&x["taskId"]),
                s(&x["status"]),
                s(&x["approval"]["by"]),
                v.hits.len().to_string(),
                s(&x["sessionId"]),
            ]
        })
        .collect();
    let lines = crate::render::columns(headers, &rows);
    let mut out = lines[0].clone();
    for (v, line) in views.iter().zip(&lines[1..]) {
        out.push('\n');
        out.push_str(line);
        let x = &v.session;
        if x["approval"].is_object() {
            out.push_str(&format!(
                "\n    approved: {} at {} — \"{}\" {}",
                s(&x["approval"]["byName"]),
                s(&x["approval"]["recordedAt"]),
                s(&x["approval"]["text"]),
                s(&x["approval"]["permalink"])
            ));
        }
        if x["alert"].is_object() {
            out.push_str(&format!(
                "\n    ALERT: no approval by {} (alerted {} in {})",
                s(&x["deadlineAt"]),
                s(&x["alert"]["at"]),
                s(&x["alert"]["channel"])
            ));
        }
        for h in &v.hits {
            let patterns: Vec<String> = h["patterns"]
                .as_array()
                .map(|a| a.iter().map(s).collect())
                .unwrap_or_default();
            out.push_str(&format!(
                "\n    ! {:<8} {}  {}  ({} {})",
                s(&h["severity"]),
                patterns.join(","),
                s(&h["command"]).replace('\n', " ⏎ "),
                s(&h["source"]),
                s(&h["at"])
            ));
        }
    }
    out
}

pub async fn run(cx: &Context, args: Args) -> Result<ExitCode> {
    let aws = cx.aws().await?;
    let table = aws.resource("bastion");
    let db = aws.dynamodb();
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = db
            .scan()
            .table_name(&table)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        items.extend(out.items().iter().map(dynamo::item_to_value));
        start = out.last_evaluated_key().cloned();
        if start.is_none() {
            break;
        }
    }
    let views = group(items, args.since);
    if args.json {
        let doc: Vec<Value> = views
            .iter()
            .map(|v| {
                let mut session = v.session.clone();
                if let Some(o) = session.as_object_mut() {
                    o.remove("taskToken");
                }
                json!({ "session": session, "flagged": v.hits, "replies": v.replies })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if views.is_empty() {
        eprintln!("no bastion sessions recorded in {table}");
    } else {
        println!("{}", render(&views));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> Vec<Value> {
        vec![
            json!({"pk": "session#s1", "sk": "session", "sessionId": "s1", "personId": "alice", "taskId": "t1",
                   "loginAt": "2026-11-28T13:00:00Z", "status": "alerted", "deadlineAt": "2026-11-29T13:00:00Z",
                   "alert": {"at": "2026-11-29T13:00:05Z", "channel": "C0ALERTS"}, "taskToken": "secret-token"}),
            json!({"pk": "session#s1", "sk": "hit#1#0", "kind": "hit", "command": "User.destroy_all",
                   "patterns": ["destroy_all"], "severity": "high", "source": "hook", "at": "2026-11-28T13:01:00Z"}),
            json!({"pk": "session#s2", "sk": "session", "sessionId": "s2", "personId": "bob", "taskId": "t2",
                   "loginAt": "2026-11-28T15:00:00Z", "status": "approved",
                   "approval": {"by": "carol", "byName": "Carol Example", "text": "承認します", "recordedAt": "2026-11-28T15:05:00Z", "permalink": "https://x"}}),
            json!({"pk": "session#s2", "sk": "reply#1.1", "kind": "reply", "ts": "1.1", "verdict": "evidence"}),
            json!({"pk": "slack-event#Ev1", "sk": "event"}),
        ]
    }

    #[test]
    fn options() {
        let a: Args =
            crate::testing::parse_args(&["--since", "2026-11-28T13:00:00Z", "--json"]).unwrap();
        assert_eq!(a.since.unwrap().to_rfc3339(), "2026-11-28T13:00:00+00:00");
        assert!(a.json);
        assert!(crate::testing::parse_args::<Args>(&["--since", "last week"]).is_err());
    }

    #[test]
    fn groups_newest_first_with_hits_and_replies() {
        let v = group(items(), None);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].session["sessionId"], "s2");
        assert_eq!(v[0].replies.len(), 1);
        assert_eq!(v[1].hits.len(), 1);
        let since = DateTime::parse_from_rfc3339("2026-11-28T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(group(items(), Some(since)).len(), 1);
    }

    #[test]
    fn renders_approvals_alerts_and_flagged_commands() {
        let text = render(&group(items(), None));
        assert!(text.starts_with("LOGIN"), "{text}");
        assert!(text.contains("approved: Carol Example"), "{text}");
        assert!(
            text.contains("ALERT: no approval by 2026-11-29T13:00:00Z"),
            "{text}"
        );
        assert!(
            text.contains("! high     destroy_all  User.destroy_all  (hook"),
            "{text}"
        );
        assert!(!text.contains("secret-token"));
    }
}
