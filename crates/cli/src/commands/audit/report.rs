//! `batchless audit report`: every patch since a date, from the audit trail (the evidence,
//! not the mutable patch records): who asked, who approved, what ran at which SHA, when, the
//! verdict, the log. Builds the sweep found without an approved request and requester
//! mismatches are listed after the patches.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use batchless_core::patch::events;
use batchless_core::shared::audit::AuditRecord;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub patch_id: String,
    pub requested_at: String,
    pub ticket: String,
    pub requester: String,
    pub approvers: Vec<String>,
    pub refused: Vec<String>,
    pub command: String,
    pub commit: String,
    pub build_id: String,
    pub ran_commit: String,
    pub build_started_at: String,
    pub status: String,
    pub verdict: String,
    pub log: String,
    /// The dry run's counts (PREVIEWED), the real run's beside them and what differs beyond
    /// the configured factor (FINISHED's comparison): flags, not violations.
    pub preview: Vec<String>,
    pub actual: Vec<String>,
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub since: String,
    pub rows: Vec<Row>,
    /// Sweep findings: (when, what).
    pub alerts: Vec<(String, String)>,
}

fn lines(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Pure: fold the trail into one row per patch requested at or after `since`.
pub fn build(records: &[AuditRecord], since: &str) -> Report {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut alerts = Vec::new();
    for r in records {
        if r.event == events::UNAPPROVED_BUILD
            || r.event == events::REQUESTER_MISMATCH
            || r.event == batchless_core::patch::steps::audit_check::UNSANCTIONED
        {
            if r.at.as_str() >= since {
                alerts.push((r.at.clone(), text(&r.data, "message")));
            }
            continue;
        }
        if r.event == events::REQUESTED {
            if r.at.as_str() < since {
                continue;
            }
            rows.insert(
                r.patch_id.clone(),
                Row {
                    patch_id: r.patch_id.clone(),
                    requested_at: r.at.clone(),
                    ticket: text(&r.data, "ticket"),
                    requester: r.actor.clone(),
                    command: text(&r.data, "command"),
                    commit: text(&r.data, "commit"),
                    status: text(&r.data, "status"),
                    ..Default::default()
                },
            );
            continue;
        }
        let Some(row) = rows.get_mut(&r.patch_id) else {
            continue;
        };
        match r.event.as_str() {
            events::DECISION if text(&r.data, "decision") == "approve" => {
                row.approvers
                    .push(format!("{} ({} {})", r.actor, text(&r.data, "via"), r.at));
            }
            events::DECISION => {
                row.refused.push(format!("{} rejected ({})", r.actor, r.at));
            }
            events::DECISION_REFUSED => {
                let why = r.data["refusal"]["refusal"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                row.refused.push(format!("{}: {why}", r.actor));
            }
            events::BUILD_STARTED => {
                row.build_id = text(&r.data, "buildId");
                row.status = "RUNNING".into();
            }
            events::VERDICT => {
                row.verdict = text(&r.data, "verdict");
                row.ran_commit = text(&r.data, "resolvedSourceVersion");
                row.build_started_at = text(&r.data, "buildStartedAt");
            }
            events::PREVIEWED => {
                row.preview = lines(&r.data["summary"]);
                let outcome = text(&r.data, "outcome");
                if outcome != "ok" {
                    let problem = text(&r.data, "problem");
                    row.preview
                        .insert(0, format!("dry run {outcome}: {problem}"));
                }
            }
            events::FINISHED => {
                row.status = text(&r.data, "status");
                row.log = text(&r.data, "logUri");
                let c = &r.data["comparison"];
                if !c.is_null() {
                    row.actual = lines(&c["actual"]);
                    row.flags = lines(&c["flags"]);
                }
            }
            other if other == "APPROVED" || other == "REJECTED" => row.status = other.to_string(),
            _ => {}
        }
    }
    let mut rows: Vec<Row> = rows.into_values().collect();
    rows.sort_by(|a, b| a.requested_at.cmp(&b.requested_at));
    Report {
        since: since.to_string(),
        rows,
        alerts,
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "—"
    } else {
        s
    }
}

fn md_cell(s: &str) -> String {
    or_dash(s).replace('|', "\\|").replace('\n', " ")
}

/// Each previewed patch with its preview, actual and flag lines, labelled.
fn preview_and_actual(r: &Report) -> Vec<(&str, Vec<(&'static str, &str)>)> {
    r.rows
        .iter()
        .filter(|row| !row.preview.is_empty())
        .map(|row| {
            let lines = row
                .preview
                .iter()
                .map(|l| ("preview", l.as_str()))
                .chain(row.actual.iter().map(|l| ("actual", l.as_str())))
                .chain(row.flags.iter().map(|l| ("FLAG", l.as_str())))
                .collect();
            (row.patch_id.as_str(), lines)
        })
        .collect()
}

pub fn markdown(r: &Report) -> String {
    let mut out = format!("# Data patches since {}\n\n", r.since);
    out.push_str("| patch | requested | ticket | requester | approved by | command | commit | ran commit | build started | status | verdict | log |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for row in &r.rows {
        let approvers = row.approvers.join(", ");
        let cells = [
            row.patch_id.as_str(),
            &row.requested_at,
            &row.ticket,
            &row.requester,
            &approvers,
            &format!("`{}`", row.command),
            &row.commit,
            &row.ran_commit,
            &row.build_started_at,
            &row.status,
            &row.verdict,
            &row.log,
        ];
        out.push_str(&format!(
            "| {} |\n",
            cells
                .iter()
                .map(|c| md_cell(c))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    out.push_str(&format!("\n{} patch(es).\n", r.rows.len()));
    let previewed = preview_and_actual(r);
    if !previewed.is_empty() {
        out.push_str("\n## Preview and actual\n\n");
        for (patch, lines) in previewed {
            out.push_str(&format!("- **{}**\n", md_cell(patch)));
            for (what, l) in lines {
                out.push_str(&format!("  - {what}: {}\n", md_cell(l)));
            }
        }
    }
    if !r.alerts.is_empty() {
        out.push_str("\n## Alerts from the audit sweep\n\n");
        for (at, what) in &r.alerts {
            out.push_str(&format!("- {at}: {what}\n"));
        }
    }
    out
}

fn esc(s: &str) -> String {
    or_dash(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn html(r: &Report) -> String {
    let mut out = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Data patches since {0}</title></head><body>\n<h1>Data patches since {0}</h1>\n<table border=\"1\">\n<tr><th>patch</th><th>requested</th><th>ticket</th><th>requester</th><th>approved by</th><th>command</th><th>commit</th><th>ran commit</th><th>build started</th><th>status</th><th>verdict</th><th>log</th></tr>\n",
        esc(&r.since)
    );
    for row in &r.rows {
        let approvers = row.approvers.join(", ");
        out.push_str("<tr>");
        for c in [
            row.patch_id.as_str(),
            &row.requested_at,
            &row.ticket,
            &row.requester,
            &approvers,
        ] {
            out.push_str(&format!("<td>{}</td>", esc(c)));
        }
        out.push_str(&format!("<td><code>{}</code></td>", esc(&row.command)));
        for c in [
            row.commit.as_str(),
            &row.ran_commit,
            &row.build_started_at,
            &row.status,
            &row.verdict,
            &row.log,
        ] {
            out.push_str(&format!("<td>{}</td>", esc(c)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    let previewed = preview_and_actual(r);
    if !previewed.is_empty() {
        out.push_str("<h2>Preview and actual</h2>\n<ul>\n");
        for (patch, lines) in previewed {
            out.push_str(&format!("<li><b>{}</b><ul>", esc(patch)));
            for (what, l) in lines {
                out.push_str(&format!("<li>{what}: {}</li>", esc(l)));
            }
            out.push_str("</ul></li>\n");
        }
        out.push_str("</ul>\n");
    }
    if !r.alerts.is_empty() {
        out.push_str("<h2>Alerts from the audit sweep</h2>\n<ul>\n");
        for (at, what) in &r.alerts {
            out.push_str(&format!("<li>{}: {}</li>\n", esc(at), esc(what)));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use batchless_core::shared::audit::{next_record, Entry};
    use serde_json::json;

    fn rec(seq: u64, patch: &str, event: &str, actor: &str, data: Value, at: &str) -> AuditRecord {
        let mut r = next_record(
            "patches",
            None,
            &Entry {
                key: format!("k{seq}"),
                environment: "staging".into(),
                patch_id: patch.into(),
                event: event.into(),
                actor: actor.into(),
                data,
            },
            at,
        );
        r.seq = seq;
        r
    }

    fn trail() -> Vec<AuditRecord> {
        vec![
            rec(
                1,
                "old",
                "REQUESTED",
                "bob",
                json!({"ticket": "OPS-1"}),
                "2026-10-01T00:00:00Z",
            ),
            rec(
                2,
                "p1",
                "REQUESTED",
                "bob",
                json!({"ticket": "OPS-2", "command": "bin/rake a|b", "commit": "c0ffee", "status": "PENDING_APPROVAL"}),
                "2026-11-28T10:00:00Z",
            ),
            rec(
                3,
                "p1",
                "DECISION_REFUSED",
                "bob",
                json!({"refusal": {"refusal": "self_approval"}}),
                "2026-11-28T10:01:00Z",
            ),
            rec(
                4,
                "p1",
                "DECISION",
                "alice",
                json!({"decision": "approve", "via": "slack"}),
                "2026-11-28T10:02:00Z",
            ),
            rec(
                5,
                "p1",
                "APPROVED",
                "workflow",
                json!({}),
                "2026-11-28T10:02:00Z",
            ),
            rec(
                5,
                "p1",
                "PREVIEWED",
                "workflow",
                json!({"outcome": "ok", "summary": ["public.users: 0 inserted, 2 updated, 0 deleted"]}),
                "2026-11-28T10:01:30Z",
            ),
            rec(
                6,
                "p1",
                "BUILD_STARTED",
                "workflow",
                json!({"buildId": "proj:1"}),
                "2026-11-28T10:03:00Z",
            ),
            rec(
                7,
                "p1",
                "VERDICT",
                "workflow",
                json!({"verdict": "COMPLIANT", "resolvedSourceVersion": "c0ffee", "buildStartedAt": "2026-11-28T10:03:01Z"}),
                "2026-11-28T10:04:00Z",
            ),
            rec(
                8,
                "p1",
                "FINISHED",
                "workflow",
                json!({"status": "SUCCEEDED", "logUri": "s3://b/logs/p1.log", "comparison": {
                    "preview": ["public.users: 0 inserted, 2 updated, 0 deleted"],
                    "actual": ["public.users: 0 inserted, 9 updated, 0 deleted"],
                    "flags": ["public.users: 9 updated in the run, 2 in the preview"]}}),
                "2026-11-28T10:05:00Z",
            ),
            rec(
                9,
                "-",
                "UNAPPROVED_BUILD",
                "audit-check",
                json!({"message": "build proj:9 started by mallory has no approved request"}),
                "2026-11-28T11:00:00Z",
            ),
        ]
    }

    #[test]
    fn one_row_per_patch_since_the_date() {
        let r = build(&trail(), "2026-11-01T00:00:00Z");
        assert_eq!(r.rows.len(), 1);
        let row = &r.rows[0];
        assert_eq!(row.requester, "bob");
        assert_eq!(row.approvers, vec!["alice (slack 2026-11-28T10:02:00Z)"]);
        assert_eq!(row.refused, vec!["bob: self_approval"]);
        assert_eq!(
            (row.status.as_str(), row.verdict.as_str()),
            ("SUCCEEDED", "COMPLIANT")
        );
        assert_eq!(row.log, "s3://b/logs/p1.log");
        assert_eq!(
            row.preview,
            ["public.users: 0 inserted, 2 updated, 0 deleted"]
        );
        assert_eq!(
            row.actual,
            ["public.users: 0 inserted, 9 updated, 0 deleted"]
        );
        assert_eq!(row.flags.len(), 1);
        assert_eq!(r.alerts.len(), 1);
        let md = markdown(&r);
        assert!(
            md.contains("  - FLAG: public.users: 9 updated in the run, 2 in the preview"),
            "{md}"
        );
        assert!(html(&r)
            .contains("<li>FLAG: public.users: 9 updated in the run, 2 in the preview</li>"));
    }

    #[test]
    fn markdown_and_html_escape_what_they_show() {
        let r = build(&trail(), "2026-11-01T00:00:00Z");
        let md = markdown(&r);
        assert!(md.contains("`bin/rake a\\|b`"), "{md}");
        assert!(md.contains("mallory has no approved request"));
        let html = html(&r);
        assert!(
            html.contains("<td>alice (slack 2026-11-28T10:02:00Z)</td>"),
            "{html}"
        );
        assert!(html.contains("<code>bin/rake a|b</code>"));
        let mut evil = trail();
        evil[1].data["ticket"] = json!("<script>");
        assert!(!super::html(&build(&evil, "2026-11-01")).contains("<script>"));
    }
}
