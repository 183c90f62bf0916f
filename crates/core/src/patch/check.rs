//! The audit check: does a build of the patch project match an approved request?
//!
//! - Per run (`audit-check` in run mode): the build the workflow started, its resolved source
//!   version, command, request hash and start time against the approved record → `COMPLIANT`
//!   or `VIOLATION`.
//! - Daily sweep: every build of the patch project in the window must be a compliant run of an
//!   approved patch (a build started from the CodeBuild console has none), and every
//!   `StartExecution` of the data-patch workflow that CloudTrail recorded must have been made
//!   by the person the patch names as its requester.

use std::collections::BTreeMap;

use aws_sdk_codebuild::types::Build;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::store::PatchRecord;
use super::{approval, build_env};
use crate::error::Error;
use crate::platform::aws::AwsResultExt;
use crate::shared::people::People;

/// What the audit check found: the build is what was approved, or it is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compliance {
    Compliant,
    Violation,
}

impl Compliance {
    pub const fn as_str(self) -> &'static str {
        match self {
            Compliance::Compliant => "COMPLIANT",
            Compliance::Violation => "VIOLATION",
        }
    }
}

impl std::fmt::Display for Compliance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What CodeBuild says about a build, in the shape the checks read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BuildFacts {
    pub build_id: String,
    pub project: String,
    pub source_version: Option<String>,
    pub resolved_source_version: Option<String>,
    pub start_time: Option<String>,
    pub initiator: Option<String>,
    pub status: Option<String>,
    pub env: BTreeMap<String, String>,
}

pub fn facts(b: &Build) -> BuildFacts {
    let time = |t: Option<&aws_smithy_types::DateTime>| {
        t.and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
            .map(crate::platform::time::rfc3339)
    };
    BuildFacts {
        build_id: b.id().unwrap_or_default().to_string(),
        project: b.project_name().unwrap_or_default().to_string(),
        source_version: b.source_version().map(str::to_string),
        resolved_source_version: b.resolved_source_version().map(str::to_string),
        start_time: time(b.start_time()),
        initiator: b.initiator().map(str::to_string),
        status: b.build_status().map(|s| s.as_str().to_string()),
        env: b
            .environment()
            .map(|e| {
                e.environment_variables()
                    .iter()
                    .map(|v| (v.name().to_string(), v.value().to_string()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// A verdict and the findings behind it (empty when compliant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub verdict: Compliance,
    pub build_id: String,
    pub findings: Vec<String>,
    #[serde(default)]
    pub resolved_source_version: Option<String>,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub build_started_at: Option<String>,
    #[serde(default)]
    pub initiator: Option<String>,
}

/// Pure: the build against the approved record.
pub fn check_run(rec: &PatchRecord, b: &BuildFacts, people: &People) -> Verdict {
    let mut findings = Vec::new();
    match rec.request.as_ref() {
        None => findings.push(format!("patch {} has no recorded request", rec.patch_id)),
        Some(run) => {
            let t = approval::tally(run, &rec.decisions, people);
            if !t.approved() || rec.approved_at.is_none() {
                findings.push(format!(
                    "patch {} is not approved ({} of {} valid approvals, status {})",
                    rec.patch_id,
                    t.approvers.len(),
                    t.required,
                    rec.status
                ));
            }
            let env = |k: &str| b.env.get(k).map(String::as_str);
            if env(build_env::PATCH_ID) != Some(run.patch_id.as_str()) {
                findings.push(format!(
                    "build names patch {:?}, not {}",
                    env(build_env::PATCH_ID),
                    run.patch_id
                ));
            }
            if env(build_env::COMMAND) != Some(run.command.as_str()) {
                findings.push(format!(
                    "build ran {:?}, the approved command is {:?}",
                    env(build_env::COMMAND).unwrap_or("(none)"),
                    run.command
                ));
            }
            if env(build_env::REQUEST_HASH) != Some(run.request_hash.as_str()) {
                findings.push("build carries a different request hash".to_string());
            }
            if b.source_version.as_deref() != Some(run.commit.as_str()) {
                findings.push(format!(
                    "build source version {:?} is not the approved commit {}",
                    b.source_version.as_deref().unwrap_or("(none)"),
                    run.commit
                ));
            }
            if b.resolved_source_version.as_deref() != Some(run.commit.as_str()) {
                findings.push(format!(
                    "build ran commit {:?}, the approved commit is {}",
                    b.resolved_source_version.as_deref().unwrap_or("(unknown)"),
                    run.commit
                ));
            }
            match (&b.start_time, &rec.approved_at) {
                (Some(start), Some(approved)) if start < approved => findings.push(format!(
                    "build started {start}, before the approval at {approved}"
                )),
                (None, _) => findings.push("build has no start time".to_string()),
                _ => {}
            }
            if rec.build_id.as_deref() != Some(b.build_id.as_str()) {
                findings.push(format!(
                    "patch {} recorded build {:?}, this is {}",
                    rec.patch_id,
                    rec.build_id.as_deref().unwrap_or("(none)"),
                    b.build_id
                ));
            }
        }
    }
    Verdict {
        verdict: if findings.is_empty() {
            Compliance::Compliant
        } else {
            Compliance::Violation
        },
        build_id: b.build_id.clone(),
        findings,
        resolved_source_version: b.resolved_source_version.clone(),
        command: b.env.get(build_env::COMMAND).cloned(),
        build_started_at: b.start_time.clone(),
        initiator: b.initiator.clone(),
    }
}

/// Every build of `project` that started at or after `since`, newest first.
pub async fn builds_since(
    codebuild: &aws_sdk_codebuild::Client,
    project: &str,
    since: DateTime<Utc>,
) -> Result<Vec<BuildFacts>, Error> {
    let mut out = Vec::new();
    let mut token = None;
    'pages: loop {
        let page = codebuild
            .list_builds_for_project()
            .project_name(project)
            .sort_order(aws_sdk_codebuild::types::SortOrderType::Descending)
            .set_next_token(token)
            .send()
            .await
            .aws("ListBuildsForProject")?;
        let ids = page.ids().to_vec();
        for chunk in ids.chunks(100) {
            let got = codebuild
                .batch_get_builds()
                .set_ids(Some(chunk.to_vec()))
                .send()
                .await
                .aws("BatchGetBuilds")?;
            let mut builds: Vec<BuildFacts> = got.builds().iter().map(facts).collect();
            builds.sort_by(|a, b| b.start_time.cmp(&a.start_time));
            for b in builds {
                let started = b
                    .start_time
                    .as_deref()
                    .and_then(|t| crate::platform::time::parse("startTime", t).ok());
                if started.is_some_and(|t| t < since) {
                    break 'pages;
                }
                out.push(b);
            }
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

/// Who started an execution of the data-patch workflow, as CloudTrail recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartedExecution {
    pub execution_name: String,
    pub principal: String,
    pub event_time: String,
    pub event_id: String,
}

/// CloudTrail `StartExecution` records of `state_machine_arn` since `since`.
pub async fn started_executions(
    cloudtrail: &aws_sdk_cloudtrail::Client,
    state_machine_arn: &str,
    since: DateTime<Utc>,
) -> Result<Vec<StartedExecution>, Error> {
    use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = cloudtrail
            .lookup_events()
            .lookup_attributes(
                LookupAttribute::builder()
                    .attribute_key(LookupAttributeKey::EventName)
                    .attribute_value("StartExecution")
                    .build()
                    .expect("key and value are set"),
            )
            .start_time(aws_smithy_types::DateTime::from_secs(since.timestamp()))
            .end_time(aws_smithy_types::DateTime::from_secs(
                crate::platform::time::now().timestamp() + 60,
            ))
            .set_next_token(token)
            .send()
            .await
            .aws("LookupEvents")?;
        for e in page.events() {
            let Some(raw) = e.cloud_trail_event() else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(raw) else {
                continue;
            };
            if v["eventSource"] != "states.amazonaws.com"
                || v["requestParameters"]["stateMachineArn"] != state_machine_arn
            {
                continue;
            }
            out.push(StartedExecution {
                execution_name: v["requestParameters"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                principal: v["userIdentity"]["arn"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                event_time: v["eventTime"].as_str().unwrap_or_default().to_string(),
                event_id: v["eventID"].as_str().unwrap_or_default().to_string(),
            });
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

/// Pure: the person CloudTrail saw start a patch against the requester the patch names.
/// `None` when they agree.
pub fn requester_mismatch(
    started: &StartedExecution,
    rec: &PatchRecord,
    people: &People,
) -> Option<String> {
    let named = rec.request.as_ref().map(|r| r.requester.as_str())?;
    match people.by_principal(&started.principal) {
        Some(p) if p.id == named => None,
        Some(p) => Some(format!(
            "patch {} names {named} as its requester, but CloudTrail shows {} ({}) started it at {}",
            rec.patch_id, p.id, started.principal, started.event_time
        )),
        None => Some(format!(
            "patch {} names {named} as its requester, but CloudTrail shows {} (nobody in the people map) started it at {}",
            rec.patch_id, started.principal, started.event_time
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::approval::{Decision, DecisionRecord, Via};
    use crate::patch::tests::{exec, people, request};
    use crate::patch::{validate, Policy, Status};

    fn approved() -> (PatchRecord, BuildFacts) {
        let run = validate(request(), &exec(), "staging", &people(), Policy::default()).unwrap();
        let mut decisions = BTreeMap::new();
        decisions.insert(
            "alice".to_string(),
            DecisionRecord {
                decision: Decision::Approve,
                by: "alice".into(),
                by_name: "Alice".into(),
                via: Via::Slack,
                at: "2026-11-28T13:05:00Z".into(),
                identity: "U0ALICE01".into(),
                request_hash: run.request_hash.clone(),
                comment: None,
            },
        );
        let build = BuildFacts {
            build_id: "batchless-staging-patch:1".into(),
            project: "batchless-staging-patch".into(),
            source_version: Some(run.commit.clone()),
            resolved_source_version: Some(run.commit.clone()),
            start_time: Some("2026-11-28T13:06:00Z".into()),
            initiator: Some("start-patch-build".into()),
            status: Some("SUCCEEDED".into()),
            env: [
                (build_env::PATCH_ID, run.patch_id.clone()),
                (build_env::COMMAND, run.command.clone()),
                (build_env::REQUEST_HASH, run.request_hash.clone()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        };
        let rec = PatchRecord {
            patch_id: run.patch_id.clone(),
            environment: "staging".into(),
            status: Status::Succeeded,
            request: Some(run),
            decisions,
            approved_at: Some("2026-11-28T13:05:01Z".into()),
            approvers: vec!["alice".into()],
            build_id: Some("batchless-staging-patch:1".into()),
            ..Default::default()
        };
        (rec, build)
    }

    #[test]
    fn the_approved_build_is_compliant() {
        let (rec, b) = approved();
        let v = check_run(&rec, &b, &people());
        assert_eq!(v.verdict, Compliance::Compliant, "{:?}", v.findings);
    }

    #[test]
    fn every_difference_is_a_finding() {
        let p = people();
        let (rec, b) = approved();
        let mut moved = b.clone();
        moved.source_version = Some("fix/backfill".into());
        moved.resolved_source_version = Some("ffffffffffffffffffffffffffffffffffffffff".into());
        let v = check_run(&rec, &moved, &p);
        assert_eq!(v.verdict, Compliance::Violation);
        assert_eq!(v.findings.len(), 2, "{:?}", v.findings);
        let mut other = b.clone();
        other
            .env
            .insert(build_env::COMMAND.into(), "bin/rake db:drop".into());
        assert!(check_run(&rec, &other, &p).findings[0].contains("db:drop"));
        let mut early = b.clone();
        early.start_time = Some("2026-11-28T13:04:00Z".into());
        assert!(check_run(&rec, &early, &p).findings[0].contains("before the approval"));
        let mut unapproved = rec.clone();
        unapproved.decisions.clear();
        assert!(check_run(&unapproved, &b, &p).findings[0].contains("not approved"));
    }

    #[test]
    fn cloudtrail_requester_cross_check() {
        let p = people();
        let (rec, _) = approved();
        let mut started = StartedExecution {
            execution_name: rec.patch_id.clone(),
            principal: "arn:aws:iam::123456789012:user/bob".into(),
            event_time: "2026-11-28T13:00:00Z".into(),
            event_id: "e1".into(),
        };
        assert_eq!(requester_mismatch(&started, &rec, &p), None);
        started.principal = "arn:aws:iam::123456789012:user/alice".into();
        assert!(requester_mismatch(&started, &rec, &p)
            .unwrap()
            .contains("CloudTrail shows alice"));
        started.principal = "arn:aws:iam::123456789012:user/mallory".into();
        assert!(requester_mismatch(&started, &rec, &p)
            .unwrap()
            .contains("nobody in the people map"));
    }
}
