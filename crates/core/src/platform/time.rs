//! UTC time helpers: records use RFC 3339 in UTC with second precision and a `Z` suffix, so
//! they sort lexically and compare as strings inside DynamoDB conditions.

use chrono::{DateTime, SecondsFormat, Timelike, Utc};

use crate::platform::input::InputError;

pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// `2026-11-28T13:05:09Z`
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn parse(field: &str, s: &str) -> Result<DateTime<Utc>, InputError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| InputError::field(field, format!("{s:?} is not an RFC 3339 time: {e}")))
}

/// A scheduled occurrence's key component: the time truncated to the minute.
pub fn truncate_to_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .expect("second 0 and nanosecond 0 are always valid")
}

pub fn seconds_between(start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
    (end - start).num_seconds()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_truncates() {
        let t = parse("t", "2026-11-28T22:05:09.734+09:00").unwrap();
        assert_eq!(rfc3339(t), "2026-11-28T13:05:09Z");
        assert_eq!(rfc3339(truncate_to_minute(t)), "2026-11-28T13:05:00Z");
        assert!(parse("t", "yesterday").unwrap_err().message.contains("`t`"));
    }
}
