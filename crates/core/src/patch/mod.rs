//! The data-patch workflow's domain: a request (a rake task or a `rails runner` script at a
//! pinned commit) validated strictly, the exact command it becomes, and the hash that binds an
//! approval to that request.
//!
//! - [`approval`]: the one rule set for decisions (Slack button or CLI).
//! - [`store`]: the patch records (DynamoDB) and the decision flow.
//! - [`check`]: the audit check of a build against its approved request, and the daily sweep.
//! - [`workflow`]: the state the workflow carries and how a finished state is recorded.
//! - [`steps`]: one module per Lambda of the workflow (`functions/patch/<step>`).
//! - [`message`]: what Slack shows.

pub mod approval;
pub mod check;
pub mod message;
pub mod preview;
pub mod steps;
pub mod store;
pub mod workflow;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::platform::input::{self, InputError};
use crate::sfn::Execution;
use crate::shared::people::{People, Role};

pub const WORKFLOW: &str = "data-patch";
pub const DEFAULT_APPROVAL_TIMEOUT_SECONDS: u64 = 24 * 60 * 60;
pub const MIN_APPROVAL_TIMEOUT_SECONDS: u64 = 60;
pub const MAX_APPROVAL_TIMEOUT_SECONDS: u64 = 7 * 24 * 60 * 60;
pub const MAX_REQUIRED_APPROVALS: u32 = 5;
pub const MAX_ARGS: usize = 20;
pub const MAX_ARG_CHARS: usize = 256;
pub const MAX_REASON_CHARS: usize = 2000;
/// Files a patch writes here are uploaded next to its log (the buildspec's `artifacts`).
pub const OUTPUT_DIR: &str = "tmp/batchless-output";

/// The audit trail's event names for patches (besides the statuses `APPROVED` / `REJECTED`).
pub mod events {
    pub const REQUESTED: &str = "REQUESTED";
    pub const DECISION: &str = "DECISION";
    pub const DECISION_REFUSED: &str = "DECISION_REFUSED";
    pub const BUILD_STARTED: &str = "BUILD_STARTED";
    pub const VERDICT: &str = "VERDICT";
    pub const FINISHED: &str = "FINISHED";
    pub const CANCEL_REQUESTED: &str = "CANCEL_REQUESTED";
    pub const UNAPPROVED_BUILD: &str = "UNAPPROVED_BUILD";
    /// The dry run's build started / its preview recorded (issue 18).
    pub const DRY_RUN_STARTED: &str = "DRY_RUN_STARTED";
    pub const PREVIEWED: &str = "PREVIEWED";
    pub const REQUESTER_MISMATCH: &str = "REQUESTER_MISMATCH";
    /// The Slack alert of a sweep finding was posted.
    pub const ALERTED: &str = "ALERTED";
}

/// Build environment variables that carry the approved request into the patch build; the
/// audit check reads them back from CodeBuild.
pub mod build_env {
    pub const PATCH_ID: &str = "BATCHLESS_PATCH_ID";
    pub const COMMAND: &str = "BATCHLESS_PATCH_COMMAND";
    pub const REQUEST_HASH: &str = "BATCHLESS_PATCH_REQUEST_HASH";
    pub const OUTPUT_DIR: &str = "BATCHLESS_OUTPUT_DIR";
}

/// The status of a patch: its record, the audit trail and the execution's output (the ASL's
/// `Outcome?` routes on the stored names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    #[default]
    PendingApproval,
    Approved,
    Rejected,
    Expired,
    Cancelled,
    NotApproved,
    Running,
    Succeeded,
    Failed,
    Error,
    /// A dry-run-only request ended with its preview recorded (nothing was asked or run).
    Previewed,
    /// The execution was stopped or timed out before it could record an outcome.
    Aborted,
    TimedOut,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::PendingApproval => "PENDING_APPROVAL",
            Status::Approved => "APPROVED",
            Status::Rejected => "REJECTED",
            Status::Expired => "EXPIRED",
            Status::Cancelled => "CANCELLED",
            Status::NotApproved => "NOT_APPROVED",
            Status::Running => "RUNNING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::Error => "ERROR",
            Status::Previewed => "PREVIEWED",
            Status::Aborted => "ABORTED",
            Status::TimedOut => "TIMED_OUT",
        }
    }

    /// Nothing changes a patch in a final status any more.
    pub const fn is_final(self) -> bool {
        !matches!(
            self,
            Status::PendingApproval | Status::Approved | Status::Running
        )
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Rake,
    Runner,
}

/// What starts a data patch (console, `batchless patch submit`). Documented in README.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchRequest {
    pub ticket: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub commit: String,
    pub kind: Kind,
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub script: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    pub reason: String,
    /// The IAM principal (ARN) behind the request; the CLI fills it from STS.
    pub requested_by: String,
    #[serde(default)]
    pub approval_timeout_seconds: Option<u64>,
    /// May raise, never lower, the configured number of distinct approvers.
    #[serde(default)]
    pub required_approvals: Option<u32>,
    /// May lower, never raise, the environment's time limit of the dry run.
    #[serde(default)]
    pub dry_run_time_limit_seconds: Option<u64>,
    /// Only the dry run: its preview is recorded and posted, nobody is asked to approve and
    /// nothing runs for real (`batchless patch submit --dry-run-only`).
    #[serde(default)]
    pub dry_run_only: bool,
}

/// A validated patch: everything later steps need, decided once. `patch_id` is the
/// execution name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchRun {
    pub patch_id: String,
    pub execution_arn: String,
    pub environment: String,
    pub requested_at: String,
    pub ticket: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub commit: String,
    pub kind: Kind,
    /// The rake task or the script path.
    pub target: String,
    pub args: Vec<String>,
    /// The exact command the build runs (quoted for bash).
    pub command: String,
    pub reason: String,
    pub requester: String,
    pub requester_name: String,
    pub requester_principal: String,
    pub approval_timeout_seconds: u64,
    pub required_approvals: u32,
    /// The workflow runs the dry run before the approval request (the environment's
    /// `PATCH_DRY_RUN`); the ASL's `DryRun?` routes on it.
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run_time_limit_seconds: Option<u64>,
    /// Only the dry run (the request's `dryRunOnly`): the ASL's `PreviewOnly?` ends the run
    /// after the preview is recorded, decisions are refused, no real build starts.
    #[serde(default)]
    pub dry_run_only: bool,
    /// The digest of the recorded preview ([`preview::Preview::digest`]); set once the dry run
    /// is recorded, and then part of the request hash decisions bind to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_digest: Option<String>,
    pub request_hash: String,
}

/// What an operator may configure per stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub required_approvals: u32,
    pub default_timeout_seconds: u64,
    pub dry_run: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            required_approvals: 1,
            default_timeout_seconds: DEFAULT_APPROVAL_TIMEOUT_SECONDS,
            dry_run: true,
        }
    }
}

/// Rake task names: `namespace:task`, letters, digits, `_`, `-`, `.`, `:`; no leading `-`.
pub fn rake_task(field: &str, s: &str) -> Result<(), InputError> {
    input::accept(
        input::made_of(s, 128, b"_-.:") && !s.starts_with(['-', ':', '.']),
        field,
        s,
        "is not a safe rake task name (1-128 of [A-Za-z0-9_.:-], not starting with - : or .; shell metacharacters are refused)",
    )
}

/// Script paths: relative, inside the repository, `.rb`, safe characters only.
pub fn script_path(field: &str, s: &str) -> Result<(), InputError> {
    let ok = input::made_of(s, 256, b"_-./")
        && !s.starts_with(['/', '-', '.'])
        && s.ends_with(".rb")
        && !s.split('/').any(|part| part.is_empty() || part == "..");
    input::accept(
        ok,
        field,
        s,
        "is not a safe script path (a relative path to a .rb file inside the repository, [A-Za-z0-9_./-] only, no ..; shell metacharacters are refused)",
    )
}

/// A git ref as typed: what `git check-ref-format` allows, plus full SHAs, without anything a
/// shell or a URL would read differently.
pub fn git_ref(field: &str, s: &str) -> Result<(), InputError> {
    let ok = input::made_of(s, 200, b"_-./+@")
        && !s.starts_with(['-', '/', '.'])
        && !s.ends_with(['/', '.'])
        && !s.contains("..")
        && !s.contains("@{")
        && !s.ends_with(".lock");
    input::accept(ok, field, s, "is not a valid git ref")
}

/// Quote one word for bash: bare when it is made of safe characters, else single-quoted
/// (a `'` inside becomes `'\''`).
pub fn shell_quote(word: &str) -> String {
    let bare = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:=,@%+".contains(&b));
    if bare {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The command a patch runs, built only from the validated request.
pub fn command(kind: Kind, target: &str, args: &[String]) -> String {
    let mut words: Vec<String> = match kind {
        Kind::Rake => vec!["bin/rake".into(), target.into()],
        Kind::Runner => vec!["bin/rails".into(), "runner".into(), target.into()],
    };
    words.extend(args.iter().cloned());
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The hash an approval is bound to: what runs, where, at which commit, for whom, why, and
/// (once recorded) the preview the approver was shown.
pub fn request_hash(run: &PatchRun) -> String {
    let mut v = json!({
        "patchId": run.patch_id,
        "environment": run.environment,
        "ticket": run.ticket,
        "commit": run.commit,
        "kind": run.kind,
        "target": run.target,
        "args": run.args,
        "command": run.command,
        "reason": run.reason,
        "requester": run.requester,
        "requiredApprovals": run.required_approvals,
    });
    if let Some(d) = &run.preview_digest {
        v["previewDigest"] = json!(d);
    }
    if let Some(t) = run.dry_run_time_limit_seconds {
        v["dryRunTimeLimitSeconds"] = json!(t);
    }
    if run.dry_run_only {
        v["dryRunOnly"] = json!(true);
    }
    hex::encode(Sha256::digest(
        crate::shared::audit::canonical_json(&v).as_bytes(),
    ))
}

/// Validate a request strictly; nothing is recorded or started for a bad one.
pub fn validate(
    input: Value,
    execution: &Execution,
    environment: &str,
    people: &People,
    policy: Policy,
) -> Result<PatchRun, InputError> {
    let req: PatchRequest = input::parse_strict(input)?;
    input::identifier("ticket", &req.ticket, 64)?;
    git_ref("ref", &req.git_ref)?;
    let commit = input::commit_sha("commit", &req.commit)?;
    let target = match (req.kind, &req.task, &req.script) {
        (Kind::Rake, Some(task), None) => {
            rake_task("task", task)?;
            task.clone()
        }
        (Kind::Runner, None, Some(script)) => {
            script_path("script", script)?;
            script.clone()
        }
        (Kind::Rake, _, _) => {
            return Err(InputError::field(
                "task",
                "a rake patch names a `task` (and no `script`)",
            ))
        }
        (Kind::Runner, _, _) => {
            return Err(InputError::field(
                "script",
                "a runner patch names a `script` (and no `task`)",
            ))
        }
    };
    if req.args.len() > MAX_ARGS {
        return Err(InputError::field(
            "args",
            format!("at most {MAX_ARGS} arguments"),
        ));
    }
    for (i, a) in req.args.iter().enumerate() {
        let field = format!("args[{i}]");
        input::visible_text(&field, a, MAX_ARG_CHARS)?;
        if a.contains(['\n', '\t']) {
            return Err(InputError::field(&field, "must be a single line"));
        }
    }
    if req.reason.trim().is_empty() {
        return Err(InputError::field(
            "reason",
            "must say why the data is patched",
        ));
    }
    input::visible_text("reason", &req.reason, MAX_REASON_CHARS)?;
    let person = people.by_principal(&req.requested_by).ok_or_else(|| {
        InputError::field(
            "requestedBy",
            format!(
                "{:?} is nobody in the people map of {environment}",
                crate::platform::input::truncate(&req.requested_by, 120)
            ),
        )
    })?;
    if !person.has_role(Role::Requester) {
        return Err(InputError::field(
            "requestedBy",
            format!("{} does not have the requester role", person.id),
        ));
    }
    let timeout = req
        .approval_timeout_seconds
        .unwrap_or(policy.default_timeout_seconds);
    if !(MIN_APPROVAL_TIMEOUT_SECONDS..=MAX_APPROVAL_TIMEOUT_SECONDS).contains(&timeout) {
        return Err(InputError::field(
            "approvalTimeoutSeconds",
            format!("must be {MIN_APPROVAL_TIMEOUT_SECONDS}..={MAX_APPROVAL_TIMEOUT_SECONDS}"),
        ));
    }
    let required = req.required_approvals.unwrap_or(policy.required_approvals);
    if required < policy.required_approvals || required > MAX_REQUIRED_APPROVALS {
        return Err(InputError::field(
            "requiredApprovals",
            format!(
                "must be {}..={MAX_REQUIRED_APPROVALS} (the environment requires at least {})",
                policy.required_approvals, policy.required_approvals
            ),
        ));
    }
    if req.dry_run_only && !policy.dry_run {
        return Err(InputError::field(
            "dryRunOnly",
            format!("the dry run is off in {environment} (PATCH_DRY_RUN=off): there is no preview to run"),
        ));
    }
    let mut run = PatchRun {
        patch_id: execution.name.clone(),
        execution_arn: execution.id.clone(),
        environment: environment.to_string(),
        requested_at: crate::platform::time::rfc3339(crate::platform::time::parse(
            "execution.startTime",
            &execution.start_time,
        )?),
        ticket: req.ticket,
        git_ref: req.git_ref,
        command: command(req.kind, &target, &req.args),
        commit,
        kind: req.kind,
        target,
        args: req.args,
        reason: req.reason,
        requester: person.id.clone(),
        requester_name: person.name.clone(),
        requester_principal: req.requested_by,
        approval_timeout_seconds: timeout,
        required_approvals: required,
        dry_run: policy.dry_run,
        dry_run_time_limit_seconds: match req.dry_run_time_limit_seconds {
            Some(t) if t == 0 || t > 3600 => {
                return Err(InputError::field(
                    "dryRunTimeLimitSeconds",
                    "must be 1..=3600 (the environment's limit applies if lower)",
                ))
            }
            t => t,
        },
        dry_run_only: req.dry_run_only,
        preview_digest: None,
        request_hash: String::new(),
    };
    run.request_hash = request_hash(&run);
    Ok(run)
}

/// The patch an execution of the data-patch workflow is about (its execution name).
pub fn patch_id_of_execution(execution_arn: &str) -> Option<&str> {
    let (_, rest) = execution_arn.split_once(":execution:")?;
    let (state_machine, name) = rest.split_once(':')?;
    state_machine
        .ends_with(&format!("-{WORKFLOW}"))
        .then_some(name)
}

/// A Step Functions-safe execution name for a patch: `patch-<ticket>-<utc stamp>`.
pub fn execution_name(ticket: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    let t: String = ticket.chars().take(40).collect();
    format!(
        "patch-{}-{}",
        crate::sfn::execution::name_safe(&t),
        now.format("%Y%m%dT%H%M%S%3fZ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn people() -> People {
        People::parse(crate::shared::people::EMBEDDED, "staging").unwrap()
    }

    pub(crate) fn exec() -> Execution {
        Execution {
            id: "arn:aws:states:us-east-1:123456789012:execution:batchless-staging-data-patch:patch-1".into(),
            name: "patch-1".into(),
            start_time: "2026-11-28T13:00:00.123+00:00".into(),
        }
    }

    pub(crate) fn request() -> Value {
        json!({
            "ticket": "OPS-42",
            "ref": "fix/backfill",
            "commit": "0123456789abcdef0123456789abcdef01234567",
            "kind": "rake",
            "task": "data:backfill_totals",
            "args": ["2026-11-01", "it's fine; rm -rf /"],
            "reason": "totals were wrong after the import",
            "requestedBy": "arn:aws:iam::123456789012:user/bob",
        })
    }

    fn validate_json(v: Value) -> Result<PatchRun, InputError> {
        validate(v, &exec(), "staging", &people(), Policy::default())
    }

    #[test]
    fn a_valid_rake_request() {
        let run = validate_json(request()).unwrap();
        assert_eq!(run.requester, "bob");
        assert_eq!(run.patch_id, "patch-1");
        assert_eq!(run.requested_at, "2026-11-28T13:00:00Z");
        assert_eq!(
            run.command,
            r"bin/rake data:backfill_totals 2026-11-01 'it'\''s fine; rm -rf /'"
        );
        assert_eq!(run.approval_timeout_seconds, 86400);
        assert_eq!(run.required_approvals, 1);
        assert_eq!(run.request_hash, request_hash(&run));
    }

    #[test]
    fn a_dry_run_only_request_needs_the_dry_run_and_is_bound_into_the_hash() {
        let mut req = request();
        req["dryRunOnly"] = json!(true);
        let only = validate_json(req.clone()).unwrap();
        assert!(only.dry_run_only && only.dry_run);
        assert_ne!(
            only.request_hash,
            validate_json(request()).unwrap().request_hash
        );
        let off = Policy {
            dry_run: false,
            ..Policy::default()
        };
        let err = validate(req, &exec(), "staging", &people(), off).unwrap_err();
        assert!(
            err.to_string()
                .contains("field `dryRunOnly`: the dry run is off in staging"),
            "{err}"
        );
    }

    #[test]
    fn quoting_round_trips_through_bash() {
        let args: Vec<String> = [
            "plain",
            "two words",
            "quote'in",
            "$(id)",
            "`x`",
            "a\"b",
            "",
            "*",
            "é",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let cmd = command(Kind::Runner, "script/x.rb", &args);
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "printf '%s\\n' {}",
                cmd.trim_start_matches("bin/rails runner script/x.rb")
            ))
            .output()
            .unwrap();
        let words: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
        assert_eq!(words, args.iter().map(String::as_str).collect::<Vec<_>>());
    }

    #[test]
    fn a_valid_runner_request() {
        let mut r = request();
        r["kind"] = json!("runner");
        r.as_object_mut().unwrap().remove("task");
        r["script"] = json!("script/backfill.rb");
        r["args"] = json!([]);
        let run = validate_json(r).unwrap();
        assert_eq!(run.command, "bin/rails runner script/backfill.rb");
    }

    #[test]
    fn shell_metacharacters_in_a_task_or_script_are_refused() {
        for task in [
            "db:seed; rm -rf /",
            "x$(id)",
            "a|b",
            "-T",
            "a b",
            "t`x`",
            "a&&b",
            "",
        ] {
            let mut r = request();
            r["task"] = json!(task);
            let e = validate_json(r).unwrap_err();
            assert!(e.message.contains("field `task`"), "{task}: {e}");
        }
        for script in [
            "../etc/passwd.rb",
            "/abs.rb",
            "script/x.sh",
            "script/a;b.rb",
            "script//x.rb",
            "-x.rb",
        ] {
            let mut r = request();
            r["kind"] = json!("runner");
            r.as_object_mut().unwrap().remove("task");
            r["script"] = json!(script);
            let e = validate_json(r).unwrap_err();
            assert!(e.message.contains("field `script`"), "{script}: {e}");
        }
    }

    #[test]
    fn bad_requests_name_the_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("commit", json!("HEAD"), "field `commit`"),
            ("ref", json!("a..b"), "field `ref`"),
            ("ticket", json!("OPS 1"), "field `ticket`"),
            ("reason", json!("  "), "field `reason`"),
            (
                "requestedBy",
                json!("arn:aws:iam::123456789012:user/mallory"),
                "nobody in the people map",
            ),
            (
                "requestedBy",
                json!("arn:aws:iam::123456789012:user/carol"),
                "requester role",
            ),
            (
                "approvalTimeoutSeconds",
                json!(5),
                "field `approvalTimeoutSeconds`",
            ),
            ("requiredApprovals", json!(0), "field `requiredApprovals`"),
            ("requiredApprovals", json!(9), "field `requiredApprovals`"),
            ("args", json!(["a\nb"]), "field `args[0]`"),
            ("script", json!("script/x.rb"), "field `task`"),
            ("surprise", json!(1), "unknown field `surprise`"),
        ];
        for (field, value, expect) in cases {
            let mut r = request();
            r[field] = value;
            let e = validate_json(r).unwrap_err();
            assert!(e.message.contains(expect), "{field}: {e}");
        }
    }

    #[test]
    fn the_request_hash_binds_what_runs() {
        let a = validate_json(request()).unwrap();
        let mut r = request();
        r["commit"] = json!("1123456789abcdef0123456789abcdef01234567");
        let b = validate_json(r).unwrap();
        assert_ne!(a.request_hash, b.request_hash);
        let mut r = request();
        r["args"] = json!(["2026-11-02"]);
        assert_ne!(validate_json(r).unwrap().request_hash, a.request_hash);
    }

    #[test]
    fn patch_executions_are_recognized() {
        assert_eq!(
            patch_id_of_execution(
                "arn:aws:states:us-east-1:1:execution:batchless-staging-data-patch:patch-OPS-1-x"
            ),
            Some("patch-OPS-1-x")
        );
        assert_eq!(
            patch_id_of_execution(
                "arn:aws:states:us-east-1:1:execution:batchless-staging-migration:m1"
            ),
            None
        );
    }

    #[test]
    fn execution_names_are_safe() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-28T13:00:00.5Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            execution_name("OPS-42", t),
            "patch-OPS-42-20261128T130000500Z"
        );
        assert_eq!(
            execution_name("a/b:c", t),
            "patch-a-b-c-20261128T130000500Z"
        );
    }
}
