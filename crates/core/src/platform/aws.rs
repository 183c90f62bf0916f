//! The one AWS client factory and the classification of SDK errors into stable names.
//!
//! Endpoints come from the standard environment (`AWS_ENDPOINT_URL`, per-service
//! `AWS_ENDPOINT_URL_<SERVICE>`), which is how the functions reach the local replica. When an
//! endpoint is overridden, S3 uses path-style addressing (the replica has no wildcard DNS).

use aws_sdk_s3::error::ProvideErrorMetadata;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_types::config_bag::ConfigBag;
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
///
/// Every client this returns hands out the one process-wide [`https_connector`] for the SDK's
/// default connector settings, so the SDK and the Slack client share one rustls configuration:
/// the system's root certificates are parsed into a root store once per process, not once per
/// TLS configuration (about 3.8 ms of init in each function with a Slack client,
/// BENCHMARKS.md, start-up against the floor). A client whose timeouts differ from the defaults
/// gets a connector of its own, built once per client and setting.
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_runtime_api::client::http::SharedHttpClient::new(ProcessHttpClient::default())
}

/// The SDK's default connect timeout (`aws-smithy-runtime`'s `DEFAULT_CONNECT_TIMEOUT`, 3.1 s);
/// the shared connector is built with it, so a client on the default timeouts gets the shared
/// connector. A unit test checks that the SDK still asks for this.
pub const SHARED_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(3100);

fn shared_settings() -> HttpConnectorSettings {
    HttpConnectorSettings::builder()
        .connect_timeout(SHARED_CONNECT_TIMEOUT)
        .build()
}

fn build_connector(
    settings: &HttpConnectorSettings,
    components: Option<&RuntimeComponents>,
) -> SharedHttpConnector {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let mut builder =
        aws_smithy_http_client::Connector::builder().connector_settings(settings.clone());
    if let Some(components) = components {
        builder.set_sleep_impl(components.sleep_impl());
    }
    SharedHttpConnector::new(
        builder
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build(),
    )
}

/// The process's one HTTPS connector (hyper + rustls with ring, the system's roots), built on
/// first use: the SDK's clients on default timeouts (through [`http_client`]) and the Slack
/// client use it, so there is one TLS configuration and one connection pool per process.
///
/// The connection pool belongs to the process, not to a tokio runtime: a program that drops
/// one runtime and makes calls on another (tests, each `#[tokio::test]` its own runtime) may
/// find a pooled connection of the old runtime closed; the SDK retries such a dispatch failure.
pub fn https_connector() -> SharedHttpConnector {
    static CONNECTOR: OnceLock<SharedHttpConnector> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| build_connector(&shared_settings(), None))
        .clone()
}

type ConnectorKey = (Option<std::time::Duration>, Option<std::time::Duration>);

fn key(settings: &HttpConnectorSettings) -> ConnectorKey {
    (settings.connect_timeout(), settings.read_timeout())
}

#[derive(Debug, Default)]
struct ProcessHttpClient {
    /// Connectors for settings other than the shared one's, built on first use.
    others: Mutex<HashMap<ConnectorKey, SharedHttpConnector>>,
}

impl HttpClient for ProcessHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        if key(settings) == key(&shared_settings()) {
            return https_connector();
        }
        self.others
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key(settings))
            .or_insert_with(|| build_connector(settings, Some(components)))
            .clone()
    }

    fn validate_base_client_config(
        &self,
        _: &RuntimeComponentsBuilder,
        _: &ConfigBag,
    ) -> Result<(), BoxError> {
        // As the SDK's own client does: load the roots when the client is built (in `main`, at
        // init), not inside the first request. Once per process here.
        let _ = https_connector();
        Ok(())
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        Some(ConnectorMetadata::new(
            "hyper",
            Some(std::borrow::Cow::Borrowed("1.x")),
        ))
    }
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

pub fn scheduler(config: &SdkConfig) -> aws_sdk_scheduler::Client {
    aws_sdk_scheduler::Client::new(config)
}

pub fn sts(config: &SdkConfig) -> aws_sdk_sts::Client {
    aws_sdk_sts::Client::new(config)
}

pub fn cloudtrail(config: &SdkConfig) -> aws_sdk_cloudtrail::Client {
    aws_sdk_cloudtrail::Client::new(config)
}

pub fn kms(config: &SdkConfig) -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(config)
}

pub fn lambda(config: &SdkConfig) -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::new(config)
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

/// CloudTrail management events named `event_name` since `since`, as parsed records.
pub async fn cloudtrail_events(
    cloudtrail: &aws_sdk_cloudtrail::Client,
    event_name: &str,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<serde_json::Value>, crate::error::Error> {
    use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
    let mut out = Vec::new();
    let mut token = None;
    // One window for every page: a NextToken is only valid with the parameters of the request
    // that returned it (InvalidNextTokenException otherwise).
    let start = aws_smithy_types::DateTime::from_secs(since.timestamp());
    let end = aws_smithy_types::DateTime::from_secs(crate::platform::time::now().timestamp() + 60);
    loop {
        let page = cloudtrail
            .lookup_events()
            .lookup_attributes(
                LookupAttribute::builder()
                    .attribute_key(LookupAttributeKey::EventName)
                    .attribute_value(event_name)
                    .build()
                    .expect("key and value are set"),
            )
            .start_time(start)
            .end_time(end)
            .set_next_token(token)
            .send()
            .await
            .aws("LookupEvents")?;
        for e in page.events() {
            if let Some(v) = e
                .cloud_trail_event()
                .and_then(|raw| serde_json::from_str::<serde_json::Value>(raw).ok())
            {
                out.push(v);
            }
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(out)
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

    #[test]
    fn the_sdk_asks_for_the_shared_connectors_settings() {
        // The SDK's default timeouts for the behaviour version `load_config` uses: if a new
        // default changes them, the SDK would get a second connector (a second root parse).
        let config = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new("us-east-1"))
                    .credentials_provider(aws_sdk_s3::config::Credentials::new(
                        "a", "b", None, None, "test",
                    ))
                    .http_client(http_client())
                    .load(),
            );
        let timeouts = config.timeout_config().expect("a timeout config");
        assert_eq!(timeouts.connect_timeout(), Some(SHARED_CONNECT_TIMEOUT));
        assert_eq!(timeouts.read_timeout(), None);
    }
}
