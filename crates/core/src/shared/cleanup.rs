//! Cleanup on abort, timeout and failure. Step Functions runs no `Catch` on `StopExecution`
//! or an execution timeout, so an EventBridge rule on "Step Functions Execution Status
//! Change" calls this: stop the run's build or ECS task, release every lock the execution
//! holds, and mark its record ended. Each part is idempotent (an event may arrive twice).

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::{shared::build, shared::lock, shared::runs};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    pub execution_arn: String,
    pub status: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub execution_arn: String,
    pub status: String,
    pub stopped_build: Option<String>,
    pub stopped_task: Option<String>,
    pub released_locks: Vec<String>,
    pub record_ended: bool,
}

pub fn needs_cleanup(status: &str) -> bool {
    matches!(status, "ABORTED" | "TIMED_OUT" | "FAILED")
}

pub struct Tables<'a> {
    pub runs: &'a str,
    pub locks: &'a str,
}

pub async fn cleanup(
    db: &aws_sdk_dynamodb::Client,
    codebuild: &aws_sdk_codebuild::Client,
    ecs: &aws_sdk_ecs::Client,
    tables: Tables<'_>,
    change: &StatusChange,
    now: &str,
) -> Result<Report, Error> {
    let mut report = Report {
        execution_arn: change.execution_arn.clone(),
        status: change.status.clone(),
        ..Default::default()
    };
    if !needs_cleanup(&change.status) {
        return Ok(report);
    }
    let run = runs::get(db, tables.runs, &change.execution_arn).await?;
    if let Some(build_id) = run.as_ref().and_then(|r| r.build_id.as_deref()) {
        match build::stop(codebuild, build_id).await {
            Ok(true) => report.stopped_build = Some(build_id.to_string()),
            Ok(false) => {}
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if run.is_some() {
        if let Some(task_arn) = runs::task_arn(db, tables.runs, &change.execution_arn).await? {
            let reason = format!("batchless: execution {}", change.status);
            if crate::shared::task::stop(ecs, &task_arn, &reason).await? {
                report.stopped_task = Some(task_arn);
            }
        }
    }
    for lease in lock::held_by(db, tables.locks, &change.execution_arn).await? {
        if lock::release(db, tables.locks, &lease.lock_name, &change.execution_arn).await? {
            report.released_locks.push(lease.lock_name);
        }
    }
    if run.is_some() {
        report.record_ended = runs::end_if_running(
            db,
            tables.runs,
            &change.execution_arn,
            &change.status,
            now,
            &format!("execution {}", change.status),
        )
        .await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unfinished_ends_need_cleanup() {
        assert!(needs_cleanup("ABORTED"));
        assert!(needs_cleanup("TIMED_OUT"));
        assert!(needs_cleanup("FAILED"));
        assert!(!needs_cleanup("SUCCEEDED"));
        assert!(!needs_cleanup("RUNNING"));
    }
}
