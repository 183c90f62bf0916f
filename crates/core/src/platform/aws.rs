//! The one AWS client factory and the classification of SDK errors into stable names.
//!
//! Endpoints come from the standard environment (`AWS_ENDPOINT_URL`, per-service
//! `AWS_ENDPOINT_URL_<SERVICE>`), which is how the functions reach the local replica. When an
//! endpoint is overridden, S3 uses path-style addressing (the replica has no wildcard DNS).

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_types::SdkConfig;

use crate::error::Kind;

/// Load the shared configuration once, in `main`: `aws_config::load_from_env()` with our one
/// HTTP client.
pub async fn load_config() -> SdkConfig {
    aws_config::from_env()
        .http_client(http_client())
        .load()
        .await
}

/// The SDK's HTTPS client: hyper + rustls with ring, the same stack as the Slack client's
/// connector. The SDK's default client brings aws-lc-rs, a second crypto library in every
/// bootstrap (BENCHMARKS.md, bootstrap size), so the SDK crates are built without their default
/// features and every `SdkConfig` gets this client instead.
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

pub fn s3(config: &SdkConfig) -> aws_sdk_s3::Client {
    let path_style =
        config.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub fn dynamodb(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(config)
}

pub fn sfn(config: &SdkConfig) -> aws_sdk_sfn::Client {
    aws_sdk_sfn::Client::new(config)
}

pub fn codebuild(config: &SdkConfig) -> aws_sdk_codebuild::Client {
    aws_sdk_codebuild::Client::new(config)
}

pub fn ecs(config: &SdkConfig) -> aws_sdk_ecs::Client {
    aws_sdk_ecs::Client::new(config)
}

pub fn logs(config: &SdkConfig) -> aws_sdk_cloudwatchlogs::Client {
    aws_sdk_cloudwatchlogs::Client::new(config)
}

pub fn codepipeline(config: &SdkConfig) -> aws_sdk_codepipeline::Client {
    aws_sdk_codepipeline::Client::new(config)
}

pub fn secrets(config: &SdkConfig) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(config)
}

pub fn sts(config: &SdkConfig) -> aws_sdk_sts::Client {
    aws_sdk_sts::Client::new(config)
}

pub fn cloudtrail(config: &SdkConfig) -> aws_sdk_cloudtrail::Client {
    aws_sdk_cloudtrail::Client::new(config)
}

/// A build id from either form: `project:uuid` or the build ARN.
pub fn normalize_build_id(id: &str) -> &str {
    id.rsplit_once(":build/")
        .map(|(_, rest)| rest)
        .unwrap_or(id)
}

/// An AWS call that failed, classified by what a caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("{operation} throttled: {message}")]
    Throttled {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: account limit exceeded: {message}")]
    AccountLimitExceeded {
        operation: &'static str,
        message: String,
    },
    #[error("{operation}: service unavailable: {message}")]
    Unavailable {
        operation: &'static str,
        message: String,
    },
    #[error("{operation} failed: {code}: {message}")]
    Service {
        operation: &'static str,
        code: String,
        message: String,
    },
}

impl AwsError {
    pub fn kind(&self) -> Kind {
        match self {
            AwsError::Throttled { .. } => Kind::Throttled,
            AwsError::AccountLimitExceeded { .. } => Kind::AccountLimitExceeded,
            AwsError::Unavailable { .. } => Kind::AwsUnavailable,
            AwsError::Service { .. } => Kind::AwsServiceError,
        }
    }

    /// The service's error code, e.g. `ConditionalCheckFailedException`.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Service { code, .. } => Some(code),
            AwsError::Throttled { .. } => Some("ThrottlingException"),
            AwsError::AccountLimitExceeded { .. } => Some("AccountLimitExceededException"),
            AwsError::Unavailable { .. } => None,
        }
    }

    pub fn is_code(&self, code: &str) -> bool {
        self.code() == Some(code)
    }

    /// Classify an error code the way every caller should.
    pub fn from_code(operation: &'static str, code: &str, message: String) -> Self {
        const THROTTLING: [&str; 7] = [
            "Throttling",
            "ThrottlingException",
            "ThrottledException",
            "TooManyRequestsException",
            "RequestLimitExceeded",
            "ProvisionedThroughputExceededException",
            "SlowDown",
        ];
        if THROTTLING.contains(&code) {
            AwsError::Throttled { operation, message }
        } else if code == "AccountLimitExceededException" {
            AwsError::AccountLimitExceeded { operation, message }
        } else if code == "ServiceUnavailable" || code == "InternalServerError" {
            AwsError::Unavailable { operation, message }
        } else {
            AwsError::Service {
                operation,
                code: code.to_string(),
                message,
            }
        }
    }
}

/// For conditional writes: `.aws("PutItem").conditional()?` is `Some(output)` when the write
/// happened and `None` when its condition was not met (`ConditionalCheckFailedException`).
pub trait ConditionalExt<T> {
    fn conditional(self) -> Result<Option<T>, AwsError>;
}

impl<T> ConditionalExt<T> for Result<T, AwsError> {
    fn conditional(self) -> Result<Option<T>, AwsError> {
        match self {
            Ok(out) => Ok(Some(out)),
            Err(e) if e.is_code("ConditionalCheckFailedException") => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// `.aws("StartBuild")?` turns any SDK error into a classified [`AwsError`].
pub trait AwsResultExt<T> {
    fn aws(self, operation: &'static str) -> Result<T, AwsError>;
}

impl<T, E, R> AwsResultExt<T> for Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    fn aws(self, operation: &'static str) -> Result<T, AwsError> {
        self.map_err(|err| match &err {
            SdkError::ServiceError(service) => {
                let e = service.err();
                let code = e.code().unwrap_or("Unknown");
                let message = e.message().unwrap_or_default().to_string();
                AwsError::from_code(operation, code, message)
            }
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => AwsError::Unavailable {
                operation,
                message: format!("{err}"),
            },
            _ => {
                let code = err.code().unwrap_or("Unknown").to_string();
                AwsError::from_code(operation, &code, format!("{err}"))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified() {
        assert_eq!(
            AwsError::from_code("StartBuild", "ThrottlingException", String::new())
                .kind()
                .name(),
            "Throttled"
        );
        assert_eq!(
            AwsError::from_code("StartBuild", "AccountLimitExceededException", String::new())
                .kind()
                .name(),
            "AccountLimitExceeded"
        );
        let e = AwsError::from_code("PutItem", "ConditionalCheckFailedException", "no".into());
        assert_eq!(e.kind().name(), "AwsServiceError");
        assert!(e.is_code("ConditionalCheckFailedException"));
    }
}
