//! Approval evidence: a reply in the login's Slack thread by a person with the `executive` role
//! (from the people map, never free text) who is not the person who logged in, whose text
//! reads as an affirmative approval statement (see [`super::phrases`]: a phrase, and no
//! negation, question or request).

use serde::{Deserialize, Serialize};

use crate::shared::people::{People, Role};

// The phrase rules (what reads as an affirmative approval) live in `super::phrases`.
pub use super::phrases::{PhraseSpec, Phrases};

/// A reply in a login thread, as the Slack Events API delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<'a> {
    pub user: &'a str,
    pub text: &'a str,
    /// A bot's message or an edit/deletion (`subtype`) never counts.
    pub from_bot: bool,
    pub subtype: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Evidence,
    BotOrEdit,
    UnknownUser,
    NotExecutive,
    SelfApproval,
    NoApprovalPhrase,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Evidence => "evidence",
            Verdict::BotOrEdit => "bot_or_edit",
            Verdict::UnknownUser => "unknown_user",
            Verdict::NotExecutive => "not_executive",
            Verdict::SelfApproval => "self_approval",
            Verdict::NoApprovalPhrase => "no_approval_phrase",
        }
    }
}

/// Judge a reply. `logged_in` is the person id behind the login (None when the principal was
/// not in the people map: then any executive's approval counts).
pub fn judge(
    reply: &Reply<'_>,
    logged_in: Option<&str>,
    people: &People,
    phrases: &Phrases,
) -> (Verdict, Option<String>) {
    // thread_broadcast ("also send to channel") is still a reply by that user.
    if reply.from_bot || reply.subtype.is_some_and(|s| s != "thread_broadcast") {
        return (Verdict::BotOrEdit, None);
    }
    let Some(person) = people.by_slack_user(reply.user) else {
        return (Verdict::UnknownUser, None);
    };
    let id = Some(person.id.clone());
    if !person.has_role(Role::Executive) {
        return (Verdict::NotExecutive, id);
    }
    if logged_in == Some(person.id.as_str()) {
        return (Verdict::SelfApproval, id);
    }
    if !phrases.approves(reply.text) {
        return (Verdict::NoApprovalPhrase, id);
    }
    (Verdict::Evidence, id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bastion::{WatchConfig, EMBEDDED};

    fn setup() -> (People, Phrases) {
        let c = WatchConfig::parse(EMBEDDED).unwrap();
        (
            People::parse(crate::shared::people::EMBEDDED, "staging").unwrap(),
            Phrases::new(&c.approval).unwrap(),
        )
    }

    fn reply<'a>(user: &'a str, text: &'a str) -> Reply<'a> {
        Reply {
            user,
            text,
            from_bot: false,
            subtype: None,
        }
    }

    #[test]
    fn default_phrases_in_japanese_and_english() {
        let (_, p) = setup();
        for yes in [
            "承認します",
            "確認しました、承認です",
            "了承しました",
            "Approved.",
            "I approve this session",
            "LGTM",
            "ok to proceed",
        ] {
            assert!(p.approves(yes), "{yes}");
        }
        for no in [
            "承認しません",
            "未承認です",
            "却下",
            "not approved",
            "I don't approve",
            "who is this?",
            "disapproved",
            "確認中です",
        ] {
            assert!(!p.approves(no), "{no}");
        }
    }

    #[test]
    fn only_another_executive_with_a_phrase_is_evidence() {
        let (people, p) = setup();
        // carol is the executive; alice logged in.
        assert_eq!(
            judge(
                &reply("U0CAROL01", "承認します"),
                Some("alice"),
                &people,
                &p
            ),
            (Verdict::Evidence, Some("carol".into()))
        );
        assert_eq!(
            judge(&reply("U0BOB0001", "approved"), Some("alice"), &people, &p).0,
            Verdict::NotExecutive
        );
        assert_eq!(
            judge(&reply("U0CAROL01", "approved"), Some("carol"), &people, &p).0,
            Verdict::SelfApproval
        );
        assert_eq!(
            judge(
                &reply("U0CAROL01", "what is this for?"),
                Some("alice"),
                &people,
                &p
            )
            .0,
            Verdict::NoApprovalPhrase
        );
        assert_eq!(
            judge(&reply("U0NOBODY1", "approved"), Some("alice"), &people, &p).0,
            Verdict::UnknownUser
        );
        let mut edited = reply("U0CAROL01", "approved");
        edited.subtype = Some("message_changed");
        assert_eq!(
            judge(&edited, Some("alice"), &people, &p).0,
            Verdict::BotOrEdit
        );
        let mut bot = reply("U0CAROL01", "approved");
        bot.from_bot = true;
        assert_eq!(
            judge(&bot, Some("alice"), &people, &p).0,
            Verdict::BotOrEdit
        );
        // An unknown principal logged in: any executive may approve.
        assert_eq!(
            judge(&reply("U0CAROL01", "approved"), None, &people, &p).0,
            Verdict::Evidence
        );
    }
}
