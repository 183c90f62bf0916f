//! The dry run (issue 18): batchless's own buildspecs for the patch project (the dry run and
//! the real run, both through the Ruby shim `infra/patch/patch_shim.rb`, embedded here and
//! written into the build by the buildspec itself), the measure the shim writes, the preview
//! stored on the patch record, its digest (joined into the request hash decisions bind to), and
//! the comparison of the real run with its preview.
//!
//! Where the measure goes: the shim writes one JSON file; the build uploads it as its artifacts
//! (the dry run: `s3://<logs bucket>/patches/<id>/dry-run/preview/batchless-preview.json`; the
//! real run: `s3://<logs bucket>/patches/<id>/output/batchless-measure.json`, next to the
//! patch's own output files). `record-patch` reads it from there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::platform::config;

/// The shim, as shipped with this version of batchless.
pub const SHIM: &str = include_str!("../../../../infra/patch/patch_shim.rb");
/// The file the dry run's preview is written to (relative to the build's work dir), and the
/// artifacts name and path it is uploaded under.
pub const PREVIEW_DIR: &str = "tmp/batchless-preview";
pub const PREVIEW_FILE: &str = "batchless-preview.json";
pub const MEASURE_FILE: &str = "batchless-measure.json";
/// The build environment variable that names the patch a dry-run build previews (not
/// `BATCHLESS_PATCH_ID`: a dry run is not the approved run).
pub const PREVIEW_ID_ENV: &str = "BATCHLESS_PREVIEW_ID";
const MAX_TABLES: usize = 200;
const MAX_JOB_CLASSES: usize = 100;
const MAX_NAME_CHARS: usize = 200;
const MAX_TAIL_CHARS: usize = 4000;

/// The per-environment settings of the dry run (template parameters → function environment).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// `PATCH_DRY_RUN` = `on` (default) | `off`.
    pub enabled: bool,
    /// `PATCH_FAILED_PREVIEW_APPROVABLE` = `no` (default) | `yes`: may a patch whose dry run
    /// failed or was cut short still be approved?
    pub failed_approvable: bool,
    pub lock_timeout_ms: u64,
    pub statement_timeout_ms: u64,
    pub time_limit_seconds: u64,
    /// `PATCH_PREVIEW_FLAG_FACTOR`: a real count off by more than this factor is flagged.
    pub flag_factor: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            failed_approvable: false,
            lock_timeout_ms: 2000,
            statement_timeout_ms: 30_000,
            time_limit_seconds: 300,
            flag_factor: 2.0,
        }
    }
}

fn flag(name: &str, default: bool, on: &str, off: &str) -> Result<bool, Error> {
    match config::optional(name).as_deref() {
        None | Some("") => Ok(default),
        Some(v) if v == on => Ok(true),
        Some(v) if v == off => Ok(false),
        Some(v) => Err(Error::config(format!(
            "{name} must be {on} or {off}, got {v:?}"
        ))),
    }
}

fn number(name: &str, default: u64, range: std::ops::RangeInclusive<u64>) -> Result<u64, Error> {
    match config::optional(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                Error::config(format!(
                    "{name} must be a whole number in {range:?}, got {v:?}"
                ))
            }),
    }
}

impl Settings {
    pub fn from_env() -> Result<Self, Error> {
        let d = Settings::default();
        Ok(Settings {
            enabled: flag("PATCH_DRY_RUN", d.enabled, "on", "off")?,
            failed_approvable: flag(
                "PATCH_FAILED_PREVIEW_APPROVABLE",
                d.failed_approvable,
                "yes",
                "no",
            )?,
            lock_timeout_ms: number(
                "PATCH_DRY_RUN_LOCK_TIMEOUT_MS",
                d.lock_timeout_ms,
                1..=60_000,
            )?,
            statement_timeout_ms: number(
                "PATCH_DRY_RUN_STATEMENT_TIMEOUT_MS",
                d.statement_timeout_ms,
                1..=600_000,
            )?,
            time_limit_seconds: number(
                "PATCH_DRY_RUN_TIME_LIMIT_SECONDS",
                d.time_limit_seconds,
                5..=3600,
            )?,
            flag_factor: match config::optional("PATCH_PREVIEW_FLAG_FACTOR") {
                None => d.flag_factor,
                Some(v) => v.parse::<f64>().ok().filter(|f| *f >= 1.0).ok_or_else(|| {
                    Error::config(format!(
                        "PATCH_PREVIEW_FLAG_FACTOR must be a number >= 1, got {v:?}"
                    ))
                })?,
            },
        })
    }

    /// The time limit of one patch's dry run: the environment's, or less if the request asks.
    pub fn time_limit_for(&self, requested: Option<u64>) -> u64 {
        requested.map_or(self.time_limit_seconds, |r| {
            r.min(self.time_limit_seconds).max(1)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    DryRun,
    Run,
}

/// The shim as the buildspec carries it: gzip, then base64 on one line (the build log prints
/// every command it runs; the plain text printed the whole shim, ~15 KB, in each build's log).
/// Deterministic (the gzip header's time is 0), so the sweep's rebuilt buildspec matches.
/// Computed once per process: every buildspec (and the sweep's rebuild of each) reuses it.
pub fn shim_payload() -> &'static str {
    static PAYLOAD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        use base64::Engine;
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(SHIM.as_bytes()).expect("writing to memory");
        base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("writing to memory"))
    });
    &PAYLOAD
}

/// batchless's buildspec for a patch build: the shim is written from the buildspec itself
/// (`shim_payload`, decoded in the build: no variable an override could set) and runs the approved command
/// (`$BATCHLESS_PATCH_COMMAND`, built and quoted by batchless from the request only).
pub fn buildspec(mode: Mode, s: &Settings, time_limit_seconds: u64) -> String {
    let (id_var, mode_arg, out, header) = match mode {
        Mode::DryRun => (
            PREVIEW_ID_ENV,
            "dry-run",
            format!("{PREVIEW_DIR}/{PREVIEW_FILE}"),
            "dry run (one transaction, always rolled back)",
        ),
        Mode::Run => (
            "BATCHLESS_PATCH_ID",
            "run",
            format!("${{BATCHLESS_OUTPUT_DIR}}/{MEASURE_FILE}"),
            "run",
        ),
    };
    let artifacts = match mode {
        Mode::DryRun => {
            format!("artifacts:\n  base-directory: {PREVIEW_DIR}\n  files:\n    - {PREVIEW_FILE}\n")
        }
        Mode::Run => {
            "artifacts:\n  base-directory: $BATCHLESS_OUTPUT_DIR\n  files:\n    - '**/*'\n"
                .to_string()
        }
    };
    let shim = shim_payload();
    format!(
        r#"version: 0.2
env:
  shell: bash
phases:
  pre_build:
    commands:
      - echo "batchless data patch ${{{id_var}:?not started by the data-patch workflow}} {header} at ${{CODEBUILD_RESOLVED_SOURCE_VERSION}}"
      - echo "command - ${{BATCHLESS_PATCH_COMMAND}}"
      - mkdir -p "${{BATCHLESS_OUTPUT_DIR}}" "{PREVIEW_DIR}" && touch "${{BATCHLESS_OUTPUT_DIR}}/.batchless"
      - |
        mkdir -p "/tmp/batchless-${{CODEBUILD_BUILD_ID##*:}}"
        echo '{shim}' | base64 -d | gunzip > "/tmp/batchless-${{CODEBUILD_BUILD_ID##*:}}/patch_shim.rb"
  build:
    commands:
      - eval "ruby /tmp/batchless-${{CODEBUILD_BUILD_ID##*:}}/patch_shim.rb {mode_arg} \"{out}\" {lock} {stmt} {limit} -- ${{BATCHLESS_PATCH_COMMAND}}"
  post_build:
    commands:
      - echo "patch ${{{id_var}}} {mode_arg} build status ${{CODEBUILD_BUILD_SUCCEEDING}}"
{artifacts}"#,
        lock = s.lock_timeout_ms,
        stmt = s.statement_timeout_ms,
        limit = time_limit_seconds,
    )
}

/// How the command ended in the dry run (or the real run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Exit status 0.
    Ok,
    /// A non-zero exit status.
    Exited,
    /// An exception ended the command.
    Raised,
    /// The total time limit or the statement timeout cut it short.
    TimedOut,
    /// It waited on a lock longer than the lock timeout.
    LockBound,
    /// The build wrote no preview (it failed before the shim could, or was stopped).
    Missing,
}

impl Outcome {
    pub fn describe(self) -> &'static str {
        match self {
            Outcome::Ok => "completed",
            Outcome::Exited => "failed (non-zero exit status)",
            Outcome::Raised => "failed (raised)",
            Outcome::TimedOut => "cut short (time limit)",
            Outcome::LockBound => "lock-bound (waited on a lock held by another session)",
            Outcome::Missing => "no preview (the dry-run build did not produce one)",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.inserted + self.updated + self.deleted
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasureError {
    pub class: String,
    pub message: String,
}

/// What the shim measured (its JSON, checked and bounded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Measure {
    pub mode: String,
    pub outcome: Outcome,
    pub exit_status: i64,
    #[serde(default)]
    pub error: Option<MeasureError>,
    pub duration_ms: u64,
    #[serde(default)]
    pub tables: BTreeMap<String, Counts>,
    #[serde(default)]
    pub jobs: BTreeMap<String, u64>,
    #[serde(default)]
    pub mails: u64,
    #[serde(default)]
    pub blocked_connections: BTreeMap<String, u64>,
    #[serde(default)]
    pub output_tail: String,
    #[serde(default)]
    pub rolled_back: bool,
    #[serde(default)]
    pub measured: bool,
    #[serde(default)]
    pub unmeasured_reason: Option<String>,
}

fn clean(s: &str, max: usize) -> String {
    let t: String = s
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(max)
        .collect();
    crate::platform::redact::redact(&t).into_owned()
}

/// Parse the shim's file: it must say what it is; names and text are bounded and redacted.
pub fn parse_measure(bytes: &[u8]) -> Result<Measure, Error> {
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::Corrupt(format!("the patch measure is not JSON: {e}")))?;
    if v.get("batchless").and_then(|b| b.as_str()) != Some("patch-measure") {
        return Err(Error::Corrupt(
            "the patch measure does not say it is one".into(),
        ));
    }
    let mut m: Measure = serde_json::from_value(v)
        .map_err(|e| Error::Corrupt(format!("the patch measure has a bad shape: {e}")))?;
    if m.tables.len() > MAX_TABLES || m.jobs.len() > MAX_JOB_CLASSES {
        return Err(Error::Corrupt("the patch measure is too large".into()));
    }
    let bounded = |map: BTreeMap<String, u64>| {
        map.into_iter()
            .map(|(k, v)| (clean(&k, MAX_NAME_CHARS), v))
            .collect()
    };
    m.tables = std::mem::take(&mut m.tables)
        .into_iter()
        .map(|(k, v)| (clean(&k, MAX_NAME_CHARS), v))
        .collect();
    m.jobs = bounded(std::mem::take(&mut m.jobs));
    m.blocked_connections = bounded(std::mem::take(&mut m.blocked_connections));
    let tail: Vec<char> = m.output_tail.chars().collect();
    let start = tail.len().saturating_sub(MAX_TAIL_CHARS);
    m.output_tail = clean(&tail[start..].iter().collect::<String>(), MAX_TAIL_CHARS);
    if let Some(e) = &mut m.error {
        e.class = clean(&e.class, MAX_NAME_CHARS);
        e.message = clean(&e.message, 1000);
    }
    m.mode = clean(&m.mode, 20);
    Ok(m)
}

/// The preview stored on the patch record (`preview`) and shown to approvers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Preview {
    pub build_id: String,
    pub build_status: String,
    pub outcome: Outcome,
    #[serde(default)]
    pub measure: Option<Measure>,
    /// Why this preview is not a clean one (failed, cut short, lock-bound, missing).
    #[serde(default)]
    pub problem: Option<String>,
    pub approvable: bool,
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    /// sha256 of the canonical preview: joined into the request hash.
    pub digest: String,
}

/// Pure: the preview of a dry-run build, from its measure (or its absence).
pub fn preview(
    run: &super::PatchRun,
    build_id: &str,
    build_status: &str,
    measure: Option<Measure>,
    uri: Option<String>,
    sha256: Option<String>,
    settings: &Settings,
) -> Preview {
    let (commit, command) = (&run.commit, &run.command);
    let outcome = measure.as_ref().map_or(Outcome::Missing, |m| m.outcome);
    let problem = match (&measure, outcome) {
        (Some(m), Outcome::Ok) if !m.measured => Some(format!(
            "the dry run completed but its counts could not be read ({})",
            m.unmeasured_reason.as_deref().unwrap_or("unknown")
        )),
        (_, Outcome::Ok) => None,
        (Some(m), o) => Some(match &m.error {
            Some(e) => format!("the dry run {}: {}: {}", o.describe(), e.class, e.message),
            None => format!(
                "the dry run {} (exit status {})",
                o.describe(),
                m.exit_status
            ),
        }),
        (None, o) => Some(format!(
            "{} (build {build_id} ended {build_status})",
            o.describe()
        )),
    };
    let approvable = problem.is_none() || settings.failed_approvable;
    let digest = hex::encode(Sha256::digest(
        crate::shared::audit::canonical_json(&json!({
            "buildId": build_id,
            "commit": commit,
            "command": command,
            "outcome": outcome,
            "measure": measure,
            "sha256": sha256,
            "approvable": approvable,
        }))
        .as_bytes(),
    ));
    Preview {
        build_id: build_id.to_string(),
        build_status: build_status.to_string(),
        outcome,
        measure,
        problem,
        approvable,
        uri,
        sha256,
        digest,
    }
}

/// Pure: where the real run differs from its preview beyond `factor` (flags, not violations):
/// a table changed in the run but not in the preview, or a count off by more than the factor;
/// the same for job classes.
pub fn compare(preview: &Measure, actual: &Measure, factor: f64) -> Vec<String> {
    let mut flags = Vec::new();
    let off = |p: u64, a: u64| {
        if p == a {
            return false;
        }
        let (lo, hi) = (p.min(a) as f64, p.max(a) as f64);
        lo == 0.0 || hi / lo > factor
    };
    for (table, a) in &actual.tables {
        match preview.tables.get(table) {
            None if a.total() > 0 => flags.push(format!(
                "{table} changed in the run ({} inserted, {} updated, {} deleted) but not in the preview",
                a.inserted, a.updated, a.deleted
            )),
            None => {}
            Some(p) => {
                for (what, pv, av) in [
                    ("inserted", p.inserted, a.inserted),
                    ("updated", p.updated, a.updated),
                    ("deleted", p.deleted, a.deleted),
                ] {
                    if off(pv, av) {
                        flags.push(format!(
                            "{table}: {av} {what} in the run, {pv} in the preview"
                        ));
                    }
                }
            }
        }
    }
    for (class, a) in &actual.jobs {
        let p = preview.jobs.get(class).copied().unwrap_or(0);
        if off(p, *a) {
            flags.push(format!(
                "{class}: {a} jobs enqueued in the run, {p} in the preview"
            ));
        }
    }
    flags
}

/// Text for Slack / the CLI: the counts, one line each.
pub fn summary_lines(m: &Measure) -> Vec<String> {
    let mut lines = Vec::new();
    if m.tables.is_empty() {
        lines.push("no rows changed".to_string());
    }
    for (t, c) in &m.tables {
        lines.push(format!(
            "{t}: {} inserted, {} updated, {} deleted",
            c.inserted, c.updated, c.deleted
        ));
    }
    for (class, n) in &m.jobs {
        lines.push(format!("job {class}: {n} enqueued"));
    }
    if m.mails > 0 {
        lines.push(format!("mails: {}", m.mails));
    }
    for (to, n) in &m.blocked_connections {
        lines.push(format!(
            "outbound connection to {to}: {n} attempt(s) blocked"
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measure(json: serde_json::Value) -> Measure {
        parse_measure(json.to_string().as_bytes()).unwrap()
    }

    fn ok() -> Measure {
        measure(json!({
            "batchless": "patch-measure", "v": 1, "mode": "dry-run", "outcome": "ok",
            "exitStatus": 0, "durationMs": 1200, "measured": true, "rolledBack": true,
            "tables": {"public.orders": {"inserted": 0, "updated": 3, "deleted": 2}},
            "jobs": {"RecomputeUserTotalsJob": 1},
            "outputTail": "Connecting to postgres://app:hunter2hunter2@db/app\n",
        }))
    }

    #[test]
    fn a_measure_is_parsed_bounded_and_redacted() {
        let m = ok();
        assert_eq!(m.tables["public.orders"].updated, 3);
        assert!(!m.output_tail.contains("hunter2"), "{}", m.output_tail);
        assert!(parse_measure(br#"{"outcome":"ok"}"#).is_err());
        assert!(parse_measure(b"nope").is_err());
    }

    fn run(commit: &str) -> crate::patch::PatchRun {
        let mut r = crate::patch::steps::fixtures::run();
        r.commit = commit.into();
        r
    }

    #[test]
    fn failed_previews_are_not_approvable_by_default() {
        let s = Settings::default();
        let p = preview(&run("c"), "p:1", "SUCCEEDED", Some(ok()), None, None, &s);
        assert!(p.approvable && p.problem.is_none());
        for outcome in ["raised", "timed_out", "lock_bound", "exited"] {
            let mut v = serde_json::to_value(ok()).unwrap();
            v["batchless"] = json!("patch-measure");
            v["outcome"] = json!(outcome);
            let f = preview(
                &run("c"),
                "p:1",
                "SUCCEEDED",
                Some(measure(v)),
                None,
                None,
                &s,
            );
            assert!(!f.approvable, "{outcome}");
            assert!(f.problem.is_some());
        }
        let missing = preview(&run("c"), "p:1", "FAILED", None, None, None, &s);
        assert_eq!(missing.outcome, Outcome::Missing);
        assert!(!missing.approvable);
        let lenient = Settings {
            failed_approvable: true,
            ..s
        };
        assert!(preview(&run("c"), "p:1", "FAILED", None, None, None, &lenient).approvable);
    }

    #[test]
    fn the_digest_changes_with_the_preview() {
        let s = Settings::default();
        let a = preview(&run("c1"), "p:1", "SUCCEEDED", Some(ok()), None, None, &s);
        let b = preview(&run("c2"), "p:1", "SUCCEEDED", Some(ok()), None, None, &s);
        let mut other = ok();
        other.tables.get_mut("public.orders").unwrap().deleted = 5;
        let c = preview(&run("c1"), "p:1", "SUCCEEDED", Some(other), None, None, &s);
        assert_ne!(a.digest, b.digest);
        assert_ne!(a.digest, c.digest);
        assert_eq!(
            a.digest,
            preview(&run("c1"), "p:1", "SUCCEEDED", Some(ok()), None, None, &s).digest
        );
    }

    #[test]
    fn differences_beyond_the_factor_are_flagged() {
        let p = ok();
        assert!(compare(&p, &p, 2.0).is_empty());
        let mut a = ok();
        a.tables.get_mut("public.orders").unwrap().updated = 5; // 5/3 < 2
        assert!(compare(&p, &a, 2.0).is_empty());
        a.tables.get_mut("public.orders").unwrap().updated = 7;
        assert_eq!(compare(&p, &a, 2.0).len(), 1);
        a.tables.insert(
            "public.users".into(),
            Counts {
                updated: 1,
                ..Default::default()
            },
        );
        let flags = compare(&p, &a, 2.0);
        assert!(flags
            .iter()
            .any(|f| f.contains("public.users changed in the run")));
        a.jobs.insert("OtherJob".into(), 1);
        assert!(compare(&p, &a, 2.0).iter().any(|f| f.contains("OtherJob")));
    }

    #[test]
    fn the_buildspec_embeds_the_shim_and_reads_no_shim_variable() {
        let s = Settings::default();
        let spec = buildspec(Mode::DryRun, &s, 60);
        let y: serde_json::Value = serde_norway::from_str(&spec).unwrap();
        let pre = y["phases"]["pre_build"]["commands"][3].as_str().unwrap();
        // The shim travels compressed: decoding the command's payload gives it back whole,
        // and its text is not in the buildspec (nor so in the build's log).
        let payload = pre.split('\'').nth(1).unwrap();
        let gz =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, payload).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text)
            .unwrap();
        assert_eq!(text, SHIM);
        assert!(!pre.contains("module PatchShim"), "{pre}");
        assert!(pre.contains("| base64 -d | gunzip > "), "{pre}");
        assert!(spec.len() < SHIM.len(), "{}", spec.len());
        assert_eq!(
            spec,
            buildspec(Mode::DryRun, &s, 60),
            "rebuilt alike (the sweep's check)"
        );
        let build = y["phases"]["build"]["commands"][0].as_str().unwrap();
        assert!(
            build.contains("dry-run") && build.contains(" 2000 30000 60 -- "),
            "{build}"
        );
        assert_eq!(y["artifacts"]["base-directory"], PREVIEW_DIR);
        let run = buildspec(Mode::Run, &s, 60);
        let y: serde_json::Value = serde_norway::from_str(&run).unwrap();
        assert!(y["phases"]["build"]["commands"][0]
            .as_str()
            .unwrap()
            .contains("patch_shim.rb run "));
        assert!(run.contains(&format!("echo '{}' | base64 -d", shim_payload())));
    }
}
