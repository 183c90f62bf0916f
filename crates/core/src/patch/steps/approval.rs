//! `approval`: the Slack interactivity endpoint of data-patch approvals (a Lambda function
//! URL). Every request is verified first (HMAC-SHA256 over the raw body, constant-time
//! compare, 5-minute window) and must not have been seen before (a replayed timestamp +
//! signature, remembered once with `put_once`): otherwise 401 and nothing is recorded. An
//! Approve / Reject click is then decided under the one rule set (`shared::approval::decide`):
//! the clicker is a person with the `approver` role, not the requester, deciding once; a
//! concluded approval ends the workflow's wait (`waits::complete` on
//! `patch-approval#<patchId>`, or `migration-approval#<approvalId>` for a migration's pending
//! set: the same endpoint decides both subjects); the answer goes to the request's thread.

use aws_types::SdkConfig;
use serde::Serialize;
use serde_json::Value;

use crate::error::Error;
use crate::patch::approval::{Decision, Via};
use crate::patch::message::{self, APPROVE_ACTION, REJECT_ACTION};
use crate::patch::store::{self, ApprovalWait, Backend, Decider, DecisionOutcome};
use crate::platform::slack::function_url::{respond, verified_body};
use crate::platform::slack::{self, SlackClient};
use crate::platform::{aws, config, input, time};
use crate::shared::approval::record::{ApprovalRecord, SubjectKind};
use crate::shared::approval::{self as shared, MIGRATION_APPROVE_ACTION, MIGRATION_REJECT_ACTION};
use crate::shared::people::People;

/// What deciding needs, whichever endpoint the decision came through (this Slack endpoint
/// or the IAM-authenticated `decision` endpoint): the subjects' tables, their waits, the
/// people map, the sealer of every decision recorded, Slack for the answer in the thread.
pub struct Endpoint {
    pub backend: Backend,
    pub sfn: aws_sdk_sfn::Client,
    pub slack: SlackClient,
    pub people: People,
    pub waits_table: String,
    /// The approvals of every other subject (a migration's pending set).
    pub approvals_table: String,
    /// Seals every decision recorded here (`DECISION_SIGNING_KEY`).
    pub sealer: shared::Sealer,
}

impl Endpoint {
    /// The patch backend, `WAITS_TABLE`, `APPROVALS_TABLE`, Slack's bot token, the people map,
    /// `DECISION_SIGNING_KEY`.
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Endpoint {
            backend: Backend::from_env(sdk)?,
            sfn: aws::sfn(sdk),
            slack: config::slack_client(sdk).await?,
            people: People::load(&config::environment()?)?,
            waits_table: config::required("WAITS_TABLE")?,
            approvals_table: config::required("APPROVALS_TABLE")?,
            sealer: shared::Sealer::from_env(sdk)?,
        })
    }

    /// The wait of a patch approval.
    pub fn wait(&self) -> ApprovalWait<'_> {
        ApprovalWait {
            sfn: &self.sfn,
            table: &self.waits_table,
            sealer: &self.sealer,
        }
    }

    /// Decide subject `id` (a patch when `kind` is `None`) under the one rule set; `Ok(None)`
    /// when there is no such subject (the error's text names it).
    pub async fn decide(
        &self,
        kind: Option<SubjectKind>,
        id: &str,
        decider: &Decider<'_>,
        decision: Decision,
    ) -> Result<Result<DecisionOutcome, String>, Error> {
        let decided = match kind {
            None => {
                let st = self.backend.store();
                store::decide(&st, &self.wait(), &self.people, id, decider, decision).await
            }
            Some(kind) => {
                let approvals = shared::Approvals {
                    db: &self.backend.db,
                    table: &self.approvals_table,
                    trail: crate::shared::audit::Trail {
                        chain: kind.chain(),
                        ..self.backend.trail()
                    },
                    sfn: &self.sfn,
                    waits_table: &self.waits_table,
                    sealer: &self.sealer,
                };
                shared::decide::<ApprovalRecord>(&approvals, &self.people, id, decider, decision)
                    .await
                    .map_err(|e| match e {
                        Error::NotFound(_) => {
                            Error::NotFound(format!("{} approval {id}", kind.noun()))
                        }
                        other => other,
                    })
            }
        };
        match decided {
            Ok(o) => Ok(Ok(o)),
            Err(Error::NotFound(what)) => Ok(Err(format!("no {what}"))),
            Err(e) => Err(e),
        }
    }

    /// Say what came of a decision in the approval request's thread (a failure is logged).
    pub async fn tell_thread(&self, outcome: &DecisionOutcome, summary: &str) {
        if let Some(thread) = &outcome.thread {
            if let Err(e) = self
                .slack
                .post_message(&message::thread_reply(&thread.channel, &thread.ts, summary))
                .await
            {
                tracing::warn!(error = %e, "could not post the decision in the thread");
            }
        }
    }
}

/// A subject id as its kind has them: a patch id, or a migration approval id (`migration-`
/// and an execution name: up to 80 characters of Step Functions' [A-Za-z0-9_-]).
pub fn valid_id(kind: Option<SubjectKind>, field: &str, id: &str) -> Result<(), input::InputError> {
    match kind {
        None => input::identifier(field, id, 80),
        Some(_) if input::made_of(id, 100, b"_-") => Ok(()),
        Some(_) => Err(input::InputError::field(
            field,
            "must be 1-100 characters of [A-Za-z0-9_-]",
        )),
    }
}

pub struct Deps {
    pub endpoint: Endpoint,
    pub signing_secret: String,
}

impl Deps {
    /// The [`Endpoint`] and Slack's signing secret.
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        Ok(Deps {
            endpoint: Endpoint::from_env(sdk).await?,
            signing_secret: config::slack_signing_secret(sdk).await?,
        })
    }
}

/// A function URL request (headers, the raw body as Slack signed it): read through
/// `platform::slack::function_url`, never trusted before its signature is verified.
pub type Input = Value;

/// The function URL response (`statusCode`, `headers`, `body`: a [`Reply`] as JSON).
pub type Output = Value;

/// The body of the answer to Slack.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Reply {
    Refused {
        error: String,
    },
    Ignored {
        ok: bool,
        ignored: Value,
    },
    NoSuchPatch {
        ok: bool,
        error: String,
    },
    Decided {
        ok: bool,
        outcome: Box<DecisionOutcome>,
        text: String,
    },
}

fn reply(status: u16, body: Reply) -> Output {
    respond(
        status,
        serde_json::to_value(body).expect("a reply serializes"),
    )
}

fn ignored(what: impl Into<Value>) -> Output {
    reply(
        200,
        Reply::Ignored {
            ok: true,
            ignored: what.into(),
        },
    )
}

pub async fn handle(deps: &Deps, event: Input) -> Result<Output, Error> {
    let raw = match verified_body(&deps.signing_secret, &event, time::now().timestamp()) {
        Ok(raw) => raw,
        Err(response) => return Ok(response),
    };
    let Some(payload) = message::interaction_payload(&raw) else {
        return Ok(reply(
            400,
            Reply::Refused {
                error: "not an interactivity payload".into(),
            },
        ));
    };
    // The replay key is the payload's own id (signed with it): a click re-sent with a fresh
    // timestamp and signature is still the same click.
    let Some(key) = slack::interaction_replay_key(&payload) else {
        return Ok(reply(
            400,
            Reply::Refused {
                error: "the payload has no trigger_id or action_ts".into(),
            },
        ));
    };
    let backend = &deps.endpoint.backend;
    if !store::remember_request(&backend.db, &backend.patches_table, &key).await? {
        tracing::warn!("rejected a replayed Slack request");
        return Ok(reply(
            401,
            Reply::Refused {
                error: "replayed request".into(),
            },
        ));
    }
    if payload["type"] != "block_actions" {
        return Ok(ignored(payload["type"].clone()));
    }
    let Some(action) = payload["actions"].as_array().and_then(|a| a.first()) else {
        return Ok(ignored("no action"));
    };
    let (decision, subject) = match action["action_id"].as_str() {
        Some(APPROVE_ACTION) => (Decision::Approve, None),
        Some(REJECT_ACTION) => (Decision::Reject, None),
        Some(MIGRATION_APPROVE_ACTION) => (Decision::Approve, Some(SubjectKind::Migration)),
        Some(MIGRATION_REJECT_ACTION) => (Decision::Reject, Some(SubjectKind::Migration)),
        other => return Ok(ignored(other)),
    };
    let patch_id = action["value"].as_str().unwrap_or_default();
    let user = payload["user"]["id"].as_str().unwrap_or_default();
    if let Err(e) = valid_id(subject, "value", patch_id) {
        return Ok(reply(
            400,
            Reply::Refused {
                error: e.to_string(),
            },
        ));
    }
    let ep = &deps.endpoint;
    let decider = Decider {
        person: ep.people.by_slack_user(user),
        identity: format!("slack:{user}"),
        via: Via::Slack,
        comment: None,
    };
    let outcome = match ep.decide(subject, patch_id, &decider, decision).await? {
        Ok(o) => o,
        Err(error) => return Ok(reply(200, Reply::NoSuchPatch { ok: false, error })),
    };
    let who = decider
        .person
        .map(|p| p.name.clone())
        .unwrap_or_else(|| format!("<@{user}>"));
    let summary = outcome.summary(&who, decision);
    tracing::info!(patch = %patch_id, user, outcome = %outcome.outcome, status = %outcome.status, "decision handled");
    ep.tell_thread(&outcome, &summary).await;
    Ok(reply(
        200,
        Reply::Decided {
            ok: true,
            outcome: Box::new(outcome),
            text: summary,
        },
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::platform::slack;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;

    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use serde_json::json;

    fn deps(db_rules: &[&Rule]) -> Deps {
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, db_rules);
        Deps {
            endpoint: endpoint(db),
            signing_secret: "s3cr3t".into(),
        }
    }

    /// An endpoint on mocked tables (`db`), the staging people map, a sealer that verifies all.
    pub(crate) fn endpoint(db: aws_sdk_dynamodb::Client) -> Endpoint {
        Endpoint {
            backend: Backend {
                db,
                s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, []),
                patches_table: "patches".into(),
                audit_table: "audit".into(),
                bucket: "b".into(),
            },
            sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, []),
            slack: SlackClient::new("http://127.0.0.1:9/api", "t"),
            people: People::parse(crate::shared::people::EMBEDDED, "staging").unwrap(),
            waits_table: "waits".into(),
            approvals_table: "approvals".into(),
            sealer: crate::shared::approval::seal::tests::sealer(true),
        }
    }

    fn signed(secret: &str, ts: i64, body: &str) -> Value {
        json!({"headers": {
            "x-slack-request-timestamp": ts.to_string(),
            "x-slack-signature": slack::sign(secret, &ts.to_string(), body.as_bytes()),
        }, "body": body})
    }

    #[tokio::test]
    async fn forged_stale_and_unsigned_requests_get_401_and_touch_nothing() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .then_output(|| PutItemOutput::builder().build());
        let d = deps(&[&put]);
        let body = "payload=%7B%7D";
        let now = time::now().timestamp();
        for req in [
            signed("wrong", now, body),
            signed("s3cr3t", now - 301, body),
            json!({"headers": {}, "body": body}),
        ] {
            assert_eq!(handle(&d, req).await.unwrap()["statusCode"], 401);
        }
        assert_eq!(
            put.num_calls(),
            0,
            "nothing is remembered for a bad request"
        );
    }

    #[tokio::test]
    async fn a_replayed_request_gets_401() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.condition_expression() == Some("attribute_not_exists(#k)")
                    && crate::testing::attr_s(r.item(), "patchId")
                        .is_some_and(|k| k.starts_with("slack-request#"))
            })
            .then_error(crate::testing::put_item_failed);
        let get = seen();
        let d = deps(&[&put, &get]);
        let now = time::now().timestamp();
        let out = handle(&d, signed("s3cr3t", now, CLICK)).await.unwrap();
        assert_eq!(out["statusCode"], 401);
        assert!(out["body"].as_str().unwrap().contains("replayed"));
        assert_eq!(put.num_calls(), 1);
    }

    /// The replay marker as stored: the request was seen before.
    fn seen() -> Rule {
        mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
            aws_sdk_dynamodb::operation::get_item::GetItemOutput::builder()
                .set_item(Some(crate::platform::dynamo::to_item(
                    &store::SlackRequestSeen {
                        patch_id: "slack-request#x".into(),
                        expires_at_epoch: 1,
                    },
                )))
                .build()
        })
    }

    /// `{"type":"view_submission","trigger_id":"13345.98765.abc"}`, form-encoded.
    const CLICK: &str =
        "payload=%7B%22type%22%3A%22view_submission%22%2C%22trigger_id%22%3A%2213345.98765.abc%22%7D";

    /// One click signed twice (a fresh timestamp, so a fresh signature): the second is a
    /// replay, keyed on the payload's `trigger_id`, not on the headers.
    #[tokio::test]
    async fn a_click_re_signed_with_a_new_timestamp_is_still_a_replay() {
        use sha2::Digest;
        let key = format!(
            "slack-request#{}",
            hex::encode(sha2::Sha256::digest(b"trigger:13345.98765.abc"))
        );
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(move |r| {
                crate::testing::attr_s(r.item(), "patchId") == Some(key.as_str())
            })
            .sequence()
            .output(|| PutItemOutput::builder().build())
            .error(crate::testing::put_item_failed)
            .build();
        let get = seen();
        let d = deps(&[&put, &get]);
        let now = time::now().timestamp();
        let first = handle(&d, signed("s3cr3t", now, CLICK)).await.unwrap();
        assert_eq!(first["statusCode"], 200, "{first}");
        let again = handle(&d, signed("s3cr3t", now + 7, CLICK)).await.unwrap();
        assert_eq!(again["statusCode"], 401, "{again}");
        // And a payload without its own id is refused before anything is remembered.
        let bare = handle(&d, signed("s3cr3t", now, "payload=%7B%7D"))
            .await
            .unwrap();
        assert_eq!(bare["statusCode"], 400, "{bare}");
        assert_eq!(put.num_calls(), 2);
    }

    #[tokio::test]
    async fn a_first_request_that_is_not_a_click_is_ignored() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .then_output(|| PutItemOutput::builder().build());
        let d = deps(&[&put]);
        let now = time::now().timestamp();
        let out = handle(&d, signed("s3cr3t", now, CLICK)).await.unwrap();
        assert_eq!(out["statusCode"], 200);
        let body: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
        assert_eq!(body, json!({"ok": true, "ignored": "view_submission"}));
    }

    /// A signed click on a migration approval's button (`value` = the approval id).
    fn migration_click(value: &str, trigger: &str) -> String {
        let payload = json!({
            "type": "block_actions", "user": {"id": "U0ALICE01"}, "trigger_id": trigger,
            "actions": [{"action_id": MIGRATION_APPROVE_ACTION, "value": value, "action_ts": "1.2"}],
        });
        let enc: String = payload
            .to_string()
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        format!("payload={enc}")
    }

    #[tokio::test]
    async fn a_migration_click_is_decided_on_the_approvals_table() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .then_output(|| PutItemOutput::builder().build());
        let get = mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| r.table_name() == Some("approvals"))
            .then_output(|| {
                aws_sdk_dynamodb::operation::get_item::GetItemOutput::builder().build()
            });
        let d = deps(&[&put, &get]);
        let now = time::now().timestamp();
        // An execution name may hold `_` and be 80 characters long.
        let id = format!("migration-{}_x", "e".repeat(76));
        let body = migration_click(&id, "t-mig-1");
        let out = handle(&d, signed("s3cr3t", now, &body)).await.unwrap();
        assert_eq!(out["statusCode"], 200, "{out}");
        let reply: Value = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
        assert_eq!(
            reply["error"],
            format!("no migration approval {id}"),
            "{reply}"
        );
        assert_eq!(get.num_calls(), 1);
        // Not an approval id: refused before anything is read.
        let body = migration_click("migration-e1;drop", "t-mig-2");
        let out = handle(&d, signed("s3cr3t", now, &body)).await.unwrap();
        assert_eq!(out["statusCode"], 400, "{out}");
        assert_eq!(get.num_calls(), 1);
    }
}
