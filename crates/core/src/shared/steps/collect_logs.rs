//! `collect-logs`: archive a run's CloudWatch Logs stream to S3 under
//! `logs/<workflow>/<execution name>/<name>.log` (paginated, bounded memory), with its SHA-256
//! and size; returns the `s3://` URI, console links and a redacted tail. A run that never had
//! a stream (no group/stream given) gets a one-line note as its log.

use aws_types::SdkConfig;
use serde::Deserialize;

use crate::error::Error;
use crate::platform::input::identifier;
use crate::platform::{aws, config};
use crate::shared::logs::{self, CollectedLogs, Source, Target};

pub struct Deps {
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub region: String,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            logs: aws::logs(sdk),
            s3: aws::s3(sdk),
            bucket: config::required("LOGS_BUCKET")?,
            region: sdk
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "us-east-1".into()),
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Input {
    pub workflow: String,
    pub execution_name: String,
    /// The file name under the run's prefix, e.g. `build` → `build.log`.
    pub name: String,
    pub log_group: Option<String>,
    pub log_stream: Option<String>,
}

impl Input {
    /// The archive's key; every part is checked to be an identifier first.
    pub fn key(&self) -> Result<String, Error> {
        identifier("workflow", &self.workflow, 64)?;
        identifier("executionName", &self.execution_name, 80)?;
        identifier("name", &self.name, 64)?;
        Ok(format!(
            "logs/{}/{}/{}.log",
            self.workflow, self.execution_name, self.name
        ))
    }
}

pub type Output = CollectedLogs;

pub async fn handle(deps: &Deps, input: Input) -> Result<Output, Error> {
    let key = input.key()?;
    let (group, stream) = match (&input.log_group, &input.log_stream) {
        (Some(g), Some(s)) => (g.as_str(), s.as_str()),
        _ => ("(none)", "(none)"),
    };
    let collected = logs::collect(
        &deps.logs,
        &deps.s3,
        Source { group, stream },
        Target {
            bucket: &deps.bucket,
            key: &key,
            region: &deps.region,
        },
    )
    .await?;
    tracing::info!(uri = %collected.uri, bytes = collected.bytes, sha256 = %collected.sha256, "log archived");
    Ok(collected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatchlogs::operation::get_log_events::GetLogEventsOutput;
    use aws_sdk_cloudwatchlogs::types::OutputLogEvent;
    use aws_sdk_s3::operation::put_object::PutObjectOutput;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn input(execution_name: &str) -> Input {
        Input {
            workflow: "migration".into(),
            execution_name: execution_name.into(),
            name: "build".into(),
            log_group: Some("/batchless/staging/migration".into()),
            log_stream: Some("abc".into()),
        }
    }

    #[tokio::test]
    async fn archives_the_stream_under_the_runs_prefix() {
        let get = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
            .match_requests(|r| {
                r.log_group_name() == Some("/batchless/staging/migration")
                    && r.log_stream_name() == Some("abc")
            })
            .then_output(|| {
                GetLogEventsOutput::builder()
                    .events(OutputLogEvent::builder().message("migrated").build())
                    .build()
            });
        let put = mock!(aws_sdk_s3::Client::put_object)
            .match_requests(|r| {
                r.bucket() == Some("logs-bucket")
                    && r.key()
                        .is_some_and(|k| k.starts_with("logs/migration/m-1/build.log"))
            })
            .then_output(|| PutObjectOutput::builder().build());
        let deps = Deps {
            logs: mock_client!(aws_sdk_cloudwatchlogs, [&get]),
            s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&put]),
            bucket: "logs-bucket".into(),
            region: "us-east-1".into(),
        };
        let out = handle(&deps, input("m-1")).await.unwrap();
        assert_eq!(out.uri, "s3://logs-bucket/logs/migration/m-1/build.log");
        assert_eq!(out.tail, "migrated");
        assert_eq!(put.num_calls(), 2, "the log and its .sha256");
    }

    #[tokio::test]
    async fn a_name_that_is_not_an_identifier_is_refused_before_any_call() {
        let deps = Deps {
            logs: mock_client!(aws_sdk_cloudwatchlogs, []),
            s3: mock_client!(aws_sdk_s3, []),
            bucket: "logs-bucket".into(),
            region: "us-east-1".into(),
        };
        let err = handle(&deps, input("m 1; rm -rf")).await.unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::InvalidInput);
        assert!(err.to_string().contains("executionName"), "{err}");
    }
}
