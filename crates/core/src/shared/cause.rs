//! What a failed run says about itself (the execution's cause, which CodePipeline and the
//! console show), the same way for every workflow: where the log is, its redacted tail, and a
//! bound on the length that keeps the first line (the verdict) and the end (the tail).

use crate::sfn::StepError;
use crate::shared::logs::CollectedLogs;

/// Step Functions allows 32,768 characters in a cause; CodePipeline shows 5,000.
pub const MAX_CAUSE_CHARS: usize = 4800;

/// The log part of a cause: the archive's URI and console link and the tail, or why there
/// is no archive.
pub fn log_section(logs: Option<&CollectedLogs>, logs_error: Option<&StepError>) -> String {
    match (logs, logs_error) {
        (Some(l), _) => format!(
            "Log: {} ({})\nLast lines of the log:\n{}\n",
            l.uri, l.console_url, l.tail
        ),
        (None, Some(e)) => format!("The log could not be archived: {}\n", e.error),
        (None, None) => String::new(),
    }
}

/// The cause as it leaves the system: redacted and within [`MAX_CAUSE_CHARS`].
pub fn finish(text: &str) -> String {
    clip_front(&crate::platform::redact::redact(text), MAX_CAUSE_CHARS)
}

/// Keep the end (the tail matters most) within `max` characters, keeping the first line.
fn clip_front(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let first = text.lines().next().unwrap_or_default();
    let budget = max.saturating_sub(first.chars().count() + 5);
    let chars: Vec<char> = text.chars().collect();
    let rest: String = chars[chars.len() - budget..].iter().collect();
    format!("{first}\n…\n{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_causes_keep_the_first_line_and_the_end() {
        let text = format!("verdict\n{}\nthe last line", "x".repeat(10_000));
        let out = finish(&text);
        assert!(out.chars().count() <= MAX_CAUSE_CHARS);
        assert!(out.starts_with("verdict\n…\n"));
        assert!(out.ends_with("the last line"));
        assert_eq!(finish("short"), "short");
    }

    #[test]
    fn causes_are_redacted() {
        assert!(!finish("DATABASE_URL=postgres://u:pw1@h/d").contains("pw1"));
    }
}
