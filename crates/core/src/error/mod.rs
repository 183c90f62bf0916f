//! One error taxonomy. Each domain has its own `thiserror` enum; [`Error`] gathers them and
//! maps every variant to a stable `error_type` that ASL `Retry`/`Catch` match on.

use crate::platform::aws::AwsError;
use crate::platform::input::InputError;
use crate::platform::slack::SlackError;

/// Stable error names the state machines route on. Never rename one: ASL matches the string.
pub mod names {
    pub const INVALID_INPUT: &str = "InvalidInput";
    pub const LOCK_HELD: &str = "LockHeld";
    pub const THROTTLED: &str = "Throttled";
    pub const ACCOUNT_LIMIT_EXCEEDED: &str = "AccountLimitExceeded";
    pub const AWS_UNAVAILABLE: &str = "AwsUnavailable";
    pub const AWS_SERVICE_ERROR: &str = "AwsServiceError";
    pub const SLACK_ERROR: &str = "SlackError";
    pub const CONFIG_ERROR: &str = "ConfigError";
    pub const NOT_FOUND: &str = "NotFound";
    pub const CONFLICT: &str = "Conflict";
    pub const NOT_APPROVED: &str = "NotApproved";
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    InvalidInput(#[from] InputError),
    #[error("lock {name} is held by {owner} until {expires_at}")]
    LockHeld {
        name: String,
        owner: String,
        expires_at: String,
    },
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Slack(#[from] SlackError),
    #[error("configuration error: {0}")]
    Config(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// A data patch may not run: its approval record does not hold up.
    #[error("not approved: {0}")]
    NotApproved(String),
}

impl Error {
    /// The stable name a state machine matches on.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::InvalidInput(_) => names::INVALID_INPUT,
            Error::LockHeld { .. } => names::LOCK_HELD,
            Error::Aws(e) => e.error_type(),
            Error::Slack(e) => e.error_type(),
            Error::Config(_) => names::CONFIG_ERROR,
            Error::NotFound(_) => names::NOT_FOUND,
            Error::Conflict(_) => names::CONFLICT,
            Error::NotApproved(_) => names::NOT_APPROVED,
        }
    }

    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
}

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(e: Error) -> Self {
        // The message goes through redaction: it can end up in an execution's cause,
        // which CodePipeline and the console show.
        lambda_runtime::Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: crate::platform::redact::redact(&e.to_string()).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_a_stable_name() {
        let cases: Vec<(Error, &str)> = vec![
            (
                InputError::field("commit", "must be 40 hex").into(),
                "InvalidInput",
            ),
            (
                Error::LockHeld {
                    name: "l".into(),
                    owner: "o".into(),
                    expires_at: "t".into(),
                },
                "LockHeld",
            ),
            (
                AwsError::Throttled {
                    operation: "StartBuild",
                    message: "slow down".into(),
                }
                .into(),
                "Throttled",
            ),
            (Error::config("x"), "ConfigError"),
            (Error::NotFound("x".into()), "NotFound"),
            (Error::NotApproved("x".into()), "NotApproved"),
        ];
        for (err, name) in cases {
            let d: lambda_runtime::Diagnostic = err.into();
            assert_eq!(d.error_type, name);
        }
    }

    #[test]
    fn diagnostic_message_is_redacted() {
        let e = Error::config("DATABASE_URL=postgres://app:hunter2@db/app");
        let d: lambda_runtime::Diagnostic = e.into();
        assert!(!d.error_message.contains("hunter2"), "{}", d.error_message);
    }
}
