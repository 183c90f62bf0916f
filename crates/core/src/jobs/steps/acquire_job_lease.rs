//! `acquire-job-lease`: the job's concurrency policy through its lease in the locks table
//! (expiry in the condition). `forbid`: not acquired while a run is live (the workflow skips and
//! records); `replace`: the live run's task is stopped and the lease taken over; `allow`: no lease.

use aws_types::SdkConfig;
use chrono::Duration;
use serde::Deserialize;

use crate::error::Error;
use crate::jobs::lease::{self, LeaseResult, Request};
use crate::jobs::workflow::JobRun;
use crate::platform::{aws, config, time};

pub struct Deps {
    pub db: aws_sdk_dynamodb::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub locks_table: String,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            db: aws::dynamodb(sdk),
            ecs: aws::ecs(sdk),
            locks_table: config::required("LOCKS_TABLE")?,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Input {
    pub run: JobRun,
}

pub type Output = LeaseResult;

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let run = input.run;
    let result = lease::acquire(
        &deps.db,
        &deps.ecs,
        Request {
            table: &deps.locks_table,
            lease: &run.lease,
            owner: &run.run_id,
            owner_name: &run.execution_name,
            occurrence_key: &run.occurrence_key,
            policy: run.concurrency,
            ttl: Duration::seconds(run.lease_ttl_seconds as i64),
            now: time::now(),
        },
    )
    .await?;
    tracing::info!(lease = %run.lease, acquired = result.acquired, replaced = ?result.replaced, "lease");
    if !result.acquired {
        use crate::jobs::ledger::metric;
        metric::count(&run.environment, &run.job, metric::SKIPPED, Some("running"));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{Concurrency, JobsFile};
    use crate::platform::dynamo;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;

    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use serde_json::json;

    fn run(job: &str) -> JobRun {
        let jobs = JobsFile::embedded();
        let start = crate::platform::time::parse("t", "2026-11-28T13:15:01Z").unwrap();
        let due = jobs
            .get(job)
            .unwrap()
            .parsed_schedule()
            .latest_at_or_before(start, chrono::Duration::days(8))
            .unwrap();
        crate::jobs::workflow::validate(
            json!({"job": job, "scheduledTime": crate::platform::time::rfc3339(due)}),
            &crate::sfn::Execution {
                id: "arn:e2".into(),
                name: "e2".into(),
                start_time: "2026-11-28T13:15:01Z".into(),
            },
            "staging",
            &JobsFile::embedded(),
        )
        .unwrap()
    }

    fn forbid_job() -> String {
        JobsFile::embedded()
            .jobs
            .iter()
            .find(|j| j.concurrency == Concurrency::Forbid)
            .expect("the embedded jobs file has a forbid job")
            .name
            .clone()
    }

    #[tokio::test]
    async fn a_free_lease_is_taken_by_this_run_with_its_ttl() {
        let r = run(&forbid_job());
        let lease_name = r.lease.clone();
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(move |p| {
                let item = p.item().unwrap();
                item.get("lockName") == Some(&dynamo::s(&lease_name))
                    && item.get("owner") == Some(&dynamo::s("arn:e2"))
            })
            .then_output(|| PutItemOutput::builder().build());
        let d = Deps {
            db: mock_client!(aws_sdk_dynamodb, [&put]),
            ecs: mock_client!(aws_sdk_ecs, []),
            locks_table: "locks".into(),
        };
        let out = handle(&d, Input { run: r }).await.unwrap();
        assert!(out.acquired);
        assert_eq!(out.policy, Concurrency::Forbid);
        assert_eq!(serde_json::to_value(&out).unwrap()["policy"], "forbid");
        assert_eq!(put.num_calls(), 1);
    }

    #[tokio::test]
    async fn forbid_with_a_live_holder_is_not_acquired() {
        let put = crate::testing::put_item_exists();
        let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
            GetItemOutput::builder()
                .set_item(Some(dynamo::to_item(&lease::JobLease {
                    lock_name: "l".into(),
                    owner: "arn:e1".into(),
                    acquired_at: "2026-11-28T13:00:01Z".into(),
                    expires_at: "2026-11-28T14:00:01Z".into(),
                    occurrence_key: Some("k#2026-11-28T13:00:00Z".into()),
                    task_arn: None,
                })))
                .build()
        });
        let d = Deps {
            db: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &get]),
            ecs: mock_client!(aws_sdk_ecs, []),
            locks_table: "locks".into(),
        };
        let out = handle(
            &d,
            Input {
                run: run(&forbid_job()),
            },
        )
        .await
        .unwrap();
        assert!(!out.acquired);
        assert_eq!(out.held_by.as_deref(), Some("arn:e1"));
    }
}
