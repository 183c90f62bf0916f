//! The unit tests' sample login and session record: alice's login `t1` into the `bastion`
//! cluster at 13:00 on 2026-11-28, due a day later (one source for every step's tests).

use crate::bastion::login::{from_event, sample_event, Login};
use crate::bastion::session::{SessionRecord, Times};
use crate::shared::people::{People, EMBEDDED};

/// alice's login (`arn:aws:iam::123456789012:user/alice`, task `t1`, cluster `bastion`).
pub fn login(session_id: &str) -> Login {
    from_event(&sample_event(
        session_id,
        "arn:aws:iam::123456789012:user/alice",
        "bastion",
        "t1",
        "2026-11-28T13:00:00Z",
    ))
    .unwrap()
    .unwrap()
}

/// The people map the tests judge by (the embedded one, staging).
pub fn people() -> People {
    People::parse(EMBEDDED, "staging").unwrap()
}

/// The record of [`login`], due at 13:00 the next day (reminder at 12:00), not yet posted;
/// `known`: alice is looked up in [`people`] (else the record names no person).
pub fn session(session_id: &str, known: bool) -> SessionRecord {
    let login = login(session_id);
    let people = people();
    SessionRecord::new(
        &login,
        if known {
            people.by_principal(&login.exec.principal_arn)
        } else {
            None
        },
        "staging",
        session_id,
        None,
        Times {
            deadline_at: "2026-11-29T13:00:00Z".into(),
            reminder_at: "2026-11-29T12:00:00Z".into(),
            recorded_at: "2026-11-28T13:00:01Z".into(),
        },
    )
}

/// [`session`] posted: its login message is `1.5` in `C0BASTION`.
pub fn posted(session_id: &str, known: bool) -> SessionRecord {
    let mut rec = session(session_id, known);
    rec.channel = Some("C0BASTION".into());
    rec.thread_ts = Some("1.5".into());
    rec
}

/// carol's approval evidence: her reply `text` at `ts` in the login thread.
pub fn carol_approves(text: &str, ts: &str) -> crate::bastion::session::Approval {
    crate::bastion::session::Approval {
        by: "carol".into(),
        by_name: "Carol".into(),
        slack_user: "U0CAROL01".into(),
        text: text.into(),
        ts: ts.into(),
        permalink: String::new(),
        recorded_at: "2026-11-28T14:00:00Z".into(),
        seal: Some("c2VhbGVkLWJ5LXRlc3Q=".into()),
    }
}

/// The approval wait's waiter of session `s1` (task token `tok`), as the waits table holds it.
pub fn waiter() -> crate::sfn::waits::Waiter {
    crate::sfn::waits::Waiter {
        wait_key: "session-approval#s1".into(),
        task_token: "tok".into(),
        execution_arn: "arn:e".into(),
        registered_at: "2026-11-28T13:00:00Z".into(),
        expires_at: "2027-11-28T13:00:00Z".into(),
    }
}

/// A first `put_once` (`PutItem` on the condition that the key is new) of an item holding each
/// of `fields` (attribute, string value); it answers that the item is stored.
pub fn put_once_of(fields: &'static [(&'static str, &'static str)]) -> aws_smithy_mocks::Rule {
    aws_smithy_mocks::mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests(move |r| {
            let item = r.item().unwrap();
            r.condition_expression() == Some("attribute_not_exists(#k)")
                && fields.iter().all(|(k, v)| item[*k].as_s().unwrap() == v)
        })
        .then_output(|| aws_sdk_dynamodb::operation::put_item::PutItemOutput::builder().build())
}

/// The bastion table (`bastion`) on a DynamoDB client that answers with `rules`.
pub fn store(rules: &[&aws_smithy_mocks::Rule]) -> crate::bastion::session::Store {
    crate::bastion::session::Store::new(
        aws_smithy_mocks::mock_client!(
            aws_sdk_dynamodb,
            aws_smithy_mocks::RuleMode::MatchAny,
            rules
        ),
        "bastion",
    )
}
