//! The people map (`infra/people.yaml`): one identity per person, with Slack user id, IAM
//! principals / SSO e-mails and roles. Every rule compares [`Person`]s from here.

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
}

impl People {
    /// Parse the whole file and select one environment's list, validating it: unique ids,
    /// unique Slack ids, unique principals, unknown keys rejected (naming the person).
    pub fn parse(yaml: &str, environment: &str) -> Result<Self, Error> {
        let all: BTreeMap<String, Vec<Person>> =
            serde_norway::from_str(yaml).map_err(|e| Error::config(format!("people map: {e}")))?;
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

    /// The person behind an IAM principal as STS `GetCallerIdentity` or CloudTrail reports it.
    /// Matches a listed ARN exactly; an assumed-role session ARN
    /// (`arn:aws:sts::ACCT:assumed-role/ROLE/SESSION`) also matches a listed role session
    /// with the same role and session, or an e-mail equal to the session name (SSO).
    pub fn by_principal(&self, arn: &str) -> Option<&Person> {
        if let Some(p) = self
            .people
            .iter()
            .find(|p| p.principals.iter().any(|a| a == arn))
        {
            return Some(p);
        }
        let session = assumed_role_session(arn)?;
        self.people
            .iter()
            .find(|p| p.emails.iter().any(|e| e.eq_ignore_ascii_case(session)))
    }
}

/// The session name of an assumed-role ARN.
fn assumed_role_session(arn: &str) -> Option<&str> {
    let rest = arn.split_once(":assumed-role/")?.1;
    let (_role, session) = rest.split_once('/')?;
    (!session.is_empty()).then_some(session)
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

    #[test]
    fn invalid_maps_are_rejected_with_the_reason() {
        let dup = "staging:\n  - {id: a, name: A, slack_user_id: U1}\n  - {id: a, name: B, slack_user_id: U2}\n";
        assert!(People::parse(dup, "staging")
            .unwrap_err()
            .to_string()
            .contains("duplicate id"));
        let unknown = "staging:\n  - {id: a, name: A, slack_user_id: U1, role: [approver]}\n";
        assert!(People::parse(unknown, "staging")
            .unwrap_err()
            .to_string()
            .contains("unknown field `role`"));
        let bad_role = "staging:\n  - {id: a, name: A, slack_user_id: U1, roles: [king]}\n";
        assert!(People::parse(bad_role, "staging").is_err());
        assert!(People::parse(dup, "production")
            .unwrap_err()
            .to_string()
            .contains("no environment"));
    }
}
