//! The audit check: does a build of the patch project match an approved request?
//!
//! - Per run (`audit-check` in run mode): the build the workflow started, its resolved source
//!   version, command, request hash and start time against the approved record → `COMPLIANT`
//!   or `VIOLATION`.
//! - Daily sweep: every build of the patch project in the window must be a compliant run of an
//!   approved patch (a build started from the CodeBuild console has none), every build of the
//!   migration project must be one a migration run recorded, no build of either may carry a
//!   buildspec other than the project's (batchless never sends a buildspec override), every
//!   ECS `RunTask` of the job or bastion task definition that CloudTrail recorded must be a task
//!   a batchless run recorded, and every `StartExecution` of the data-patch workflow must have
//!   been made by the person the patch names as its requester.

use std::collections::BTreeMap;

use aws_sdk_codebuild::types::Build;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::store::PatchRecord;
use super::{approval, build_env};
use crate::error::Error;
use crate::platform::aws::AwsResultExt;
use crate::shared::approval::Seals;
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
    /// The buildspec the build ran (the project's, or a `buildspecOverride`).
    #[serde(default)]
    pub buildspec: Option<String>,
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
        buildspec: b.source().and_then(|s| s.buildspec()).map(str::to_string),
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
/// `seals`: which of `rec`'s decisions carry a decision endpoint's seal.
pub fn check_run(rec: &PatchRecord, b: &BuildFacts, people: &People, seals: &Seals) -> Verdict {
    let mut findings = Vec::new();
    match rec.request.as_ref() {
        None => findings.push(format!("patch {} has no recorded request", rec.patch_id)),
        Some(run) => {
            let t = approval::tally(run, &rec.decisions, people, seals);
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

/// Every build of `project` that started at or after `since`, newest first. No `sortOrder`
/// (documented to fail past 100 builds): ListBuildsForProject lists newest first by default;
/// the pages are read until one holds only builds older than `since`.
pub async fn builds_since(
    codebuild: &aws_sdk_codebuild::Client,
    project: &str,
    since: DateTime<Utc>,
) -> Result<Vec<BuildFacts>, Error> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = codebuild
            .list_builds_for_project()
            .project_name(project)
            .set_next_token(token)
            .send()
            .await
            .aws("ListBuildsForProject")?;
        let ids = page.ids().to_vec();
        let mut any_recent = ids.is_empty();
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
                    continue;
                }
                any_recent = true;
                out.push(b);
            }
        }
        match page.next_token() {
            Some(t) if !t.is_empty() && any_recent => token = Some(t.to_string()),
            _ => break,
        }
    }
    out.sort_by(|a, b| b.start_time.cmp(&a.start_time));
    Ok(out)
}

/// The buildspec a project is configured with (what a build without an override runs).
pub async fn project_buildspec(
    codebuild: &aws_sdk_codebuild::Client,
    project: &str,
) -> Result<Option<String>, Error> {
    let out = codebuild
        .batch_get_projects()
        .names(project)
        .send()
        .await
        .aws("BatchGetProjects")?;
    Ok(out
        .projects()
        .first()
        .and_then(|p| p.source())
        .and_then(|s| s.buildspec())
        .map(str::to_string))
}

/// Pure: a build that ran another buildspec than its project's (batchless sends no override).
pub fn buildspec_override(b: &BuildFacts, project_buildspec: Option<&str>) -> Option<String> {
    let ran = b.buildspec.as_deref().unwrap_or_default();
    if ran == project_buildspec.unwrap_or_default() {
        return None;
    }
    Some(format!(
        "build {} of project {} ran a buildspec override that batchless did not send (started by {} at {})",
        b.build_id,
        b.project,
        b.initiator.as_deref().unwrap_or("an unknown initiator"),
        b.start_time.as_deref().unwrap_or("an unknown time")
    ))
}

/// An ECS `RunTask` or `ExecuteCommand` call CloudTrail recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EcsCall {
    pub event_name: String,
    pub event_id: String,
    pub event_time: String,
    pub principal: String,
    /// RunTask: the task definition asked for; ExecuteCommand: empty.
    pub task_definition: String,
    /// The tasks started (RunTask) or entered (ExecuteCommand).
    pub tasks: Vec<String>,
    pub started_by: Option<String>,
    pub command: Option<String>,
}

/// Pure: the ECS call a CloudTrail record describes, if it is `RunTask` or `ExecuteCommand`.
pub fn ecs_call(v: &serde_json::Value) -> Option<EcsCall> {
    if v["eventSource"] != "ecs.amazonaws.com" || v["errorCode"].is_string() {
        return None;
    }
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let name = text(&v["eventName"])?;
    let req = &v["requestParameters"];
    let tasks = match name.as_str() {
        "RunTask" => v["responseElements"]["tasks"]
            .as_array()
            .map(|ts| ts.iter().filter_map(|t| text(&t["taskArn"])).collect())
            .unwrap_or_default(),
        "ExecuteCommand" => text(&req["task"]).into_iter().collect(),
        _ => return None,
    };
    Some(EcsCall {
        event_name: name,
        event_id: text(&v["eventID"]).unwrap_or_default(),
        event_time: text(&v["eventTime"]).unwrap_or_default(),
        principal: text(&v["userIdentity"]["arn"]).unwrap_or_default(),
        task_definition: text(&req["taskDefinition"]).unwrap_or_default(),
        tasks,
        started_by: text(&req["startedBy"]),
        command: text(&req["command"]),
    })
}

/// The family of a task definition reference (`family`, `family:3`, or its ARN).
pub fn family_of(task_definition: &str) -> &str {
    let name = task_definition
        .rsplit_once(":task-definition/")
        .map_or(task_definition, |(_, rest)| rest);
    name.split(':').next().unwrap_or(name)
}

/// The last path segment of a task ARN (its id), or the text itself.
pub fn task_id(task: &str) -> &str {
    task.rsplit('/').next().unwrap_or(task)
}

/// Pure: an ECS call batchless did not make. `RunTask` of the job or bastion task definition
/// must have started a task a batchless run recorded (the bastion runs as a service and is
/// never `RunTask`ed); `ExecuteCommand` into a job task is never batchless's (operators enter
/// the bastion, which the bastion watch follows).
pub fn unsanctioned_ecs_call(
    call: &EcsCall,
    job_family: &str,
    bastion_family: &str,
    recorded_tasks: &std::collections::BTreeSet<String>,
) -> Option<String> {
    let recorded = |t: &str| recorded_tasks.contains(task_id(t));
    match call.event_name.as_str() {
        "RunTask" => {
            let family = family_of(&call.task_definition);
            if family != job_family && family != bastion_family {
                return None;
            }
            if family == job_family
                && !call.tasks.is_empty()
                && call.tasks.iter().all(|t| recorded(t))
            {
                return None;
            }
            Some(format!(
                "ECS RunTask of {} by {} at {} was not started by batchless (task(s) {}{})",
                call.task_definition,
                call.principal,
                call.event_time,
                if call.tasks.is_empty() {
                    "none".to_string()
                } else {
                    call.tasks.join(", ")
                },
                call.started_by
                    .as_deref()
                    .map(|s| format!(", startedBy {s:?}"))
                    .unwrap_or_default()
            ))
        }
        "ExecuteCommand" if call.tasks.iter().any(|t| recorded(t)) => Some(format!(
            "ECS ExecuteCommand into job task {} by {} at {}{}",
            call.tasks.join(", "),
            call.principal,
            call.event_time,
            call.command
                .as_deref()
                .map(|c| format!(" ({c:?})"))
                .unwrap_or_default()
        )),
        _ => None,
    }
}

/// Who started an execution of the data-patch workflow, as CloudTrail recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartedExecution {
    pub state_machine_arn: String,
    pub execution_name: String,
    pub principal: String,
    pub event_time: String,
    pub event_id: String,
}

/// CloudTrail `StartExecution` records of any of `state_machine_arns` since `since`.
pub async fn started_executions(
    cloudtrail: &aws_sdk_cloudtrail::Client,
    state_machine_arns: &[&str],
    since: DateTime<Utc>,
) -> Result<Vec<StartedExecution>, Error> {
    let mut out = Vec::new();
    for v in crate::platform::aws::cloudtrail_events(cloudtrail, "StartExecution", since).await? {
        let Some(sm) = v["requestParameters"]["stateMachineArn"]
            .as_str()
            .filter(|sm| state_machine_arns.contains(sm))
        else {
            continue;
        };
        if v["eventSource"] != "states.amazonaws.com" {
            continue;
        }
        out.push(StartedExecution {
            state_machine_arn: sm.to_string(),
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
    starter_mismatch(
        started,
        &format!("patch {}", rec.patch_id),
        "requester",
        named,
        people,
    )
}

/// Pure: the person CloudTrail saw start an execution against the person its record names
/// (`what` names the run, `role` what the record calls them). `None` when they agree.
pub fn starter_mismatch(
    started: &StartedExecution,
    what: &str,
    role: &str,
    named: &str,
    people: &People,
) -> Option<String> {
    let seen = match people.by_principal(&started.principal) {
        Some(p) if p.id == named => return None,
        Some(p) => format!("{} ({})", p.id, started.principal),
        None => format!("{} (nobody in the people map)", started.principal),
    };
    Some(format!(
        "{what} names {named} as its {role}, but CloudTrail shows {seen} started it at {}",
        started.event_time
    ))
}

/// Pure: the person a run record says started a migration or job run (`backfill:<who>` is
/// `who`), if it is a person of the map; `None` for the scheduler, a pipeline, `unattributed`.
pub fn run_starter<'a>(started_by: &'a str, people: &People) -> Option<&'a str> {
    let who = started_by.strip_prefix("backfill:").unwrap_or(started_by);
    people.by_id(who).is_some().then_some(who)
}

/// What signs batchless's evidence, whose changes outside a deploy the sweep alerts (issue 15).
#[derive(Debug, Clone, Default)]
pub struct Signers {
    /// The signing keys' ARNs (who may `kms:Sign` is their policy).
    pub keys: Vec<String>,
    /// The signing functions' names (what is signed is their code and configuration).
    pub functions: Vec<String>,
    /// The signing functions' roles' ARNs: a function created with one signs as batchless
    /// does; a changed trust or permissions policy lets someone else sign.
    pub roles: Vec<String>,
}

impl Signers {
    /// The signing role `r` (an ARN or a role name) names, if any.
    fn role(&self, r: &str) -> Option<&str> {
        let name = |arn: &str| arn.rsplit('/').next().unwrap_or(arn).to_string();
        self.roles
            .iter()
            .find(|k| name(k) == name(r))
            .map(String::as_str)
    }

    /// The signing function `f` (a name, or an ARN with an optional qualifier) names, if any.
    fn function<'a>(&self, f: &'a str) -> Option<&'a str> {
        let bare = f
            .rsplit_once(":function:")
            .map_or(f, |(_, rest)| rest.split(':').next().unwrap_or(rest));
        self.functions.iter().any(|n| n == bare).then_some(bare)
    }

    /// The signing key `id` (a key id or ARN) names, if any.
    fn key(&self, id: &str) -> bool {
        let key_id = |arn: &str| arn.rsplit_once(":key/").map_or(arn, |(_, k)| k).to_string();
        self.keys.iter().any(|k| k == id || key_id(k) == key_id(id))
    }
}

/// The regional CloudTrail events that change what signs: a signing key's policy, a signing
/// function's code or configuration (its role included), a new function given a signing role.
pub const SIGNING_CHANGE_EVENTS: [&str; 4] = [
    "PutKeyPolicy",
    "UpdateFunctionCode20150331v2",
    "UpdateFunctionConfiguration20150331v2",
    "CreateFunction20150331",
];

/// The IAM events that change who may act as a signing role (its trust policy) or what it may
/// do. IAM is global: CloudTrail records them in us-east-1 only ([`IAM_EVENTS_REGION`]).
pub const SIGNING_ROLE_EVENTS: [&str; 3] = [
    "UpdateAssumeRolePolicy",
    "PutRolePolicy",
    "AttachRolePolicy",
];

/// Where CloudTrail's event history keeps IAM's events (the `aws` partition).
pub const IAM_EVENTS_REGION: &str = "us-east-1";

/// The functions that sign evidence (`batchless-<env>-<name>`): the decision endpoints, the
/// bastion's evidence and deadline, the audit writer, the occurrence claimers, the pipeline
/// bridge (its runs' inputs).
pub const SIGNING_FUNCTIONS: [&str; 8] = [
    "approval",
    "decision",
    "slack-events",
    "session-deadline",
    "audit-check",
    "claim-occurrence",
    "missed-run-check",
    "pipeline-bridge",
];

/// Pure: the finding for a CloudTrail record ([`SIGNING_CHANGE_EVENTS`],
/// [`SIGNING_ROLE_EVENTS`]) that changes one of `signers`, unless CloudFormation made it on a
/// deploy's behalf (`invokedBy` / `sourceIPAddress` `cloudformation.amazonaws.com`). Whoever
/// can do any of these can make batchless's evidence say anything.
pub fn unsanctioned_signing_change(v: &serde_json::Value, signers: &Signers) -> Option<String> {
    if v["errorCode"].is_string() {
        return None;
    }
    let name = v["eventName"].as_str()?;
    const CFN: &str = "cloudformation.amazonaws.com";
    if v["userIdentity"]["invokedBy"] == CFN || v["sourceIPAddress"] == CFN {
        return None;
    }
    let req = &v["requestParameters"];
    let field = |k: &str| req[k].as_str();
    let target = match name {
        "PutKeyPolicy" => {
            let id = field("keyId")?;
            signers
                .key(id)
                .then(|| format!("the policy of signing key {id}"))?
        }
        "UpdateFunctionCode20150331v2" => {
            let f = signers.function(field("functionName")?)?;
            format!("the code of signing function {f}")
        }
        "UpdateFunctionConfiguration20150331v2" => {
            let f = field("functionName")?;
            match (
                signers.function(f),
                field("role").and_then(|r| signers.role(r)),
            ) {
                (Some(f), _) => format!("the configuration of signing function {f}"),
                (None, Some(r)) => format!("the role of function {f}, now signing role {r}"),
                (None, None) => return None,
            }
        }
        "CreateFunction20150331" => {
            let r = signers.role(field("role")?)?;
            format!(
                "a new function {} with signing role {r}",
                field("functionName").unwrap_or("?")
            )
        }
        "UpdateAssumeRolePolicy" => {
            let r = signers.role(field("roleName")?)?;
            format!("who may assume signing role {r}")
        }
        "PutRolePolicy" | "AttachRolePolicy" => {
            let r = signers.role(field("roleName")?)?;
            format!("the permissions of signing role {r}")
        }
        _ => return None,
    };
    Some(format!(
        "{name} changed {target}, by {} at {}, not through a CloudFormation deploy: whoever can do this can make batchless sign anything",
        v["userIdentity"]["arn"].as_str().unwrap_or("an unknown caller"),
        v["eventTime"].as_str().unwrap_or("an unknown time"),
    ))
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
                identity: "slack:U0ALICE01".into(),
                request_hash: run.request_hash.clone(),
                comment: None,
                seal: None,
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
            buildspec: Some("version: 0.2".into()),
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
        let v = check_run(&rec, &b, &people(), &Seals::all(&rec.decisions));
        assert_eq!(v.verdict, Compliance::Compliant, "{:?}", v.findings);
    }

    #[test]
    fn every_difference_is_a_finding() {
        let p = people();
        let (rec, b) = approved();
        let mut moved = b.clone();
        moved.source_version = Some("fix/backfill".into());
        moved.resolved_source_version = Some("ffffffffffffffffffffffffffffffffffffffff".into());
        let v = check_run(&rec, &moved, &p, &Seals::all(&rec.decisions));
        assert_eq!(v.verdict, Compliance::Violation);
        assert_eq!(v.findings.len(), 2, "{:?}", v.findings);
        let mut other = b.clone();
        other
            .env
            .insert(build_env::COMMAND.into(), "bin/rake db:drop".into());
        assert!(
            check_run(&rec, &other, &p, &Seals::all(&rec.decisions)).findings[0]
                .contains("db:drop")
        );
        let mut early = b.clone();
        early.start_time = Some("2026-11-28T13:04:00Z".into());
        assert!(
            check_run(&rec, &early, &p, &Seals::all(&rec.decisions)).findings[0]
                .contains("before the approval")
        );
        let mut unapproved = rec.clone();
        unapproved.decisions.clear();
        assert!(
            check_run(&unapproved, &b, &p, &Seals::all(&unapproved.decisions)).findings[0]
                .contains("not approved")
        );
    }

    #[test]
    fn cloudtrail_requester_cross_check() {
        let p = people();
        let (rec, _) = approved();
        let mut started = StartedExecution {
            state_machine_arn: "arn:sm".into(),
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
        // A migration or job run: the person its record names, when it names one.
        started.principal = "arn:aws:iam::123456789012:user/alice".into();
        for (by, person) in [
            ("alice", Some("alice")),
            ("backfill:bob", Some("bob")),
            ("scheduler", None),
            ("codepipeline:app-deploy", None),
            ("unattributed", None),
        ] {
            assert_eq!(run_starter(by, &p), person, "{by}");
        }
        assert_eq!(
            starter_mismatch(&started, "job run j", "starter", "alice", &p),
            None
        );
        let m = starter_mismatch(&started, "job run j", "starter", "bob", &p).unwrap();
        assert!(
            m.starts_with("job run j names bob as its starter, but CloudTrail shows alice"),
            "{m}"
        );
    }

    #[test]
    fn a_buildspec_other_than_the_projects_is_an_override() {
        let (_, b) = approved();
        assert_eq!(buildspec_override(&b, Some("version: 0.2")), None);
        let found = buildspec_override(&b, Some("version: 0.2\nphases: {}")).unwrap();
        assert!(
            found.contains("buildspec override that batchless did not send"),
            "{found}"
        );
    }

    #[test]
    fn ecs_calls_batchless_did_not_make_are_named() {
        use std::collections::BTreeSet;
        let run_task = serde_json::json!({
            "eventSource": "ecs.amazonaws.com", "eventName": "RunTask", "eventID": "e1",
            "eventTime": "2026-11-28T13:00:00Z",
            "userIdentity": {"arn": "arn:aws:iam::123456789012:user/alice"},
            "requestParameters": {"taskDefinition": "batchless-staging-job:3", "startedBy": "me"},
            "responseElements": {"tasks": [{"taskArn": "arn:aws:ecs:us-east-1:123456789012:task/c/abc"}]},
        });
        let call = ecs_call(&run_task).unwrap();
        assert_eq!(call.tasks.len(), 1);
        let job =
            family_of("arn:aws:ecs:us-east-1:123456789012:task-definition/batchless-staging-job:1");
        assert_eq!(job, "batchless-staging-job");
        let none = BTreeSet::new();
        let found = unsanctioned_ecs_call(&call, job, "batchless-staging-bastion", &none).unwrap();
        assert!(
            found.contains("was not started by batchless") && found.contains("user/alice"),
            "{found}"
        );
        // A task a job run recorded is batchless's.
        let recorded: BTreeSet<String> = ["abc".to_string()].into();
        assert_eq!(
            unsanctioned_ecs_call(&call, job, "batchless-staging-bastion", &recorded),
            None
        );
        // The bastion is never RunTask'ed by batchless; other families are not ours to judge.
        let mut bastion = call.clone();
        bastion.task_definition = "batchless-staging-bastion".into();
        assert!(
            unsanctioned_ecs_call(&bastion, job, "batchless-staging-bastion", &recorded).is_some()
        );
        let mut other = call.clone();
        other.task_definition = "someone-elses:1".into();
        assert_eq!(
            unsanctioned_ecs_call(&other, job, "batchless-staging-bastion", &none),
            None
        );
        // ExecuteCommand into a job task.
        let exec = serde_json::json!({
            "eventSource": "ecs.amazonaws.com", "eventName": "ExecuteCommand", "eventID": "e2",
            "userIdentity": {"arn": "arn:aws:iam::123456789012:user/alice"},
            "requestParameters": {"task": "abc", "command": "/bin/sh", "cluster": "c"},
        });
        let exec = ecs_call(&exec).unwrap();
        assert!(
            unsanctioned_ecs_call(&exec, job, "batchless-staging-bastion", &recorded)
                .unwrap()
                .contains("ExecuteCommand into job task abc")
        );
        // A failed call started nothing.
        let mut failed = run_task.clone();
        failed["errorCode"] = serde_json::json!("AccessDeniedException");
        assert_eq!(ecs_call(&failed), None);
    }

    #[test]
    fn a_change_to_what_signs_is_a_finding_unless_cloudformation_made_it() {
        let signers = Signers {
            keys: vec!["arn:aws:kms:us-east-1:123456789012:key/1111-aaaa".to_string()],
            functions: vec!["batchless-staging-decision".to_string()],
            roles: vec![
                "arn:aws:iam::123456789012:role/batchless-staging-DecisionFunctionRole-X1"
                    .to_string(),
            ],
        };
        let event = |name: &str, req: serde_json::Value| {
            serde_json::json!({"eventName": name, "requestParameters": req,
                "eventTime": "2026-12-03T10:00:00Z",
                "userIdentity": {"arn": "arn:aws:iam::123456789012:user/mallory"}})
        };
        let check = |v: &serde_json::Value| unsanctioned_signing_change(v, &signers);
        let policy = event("PutKeyPolicy", serde_json::json!({"keyId": "1111-aaaa"}));
        let m = check(&policy).expect("a key policy change by mallory");
        assert!(
            m.contains("user/mallory") && m.contains("signing key 1111-aaaa"),
            "{m}"
        );
        for f in [
            "batchless-staging-decision",
            "arn:aws:lambda:us-east-1:123456789012:function:batchless-staging-decision",
            "arn:aws:lambda:us-east-1:123456789012:function:batchless-staging-decision:live",
        ] {
            let code = event(
                "UpdateFunctionCode20150331v2",
                serde_json::json!({"functionName": f}),
            );
            assert!(
                check(&code).is_some_and(|m| m.contains("code of signing function")),
                "{f}"
            );
        }
        let config = event(
            "UpdateFunctionConfiguration20150331v2",
            serde_json::json!({"functionName": "batchless-staging-decision"}),
        );
        assert!(check(&config).is_some());
        // The signing role handed to another function, or to a new one; the role's trust or
        // permissions changed (IAM names it, Lambda gives its ARN).
        let role = "arn:aws:iam::123456789012:role/batchless-staging-DecisionFunctionRole-X1";
        for (name, req, says) in [
            (
                "UpdateFunctionConfiguration20150331v2",
                serde_json::json!({"functionName": "mallory-tool", "role": role}),
                "the role of function mallory-tool, now signing role",
            ),
            (
                "CreateFunction20150331",
                serde_json::json!({"functionName": "mallory-tool", "role": role}),
                "a new function mallory-tool with signing role",
            ),
            (
                "UpdateAssumeRolePolicy",
                serde_json::json!({"roleName": "batchless-staging-DecisionFunctionRole-X1"}),
                "who may assume signing role",
            ),
            (
                "AttachRolePolicy",
                serde_json::json!({"roleName": "batchless-staging-DecisionFunctionRole-X1", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}),
                "the permissions of signing role",
            ),
        ] {
            let m = check(&event(name, req)).unwrap_or_default();
            assert!(m.contains(says) && m.contains(role), "{name}: {m}");
        }
        // A deploy (CloudFormation on its behalf), another key or function, a failed call,
        // another event: nothing.
        let mut deploy = config.clone();
        deploy["userIdentity"]["invokedBy"] = serde_json::json!("cloudformation.amazonaws.com");
        let mut failed = config.clone();
        failed["errorCode"] = serde_json::json!("AccessDenied");
        for quiet in [
            deploy,
            failed,
            event("PutKeyPolicy", serde_json::json!({"keyId": "2222-bbbb"})),
            event(
                "UpdateFunctionCode20150331v2",
                serde_json::json!({"functionName": "batchless-staging-notify"}),
            ),
            event(
                "StartExecution",
                serde_json::json!({"functionName": "batchless-staging-decision"}),
            ),
            event(
                "CreateFunction20150331",
                serde_json::json!({"functionName": "tool", "role": "arn:aws:iam::123456789012:role/other"}),
            ),
            event(
                "UpdateFunctionConfiguration20150331v2",
                serde_json::json!({"functionName": "tool", "role": "arn:aws:iam::123456789012:role/other"}),
            ),
            event(
                "PutRolePolicy",
                serde_json::json!({"roleName": "batchless-staging-NotifyFunctionRole-X2"}),
            ),
        ] {
            assert_eq!(check(&quiet), None, "{quiet}");
        }
    }
}
