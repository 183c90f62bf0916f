//! Metrics as CloudWatch embedded metric format (EMF) log lines: one JSON object on one line of
//! stdout, which Lambda sends to the function's log group and CloudWatch Logs turns into
//! metrics — no `PutMetricData` call, no extra permission. Knows no workflow: a namespace,
//! dimensions and metrics with their units.
//!
//! The shape (CloudWatch "Specification: Embedded metric format"): the root object has `_aws`
//! with `Timestamp` (epoch milliseconds) and `CloudWatchMetrics`: one directive with `Namespace`,
//! `Dimensions` (dimension sets: arrays of root member names) and `Metrics` (`Name`, `Unit`);
//! each dimension and each metric value is a root member of that name.

use serde_json::{json, Map, Value};

/// The namespace batchless publishes under.
pub const NAMESPACE: &str = "batchless";

/// The units batchless uses (CloudWatch's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    pub const fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// The EMF line. `dimensions` are (name, value) pairs; the metric is published for every
/// prefix of them that `sets` names by length (e.g. `&[2, 1]` with `[Environment, Job]`: per
/// environment and job, and per environment alone). `properties` are extra root members that
/// are not dimensions (searchable in the logs, not in the metric's identity).
pub fn line(
    namespace: &str,
    dimensions: &[(&str, &str)],
    sets: &[usize],
    metrics: &[(&str, Unit, f64)],
    properties: &[(&str, Value)],
    timestamp_ms: i64,
) -> String {
    let mut root = Map::new();
    for (k, v) in properties {
        root.insert((*k).to_string(), v.clone());
    }
    for (k, v) in dimensions {
        root.insert((*k).to_string(), Value::from(*v));
    }
    for (name, _, value) in metrics {
        root.insert((*name).to_string(), json!(value));
    }
    let dimension_sets: Vec<Vec<&str>> = sets
        .iter()
        .map(|n| {
            dimensions[..(*n).min(dimensions.len())]
                .iter()
                .map(|(k, _)| *k)
                .collect()
        })
        .collect();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": dimension_sets,
                "Metrics": metrics
                    .iter()
                    .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()}))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    Value::Object(root).to_string()
}

/// Print one EMF line to stdout, now, in [`NAMESPACE`] (see [`line`]).
pub fn emit(
    dimensions: &[(&str, &str)],
    sets: &[usize],
    metrics: &[(&str, Unit, f64)],
    properties: &[(&str, Value)],
) {
    let now = crate::platform::time::now().timestamp_millis();
    println!(
        "{}",
        line(NAMESPACE, dimensions, sets, metrics, properties, now)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_is_one_emf_object() {
        let text = line(
            "batchless",
            &[("Environment", "staging"), ("Job", "sync-exchange-rates")],
            &[2, 1],
            &[
                ("OccurrencesClaimed", Unit::Count, 1.0),
                ("LatenessMs", Unit::Milliseconds, 2500.0),
            ],
            &[("occurrence", json!("2026-11-28T13:15:00Z"))],
            1_764_335_702_000,
        );
        assert!(!text.contains('\n'), "one line: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!({
                "_aws": {
                    "Timestamp": 1_764_335_702_000_i64,
                    "CloudWatchMetrics": [{
                        "Namespace": "batchless",
                        "Dimensions": [["Environment", "Job"], ["Environment"]],
                        "Metrics": [
                            {"Name": "OccurrencesClaimed", "Unit": "Count"},
                            {"Name": "LatenessMs", "Unit": "Milliseconds"},
                        ],
                    }],
                },
                "Environment": "staging",
                "Job": "sync-exchange-rates",
                "OccurrencesClaimed": 1.0,
                "LatenessMs": 2500.0,
                "occurrence": "2026-11-28T13:15:00Z",
            })
        );
        // The spec's rules: Timestamp is an integer of milliseconds; every name a dimension set
        // or a metric refers to is a root member (a dimension's value a string, a metric's a
        // number).
        assert!(v["_aws"]["Timestamp"].is_i64());
        let d = &v["_aws"]["CloudWatchMetrics"][0];
        for set in d["Dimensions"].as_array().unwrap() {
            for name in set.as_array().unwrap() {
                assert!(v[name.as_str().unwrap()].is_string(), "{name}");
            }
        }
        for m in d["Metrics"].as_array().unwrap() {
            assert!(v[m["Name"].as_str().unwrap()].is_number(), "{m}");
        }
    }

    #[test]
    fn a_dimension_set_longer_than_the_dimensions_is_cut() {
        let v: Value = serde_json::from_str(&line(
            "n",
            &[("Environment", "e")],
            &[3],
            &[("X", Unit::Count, 0.0)],
            &[],
            0,
        ))
        .unwrap();
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Environment"]])
        );
    }
}
