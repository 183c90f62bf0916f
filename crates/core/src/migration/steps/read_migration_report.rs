//! `read-migration-report` (the `ReadReport` state): reads what the build's shim reported
//! (`preflight.json`, `migrate.json`, uploaded as the build's artifacts under
//! `s3://<logs bucket>/migrations/<execution>/report/`), applies the environment's policy to
//! the pre-flight's findings, and returns the bounded report the result card is made from.
//! Findings under `require-approval` without an approval end with the gate `needs-approval`
//! (the build itself stopped before `db:migrate` on the same gate), and the workflow asks for
//! the approval (`AskApproval`); a pre-flight that could not complete has nothing an approval
//! could bind to and fails `MigrationNeedsApproval` with why and how. After the approved
//! build (`approval` approved), the reports are that build's and the gate counts the
//! approved digest. With a deploy branch configured, the build's first command wrote
//! `source.json`; a commit off that branch (or one the build could not check) fails
//! `NotOnDeployBranch` before anything else is read. Read-only; a retried step reads the same objects.

use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_types::SdkConfig;

use crate::error::Error;
use crate::migration::preflight::{self, Gate, Settings, SourceCheck};
use crate::migration::report::{Migrate, MigrationReport, Preflight};
use crate::migration::MigrationRun;
use crate::platform::aws::{self, AwsResultExt};
use crate::platform::config;

pub struct Deps {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub settings: Settings,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            s3: aws::s3(sdk),
            bucket: config::required("LOGS_BUCKET")?,
            settings: Settings::from_env(&config::environment()?)?,
        })
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub run: MigrationRun,
    /// `$.approval`: `null` unless the run asked for one.
    pub approval: Option<crate::migration::approval::ApprovalState>,
}

pub type Output = MigrationReport;

async fn read<T: serde::de::DeserializeOwned>(deps: &Deps, key: &str) -> Result<Option<T>, Error> {
    let got = deps
        .s3
        .get_object()
        .bucket(&deps.bucket)
        .key(key)
        .send()
        .await;
    let out = match got {
        Err(e) if matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_))) => {
            return Ok(None)
        }
        other => other.aws("GetObject")?,
    };
    let body = out
        .body
        .collect()
        .await
        .map_err(|e| Error::Corrupt(format!("reading s3://{}/{key}: {e}", deps.bucket)))?
        .into_bytes();
    serde_json::from_slice(&body).map(Some).map_err(|e| {
        Error::Corrupt(format!(
            "s3://{}/{key} is not the shim's report: {e}",
            deps.bucket
        ))
    })
}

/// Why a run needs an approval and how to get one (the cause CodePipeline shows).
pub fn needs_approval_message(run: &MigrationRun, report: &MigrationReport) -> String {
    let short = crate::migration::short(&run.commit);
    let p = report.preflight.as_ref();
    let why = match p.and_then(|p| p.error.as_deref()) {
        Some(e) => format!("its pre-flight could not complete ({e})"),
        None => format!(
            "its pre-flight found {} dangerous operation(s)",
            report.findings().len()
        ),
    };
    format!(
        "Migration of {short} on {env} needs an approval: {why}, and the {env} policy is require-approval. \
         db:migrate did not run; the schema is unchanged.\n\
         How to approve: an approval binds to a pending set the pre-flight could read (digest {digest}, commit {commit}), \
         so fix what stopped the pre-flight and re-run the stage, where approvers are asked in Slack; or make the \
         migrations safe (each finding's recipe below) and push a new commit.\n{card}",
        env = run.environment,
        digest = p.and_then(|p| p.digest.as_deref()).unwrap_or("(none)"),
        commit = run.commit,
        card = report.card(2600),
    )
}

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let run = &input.run;
    let approved = input.approval.as_ref().filter(|a| a.approved);
    let key = |file: &str| preflight::report_key(&run.execution_name, approved.is_some(), file);
    // The deploy-branch check ran first; when it stopped the build nothing else ran.
    let source: Option<SourceCheck> = read(deps, &key("source.json")).await?;
    if let Some(check) = &source {
        if check.commit != run.commit {
            return Err(Error::Corrupt(format!(
                "{} names commit {}, the run migrates {}",
                key("source.json"),
                check.commit,
                run.commit
            )));
        }
        check.verdict()?;
    }
    let preflight: Option<Preflight> = read(deps, &key("preflight.json")).await?;
    let migrate: Option<Migrate> = read(deps, &key("migrate.json")).await?;
    let policy = deps.settings.policy;
    let gate = preflight::gate(
        policy,
        preflight.as_ref(),
        approved.map(|a| a.digest.as_str()),
    );
    let report = MigrationReport {
        policy,
        gate: gate.clone(),
        uri: format!("s3://{}/{}", deps.bucket, key("")),
        preflight,
        migrate,
    }
    .bounded();
    tracing::info!(
        gate = ?report.gate,
        findings = report.findings().len(),
        failed = report.failure().is_some(),
        "migration report read"
    );
    let approvable = report
        .preflight
        .as_ref()
        .is_some_and(|p| p.error.is_none() && p.digest.is_some());
    if gate == Gate::NeedsApproval && !approvable {
        return Err(Error::MigrationNeedsApproval(needs_approval_message(
            run, &report,
        )));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::preflight::Policy;
    use crate::migration::report::tests::preflight_with;
    use aws_sdk_s3::operation::get_object::GetObjectOutput;
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::error::NoSuchKey;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use serde_json::json;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn run(env: &str) -> MigrationRun {
        crate::migration::tests::validate_json(
            json!({"commit": SHA}),
            &crate::sfn::Execution {
                id: "arn:aws:states:us-east-1:1:execution:m:e1".into(),
                name: "e1".into(),
                start_time: "2026-11-28T13:00:00Z".into(),
            },
            env,
        )
        .unwrap()
    }

    /// The input after the first build (no approval), of a run in `env`.
    fn first(env: &str) -> Input {
        Input {
            run: run(env),
            approval: None,
        }
    }

    /// The test's rules first, then no `source.json` (no deploy branch configured) for
    /// either build.
    fn deps(policy: Policy, rules: &[&Rule]) -> Deps {
        let no_source = object("migrations/e1/report/source.json", None);
        let no_approved_source = object("migrations/e1/approved/source.json", None);
        let all: Vec<&Rule> = rules
            .iter()
            .copied()
            .chain([&no_source, &no_approved_source])
            .collect();
        Deps {
            s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, &all),
            bucket: "logs".into(),
            settings: Settings {
                policy,
                lock_timeout: "5s".into(),
                statement_timeout: "30min".into(),
                lock_retries: 3,
                lock_retry_backoff_seconds: 2,
                deploy_branch: None,
            },
        }
    }

    fn source_json(commit: &str, on: Option<bool>, error: Option<&str>) -> Option<String> {
        Some(
            json!({"commit": commit, "deployBranch": "main", "onDeployBranch": on, "error": error})
                .to_string(),
        )
    }

    #[tokio::test]
    async fn a_commit_off_the_deploy_branch_fails_before_any_report_is_read() {
        // The build stopped at the check: no pre-flight report, which under require-approval
        // would otherwise read as "could not complete".
        let s = object(
            "migrations/e1/report/source.json",
            source_json(SHA, Some(false), None),
        );
        let d = deps(Policy::RequireApproval, &[&s]);
        let err = handle(&d, first("production")).await.unwrap_err();
        assert_eq!(err.kind().name(), "NotOnDeployBranch");
        assert!(!err.is_retryable());
        let msg = err.to_string();
        assert!(
            msg.contains("commit 0123456789ab is not on the deploy branch main"),
            "{msg}"
        );
        assert!(msg.contains("db:migrate did not run"), "{msg}");

        // A check that could not run is no pass either.
        let s = object(
            "migrations/e1/report/source.json",
            source_json(SHA, None, Some("git fetch of the deploy branch failed")),
        );
        let d = deps(Policy::Report, &[&s]);
        let err = handle(&d, first("staging")).await.unwrap_err();
        assert_eq!(err.kind().name(), "NotOnDeployBranch");
        assert!(err.to_string().contains("could not check"), "{err}");
        assert!(err.to_string().contains("git fetch"), "{err}");

        // Another commit's check is not this run's.
        let s = object(
            "migrations/e1/report/source.json",
            source_json(&"f".repeat(40), Some(true), None),
        );
        let d = deps(Policy::Report, &[&s]);
        assert_eq!(
            handle(&d, first("staging"))
                .await
                .unwrap_err()
                .kind()
                .name(),
            "Corrupt"
        );
    }

    #[tokio::test]
    async fn a_commit_on_the_deploy_branch_goes_on_to_the_reports() {
        let s = object(
            "migrations/e1/report/source.json",
            source_json(SHA, Some(true), None),
        );
        let p = object("migrations/e1/report/preflight.json", preflight_json(1));
        let m = object("migrations/e1/report/migrate.json", None);
        let d = deps(Policy::RequireApproval, &[&s, &p, &m]);
        let r = handle(&d, first("production")).await.unwrap();
        assert_eq!(r.gate, Gate::NeedsApproval);
    }

    fn object(key: &'static str, body: Option<String>) -> Rule {
        match body {
            Some(b) => mock!(aws_sdk_s3::Client::get_object)
                .match_requests(move |r| r.key() == Some(key) && r.bucket() == Some("logs"))
                .then_output(move || {
                    GetObjectOutput::builder()
                        .body(ByteStream::from(b.clone().into_bytes()))
                        .build()
                }),
            None => mock!(aws_sdk_s3::Client::get_object)
                .match_requests(move |r| r.key() == Some(key))
                .then_error(|| GetObjectError::NoSuchKey(NoSuchKey::builder().build())),
        }
    }

    fn preflight_json(findings: usize) -> Option<String> {
        Some(serde_json::to_string(&preflight_with(findings)).unwrap())
    }

    #[tokio::test]
    async fn findings_under_require_approval_ask_for_the_approval() {
        let p = object("migrations/e1/report/preflight.json", preflight_json(1));
        let m = object("migrations/e1/report/migrate.json", None);
        let d = deps(Policy::RequireApproval, &[&p, &m]);
        let r = handle(&d, first("production")).await.unwrap();
        assert_eq!(r.gate, Gate::NeedsApproval);
        assert_eq!(r.preflight.unwrap().digest.as_deref(), Some("d1"));
    }

    #[tokio::test]
    async fn a_preflight_that_could_not_complete_fails_with_why_and_how() {
        let mut broken = preflight_with(0);
        broken.error = Some("ActiveRecord::ConnectionNotEstablished: no scratch database".into());
        let p = object(
            "migrations/e1/report/preflight.json",
            Some(serde_json::to_string(&broken).unwrap()),
        );
        let m = object("migrations/e1/report/migrate.json", None);
        let d = deps(Policy::RequireApproval, &[&p, &m]);
        let err = handle(&d, first("production")).await.unwrap_err();
        assert_eq!(err.kind().name(), "MigrationNeedsApproval");
        assert!(!err.is_retryable());
        let msg = err.to_string();
        assert!(
            msg.starts_with("Migration of 0123456789ab on production needs an approval"),
            "{msg}"
        );
        assert!(msg.contains("could not complete"), "{msg}");
        assert!(msg.contains("db:migrate did not run"), "{msg}");
        assert!(msg.contains("How to approve"), "{msg}");
    }

    #[tokio::test]
    async fn after_the_approval_the_approved_builds_reports_are_read_against_its_digest() {
        let p = object("migrations/e1/approved/preflight.json", preflight_json(1));
        let m = object(
            "migrations/e1/approved/migrate.json",
            Some(json!({"migrations": [{"version": "20261201000000", "class": "AddIndexToUsersName", "status": "succeeded", "durationMs": 40}]}).to_string()),
        );
        let d = deps(Policy::RequireApproval, &[&p, &m]);
        let approval = |digest: &str| crate::migration::approval::ApprovalState {
            approval_id: "migration-e1".into(),
            approved: true,
            digest: digest.into(),
            approvers: vec!["alice".into()],
            wait_seconds: 0,
            preflight_build_id: "migrate:1".into(),
        };
        let r = handle(
            &d,
            Input {
                run: run("production"),
                approval: Some(approval("d1")),
            },
        )
        .await
        .unwrap();
        assert_eq!(r.gate, Gate::Approved);
        assert_eq!(r.uri, "s3://logs/migrations/e1/approved/");
        // Another pending set than the approved one is not approved.
        let r = handle(
            &d,
            Input {
                run: run("production"),
                approval: Some(approval("d0")),
            },
        )
        .await
        .unwrap();
        assert_eq!(r.gate, Gate::NeedsApproval);
    }

    #[tokio::test]
    async fn findings_under_report_are_returned_and_nothing_fails() {
        let p = object("migrations/e1/report/preflight.json", preflight_json(1));
        let m = object(
            "migrations/e1/report/migrate.json",
            Some(json!({"migrations": [{"version": "20261201000000", "class": "AddIndexToUsersName", "status": "succeeded", "durationMs": 40}]}).to_string()),
        );
        let d = deps(Policy::Report, &[&p, &m]);
        let r = handle(&d, first("staging")).await.unwrap();
        assert_eq!(r.gate, Gate::Reported);
        assert_eq!(r.findings().len(), 1);
        assert_eq!(r.uri, "s3://logs/migrations/e1/report/");
        assert!(
            r.card(4000).contains("succeeded in 40 ms"),
            "{}",
            r.card(4000)
        );
    }

    #[tokio::test]
    async fn no_report_is_missing_not_an_error() {
        let p = object("migrations/e1/report/preflight.json", None);
        let m = object("migrations/e1/report/migrate.json", None);
        let d = deps(Policy::RequireApproval, &[&p, &m]);
        let r = handle(&d, first("production")).await.unwrap();
        assert_eq!(r.gate, Gate::Missing);
    }

    #[tokio::test]
    async fn a_forged_report_is_corrupt() {
        let p = object(
            "migrations/e1/report/preflight.json",
            Some("{\"pending\": 3}".into()),
        );
        let d = deps(Policy::Report, &[&p]);
        let err = handle(&d, first("staging")).await.unwrap_err();
        assert_eq!(err.kind().name(), "Corrupt");
    }
}
