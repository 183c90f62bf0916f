//! One error taxonomy. Each domain has its own `thiserror` enum; [`Error`] gathers them and
//! maps every variant to a [`Kind`]: the stable `error_type` that ASL `Retry`/`Catch` match on,
//! and whether it is retryable.

mod kind;

pub use kind::{endings, Kind};

use crate::platform::aws::AwsError;
use crate::platform::input::InputError;
use crate::platform::slack::SlackError;

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
    /// A conditional write lost to a concurrent writer (retryable).
    #[error("contention: {0}")]
    Contention(String),
    /// A stored record is inconsistent or unreadable (not retryable).
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The request conflicts with what is recorded (not retryable).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The caller may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A data patch may not run: its approval record does not hold up.
    #[error("not approved: {0}")]
    NotApproved(String),
    /// A migration's pre-flight findings need an approval that is not recorded.
    #[error("{0}")]
    MigrationNeedsApproval(String),
    /// A migration's commit is not on the configured deploy branch (or that could not be
    /// checked): the build stopped before the app's code ran.
    #[error("{0}")]
    NotOnDeployBranch(String),
}

impl Error {
    /// The stable kind a state machine matches on.
    pub fn kind(&self) -> Kind {
        match self {
            Error::InvalidInput(_) => Kind::InvalidInput,
            Error::LockHeld { .. } => Kind::LockHeld,
            Error::Aws(e) => e.kind(),
            Error::Slack(e) => e.kind(),
            Error::Config(_) => Kind::ConfigError,
            Error::NotFound(_) => Kind::NotFound,
            Error::Contention(_) => Kind::Contention,
            Error::Corrupt(_) => Kind::Corrupt,
            Error::Conflict(_) => Kind::Conflict,
            Error::Forbidden(_) => Kind::Forbidden,
            Error::NotApproved(_) => Kind::NotApproved,
            Error::MigrationNeedsApproval(_) => Kind::MigrationNeedsApproval,
            Error::NotOnDeployBranch(_) => Kind::NotOnDeployBranch,
        }
    }

    /// The stable name a state machine matches on (`self.kind().name()`).
    pub fn error_type(&self) -> &'static str {
        self.kind().name()
    }

    pub fn is_retryable(&self) -> bool {
        self.kind().is_retryable()
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
            (Error::NotOnDeployBranch("x".into()), "NotOnDeployBranch"),
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
