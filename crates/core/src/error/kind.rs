//! The stable error names state machines route on. Never rename one: ASL `Retry`/`Catch` match
//! the string, and `crates/asl`'s test checks every ASL file and the README against [`Kind::ALL`].

/// One stable name, and whether a step failing with it may succeed when simply run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The input is malformed or not allowed; nothing was changed.
    InvalidInput,
    /// A lease is held by someone else (it expires, or its holder releases it).
    LockHeld,
    /// AWS or Slack asked us to slow down.
    Throttled,
    /// CodeBuild's account concurrency limit (a queue that drains).
    AccountLimitExceeded,
    /// A transport failure or a 5xx from AWS.
    AwsUnavailable,
    /// Any other error AWS answered with (a modelled 4xx): running again gives the same answer.
    AwsServiceError,
    /// Slack failed (transport, or `ok: false`).
    SlackError,
    /// The deployed configuration is missing or wrong.
    ConfigError,
    /// A record the step needs does not exist.
    NotFound,
    /// A conditional write lost a race with a concurrent writer; re-reading and retrying wins.
    Contention,
    /// A stored record is inconsistent or unreadable (a vanished item, a dangling pointer, a
    /// record off its schema): retrying cannot help, someone must look.
    Corrupt,
    /// The request conflicts with what is recorded (the same id with a different request, an
    /// action on a run that already ended).
    Conflict,
    /// The caller may not do this.
    Forbidden,
    /// A data patch may not run: its approval record does not hold up.
    NotApproved,
    /// A migration's pre-flight found dangerous operations and the environment's policy asks
    /// for an approval that is not recorded: `db:migrate` did not run.
    MigrationNeedsApproval,
    /// A migration's commit is not on the configured deploy branch, or the build could not
    /// check it: the build stopped before any of the app's code ran.
    NotOnDeployBranch,
}

impl Kind {
    pub const ALL: [Kind; 16] = [
        Kind::InvalidInput,
        Kind::LockHeld,
        Kind::Throttled,
        Kind::AccountLimitExceeded,
        Kind::AwsUnavailable,
        Kind::AwsServiceError,
        Kind::SlackError,
        Kind::ConfigError,
        Kind::NotFound,
        Kind::Contention,
        Kind::Corrupt,
        Kind::Conflict,
        Kind::Forbidden,
        Kind::NotApproved,
        Kind::MigrationNeedsApproval,
        Kind::NotOnDeployBranch,
    ];

    /// The `error_type` a Lambda reports and ASL matches.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::InvalidInput => "InvalidInput",
            Kind::LockHeld => "LockHeld",
            Kind::Throttled => "Throttled",
            Kind::AccountLimitExceeded => "AccountLimitExceeded",
            Kind::AwsUnavailable => "AwsUnavailable",
            Kind::AwsServiceError => "AwsServiceError",
            Kind::SlackError => "SlackError",
            Kind::ConfigError => "ConfigError",
            Kind::NotFound => "NotFound",
            Kind::Contention => "Contention",
            Kind::Corrupt => "Corrupt",
            Kind::Conflict => "Conflict",
            Kind::Forbidden => "Forbidden",
            Kind::NotApproved => "NotApproved",
            Kind::MigrationNeedsApproval => "MigrationNeedsApproval",
            Kind::NotOnDeployBranch => "NotOnDeployBranch",
        }
    }

    /// Whether running the same step again can succeed: the only kinds an ASL `Retry` may name.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            Kind::LockHeld
                | Kind::Throttled
                | Kind::AccountLimitExceeded
                | Kind::AwsUnavailable
                | Kind::SlackError
                | Kind::Contention
        )
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How each workflow can end in failure: the names of its `Fail` states that are not a [`Kind`]
/// passed through. The README's "Errors and endings" table documents each; `crates/asl`
/// checks both.
pub mod endings {
    pub const MIGRATION: &[&str] = &["MigrationInProgress", "MigrationFailed"];
    pub const SCHEDULED_JOB: &[&str] = &["JobFailed", "JobReplaced", "JobTimedOut"];
    pub const DATA_PATCH: &[&str] = &[
        "ApprovalExpired",
        "AuditCheckFailed",
        "AuditViolation",
        "PatchCancelled",
        "PatchFailed",
        "PatchRejected",
    ];
    pub const BASTION_SESSION: &[&str] = &["ApprovalMissing"];

    /// The endings of the workflow whose ASL file is `statemachines/<file_stem>.asl.json`.
    pub fn of(file_stem: &str) -> Option<&'static [&'static str]> {
        match file_stem {
            "migration" => Some(MIGRATION),
            "scheduled-job" => Some(SCHEDULED_JOB),
            "data-patch" => Some(DATA_PATCH),
            "bastion-session" => Some(BASTION_SESSION),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for k in Kind::ALL {
            assert!(seen.insert(k.name()), "{k} twice");
            assert_eq!(Kind::from_name(k.name()), Some(k));
        }
        assert_eq!(Kind::from_name("Conflicts"), None);
    }

    #[test]
    fn contention_is_retried_and_corruption_is_not() {
        assert!(Kind::Contention.is_retryable());
        assert!(!Kind::Corrupt.is_retryable());
        assert!(!Kind::InvalidInput.is_retryable());
        assert!(!Kind::AwsServiceError.is_retryable());
    }
}
