//! Value parsers for clap arguments that several commands share.

use chrono::{DateTime, Utc};

/// `K=V` (the value may contain `=`; the key may not be empty).
pub fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected K=V, got {s:?}")),
    }
}

/// An RFC 3339 time, in UTC.
pub fn time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}

/// A percentage between 0 and 100 (`80` or `80%`).
pub fn percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 100"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(key_value("B=x=y"), Ok(("B".into(), "x=y".into())));
        assert!(key_value("=1").is_err() && key_value("A").is_err());
        assert_eq!(
            time("2026-11-28T13:00:00+09:00").unwrap().to_rfc3339(),
            "2026-11-28T04:00:00+00:00"
        );
        assert!(time("yesterday").is_err());
        assert_eq!(percent("80%"), Ok(80.0));
        assert!(percent("120").is_err() && percent("x").is_err());
    }
}
