//! CloudWatch Logs subscription payloads (`{"awslogs": {"data": base64(gzip(json))}}`) and the
//! console hook's JSON lines. Decoding is bounded: a malformed, truncated or oversized payload
//! is a clear [`PayloadError`], never a panic; a bad log event is reported on its own and the
//! rest of the batch goes on.

use std::io::Read;

use base64::Engine;
use serde::{Deserialize, Serialize};

/// Base64 text accepted per payload (Lambda's own request limit is 6 MB).
pub const MAX_ENCODED_BYTES: usize = 6 * 1024 * 1024;
/// Decompressed JSON accepted per payload (guards against gzip bombs; CloudWatch Logs batches
/// are at most 1 MB of events).
pub const MAX_DECODED_BYTES: u64 = 8 * 1024 * 1024;
/// One log event's message (CloudWatch Logs' own maximum event size).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("not a CloudWatch Logs subscription payload: {0}")]
    NotAPayload(String),
    #[error("awslogs.data is not valid base64: {0}")]
    Base64(String),
    #[error("awslogs.data is not a complete gzip stream (truncated or corrupt): {0}")]
    Gzip(String),
    #[error("awslogs.data is larger than {limit} bytes {what}")]
    TooLarge { limit: u64, what: &'static str },
    #[error("awslogs.data does not hold the subscription JSON: {0}")]
    Json(String),
}

/// The decoded subscription JSON. `aws_lambda_events` has this payload
/// (`cloudwatch_logs::{LogsEvent, AwsLogs, LogData, LogEntry}`) but does not fit here:
/// `AwsLogs` decodes base64 + gzip inside its `Deserialize` with no size bound (no guard
/// against a gzip bomb) and one untyped error, where [`decode`] bounds both sizes and names
/// what is wrong ([`PayloadError`]); and `LogData` / `LogEntry` are `#[non_exhaustive]` with
/// every field required, so the tests, the benchmark and the replica could not build a
/// payload with a struct literal, and a batch without `owner` or `subscriptionFilters` (the
/// replica's) would not parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsData {
    pub message_type: String,
    #[serde(default)]
    pub owner: String,
    pub log_group: String,
    pub log_stream: String,
    #[serde(default)]
    pub subscription_filters: Vec<String>,
    #[serde(default)]
    pub log_events: Vec<LogEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEvent {
    pub id: String,
    pub timestamp: i64,
    pub message: String,
}

/// Decode `awslogs.data`.
pub fn decode(data: &str) -> Result<LogsData, PayloadError> {
    if data.len() > MAX_ENCODED_BYTES {
        return Err(PayloadError::TooLarge {
            limit: MAX_ENCODED_BYTES as u64,
            what: "(encoded)",
        });
    }
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| PayloadError::Base64(e.to_string()))?;
    let mut json = Vec::new();
    let mut reader =
        flate2::read::GzDecoder::new(compressed.as_slice()).take(MAX_DECODED_BYTES + 1);
    reader
        .read_to_end(&mut json)
        .map_err(|e| PayloadError::Gzip(e.to_string()))?;
    if json.len() as u64 > MAX_DECODED_BYTES {
        return Err(PayloadError::TooLarge {
            limit: MAX_DECODED_BYTES,
            what: "once decompressed",
        });
    }
    if json.is_empty() {
        return Err(PayloadError::Gzip("no data".into()));
    }
    serde_json::from_slice(&json).map_err(|e| PayloadError::Json(e.to_string()))
}

/// Encode a payload the way CloudWatch Logs delivers it (tests, the benchmark, the replica).
pub fn encode(data: &LogsData) -> String {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&serde_json::to_vec(data).expect("serializes"))
        .expect("in-memory write");
    base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("in-memory gzip"))
}

/// A line the console hook (`infra/bastion/console_hook.rb`) writes: one per command
/// (`console-command`), a heartbeat (`console-heartbeat`, every `intervalSeconds`), or a report
/// that it was tampered with (`console-tamper`, `what`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HookLine {
    /// [`HOOK_COMMAND`], [`HOOK_HEARTBEAT`], [`HOOK_TAMPER`] or [`HOOK_END`].
    pub batchless: String,
    pub v: u32,
    pub task_id: String,
    #[serde(default)]
    pub task_arn: Option<String>,
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub container: Option<String>,
    /// The command (`console-command` only).
    #[serde(default)]
    pub command: String,
    pub time: String,
    #[serde(default)]
    pub pid: Option<u64>,
    #[serde(default)]
    pub line_no: Option<u64>,
    #[serde(default)]
    pub metadata_error: Option<String>,
    /// What was tampered with (`console-tamper`).
    #[serde(default)]
    pub what: Option<String>,
    /// The heartbeat's number since the console started, and its interval (`console-heartbeat`).
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default)]
    pub interval_seconds: Option<u64>,
}

pub const HOOK_COMMAND: &str = "console-command";
pub const HOOK_HEARTBEAT: &str = "console-heartbeat";
pub const HOOK_TAMPER: &str = "console-tamper";
/// Written once when the console exits (`at_exit`): the silence after it is not a gap.
pub const HOOK_END: &str = "console-end";
pub const HOOK_MARKER: &str = "{\"batchless\":\"console-";

/// What a log event is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A console command written by the hook.
    Hook(Box<HookLine>),
    /// ECS Exec session output (a transcript chunk).
    Transcript,
    /// Other output in the console log group (the app's own logs): not scanned.
    Ignored,
}

/// Classify one event's message. `from_console_group`: the event came from the console task's
/// log group (where the hook writes) rather than the ECS Exec transcript group.
pub fn classify(message: &str, from_console_group: bool) -> Result<Source, String> {
    if message.len() > MAX_EVENT_BYTES {
        return Err(format!(
            "log event is {} bytes, more than the {MAX_EVENT_BYTES} a CloudWatch Logs event can hold",
            message.len()
        ));
    }
    let trimmed = message.trim();
    // The hook writes compact JSON; accept any JSON spacing all the same.
    if trimmed.starts_with(HOOK_MARKER)
        || (trimmed.starts_with('{')
            && [HOOK_COMMAND, HOOK_HEARTBEAT, HOOK_TAMPER, HOOK_END]
                .iter()
                .any(|k| trimmed.contains(&format!("\"{k}\""))))
    {
        let line: HookLine = serde_json::from_str(trimmed)
            .map_err(|e| format!("malformed console hook line: {e}"))?;
        let complete = match line.batchless.as_str() {
            HOOK_COMMAND => !line.command.is_empty(),
            HOOK_TAMPER => line.what.as_deref().is_some_and(|w| !w.is_empty()),
            HOOK_HEARTBEAT | HOOK_END => true,
            _ => false,
        };
        if !complete || line.v != 1 {
            return Err(format!(
                "unsupported console hook line (batchless={:?}, v={}, command or what missing?)",
                line.batchless, line.v
            ));
        }
        return Ok(Source::Hook(Box::new(line)));
    }
    Ok(if from_console_group {
        Source::Ignored
    } else {
        Source::Transcript
    })
}

/// The ECS Exec session id in a transcript's log stream name (the stream is named after it).
pub fn session_id_from_stream(stream: &str) -> Option<&str> {
    let start = stream.find("ecs-execute-command-")?;
    let rest = &stream[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_lines_with_any_json_spacing_are_hook_lines() {
        let spaced = r#"{"batchless": "console-command", "v": 1, "taskId": "t1", "command": "Order.delete_all", "time": "2026-11-28T13:00:00Z", "pid": 1}"#;
        assert!(
            matches!(classify(spaced, true), Ok(Source::Hook(l)) if l.command == "Order.delete_all")
        );
        assert!(matches!(
            classify("Started GET /", true),
            Ok(Source::Ignored)
        ));
    }

    #[test]
    fn heartbeats_and_tamper_reports_are_hook_lines_and_must_be_complete() {
        let beat = r#"{"batchless":"console-heartbeat","v":1,"taskId":"t1","time":"2026-12-02T03:00:00Z","pid":7,"seq":3,"intervalSeconds":60}"#;
        assert!(
            matches!(classify(beat, true), Ok(Source::Hook(l)) if l.batchless == HOOK_HEARTBEAT && l.seq == Some(3))
        );
        let tamper = r#"{"batchless":"console-tamper","v":1,"taskId":"t1","time":"2026-12-02T03:00:00Z","what":"Batchless::ConsoleHook.emit was redefined"}"#;
        assert!(
            matches!(classify(tamper, true), Ok(Source::Hook(l)) if l.what.as_deref() == Some("Batchless::ConsoleHook.emit was redefined"))
        );
        let end = r#"{"batchless":"console-end","v":1,"taskId":"t1","time":"2026-12-02T03:00:00Z","pid":7}"#;
        assert!(matches!(classify(end, true), Ok(Source::Hook(l)) if l.batchless == HOOK_END));
        // A tamper report that says nothing, a command line without a command, an unknown kind:
        // reported as bad events, never taken for hook lines.
        for bad in [
            r#"{"batchless":"console-tamper","v":1,"taskId":"t1","time":"t"}"#,
            r#"{"batchless":"console-command","v":1,"taskId":"t1","time":"t"}"#,
            r#"{"batchless":"console-quiet","v":1,"taskId":"t1","time":"t"}"#,
        ] {
            assert!(classify(bad, true).is_err(), "{bad}");
        }
    }

    fn sample() -> LogsData {
        LogsData {
            message_type: "DATA_MESSAGE".into(),
            owner: "123456789012".into(),
            log_group: "/g".into(),
            log_stream: "ecs-execute-command-0a1b2c".into(),
            subscription_filters: vec!["f".into()],
            log_events: vec![LogEvent {
                id: "1".into(),
                timestamp: 1,
                message: "irb(main):001:0> User.destroy_all".into(),
            }],
        }
    }

    #[test]
    fn round_trip() {
        assert_eq!(decode(&encode(&sample())).unwrap(), sample());
    }

    #[test]
    fn malformed_truncated_and_oversized_are_clear_errors() {
        assert!(matches!(
            decode("%%%not base64"),
            Err(PayloadError::Base64(_))
        ));
        let full = base64::engine::general_purpose::STANDARD
            .decode(encode(&sample()))
            .unwrap();
        let truncated = base64::engine::general_purpose::STANDARD.encode(&full[..full.len() / 2]);
        let e = decode(&truncated).unwrap_err();
        assert!(matches!(e, PayloadError::Gzip(_)), "{e}");
        assert!(e.to_string().contains("truncated"), "{e}");
        let not_gzip = base64::engine::general_purpose::STANDARD.encode(b"{\"a\":1}");
        assert!(matches!(decode(&not_gzip), Err(PayloadError::Gzip(_))));
        // A gzip bomb: 9 MiB of zeros compresses to a few KiB.
        let bomb = {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&vec![b' '; 9 * 1024 * 1024]).unwrap();
            base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
        };
        assert!(matches!(decode(&bomb), Err(PayloadError::TooLarge { .. })));
        let e = decode(&"A".repeat(MAX_ENCODED_BYTES + 4)).unwrap_err();
        assert!(matches!(e, PayloadError::TooLarge { .. }));
        let json_junk = {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(b"[1,2").unwrap();
            base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
        };
        assert!(matches!(decode(&json_junk), Err(PayloadError::Json(_))));
    }

    #[test]
    fn hook_lines_and_transcripts_are_told_apart() {
        let line = r#"{"batchless":"console-command","v":1,"taskId":"abc","command":"User.destroy_all","time":"2026-11-28T13:00:00Z","pid":7}"#;
        match classify(line, true).unwrap() {
            Source::Hook(h) => {
                assert_eq!(h.task_id, "abc");
                assert_eq!(h.command, "User.destroy_all");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(classify("Started GET /", true).unwrap(), Source::Ignored);
        assert_eq!(classify("irb> x", false).unwrap(), Source::Transcript);
        let bad = r#"{"batchless":"console-command","v":1,"command":"x"}"#;
        assert!(classify(bad, true)
            .unwrap_err()
            .contains("missing field `taskId`"));
        assert!(classify(&"x".repeat(MAX_EVENT_BYTES + 1), false)
            .unwrap_err()
            .contains("bytes"));
        assert_eq!(
            session_id_from_stream("ecs-execute-command-0a1b2c3d"),
            Some("ecs-execute-command-0a1b2c3d")
        );
        assert_eq!(
            session_id_from_stream("prefix/ecs-execute-command-0a1b/x"),
            Some("ecs-execute-command-0a1b")
        );
        assert_eq!(session_id_from_stream("console/app/abc"), None);
    }
}
