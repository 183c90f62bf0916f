//! What a Slack reply must say to count as approval: an affirmative statement. The rules are
//! configuration (`approval:` in `infra/bastion/watch.yaml`, or `BASTION_WATCH_FILE`), four
//! lists of regexes:
//!
//! - `phrases`: the reply says it approves (`承認します`, `Approved`, `LGTM`);
//! - `negations`: ... but negates it (`I haven't approved`, `承認しません`, `未承認`);
//! - `questions`: ... or asks (`Was this approved?`, `LGTM?`, `誰が承認しましたか？`);
//! - `requests`: ... or asks for it or waits for it (`please approve`, `承認待ちです`,
//!   `承認お願いします`).
//!
//! A reply counts when it matches a phrase and nothing of the other three lists. Text is
//! normalised first (NFKC-like folding of full-width ASCII, e.g. `？` → `?`, and invisible
//! characters removed) so that a look-alike question mark or a zero-width space changes nothing.

use regex::RegexSet;
use serde::Deserialize;

use crate::error::Error;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhraseSpec {
    pub phrases: Vec<String>,
    #[serde(default)]
    pub negations: Vec<String>,
    #[serde(default)]
    pub questions: Vec<String>,
    #[serde(default)]
    pub requests: Vec<String>,
}

#[derive(Debug)]
pub struct Phrases {
    phrases: RegexSet,
    refusals: [(&'static str, RegexSet); 3],
}

/// Why a reply that names approval still does not count (or that it does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    Affirmative,
    NoPhrase,
    Negation,
    Question,
    Request,
}

impl Phrases {
    pub fn new(spec: &PhraseSpec) -> Result<Self, Error> {
        let set = |what: &str, list: &[String]| {
            RegexSet::new(list).map_err(|e| Error::config(format!("approval {what}: {e}")))
        };
        Ok(Phrases {
            phrases: set("phrases", &spec.phrases)?,
            refusals: [
                ("negations", set("negations", &spec.negations)?),
                ("questions", set("questions", &spec.questions)?),
                ("requests", set("requests", &spec.requests)?),
            ],
        })
    }

    /// How `text` reads.
    pub fn read(&self, text: &str) -> Reading {
        let text = normalise(text);
        if !self.phrases.is_match(&text) {
            return Reading::NoPhrase;
        }
        for (i, (_, set)) in self.refusals.iter().enumerate() {
            if set.is_match(&text) {
                return [Reading::Negation, Reading::Question, Reading::Request][i];
            }
        }
        Reading::Affirmative
    }

    /// Whether `text` is an affirmative approval statement.
    pub fn approves(&self, text: &str) -> bool {
        self.read(text) == Reading::Affirmative
    }
}

/// Full-width ASCII (U+FF01..U+FF5E) folded to ASCII, the ideographic space to a space,
/// typographic apostrophes to `'`, invisible and bidi-control characters removed, Slack's
/// escaped `&gt;`/`&lt;`/`&amp;` decoded.
fn normalise(text: &str) -> String {
    let text = text
        .replace("&gt;", ">")
        .replace("&lt;", "<")
        .replace("&amp;", "&");
    text.chars()
        .filter_map(|c| match c {
            '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0),
            '\u{3000}' => Some(' '),
            '\u{2018}' | '\u{2019}' | '\u{02bc}' => Some('\''),
            c if crate::platform::input::is_invisible(c) => None,
            c => Some(c),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bastion::{WatchConfig, EMBEDDED};

    fn phrases() -> Phrases {
        Phrases::new(&WatchConfig::parse(EMBEDDED).unwrap().approval).unwrap()
    }

    /// Affirmative statements: each counts.
    const APPROVALS: &[&str] = &[
        "承認します",
        "承認しました",
        "確認しました、承認です",
        "承認！",
        "了承しました",
        "許可します",
        "問題ありません",
        "Approved",
        "Approved.",
        "approved!",
        "I approve this session",
        "I approve.",
        "LGTM",
        "lgtm 👍",
        "ＬＧＴＭ",
        "ok to proceed",
        "Okay to proceed, go ahead",
    ];

    /// Questions, negations and requests that name approval: none counts.
    const NOT_APPROVALS: &[(&str, Reading)] = &[
        ("I haven't approved this", Reading::Negation),
        ("I have not approved this", Reading::Negation),
        ("I didn’t approve this", Reading::Negation),
        ("nobody approved this", Reading::Negation),
        ("not approved", Reading::Negation),
        ("I don't approve", Reading::Negation),
        ("disapproved", Reading::NoPhrase),
        ("unapproved", Reading::NoPhrase),
        ("approved? no, unapproved", Reading::Negation),
        ("承認しません", Reading::Negation),
        ("承認していません", Reading::Negation),
        ("未承認です", Reading::Negation),
        ("承認できません", Reading::Negation),
        ("問題ありませんが承認はしない", Reading::Negation),
        ("Was this approved?", Reading::Question),
        ("LGTM?", Reading::Question),
        ("lgtm ?", Reading::Question),
        ("LGTM？", Reading::Question),
        ("approved?!", Reading::Question),
        ("who approved this", Reading::Question),
        ("Did anyone approve", Reading::Question),
        ("Can I approve this?", Reading::Question),
        ("誰が承認しましたか？", Reading::Question),
        ("誰が承認しましたか", Reading::Question),
        ("問題ありませんか？", Reading::Question),
        ("問題ありませんか", Reading::Question),
        ("承認しますか?", Reading::Question),
        ("承認でしょうか", Reading::Question),
        ("承認待ちです", Reading::Request),
        ("承認をお願いします", Reading::Request),
        ("承認お願いします", Reading::Request),
        ("承認してください", Reading::Request),
        ("承認依頼です", Reading::Request),
        ("承認が必要です", Reading::Request),
        ("please approve", Reading::Request),
        ("Please approve this session", Reading::Request),
        ("requesting approval: approve when ready", Reading::Request),
        ("awaiting approval, approve pls", Reading::Request),
        ("needs to be approved", Reading::Request),
    ];

    #[test]
    fn affirmative_statements_count() {
        let p = phrases();
        for text in APPROVALS {
            assert_eq!(p.read(text), Reading::Affirmative, "{text}");
            assert!(p.approves(text), "{text}");
        }
    }

    #[test]
    fn questions_negations_and_requests_never_count() {
        let p = phrases();
        for (text, why) in NOT_APPROVALS {
            assert_eq!(p.read(text), *why, "{text}");
            assert!(!p.approves(text), "{text}");
        }
        for text in ["who is this?", "確認中です", "却下", "ok"] {
            assert!(!p.approves(text), "{text}");
        }
    }

    #[test]
    fn invisible_characters_and_look_alikes_change_nothing() {
        let p = phrases();
        assert!(!p.approves("LGTM\u{200b}?"));
        assert!(!p.approves("I haven\u{2019}t approved"));
        assert!(!p.approves("承認\u{200d}待ち"));
        assert!(p.approves("Ap\u{200b}proved"));
    }

    #[test]
    fn the_lists_come_from_configuration() {
        let spec = PhraseSpec {
            phrases: vec!["(?i)ship it".into()],
            negations: vec![],
            questions: vec![r"\?".into()],
            requests: vec![],
        };
        let p = Phrases::new(&spec).unwrap();
        assert!(p.approves("Ship it"));
        assert!(!p.approves("ship it?"));
        assert!(!p.approves("approved"));
        let bad = PhraseSpec {
            questions: vec!["(".into()],
            ..spec
        };
        let e = Phrases::new(&bad).unwrap_err();
        assert!(e.to_string().contains("approval questions"), "{e}");
    }
}
