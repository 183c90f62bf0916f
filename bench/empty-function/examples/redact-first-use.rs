//! How long batchless-core's redactor takes on first use (issue 21, start-up analysis): the
//! functions build it lazily on their first `redact()`, inside their first event. This compiles
//! the very same `crates/core/src/platform/redact.rs` (by path, as bench/scanner does with scan.rs) and
//! times `Redactor::new` and the first and second `redact` of a Slack-message-sized text.
//!
//!     cargo run --profile bench-dev -p empty-function --example redact-first-use

#[allow(dead_code)]
#[path = "../../../crates/core/src/platform/redact.rs"]
mod redact;

use std::time::Instant;

fn main() {
    // `ascii-only`: build only the ASCII-boundary variant, in a fresh process (no warm tables)
    if std::env::args().nth(1).as_deref() == Some("ascii-only") {
        let t = Instant::now();
        let built: Vec<regex::Regex> = redact_patterns()
            .iter()
            .map(|p| {
                regex::Regex::new(&p.replace("\\b", "(?-u:\\b)")).expect("ASCII word boundaries")
            })
            .collect();
        let n = built.len();
        println!(
            "fresh process, {n} patterns with (?-u:\\b): build {:.2} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        return;
    }
    // `lite-only`: the same 9 patterns with regex-lite (no DFAs or literal optimisations to build)
    if std::env::args().nth(1).as_deref() == Some("lite-only") {
        let t = Instant::now();
        let res: Vec<regex_lite::Regex> = redact_patterns()
            .iter()
            .map(|p| regex_lite::Regex::new(p).expect("regex-lite accepts the pattern"))
            .collect();
        let built = t.elapsed();
        let text =
            "Migration 20261201093000 succeeded on main@4f1c2e9; DATABASE_URL=postgres://u:p@h/db"
                .repeat(8);
        let t = Instant::now();
        let hits = res.iter().filter(|re| re.is_match(&text)).count();
        println!(
            "fresh process, {} patterns with regex-lite: build {:.2} ms; first is_match over all ({} bytes) {:.2} ms ({hits} match)",
            res.len(),
            built.as_secs_f64() * 1e3,
            text.len(),
            t.elapsed().as_secs_f64() * 1e3
        );
        return;
    }
    let text = "Migration 20261201093000 succeeded on main@4f1c2e9 in 312 s; log: \
                s3://batchless-staging-logs-123456789012/migration/run-1/build.log \
                (console: https://console.aws.amazon.com/codesuite/codebuild/projects/x)"
        .repeat(3);
    let t = Instant::now();
    let r = redact::Redactor::new(&[]).expect("default rules compile");
    let built = t.elapsed();
    let t = Instant::now();
    let out = r.redact(&text);
    let first = t.elapsed();
    let t = Instant::now();
    let again = r.redact(&text);
    let second = t.elapsed();
    assert_eq!(out, again);
    println!(
        "Redactor::new: {:.2} ms; first redact ({} bytes): {:.2} ms; second: {:.3} ms",
        built.as_secs_f64() * 1e3,
        text.len(),
        first.as_secs_f64() * 1e3,
        second.as_secs_f64() * 1e3
    );
    // The proposal: ASCII word boundaries (`(?-u:\b)`: the tokens the rules look for are ASCII),
    // so that no Unicode word tables are built; everything else as it is.
    let t = Instant::now();
    let ascii: Vec<regex::Regex> = redact_patterns()
        .iter()
        .map(|p| regex::Regex::new(&p.replace("\\b", "(?-u:\\b)")).expect("ASCII word boundaries"))
        .collect();
    let built_ascii = t.elapsed();
    let t = Instant::now();
    let hits = ascii.iter().filter(|re| re.is_match(&text)).count();
    let first_ascii = t.elapsed();
    println!(
        "same patterns with (?-u:\\b): build {:.2} ms; first is_match over all {:.2} ms ({hits} match)",
        built_ascii.as_secs_f64() * 1e3,
        first_ascii.as_secs_f64() * 1e3
    );
}

/// The default rules' patterns, read from the source so that they cannot drift.
fn redact_patterns() -> Vec<String> {
    let src = include_str!("../../../crates/core/src/platform/redact.rs");
    let body = &src[src.find("fn default_rules").expect("default_rules")
        ..src.find("impl Redactor").expect("impl")];
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = [rest.find("r\""), rest.find("r#\"")]
        .into_iter()
        .flatten()
        .min()
    {
        let raw_hash = rest[i..].starts_with("r#");
        let start = i + if raw_hash { 3 } else { 2 };
        let end_pat = if raw_hash { "\"#" } else { "\"" };
        let end = start + rest[start..].find(end_pat).expect("end of raw string");
        let pattern = &rest[start..end];
        if pattern.contains('(') || pattern.contains('\\') {
            out.push(pattern.to_string());
        }
        rest = &rest[end + end_pat.len()..];
    }
    out
}
