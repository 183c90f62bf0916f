//! Live rendering of an execution: history events → one line per state entered / exited /
//! failed, and the final summary. Plain functions over [`HistoryEvent`]s, so they are tested
//! over recorded event sequences.

use std::collections::HashMap;

use batchless_asl::HistoryEvent;
use serde_json::Value;

const MESSAGE_MAX: usize = 300;

/// Turns history events into lines, remembering what it has seen.
#[derive(Debug, Default)]
pub struct Renderer {
    start_millis: Option<i64>,
    /// State name → (entered at, type) of its latest entry.
    entered: HashMap<String, (i64, String)>,
    /// Event id → the state whose entry it belongs to.
    owner: HashMap<i64, String>,
    last_id: Option<i64>,
}

impl Renderer {
    pub fn new() -> Renderer {
        Renderer::default()
    }

    /// The id of the last event rendered; events at or below it are skipped.
    pub fn last_id(&self) -> i64 {
        self.last_id.unwrap_or(0)
    }

    /// Lines for the events not rendered yet (events may be given again; they are skipped).
    pub fn render(&mut self, events: &[HistoryEvent]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut sorted: Vec<&HistoryEvent> =
            events.iter().filter(|e| e.id > self.last_id()).collect();
        sorted.sort_by_key(|e| e.id);
        for e in sorted {
            lines.extend(self.event(e));
            self.last_id = Some(e.id);
        }
        lines
    }

    fn event(&mut self, e: &HistoryEvent) -> Option<String> {
        let ts = e.timestamp_millis;
        if self.start_millis.is_none() {
            self.start_millis = ts;
        }
        let prev = match e.previous_event_id {
            Some(p) if p > 0 => Some(p),
            Some(_) => None,
            None => self.last_id,
        };
        let owner = prev.and_then(|p| self.owner.get(&p).cloned());

        if e.is_state_entered() {
            let name = e.name.clone().unwrap_or_default();
            let ty = e.state_type().unwrap_or("").to_string();
            self.owner.insert(e.id, name.clone());
            if let Some(t) = ts {
                self.entered.insert(name.clone(), (t, ty.clone()));
            }
            return Some(format!("{}  {name}  ({ty})", self.prefix(ts)));
        }
        if e.is_state_exited() {
            let name = e.name.clone().unwrap_or_default();
            self.owner.insert(e.id, name.clone());
            if matches!(e.state_type(), Some("Succeed" | "Fail")) {
                return None; // the summary says how it ended
            }
            let took = match (ts, self.entered.get(&name)) {
                (Some(t), Some((t0, _))) => format!(" after {}", seconds(t - t0)),
                _ => String::new(),
            };
            return Some(format!("{}  {name}  exited{took}", self.prefix(ts)));
        }
        if let Some(o) = &owner {
            self.owner.insert(e.id, o.clone());
        }
        if e.is_state_failure() || (e.kind.ends_with("Failed") && !e.kind.starts_with("Execution"))
        {
            let state = owner.unwrap_or_else(|| "-".to_string());
            let error = e
                .failure_error()
                .unwrap_or_else(|| "(no error name)".to_string());
            let message = e
                .cause
                .as_deref()
                .map(cause_message)
                .map(|m| one_line(&m, MESSAGE_MAX))
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return Some(format!(
                "{}  {state}  ! {}: {error}{message}",
                self.prefix(ts),
                e.kind
            ));
        }
        None
    }

    /// `HH:MM:SS  +12.3s` (UTC wall time, then time since the execution started).
    fn prefix(&self, ts: Option<i64>) -> String {
        match ts {
            Some(t) => {
                let wall = chrono::DateTime::from_timestamp_millis(t)
                    .map(|d| d.format("%H:%M:%S").to_string())
                    .unwrap_or_else(|| "--:--:--".into());
                let since = self.start_millis.map(|s| t - s).unwrap_or(0);
                format!("{wall}  {:>7}", format!("+{}", seconds(since)))
            }
            None => format!("--:--:--  {:>7}", ""),
        }
    }
}

/// Rows as aligned columns, the header line first: each cell padded to its column's widest
/// cell (the header's included), two spaces between columns, no trailing blanks.
pub fn columns<const N: usize>(headers: [&str; N], rows: &[[String; N]]) -> Vec<String> {
    let mut widths = headers.map(|h| h.chars().count());
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(cell);
            s.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        s.trim_end().to_string()
    };
    let mut lines = vec![line(&headers)];
    lines.extend(rows.iter().map(|r| line(&r.each_ref().map(String::as_str))));
    lines
}

/// `12.3s`
pub fn seconds(millis: i64) -> String {
    format!("{:.1}s", millis as f64 / 1000.0)
}

/// A failure cause as a person wants to read it: a Lambda's JSON error becomes its
/// `errorMessage`; other JSON is pretty-printed; text stays as it is. Redacted.
pub fn cause_message(cause: &str) -> String {
    let text = match serde_json::from_str::<Value>(cause) {
        Ok(Value::Object(o)) => match o.get("errorMessage").and_then(Value::as_str) {
            Some(m) => m.to_string(),
            None => {
                serde_json::to_string_pretty(&Value::Object(o)).unwrap_or_else(|_| cause.into())
            }
        },
        Ok(Value::String(s)) => s,
        Ok(other) => serde_json::to_string_pretty(&other).unwrap_or_else(|_| cause.into()),
        Err(_) => cause.to_string(),
    };
    batchless_core::platform::redact::redact(&text).into_owned()
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

/// How an execution ended, for the summary.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    pub status: String,
    pub duration_millis: Option<i64>,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.status == "SUCCEEDED"
    }
}

/// The closing lines: the status, then the output on success or `error:`/`cause:` otherwise.
pub fn summary(o: &Outcome) -> Vec<String> {
    let mut lines = vec![match o.duration_millis {
        Some(d) => format!("{} after {}", o.status, seconds(d)),
        None => o.status.clone(),
    }];
    if o.succeeded() {
        if let Some(out) = &o.output {
            let pretty = serde_json::from_str::<Value>(out)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| out.clone());
            lines.push(format!("output: {pretty}"));
        }
    } else {
        lines.push(format!("error: {}", o.error.as_deref().unwrap_or("(none)")));
        if let Some(c) = o.cause.as_deref().filter(|c| !c.is_empty()) {
            lines.push(format!("cause: {}", cause_message(c)));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-28T13:00:00Z
    const T0: i64 = 1_795_870_800_000;

    fn ev(id: i64, prev: i64, kind: &str, at: i64, name: Option<&str>) -> HistoryEvent {
        HistoryEvent {
            id,
            previous_event_id: Some(prev),
            kind: kind.into(),
            timestamp_millis: Some(T0 + at),
            name: name.map(str::to_string),
            ..Default::default()
        }
    }

    /// A migration that fails in the build wait, then records the run.
    fn recorded() -> Vec<HistoryEvent> {
        let mut failed = ev(7, 6, "TaskFailed", 12_300, None);
        failed.error = Some("BuildFailed".into());
        failed.cause = Some(
            r#"{"errorType":"BuildFailed","errorMessage":"build proj:1 FAILED in phase BUILD\n(exit 1)","trace":[]}"#
                .into(),
        );
        vec![
            ev(1, 0, "ExecutionStarted", 0, None),
            ev(2, 1, "TaskStateEntered", 100, Some("Validate")),
            ev(3, 2, "LambdaFunctionScheduled", 110, None),
            ev(4, 3, "LambdaFunctionSucceeded", 1_400, None),
            ev(5, 4, "TaskStateExited", 1_500, Some("Validate")),
            ev(6, 5, "TaskStateEntered", 1_600, Some("WaitForBuild")),
            failed,
            ev(8, 7, "PassStateEntered", 12_400, Some("RecordRun")),
            ev(9, 8, "PassStateExited", 12_400, Some("RecordRun")),
            ev(10, 9, "FailStateEntered", 12_500, Some("MigrationFailed")),
            ev(11, 10, "FailStateExited", 12_500, Some("MigrationFailed")),
            ev(12, 11, "ExecutionFailed", 12_500, None),
        ]
    }

    #[test]
    fn one_line_per_state_with_offsets_durations_and_failures() {
        let mut r = Renderer::new();
        let lines = r.render(&recorded());
        assert_eq!(
            lines,
            vec![
                "13:00:00    +0.1s  Validate  (Task)",
                "13:00:01    +1.5s  Validate  exited after 1.4s",
                "13:00:01    +1.6s  WaitForBuild  (Task)",
                "13:00:12   +12.3s  WaitForBuild  ! TaskFailed: BuildFailed: build proj:1 FAILED in phase BUILD (exit 1)",
                "13:00:12   +12.4s  RecordRun  (Pass)",
                "13:00:12   +12.4s  RecordRun  exited after 0.0s",
                "13:00:12   +12.5s  MigrationFailed  (Fail)",
            ]
        );
        assert_eq!(r.last_id(), 12);
    }

    #[test]
    fn events_seen_before_are_not_printed_again() {
        let all = recorded();
        let mut r = Renderer::new();
        let first = r.render(&all[..6]);
        assert_eq!(first.len(), 3);
        // The next poll returns the whole history again.
        let second = r.render(&all);
        assert_eq!(second.len(), 4);
        assert!(second[0].contains("! TaskFailed"));
        assert!(r.render(&all).is_empty());
    }

    #[test]
    fn timeouts_without_an_error_name_read_as_states_timeout() {
        let mut r = Renderer::new();
        let mut events = recorded()[..6].to_vec();
        events.push(ev(7, 6, "TaskTimedOut", 3_600_000, None));
        let lines = r.render(&events);
        assert_eq!(
            lines.last().unwrap(),
            "14:00:00  +3600.0s  WaitForBuild  ! TaskTimedOut: States.Timeout"
        );
    }

    #[test]
    fn summaries() {
        let ok = Outcome {
            status: "SUCCEEDED".into(),
            duration_millis: Some(45_250),
            output: Some(r#"{"status":"SUCCEEDED","logUri":"s3://b/k"}"#.into()),
            ..Default::default()
        };
        assert!(ok.succeeded());
        assert_eq!(
            summary(&ok),
            vec![
                "SUCCEEDED after 45.2s".to_string(),
                "output: {\n  \"status\": \"SUCCEEDED\",\n  \"logUri\": \"s3://b/k\"\n}"
                    .to_string()
            ]
        );
        let failed = Outcome {
            status: "FAILED".into(),
            error: Some("BuildFailed".into()),
            cause: Some(
                r#"{"errorType":"BuildFailed","errorMessage":"phase BUILD failed"}"#.into(),
            ),
            ..Default::default()
        };
        assert!(!failed.succeeded());
        assert_eq!(
            summary(&failed),
            vec!["FAILED", "error: BuildFailed", "cause: phase BUILD failed"]
        );
        let aborted = Outcome {
            status: "ABORTED".into(),
            ..Default::default()
        };
        assert_eq!(summary(&aborted), vec!["ABORTED", "error: (none)"]);
    }

    #[test]
    fn causes() {
        assert_eq!(cause_message("plain text"), "plain text");
        assert_eq!(cause_message(r#"{"a":1}"#), "{\n  \"a\": 1\n}");
        assert_eq!(
            cause_message(r#"{"errorMessage":"m","errorType":"T"}"#),
            "m"
        );
    }
}
