//! The people map (`infra/people.yaml`): one identity per person, with Slack user id, IAM
//! principals / SSO e-mails and roles. Every rule compares [`Person`]s from here.
//!
//! Who a principal is must not be something the caller chooses (README "Trust model"). Whoever
//! calls `sts:AssumeRole` picks the session name, so an assumed-role session maps to a person
//! only through
//! - a principal the map lists exactly (an IAM user, or one role *and* session name, for a role
//!   whose trust policy pins the session name), or
//! - an IAM Identity Center role (`AWSReservedSSO_<permission set>_<hash>`) in an account the
//!   map lists under `identity_center` for the environment: Identity Center alone assumes
//!   those roles (their trust policy is its SAML provider, and they cannot be edited outside
//!   it), and it names the session after the signed-in user, so the session name is an e-mail
//!   the map lists for the person.
//!
//! Anything else is an unknown principal ([`People::by_principal`] is `None`;
//! [`People::why_unknown`] says why).

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use crate::error::Error;

/// The map shipped with the functions (embedded at build time).
pub const EMBEDDED: &str = include_str!("../../../../infra/people.yaml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Requester,
    Approver,
    Executive,
    Operator,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    pub id: String,
    pub name: String,
    pub slack_user_id: String,
    #[serde(default)]
    pub principals: Vec<String>,
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default)]
    pub roles: Vec<Role>,
}

impl Person {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

#[derive(Debug, Clone)]
pub struct People {
    environment: String,
    people: Vec<Person>,
    /// Accounts whose IAM Identity Center sessions name the person (`identity_center`).
    identity_center_accounts: Vec<String>,
}

/// The file: `identity_center` (environment → account ids), then one list per environment.
#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    identity_center: BTreeMap<String, Vec<String>>,
    #[serde(flatten)]
    environments: BTreeMap<String, Vec<Person>>,
}

/// The role name prefix of IAM Identity Center's permission-set roles.
pub const IDENTITY_CENTER_ROLE_PREFIX: &str = "AWSReservedSSO_";

/// The parts of an assumed-role session ARN
/// (`arn:<partition>:sts::<account>:assumed-role/<role>/<session>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssumedRole<'a> {
    pub account: &'a str,
    pub role: &'a str,
    pub session: &'a str,
}

impl<'a> AssumedRole<'a> {
    pub fn parse(arn: &'a str) -> Option<Self> {
        let mut parts = arn.splitn(6, ':');
        let (arn_, _partition, service, region, account, resource) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if arn_ != "arn" || service != "sts" || !region.is_empty() {
            return None;
        }
        let (role, session) = resource.strip_prefix("assumed-role/")?.split_once('/')?;
        (!account.is_empty() && !role.is_empty() && !session.is_empty()).then_some(AssumedRole {
            account,
            role,
            session,
        })
    }

    pub fn is_identity_center(&self) -> bool {
        self.role.starts_with(IDENTITY_CENTER_ROLE_PREFIX)
    }
}

impl People {
    /// Parse the whole file and select one environment's list, validating it: unique ids,
    /// unique Slack ids, unique principals, unknown keys rejected (naming the person).
    pub fn parse(yaml: &str, environment: &str) -> Result<Self, Error> {
        let file: File =
            serde_norway::from_str(yaml).map_err(|e| Error::config(format!("people map: {e}")))?;
        for (env, accounts) in &file.identity_center {
            if !file.environments.contains_key(env) {
                return Err(Error::config(format!(
                    "people map: identity_center names environment {env:?}, which has no people"
                )));
            }
            if let Some(bad) = accounts
                .iter()
                .find(|a| a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(Error::config(format!(
                    "people map: identity_center.{env}: {bad:?} is not a 12-digit account id"
                )));
            }
        }
        let all = file.environments;
        let people = all.get(environment).cloned().ok_or_else(|| {
            Error::config(format!(
                "people map has no environment {environment:?} (has: {})",
                all.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let (mut ids, mut slack, mut principals) = (HashSet::new(), HashSet::new(), HashSet::new());
        for p in &people {
            if !ids.insert(p.id.as_str()) {
                return Err(Error::config(format!(
                    "people map: duplicate id {:?}",
                    p.id
                )));
            }
            if !slack.insert(p.slack_user_id.as_str()) {
                return Err(Error::config(format!(
                    "people map: person {:?} reuses Slack user id {}",
                    p.id, p.slack_user_id
                )));
            }
            for arn in &p.principals {
                if !principals.insert(arn.as_str()) {
                    return Err(Error::config(format!(
                        "people map: person {:?} reuses principal {arn}",
                        p.id
                    )));
                }
            }
        }
        Ok(People {
            environment: environment.to_string(),
            people,
            identity_center_accounts: file
                .identity_center
                .get(environment)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// The embedded map, or the file named by `PEOPLE_FILE`, for `environment`.
    pub fn load(environment: &str) -> Result<Self, Error> {
        match std::env::var("PEOPLE_FILE") {
            Ok(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| Error::config(format!("PEOPLE_FILE {path}: {e}")))?;
                People::parse(&text, environment)
            }
            Err(_) => People::parse(EMBEDDED, environment),
        }
    }

    pub fn environment(&self) -> &str {
        &self.environment
    }

    pub fn all(&self) -> &[Person] {
        &self.people
    }

    pub fn by_id(&self, id: &str) -> Option<&Person> {
        self.people.iter().find(|p| p.id == id)
    }

    pub fn by_slack_user(&self, user_id: &str) -> Option<&Person> {
        self.people.iter().find(|p| p.slack_user_id == user_id)
    }

    /// The person behind an IAM principal as STS `GetCallerIdentity` or CloudTrail reports it:
    /// a principal the map lists exactly (an IAM user; one role and session name), or an IAM
    /// Identity Center session in a listed account whose session name is the person's e-mail.
    /// An assumed-role session of any other role is nobody, whatever its session name says.
    pub fn by_principal(&self, arn: &str) -> Option<&Person> {
        if let Some(p) = self
            .people
            .iter()
            .find(|p| p.principals.iter().any(|a| a == arn))
        {
            return Some(p);
        }
        let session = AssumedRole::parse(arn)?;
        if !self.trusts_identity_center(&session) {
            return None;
        }
        self.people.iter().find(|p| {
            p.emails
                .iter()
                .any(|e| e.eq_ignore_ascii_case(session.session))
        })
    }

    /// Whether `session` is an IAM Identity Center session in an account the map lists.
    fn trusts_identity_center(&self, session: &AssumedRole<'_>) -> bool {
        session.is_identity_center()
            && self
                .identity_center_accounts
                .iter()
                .any(|a| a == session.account)
    }

    /// Why `arn` maps to nobody (`None` when it maps to a person): for logs and alerts.
    pub fn why_unknown(&self, arn: &str) -> Option<String> {
        if self.by_principal(arn).is_some() {
            return None;
        }
        let Some(session) = AssumedRole::parse(arn) else {
            return Some("the principal is not listed in the people map".into());
        };
        let named = self.people.iter().find(|p| {
            p.emails
                .iter()
                .any(|e| e.eq_ignore_ascii_case(session.session))
        });
        Some(match (named, session.is_identity_center()) {
            (Some(p), false) => format!(
                "an assumed-role session named after {}'s e-mail, but of role {} in account {}, \
                 which the people map does not list: whoever assumes a role chooses its session name",
                p.id, session.role, session.account
            ),
            (Some(p), true) => format!(
                "an IAM Identity Center session named after {}'s e-mail, in account {}, which \
                 the people map does not list under identity_center",
                p.id, session.account
            ),
            (None, _) => format!(
                "assumed-role session {} of role {} in account {} is not listed in the people map",
                session.session, session.role, session.account
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_map_is_valid_for_every_environment() {
        for env in ["staging", "production"] {
            let people = People::parse(EMBEDDED, env).unwrap();
            assert!(!people.all().is_empty());
        }
    }

    #[test]
    fn lookups() {
        let people = People::parse(EMBEDDED, "staging").unwrap();
        assert_eq!(people.by_slack_user("U0CAROL01").unwrap().id, "carol");
        assert!(people.by_id("carol").unwrap().has_role(Role::Executive));
        assert!(!people.by_id("dave").unwrap().has_role(Role::Approver));
        assert_eq!(
            people
                .by_principal("arn:aws:iam::123456789012:user/bob")
                .unwrap()
                .id,
            "bob"
        );
        // SSO: a different permission set, same e-mail session name.
        assert_eq!(
            people
                .by_principal("arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_ReadOnly_ff/alice@example.com")
                .unwrap()
                .id,
            "alice"
        );
        assert!(people
            .by_principal("arn:aws:iam::123456789012:user/mallory")
            .is_none());
    }

    const MAP: &str = "identity_center:\n  staging: [\"111111111111\"]\nstaging:\n  - id: erin\n    name: Erin\n    slack_user_id: U0ERIN001\n    principals: [\"arn:aws:sts::111111111111:assumed-role/batchless-erin/erin\"]\n    emails: [erin@example.com]\n    roles: [approver]\n  - id: frank\n    name: Frank\n    slack_user_id: U0FRANK01\n    roles: [requester]\nproduction:\n  - id: erin\n    name: Erin\n    slack_user_id: U0ERIN001\n    emails: [erin@example.com]\n";

    #[test]
    fn a_session_name_alone_is_nobody() {
        let people = People::parse(MAP, "staging").unwrap();
        // Any role, any account: whoever assumes it names the session.
        for arn in [
            "arn:aws:sts::111111111111:assumed-role/ci-deployer/erin@example.com",
            "arn:aws:sts::999999999999:assumed-role/anything/erin@example.com",
            "arn:aws:sts::111111111111:assumed-role/batchless-erin/erin@example.com",
        ] {
            assert!(people.by_principal(arn).is_none(), "{arn}");
            let why = people.why_unknown(arn).unwrap();
            assert!(why.contains("erin's e-mail"), "{why}");
        }
        // An Identity Center role, but in an account the map does not list.
        let elsewhere =
            "arn:aws:sts::999999999999:assumed-role/AWSReservedSSO_Admin_0a1b/erin@example.com";
        assert!(people.by_principal(elsewhere).is_none());
        assert!(people
            .why_unknown(elsewhere)
            .unwrap()
            .contains("does not list under identity_center"));
        // A look-alike whose name only contains the prefix.
        assert!(people
            .by_principal(
                "arn:aws:sts::111111111111:assumed-role/x-AWSReservedSSO_A_1/erin@example.com"
            )
            .is_none());
    }

    #[test]
    fn listed_role_sessions_and_identity_center_sessions_map() {
        let people = People::parse(MAP, "staging").unwrap();
        // The role + session the map lists, exactly.
        assert_eq!(
            people
                .by_principal("arn:aws:sts::111111111111:assumed-role/batchless-erin/erin")
                .unwrap()
                .id,
            "erin"
        );
        // The same role with another session name is not erin.
        assert!(people
            .by_principal("arn:aws:sts::111111111111:assumed-role/batchless-erin/frank")
            .is_none());
        // Identity Center in a listed account: any permission set, e-mail case-insensitive.
        for arn in [
            "arn:aws:sts::111111111111:assumed-role/AWSReservedSSO_Developer_0123456789abcdef/erin@example.com",
            "arn:aws:sts::111111111111:assumed-role/AWSReservedSSO_ReadOnly_ff/Erin@Example.com",
        ] {
            assert_eq!(people.by_principal(arn).unwrap().id, "erin", "{arn}");
            assert!(people.why_unknown(arn).is_none());
        }
        // An environment without identity_center accounts trusts no Identity Center session.
        let production = People::parse(MAP, "production").unwrap();
        assert!(production
            .by_principal("arn:aws:sts::111111111111:assumed-role/AWSReservedSSO_Developer_01/erin@example.com")
            .is_none());
    }

    #[test]
    fn assumed_role_arns_parse_strictly() {
        assert_eq!(
            AssumedRole::parse("arn:aws-cn:sts::111111111111:assumed-role/r/s/extra"),
            Some(AssumedRole {
                account: "111111111111",
                role: "r",
                session: "s/extra"
            })
        );
        for bad in [
            "arn:aws:iam::111111111111:user/erin",
            "arn:aws:sts::111111111111:assumed-role/r/",
            "arn:aws:sts::111111111111:assumed-role/r",
            "arn:aws:sts:us-east-1:111111111111:assumed-role/r/s",
            "arn:aws:sts:::assumed-role/r/s",
            "xarn:aws:sts::111111111111:assumed-role/r/s",
        ] {
            assert_eq!(AssumedRole::parse(bad), None, "{bad}");
        }
    }

    /// Each map in `cases` is refused for `environment` with a reason containing its needle.
    fn assert_refused(environment: &str, cases: &[(&str, &str)]) {
        for (text, needle) in cases {
            let err = People::parse(text, environment).unwrap_err().to_string();
            assert!(
                err.contains(needle),
                "{needle:?} not in {err:?} (map {text:?})"
            );
        }
    }

    #[test]
    fn identity_center_accounts_are_checked() {
        let bad = "identity_center:\n  staging: [\"12345\"]\nstaging:\n  - {id: a, name: A, slack_user_id: U1}\n";
        let stray = "identity_center:\n  qa: [\"123456789012\"]\nstaging:\n  - {id: a, name: A, slack_user_id: U1}\n";
        assert_refused(
            "staging",
            &[
                (bad, "not a 12-digit account id"),
                (stray, "\"qa\", which has no people"),
            ],
        );
    }

    #[test]
    fn invalid_maps_are_rejected_with_the_reason() {
        let dup = "staging:\n  - {id: a, name: A, slack_user_id: U1}\n  - {id: a, name: B, slack_user_id: U2}\n";
        let unknown = "staging:\n  - {id: a, name: A, slack_user_id: U1, role: [approver]}\n";
        let bad_role = "staging:\n  - {id: a, name: A, slack_user_id: U1, roles: [king]}\n";
        assert_refused(
            "staging",
            &[
                (dup, "duplicate id"),
                (unknown, "unknown field `role`"),
                // refused, whatever the wording
                (bad_role, ""),
            ],
        );
        assert_refused("production", &[(dup, "no environment")]);
    }
}
