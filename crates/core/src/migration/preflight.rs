//! The migration pre-flight (issue 19): batchless's buildspec with its Ruby shim, the settings
//! the build gets (policy, lock and statement timeouts, lock-timeout retries), and the gate that
//! decides from the pre-flight's findings whether the run may migrate.

use std::collections::BTreeMap;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::migration::report::Preflight;

const BUILDSPEC: &str = include_str!("../../../../infra/migration/buildspec.yml");
/// The Ruby shim (`lib/tasks/batchless_migration.rake` in the build's checkout).
pub const SHIM: &str = include_str!("../../../../infra/migration/batchless_migration.rake");
/// Where the build's artifacts (preflight.json, migrate.json) go under the logs bucket:
/// `migrations/<execution name>/report/<file>`.
pub const REPORT_PREFIX: &str = "migrations";
pub const REPORT_NAME: &str = "report";
/// The approved build's artifacts (`migrations/<execution name>/approved/<file>`): never
/// mistaken for the first build's.
pub const APPROVED_REPORT_NAME: &str = "approved";

/// Where a build's reports go: the first build's, or the approved build's.
pub const fn report_name(approved: bool) -> &'static str {
    if approved {
        APPROVED_REPORT_NAME
    } else {
        REPORT_NAME
    }
}

/// The buildspec every migration build runs (its `buildspecOverride`); built once per process.
pub fn buildspec() -> &'static str {
    static SPEC: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        BUILDSPEC.replace(
            "@@SHIM_BASE64@@",
            &base64::engine::general_purpose::STANDARD.encode(SHIM),
        )
    });
    &SPEC
}

/// The S3 key of one of a run's report files (of its first build, or of its approved build).
pub fn report_key(execution_name: &str, approved: bool, file: &str) -> String {
    format!(
        "{REPORT_PREFIX}/{execution_name}/{}/{file}",
        report_name(approved)
    )
}

/// What the environment does with findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Findings are reported; the migration runs (staging's default).
    Report,
    /// Findings need a recorded approval before `db:migrate` runs (production's default).
    RequireApproval,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Report => "report",
            Policy::RequireApproval => "require-approval",
        }
    }

    /// `MIGRATION_FINDINGS_POLICY`: `report`, `require-approval`, or `environment-default`
    /// (production requires an approval, every other environment reports).
    pub fn resolve(setting: &str, environment: &str) -> Result<Policy, Error> {
        match setting {
            "report" => Ok(Policy::Report),
            "require-approval" => Ok(Policy::RequireApproval),
            "environment-default" | "" => Ok(if environment == "production" {
                Policy::RequireApproval
            } else {
                Policy::Report
            }),
            other => Err(Error::config(format!(
                "MIGRATION_FINDINGS_POLICY must be report, require-approval or environment-default, not {other:?}"
            ))),
        }
    }
}

/// The migration session's settings, from configuration (template parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub policy: Policy,
    /// PostgreSQL `lock_timeout` of the migration session, e.g. `5s`.
    pub lock_timeout: String,
    /// PostgreSQL `statement_timeout`, e.g. `30min`.
    pub statement_timeout: String,
    /// How many times a migration that timed out on a lock is run again.
    pub lock_retries: u32,
    /// The first pause between attempts; doubled each time, at most 60 s.
    pub lock_retry_backoff_seconds: u32,
    /// The branch every migrated commit must be on (`MIGRATION_DEPLOY_BRANCH`; `None`: not
    /// checked). The build checks it before any of the app's code runs.
    pub deploy_branch: Option<String>,
}

/// `MIGRATION_DEPLOY_BRANCH`: empty (no check) or a branch name git accepts and the build's
/// shell and report can carry as is: `[A-Za-z0-9._/-]`, not starting with `-` or `/`, no `..`,
/// not ending with `/`, `.` or `.lock`.
pub fn deploy_branch(value: &str) -> Result<Option<String>, Error> {
    if value.is_empty() {
        return Ok(None);
    }
    let chars_ok = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'));
    let ok = chars_ok
        && value.len() <= 200
        && !value.starts_with(['-', '/', '.'])
        && !value.ends_with(['/', '.'])
        && !value.ends_with(".lock")
        && !value.contains("..")
        && !value.contains("//");
    if ok {
        Ok(Some(value.to_string()))
    } else {
        Err(Error::config(format!(
            "MIGRATION_DEPLOY_BRANCH must be empty or a branch name like main or release/prod, not {value:?}"
        )))
    }
}

fn pg_duration(name: &str, value: &str) -> Result<String, Error> {
    let re = regex_lite::Regex::new(r"^[1-9][0-9]{0,6}(ms|s|min|h)$").expect("valid");
    if re.is_match(value) {
        Ok(value.to_string())
    } else {
        Err(Error::config(format!(
            "{name} must be a PostgreSQL duration like 5s, 500ms, 30min or 1h, not {value:?}"
        )))
    }
}

impl Settings {
    pub fn from_values(
        environment: &str,
        policy: &str,
        lock_timeout: &str,
        statement_timeout: &str,
        lock_retries: &str,
        backoff: &str,
    ) -> Result<Settings, Error> {
        let lock_retries: u32 = lock_retries
            .parse()
            .ok()
            .filter(|n| *n <= 10)
            .ok_or_else(|| Error::config("MIGRATION_LOCK_RETRIES must be 0..=10"))?;
        let lock_retry_backoff_seconds: u32 = backoff
            .parse()
            .ok()
            .filter(|n| (1..=60).contains(n))
            .ok_or_else(|| Error::config("MIGRATION_LOCK_RETRY_BACKOFF_SECONDS must be 1..=60"))?;
        Ok(Settings {
            policy: Policy::resolve(policy, environment)?,
            lock_timeout: pg_duration("MIGRATION_LOCK_TIMEOUT", lock_timeout)?,
            statement_timeout: pg_duration("MIGRATION_STATEMENT_TIMEOUT", statement_timeout)?,
            lock_retries,
            lock_retry_backoff_seconds,
            deploy_branch: None,
        })
    }

    pub fn from_env(environment: &str) -> Result<Settings, Error> {
        use crate::platform::config::optional;
        let mut settings = Settings::from_values(
            environment,
            &optional("MIGRATION_FINDINGS_POLICY").unwrap_or_default(),
            &optional("MIGRATION_LOCK_TIMEOUT").unwrap_or_else(|| "5s".into()),
            &optional("MIGRATION_STATEMENT_TIMEOUT").unwrap_or_else(|| "30min".into()),
            &optional("MIGRATION_LOCK_RETRIES").unwrap_or_else(|| "3".into()),
            &optional("MIGRATION_LOCK_RETRY_BACKOFF_SECONDS").unwrap_or_else(|| "2".into()),
        )?;
        settings.deploy_branch =
            deploy_branch(&optional("MIGRATION_DEPLOY_BRANCH").unwrap_or_default())?;
        Ok(settings)
    }

    /// The build's variables the shim reads (set after the caller's overrides, so they win;
    /// `BATCHLESS_*` overrides are refused at validation anyway).
    pub fn build_environment(&self, approved_digest: Option<&str>) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "BATCHLESS_MIGRATION_POLICY".to_string(),
                self.policy.as_str().to_string(),
            ),
            ("BATCHLESS_LOCK_TIMEOUT".into(), self.lock_timeout.clone()),
            (
                "BATCHLESS_STATEMENT_TIMEOUT".into(),
                self.statement_timeout.clone(),
            ),
            (
                "BATCHLESS_LOCK_RETRIES".into(),
                self.lock_retries.to_string(),
            ),
            (
                "BATCHLESS_LOCK_RETRY_BACKOFF_SECONDS".into(),
                self.lock_retry_backoff_seconds.to_string(),
            ),
            (
                "BATCHLESS_MIGRATION_APPROVED_DIGEST".into(),
                approved_digest.unwrap_or_default().to_string(),
            ),
            (
                "BATCHLESS_DEPLOY_BRANCH".into(),
                self.deploy_branch.clone().unwrap_or_default(),
            ),
        ])
    }
}

/// What the build's deploy-branch check wrote (`source.json`, the first command of the
/// buildspec, before any of the app's code runs): written only when a deploy branch is
/// configured; on anything but `onDeployBranch: true` the build stopped there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceCheck {
    pub commit: String,
    pub deploy_branch: String,
    /// `None`: the check could not run (`error` says why).
    pub on_deploy_branch: Option<bool>,
    #[serde(default)]
    pub error: Option<String>,
}

impl SourceCheck {
    /// `Ok` when the commit is on the deploy branch; otherwise `NotOnDeployBranch`, saying
    /// what to do.
    pub fn verdict(&self) -> Result<(), Error> {
        let short = crate::migration::short(&self.commit);
        let branch = &self.deploy_branch;
        match (self.on_deploy_branch, &self.error) {
            (Some(true), _) => Ok(()),
            (Some(false), _) => Err(Error::NotOnDeployBranch(format!(
                "commit {short} is not on the deploy branch {branch} (MigrationDeployBranch): the build \
                 stopped before running any of the app's code, db:migrate did not run. Merge it into \
                 {branch} and migrate from there."
            ))),
            (None, why) => Err(Error::NotOnDeployBranch(format!(
                "could not check whether commit {short} is on the deploy branch {branch}: {}; the build \
                 stopped before running any of the app's code, db:migrate did not run. The build must be able \
                 to fetch {branch} from the app's repository (the project's source credentials).",
                why.as_deref().unwrap_or("no reason given")
            ))),
        }
    }
}

/// What the pre-flight's findings mean for this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Gate {
    /// No findings.
    Pass,
    /// Findings, reported; the migration ran.
    Reported,
    /// Findings, and an approval of exactly this pending set is recorded.
    Approved,
    /// Findings (or a pre-flight that could not complete) under `require-approval`, no
    /// approval: `db:migrate` did not run.
    NeedsApproval,
    /// No pre-flight report (the build ended before it, or its artifacts were not uploaded).
    Missing,
}

/// Pure: the gate for a pre-flight under a policy, given the digest an approval binds to
/// (none can be recorded yet: see README "Migration approvals").
pub fn gate(policy: Policy, preflight: Option<&Preflight>, approved_digest: Option<&str>) -> Gate {
    let Some(p) = preflight else {
        return Gate::Missing;
    };
    let dangerous = !p.findings.is_empty() || p.error.is_some();
    match (dangerous, policy) {
        (false, _) => Gate::Pass,
        (true, Policy::Report) => Gate::Reported,
        (true, Policy::RequireApproval) => {
            if p.error.is_none()
                && approved_digest.is_some()
                && approved_digest == p.digest.as_deref()
            {
                Gate::Approved
            } else {
                Gate::NeedsApproval
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::report::tests::preflight_with;

    #[test]
    fn the_buildspec_carries_the_shim_and_stops_before_migrate_on_the_gate() {
        let spec = buildspec();
        assert!(!spec.contains("@@SHIM_BASE64@@"));
        let b64 = spec
            .lines()
            .find_map(|l| l.split("echo '").nth(1))
            .and_then(|rest| rest.split('\'').next())
            .unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), SHIM);
        let pre = spec.find("bin/rails batchless:preflight").unwrap();
        let migrate = spec.find("bin/rails db:migrate\n").unwrap();
        assert!(
            pre < migrate,
            "pre-flight runs in pre_build, before db:migrate"
        );
        assert!(spec.contains("base-directory: tmp/batchless"));
        // The shim exits 3 on the gate (a pre_build failure skips the build phase).
        assert!(SHIM.contains("exit(3) if %w[needs-approval preflight-failed]"));
    }

    #[test]
    fn the_deploy_branch_check_runs_before_anything_of_the_app() {
        // The commands (the header comments name them too).
        let spec = &buildspec()[buildspec().find("\nphases:").unwrap()..];
        let check = spec.find("git merge-base --is-ancestor").unwrap();
        let fetch = spec.find("git fetch --quiet --no-tags origin").unwrap();
        let shim = spec.find("base64 -d > lib/tasks/").unwrap();
        let rails = spec.find("bin/rails").unwrap();
        assert!(fetch < check && check < shim && shim < rails);
        assert!(spec.contains("exit 4"));
        assert!(spec.contains("> tmp/batchless/source.json"));
        assert!(buildspec().contains("  git-credential-helper: yes\n"));
    }

    #[test]
    fn the_deploy_branch_is_validated_and_reaches_the_build() {
        assert_eq!(deploy_branch("").unwrap(), None);
        for ok in ["main", "release/prod", "v1.2_x-y"] {
            assert_eq!(deploy_branch(ok).unwrap().as_deref(), Some(ok));
        }
        for bad in [
            "-main",
            "/main",
            "main/",
            "a..b",
            "a//b",
            "main.lock",
            "ma in",
            "m\"x",
            "m$(id)",
            ".hidden",
        ] {
            assert_eq!(
                deploy_branch(bad).unwrap_err().kind().name(),
                "ConfigError",
                "{bad:?}"
            );
        }
        let mut s = Settings::from_values("production", "", "5s", "30min", "3", "2").unwrap();
        assert_eq!(s.build_environment(None)["BATCHLESS_DEPLOY_BRANCH"], "");
        s.deploy_branch = Some("main".into());
        assert_eq!(s.build_environment(None)["BATCHLESS_DEPLOY_BRANCH"], "main");
    }

    #[test]
    fn a_source_check_passes_only_on_the_branch() {
        let check = |on: Option<bool>| SourceCheck {
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            deploy_branch: "main".into(),
            on_deploy_branch: on,
            error: None,
        };
        assert!(check(Some(true)).verdict().is_ok());
        for on in [Some(false), None] {
            assert_eq!(
                check(on).verdict().unwrap_err().kind().name(),
                "NotOnDeployBranch"
            );
        }
    }

    #[test]
    fn policy_defaults_follow_the_environment() {
        assert_eq!(
            Policy::resolve("environment-default", "production").unwrap(),
            Policy::RequireApproval
        );
        assert_eq!(
            Policy::resolve("environment-default", "staging").unwrap(),
            Policy::Report
        );
        assert_eq!(
            Policy::resolve("report", "production").unwrap(),
            Policy::Report
        );
        assert_eq!(
            Policy::resolve("lax", "staging").unwrap_err().kind().name(),
            "ConfigError"
        );
    }

    #[test]
    fn settings_are_validated_and_reach_the_build() {
        let s = Settings::from_values("production", "", "5s", "30min", "3", "2").unwrap();
        let env = s.build_environment(None);
        assert_eq!(env["BATCHLESS_MIGRATION_POLICY"], "require-approval");
        assert_eq!(env["BATCHLESS_LOCK_TIMEOUT"], "5s");
        assert_eq!(env["BATCHLESS_LOCK_RETRIES"], "3");
        assert_eq!(env["BATCHLESS_MIGRATION_APPROVED_DIGEST"], "");
        for bad in [
            ("5", "30min", "3", "2"),
            ("5s; DROP TABLE users", "30min", "3", "2"),
            ("5s", "30min", "11", "2"),
            ("5s", "30min", "3", "0"),
        ] {
            assert!(
                Settings::from_values("staging", "report", bad.0, bad.1, bad.2, bad.3).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn findings_need_an_approval_of_this_pending_set_only_under_require_approval() {
        let with = preflight_with(1);
        let none = preflight_with(0);
        assert_eq!(gate(Policy::Report, Some(&with), None), Gate::Reported);
        assert_eq!(gate(Policy::RequireApproval, Some(&none), None), Gate::Pass);
        assert_eq!(
            gate(Policy::RequireApproval, Some(&with), None),
            Gate::NeedsApproval
        );
        assert_eq!(
            gate(Policy::RequireApproval, Some(&with), Some("other")),
            Gate::NeedsApproval
        );
        assert_eq!(
            gate(Policy::RequireApproval, Some(&with), with.digest.as_deref()),
            Gate::Approved
        );
        let mut failed = preflight_with(0);
        failed.error =
            Some("PG::InsufficientPrivilege: permission denied to create database".into());
        assert_eq!(
            gate(
                Policy::RequireApproval,
                Some(&failed),
                failed.digest.as_deref()
            ),
            Gate::NeedsApproval,
            "a pre-flight that could not complete is not approvable"
        );
        assert_eq!(gate(Policy::Report, Some(&failed), None), Gate::Reported);
        assert_eq!(gate(Policy::RequireApproval, None, None), Gate::Missing);
    }
}
