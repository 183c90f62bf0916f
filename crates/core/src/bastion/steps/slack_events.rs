//! `slack-events`: the Slack Events API endpoint (a Lambda function URL).
//! Every request is verified first (HMAC-SHA256 over the raw body with the signing secret,
//! constant-time compare, 5-minute window): a forged or stale request gets 401 and nothing is
//! recorded. `url_verification` is answered. A reply in a bastion login thread is judged
//! (`bastion::approval`), recorded, and approval evidence completes the watch's wait
//! (`sfn::waits::complete` on `session-approval#<sessionId>`). An event is claimed by its own
//! `event_id` with one `put_once` *before* it is processed, so a retry (`X-Slack-Retry-Num`)
//! or a concurrent duplicate does nothing (the claim is released when processing fails, so
//! Slack's retry runs it). Only events of the configured workspace and app (`team_id`,
//! `api_app_id` against `SLACK_TEAM_ID` / `SLACK_API_APP_ID`) are processed. Processing is a
//! handful of DynamoDB calls, well inside Slack's 3 s.

use aws_types::SdkConfig;
use serde::Serialize;
use serde_json::{json, Value};

use crate::bastion::approval::{self, Phrases, Reply, Verdict};
use crate::bastion::session::{Approval, ItemKind, ReplyRecord, SlackEventRecord, Store};
use crate::bastion::WatchConfig;
use crate::error::Error;
use crate::platform::dynamo::Once;
use crate::platform::slack::function_url::{self, header, respond};
use crate::platform::slack::{self, SlackClient};
use crate::platform::{aws, config, redact, time};
use crate::sfn::waits::{self, WaitKind};
use crate::shared::approval::Sealer;
use crate::shared::people::People;

pub struct Deps {
    pub store: Store,
    pub db: aws_sdk_dynamodb::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub slack: SlackClient,
    pub people: People,
    pub phrases: Phrases,
    pub waits_table: String,
    pub signing_secret: String,
    /// The Slack workspace (`team_id`) and app (`api_app_id`) whose events count.
    pub team_id: String,
    pub api_app_id: String,
    /// Seals the approval evidence recorded (`DECISION_SIGNING_KEY`).
    pub sealer: Sealer,
}

impl Deps {
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, Error> {
        let db = aws::dynamodb(sdk);
        let watch = WatchConfig::load()?;
        Ok(Deps {
            store: Store::new(db.clone(), &config::required("BASTION_TABLE")?),
            db,
            sfn: aws::sfn(sdk),
            slack: config::slack_client(sdk).await?,
            people: People::load(&config::environment()?)?,
            phrases: Phrases::new(&watch.approval)?,
            waits_table: config::required("WAITS_TABLE")?,
            signing_secret: config::slack_signing_secret(sdk).await?,
            team_id: config::required("SLACK_TEAM_ID")?,
            api_app_id: config::required("SLACK_API_APP_ID")?,
            sealer: Sealer::from_env(sdk)?,
        })
    }
}

/// The function URL request, exactly as AWS delivers it (headers, raw body, base64 flag): it
/// is read only through `function_url::verified_body`, which checks the signature first.
pub type Input = Value;

/// The function URL response (`statusCode`, `headers`, `body`).
pub type Output = Value;

/// What became of one event (the `outcome` of the answer, remembered with the event id).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub already_approved: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_ended: Option<bool>,
}

impl Outcome {
    fn ignored(why: &'static str) -> Self {
        Outcome {
            ignored: Some(why),
            ..Default::default()
        }
    }
}

pub async fn handle(deps: &Deps, event: Input) -> Result<Output, Error> {
    let raw =
        match function_url::verified_body(&deps.signing_secret, &event, time::now().timestamp()) {
            Ok(raw) => raw,
            Err(response) => return Ok(response),
        };
    let Ok(body) = serde_json::from_slice::<Value>(&raw) else {
        // Interactivity payloads (form-encoded) are not used by the bastion watch.
        return Ok(respond(
            200,
            json!({ "ok": true, "ignored": "not a JSON event" }),
        ));
    };
    match body.get("type").and_then(Value::as_str) {
        Some("url_verification") => {
            let challenge = body.get("challenge").and_then(Value::as_str).unwrap_or("");
            Ok(respond(200, json!({ "challenge": challenge })))
        }
        Some("event_callback") => {
            if let Err(field) = slack::check_app(&body, &deps.team_id, &deps.api_app_id) {
                tracing::warn!(%field, "a signed event of another workspace or app: ignored");
                return Ok(respond(
                    403,
                    json!({ "error": format!("{field} is not this app's") }),
                ));
            }
            let Some(event_id) = slack::replay_key(&body) else {
                return Ok(respond(400, json!({ "error": "event_id missing" })));
            };
            let retry = header(&event, "x-slack-retry-num").map(str::to_string);
            let claim = SlackEventRecord::new(
                &event_id,
                retry.clone(),
                time::now(),
                json!({ "processing": true }),
            );
            if let Once::Seen(prev) = deps.store.remember_slack_event(&claim).await? {
                tracing::info!(%event_id, retry = ?retry, "duplicate delivery acknowledged");
                return Ok(respond(
                    200,
                    json!({ "ok": true, "duplicate": true, "outcome": prev.outcome }),
                ));
            }
            let inner = body.get("event").cloned().unwrap_or(Value::Null);
            let outcome = match process(&inner, deps).await {
                Ok(outcome) => serde_json::to_value(&outcome).expect("an outcome serializes"),
                Err(e) => {
                    if let Err(release) = deps.store.forget_slack_event(&event_id).await {
                        tracing::error!(%event_id, error = %release, "could not release the event's claim");
                    }
                    return Err(e);
                }
            };
            deps.store.slack_event_outcome(&event_id, &outcome).await?;
            Ok(respond(200, json!({ "ok": true, "outcome": outcome })))
        }
        other => Ok(respond(
            200,
            json!({ "ok": true, "ignored": other.unwrap_or("no type") }),
        )),
    }
}

/// Judge a message event; record the verdict; approval evidence completes the wait.
async fn process(ev: &Value, deps: &Deps) -> Result<Outcome, Error> {
    let get = |k: &str| ev.get(k).and_then(Value::as_str);
    if get("type") != Some("message") {
        return Ok(Outcome::ignored("not a message"));
    }
    let (Some(channel), Some(thread_ts), Some(ts)) = (get("channel"), get("thread_ts"), get("ts"))
    else {
        return Ok(Outcome::ignored("not a thread reply"));
    };
    if thread_ts == ts {
        return Ok(Outcome::ignored("a thread's parent"));
    }
    let Some(rec) = deps.store.by_thread(channel, thread_ts).await? else {
        return Ok(Outcome::ignored("not a bastion login thread"));
    };
    let user = get("user").unwrap_or_default();
    let text = get("text").unwrap_or_default();
    let reply = Reply {
        user,
        text,
        from_bot: ev.get("bot_id").is_some_and(|v| !v.is_null()),
        subtype: get("subtype"),
    };
    let (verdict, person_id) = approval::judge(
        &reply,
        rec.person_id.as_deref(),
        &deps.people,
        &deps.phrases,
    );
    let now = time::rfc3339(time::now());
    deps.store
        .record_reply(&ReplyRecord {
            pk: rec.pk.clone(),
            sk: ReplyRecord::sk_for(ts),
            kind: ItemKind::Reply,
            session_id: rec.session_id.clone(),
            slack_user: user.to_string(),
            person_id: person_id.clone(),
            text: redact::redact(text).into_owned(),
            ts: ts.to_string(),
            verdict,
            judged_at: now.clone(),
        })
        .await?;
    let judged = Outcome {
        session_id: Some(rec.session_id.clone()),
        verdict: Some(verdict),
        ..Default::default()
    };
    if verdict != Verdict::Evidence {
        tracing::info!(session = %rec.session_id, verdict = verdict.as_str(), "reply is not approval evidence");
        return Ok(judged);
    }
    let person = person_id
        .as_deref()
        .and_then(|id| deps.people.by_id(id))
        .expect("evidence comes from a person in the map");
    let permalink = deps.slack.permalink(channel, ts).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "no permalink for the approval reply");
        String::new()
    });
    let mut approval = Approval {
        by: person.id.clone(),
        by_name: person.name.clone(),
        slack_user: user.to_string(),
        text: redact::redact(text).into_owned(),
        ts: ts.to_string(),
        permalink,
        recorded_at: now,
        seal: None,
    };
    approval.seal = Some(
        deps.sealer
            .sign(approval.seal_message(&rec.session_id))
            .await?,
    );
    // The first evidence wins; later approvals are recorded as replies only.
    if deps
        .store
        .record_approval(&rec.session_id, &approval)
        .await?
        .is_none()
    {
        return Ok(Outcome {
            already_approved: Some(true),
            ..judged
        });
    }
    let ended = waits::complete(
        &deps.db,
        &deps.sfn,
        &deps.waits_table,
        &WaitKind::SessionApproval.key(&rec.session_id),
        &serde_json::to_value(&approval).expect("an approval serializes"),
    )
    .await?;
    tracing::info!(session = %rec.session_id, by = %approval.by, ended, "approval evidence recorded");
    Ok(Outcome {
        approved_by: Some(approval.by),
        wait_ended: Some(ended),
        ..judged
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bastion::session::SessionRecord;
    use crate::bastion::steps::fake_slack;
    use crate::platform::dynamo::to_item;
    use crate::platform::slack;
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_dynamodb::operation::query::QueryOutput;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_sdk_sfn::operation::send_task_success::SendTaskSuccessOutput;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
    use base64::Engine;

    async fn deps(db: &[&Rule], sfn: &[&Rule]) -> (Deps, fake_slack::Calls) {
        let watch = WatchConfig::parse(crate::bastion::EMBEDDED).unwrap();
        let (slack, calls) = fake_slack::start(false).await;
        let db = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, db);
        let d = Deps {
            store: Store::new(db.clone(), "bastion"),
            db,
            sfn: mock_client!(aws_sdk_sfn, RuleMode::MatchAny, sfn),
            slack,
            people: crate::bastion::fixtures::people(),
            phrases: Phrases::new(&watch.approval).unwrap(),
            waits_table: "waits".into(),
            signing_secret: "s3cr3t".into(),
            team_id: "T0REPLICA".into(),
            api_app_id: "A0BATCHLESS".into(),
            sealer: crate::shared::approval::seal::tests::sealer(true),
        };
        (d, calls)
    }

    fn request(body: &str, secret: &str, ts: i64) -> Value {
        let ts = ts.to_string();
        json!({
            "headers": {
                "x-slack-request-timestamp": ts,
                "x-slack-signature": slack::sign(secret, &ts, body.as_bytes()),
                "content-type": "application/json",
            },
            "body": body,
            "isBase64Encoded": false,
        })
    }

    fn answer(resp: &Value) -> Value {
        serde_json::from_str(resp["body"].as_str().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn forged_stale_and_unsigned_requests_get_401() {
        let (d, _) = deps(&[], &[]).await;
        let body = r#"{"type":"event_callback","event_id":"Ev1","event":{}}"#;
        let now = time::now().timestamp();
        for req in [
            request(body, "wrong", now),
            request(body, "s3cr3t", now - 301),
            json!({"headers": {}, "body": body}),
        ] {
            let resp = handle(&d, req).await.unwrap();
            assert_eq!(resp["statusCode"], 401, "{resp}");
        }
    }

    #[tokio::test]
    async fn url_verification_is_answered_and_base64_bodies_are_read() {
        let (d, _) = deps(&[], &[]).await;
        let body = r#"{"token":"x","challenge":"abc123","type":"url_verification"}"#;
        let resp = handle(&d, request(body, "s3cr3t", time::now().timestamp()))
            .await
            .unwrap();
        assert_eq!(resp["statusCode"], 200);
        assert_eq!(resp["body"], r#"{"challenge":"abc123"}"#);
        let mut req = request(body, "s3cr3t", time::now().timestamp());
        req["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
        req["isBase64Encoded"] = json!(true);
        assert_eq!(handle(&d, req).await.unwrap()["statusCode"], 200);
    }

    fn session() -> SessionRecord {
        let mut rec = crate::bastion::fixtures::posted("s1", true);
        rec.thread_key = Some("C0BASTION:1.5".into());
        rec
    }

    fn reply_body(user: &str, text: &str) -> String {
        json!({"type": "event_callback", "event_id": "EvA1", "team_id": "T0REPLICA",
            "api_app_id": "A0BATCHLESS", "event": {
            "type": "message", "channel": "C0BASTION", "user": user, "text": text,
            "ts": "1.7", "thread_ts": "1.5"}})
        .to_string()
    }

    /// A signed, fresh request carrying [`reply_body`].
    fn reply(user: &str, text: &str) -> Value {
        request(&reply_body(user, text), "s3cr3t", time::now().timestamp())
    }

    fn by_thread() -> Rule {
        mock!(aws_sdk_dynamodb::Client::query)
            .match_requests(|r| r.index_name() == Some("byThread"))
            .then_output(|| QueryOutput::builder().items(to_item(&session())).build())
    }

    fn not_seen() -> Rule {
        mock!(aws_sdk_dynamodb::Client::get_item)
            .match_requests(|r| r.key().unwrap()["pk"].as_s().unwrap() == "slack-event#EvA1")
            .then_output(|| GetItemOutput::builder().build())
    }

    #[tokio::test]
    async fn an_executives_approval_is_recorded_and_completes_the_wait() {
        let seen = not_seen();
        let query = by_thread();
        let puts = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| r.condition_expression() == Some("attribute_not_exists(#k)"))
            .then_output(|| PutItemOutput::builder().build());
        let mut approved = session();
        approved.approval = Some(crate::bastion::fixtures::carol_approves(
            "承認します",
            "1.7",
        ));
        let updates = mock!(aws_sdk_dynamodb::Client::update_item).then_output(move || {
            UpdateItemOutput::builder()
                .set_attributes(Some(to_item(&approved)))
                .build()
        });
        let take = mock!(aws_sdk_dynamodb::Client::delete_item)
            .match_requests(|r| {
                r.table_name() == Some("waits")
                    && r.key().unwrap()["waitKey"].as_s().unwrap() == "session-approval#s1"
            })
            .then_output(|| {
                DeleteItemOutput::builder()
                    .set_attributes(Some(to_item(&crate::bastion::fixtures::waiter())))
                    .build()
            });
        let send = mock!(aws_sdk_sfn::Client::send_task_success)
            .match_requests(|r| r.task_token() == Some("tok"))
            .then_output(|| SendTaskSuccessOutput::builder().build());
        let (d, _) = deps(&[&seen, &query, &puts, &updates, &take], &[&send]).await;
        let resp = handle(&d, reply("U0CAROL01", "承認します")).await.unwrap();
        let out = answer(&resp);
        assert_eq!(out["outcome"]["verdict"], "evidence", "{out}");
        assert_eq!(out["outcome"]["approvedBy"], "carol", "{out}");
        assert_eq!(out["outcome"]["waitEnded"], true, "{out}");
        // The event (claimed first) and the reply are each written once; the approval, the
        // status, then the event's outcome.
        assert_eq!(puts.num_calls(), 2);
        assert_eq!(updates.num_calls(), 3);
        assert_eq!((take.num_calls(), send.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_non_executive_reply_is_recorded_and_ends_nothing() {
        let seen = not_seen();
        let query = by_thread();
        let puts = mock!(aws_sdk_dynamodb::Client::put_item)
            .then_output(|| PutItemOutput::builder().build());
        let outcome = mock!(aws_sdk_dynamodb::Client::update_item)
            .then_output(|| UpdateItemOutput::builder().build());
        let (d, _) = deps(&[&seen, &query, &puts, &outcome], &[]).await;
        let resp = handle(&d, reply("U0BOB0001", "approved")).await.unwrap();
        let out = answer(&resp);
        assert_eq!(out["outcome"]["verdict"], "not_executive", "{out}");
        assert!(out["outcome"].get("waitEnded").is_none(), "{out}");
        assert_eq!(puts.num_calls(), 2);
    }

    /// The claim's conditional put loses: the event was (or is being) processed elsewhere.
    fn claimed_before() -> [Rule; 2] {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.item().unwrap()["pk"].as_s().unwrap() == "slack-event#EvA1"
                    && r.condition_expression() == Some("attribute_not_exists(#k)")
            })
            .then_error(|| {
                aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(
                    aws_sdk_dynamodb::types::error::ConditionalCheckFailedException::builder()
                        .meta(crate::testing::meta("ConditionalCheckFailedException"))
                        .build(),
                )
            });
        let get = mock!(aws_sdk_dynamodb::Client::get_item).then_output(|| {
            GetItemOutput::builder()
                .set_item(Some(to_item(&SlackEventRecord::new(
                    "EvA1",
                    None,
                    time::now(),
                    json!({"verdict": "evidence"}),
                ))))
                .build()
        });
        [put, get]
    }

    #[tokio::test]
    async fn the_event_is_claimed_before_it_is_processed() {
        let [put, get] = claimed_before();
        let query = by_thread();
        let (d, calls) = deps(&[&put, &get, &query], &[]).await;
        let out = answer(&handle(&d, reply("U0CAROL01", "approved")).await.unwrap());
        assert_eq!(out["duplicate"], true, "{out}");
        // One conditional put decided it; the reply was never looked at.
        assert_eq!((put.num_calls(), query.num_calls()), (1, 0));
        assert!(calls.all().is_empty());
    }

    #[tokio::test]
    async fn a_failed_processing_releases_the_claim() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .then_output(|| PutItemOutput::builder().build());
        let query = mock!(aws_sdk_dynamodb::Client::query).then_error(|| {
            aws_sdk_dynamodb::operation::query::QueryError::ProvisionedThroughputExceededException(
                aws_sdk_dynamodb::types::error::ProvisionedThroughputExceededException::builder()
                    .meta(crate::testing::meta(
                        "ProvisionedThroughputExceededException",
                    ))
                    .build(),
            )
        });
        let release = mock!(aws_sdk_dynamodb::Client::delete_item)
            .match_requests(|r| {
                r.table_name() == Some("bastion")
                    && r.key().unwrap()["pk"].as_s().unwrap() == "slack-event#EvA1"
            })
            .then_output(|| DeleteItemOutput::builder().build());
        let (d, _) = deps(&[&put, &query, &release], &[]).await;
        let req = reply("U0CAROL01", "approved");
        assert!(handle(&d, req).await.is_err());
        assert_eq!(release.num_calls(), 1);
    }

    #[tokio::test]
    async fn events_of_another_workspace_or_app_are_refused_untouched() {
        let (d, calls) = deps(&[], &[]).await;
        for (team, app) in [
            ("T0OTHER", "A0BATCHLESS"),
            ("T0REPLICA", "A0OTHER"),
            ("", ""),
        ] {
            let mut body: Value =
                serde_json::from_str(&reply_body("U0CAROL01", "approved")).unwrap();
            body["team_id"] = json!(team);
            body["api_app_id"] = json!(app);
            let resp = handle(
                &d,
                request(&body.to_string(), "s3cr3t", time::now().timestamp()),
            )
            .await
            .unwrap();
            assert_eq!(resp["statusCode"], 403, "{resp}");
        }
        assert!(calls.all().is_empty());
    }

    #[tokio::test]
    async fn a_redelivered_event_is_acknowledged_without_effect() {
        let [put, seen] = claimed_before();
        let (d, calls) = deps(&[&put, &seen], &[]).await;
        let mut req = reply("U0CAROL01", "approved");
        req["headers"]["x-slack-retry-num"] = json!("1");
        let out = answer(&handle(&d, req).await.unwrap());
        assert_eq!(out["duplicate"], true, "{out}");
        assert!(calls.all().is_empty());
    }
}
