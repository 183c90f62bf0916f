//! `slack-events`: the Slack Events API endpoint (a Lambda function URL).
//! Every request is verified first (HMAC-SHA256 over the raw body with the signing secret,
//! constant-time compare, 5-minute window): a forged or stale request gets 401 and nothing is
//! recorded. `url_verification` is answered. A reply in a bastion login thread is judged
//! (core `bastion::approval`), recorded, and approval evidence ends the watch's wait.
//! Retries (`X-Slack-Retry-Num`) of an event already processed (`event_id`) are acknowledged
//! without a second effect. Processing is a handful of DynamoDB calls, well inside Slack's 3 s.

use batchless_core::bastion::approval::{self, Phrases, Reply, Verdict};
use batchless_core::bastion::session::{self, Approval};
use batchless_core::bastion::WatchConfig;
use batchless_core::platform::slack::function_url::{header, respond};
use batchless_core::platform::slack::{function_url, SlackClient};
use batchless_core::shared::people::People;
use batchless_core::{
    platform::aws, platform::config, platform::redact, platform::time, sfn::waits, Error,
};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};

struct Deps {
    db: aws_sdk_dynamodb::Client,
    sfn: aws_sdk_sfn::Client,
    slack: SlackClient,
    people: People,
    phrases: Phrases,
    table: String,
    signing_secret: String,
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
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
            let event_id = body
                .get("event_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let retry = header(&event, "x-slack-retry-num").map(str::to_string);
            let dedupe_pk = format!("slack-event#{event_id}");
            if !event_id.is_empty()
                && session::get_child(&deps.db, &deps.table, &dedupe_pk, "event")
                    .await?
                    .is_some()
            {
                tracing::info!(%event_id, retry = ?retry, "duplicate delivery acknowledged");
                return Ok(respond(200, json!({ "ok": true, "duplicate": true })));
            }
            let inner = body.get("event").cloned().unwrap_or(Value::Null);
            let outcome = process(&inner, deps).await?;
            if !event_id.is_empty() {
                let expires = time::now() + chrono::Duration::days(7);
                session::put_child(
                    &deps.db,
                    &deps.table,
                    &dedupe_pk,
                    "event",
                    &json!({
                        "eventId": event_id,
                        "retryNum": retry,
                        "processedAt": time::rfc3339(time::now()),
                        "outcome": outcome,
                        "expiresAtEpoch": expires.timestamp(),
                    }),
                )
                .await?;
            }
            Ok(respond(200, json!({ "ok": true, "outcome": outcome })))
        }
        other => Ok(respond(
            200,
            json!({ "ok": true, "ignored": other.unwrap_or("no type") }),
        )),
    }
}

/// Judge a message event; record the verdict; approval evidence ends the wait.
async fn process(ev: &Value, deps: &Deps) -> Result<Value, Error> {
    let get = |k: &str| ev.get(k).and_then(Value::as_str);
    if get("type") != Some("message") {
        return Ok(json!({ "ignored": "not a message" }));
    }
    let (Some(channel), Some(thread_ts), Some(ts)) = (get("channel"), get("thread_ts"), get("ts"))
    else {
        return Ok(json!({ "ignored": "not a thread reply" }));
    };
    if thread_ts == ts {
        return Ok(json!({ "ignored": "a thread's parent" }));
    }
    let Some(rec) = session::by_thread(&deps.db, &deps.table, channel, thread_ts).await? else {
        return Ok(json!({ "ignored": "not a bastion login thread" }));
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
    session::put_child(
        &deps.db,
        &deps.table,
        &session::pk(&rec.session_id),
        &format!("reply#{ts}"),
        &json!({
            "kind": "reply",
            "sessionId": rec.session_id,
            "slackUser": user,
            "personId": person_id,
            "text": redact::redact(text),
            "ts": ts,
            "verdict": verdict.as_str(),
            "judgedAt": now,
        }),
    )
    .await?;
    if verdict != Verdict::Evidence {
        tracing::info!(session = %rec.session_id, verdict = verdict.as_str(), "reply is not approval evidence");
        return Ok(json!({ "sessionId": rec.session_id, "verdict": verdict.as_str() }));
    }
    let person = person_id
        .as_deref()
        .and_then(|id| deps.people.by_id(id))
        .expect("evidence comes from a person in the map");
    let permalink = deps.slack.permalink(channel, ts).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "no permalink for the approval reply");
        String::new()
    });
    let approval = Approval {
        by: person.id.clone(),
        by_name: person.name.clone(),
        slack_user: user.to_string(),
        text: redact::redact(text).into_owned(),
        ts: ts.to_string(),
        permalink,
        recorded_at: now,
    };
    // The first evidence wins; later approvals are recorded as replies only.
    let updated = session::update(
        &deps.db,
        &deps.table,
        &rec.session_id,
        &[("approval", json!(approval))],
        Some(("attribute_not_exists(approval)", vec![])),
    )
    .await?;
    let Some(updated) = updated else {
        return Ok(
            json!({ "sessionId": rec.session_id, "verdict": "evidence", "alreadyApproved": true }),
        );
    };
    if updated.status == session::status::OPEN {
        session::update(
            &deps.db,
            &deps.table,
            &rec.session_id,
            &[("status", json!(session::status::APPROVED))],
            Some((
                "#status = :open",
                vec![(":open", json!(session::status::OPEN))],
            )),
        )
        .await?;
    }
    let ended = match &updated.task_token {
        Some(token) => waits::send_success(&deps.sfn, token, &json!(approval)).await?,
        None => false,
    };
    tracing::info!(session = %rec.session_id, by = %approval.by, ended, "approval evidence recorded");
    Ok(
        json!({ "sessionId": rec.session_id, "verdict": "evidence", "approvedBy": approval.by, "waitEnded": ended }),
    )
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let signing_secret = config::slack_signing_secret(&sdk).await?;
    let watch = WatchConfig::load()?;
    let deps = Deps {
        db: aws::dynamodb(&sdk),
        sfn: aws::sfn(&sdk),
        slack: config::slack_client(&sdk).await?,
        people: People::load(&config::environment()?)?,
        phrases: Phrases::new(&watch.approval)?,
        table: config::required("BASTION_TABLE")?,
        signing_secret,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps() -> Deps {
        let conf = |r: &str| aws_sdk_dynamodb::config::Region::new(r.to_string());
        let watch = WatchConfig::parse(batchless_core::bastion::EMBEDDED).unwrap();
        Deps {
            // Nothing below reaches AWS: the requests are rejected or answered before.
            db: aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::Config::builder()
                    .behavior_version_latest()
                    .region(conf("us-east-1"))
                    .endpoint_url("http://127.0.0.1:9")
                    .build(),
            ),
            sfn: aws_sdk_sfn::Client::from_conf(
                aws_sdk_sfn::Config::builder()
                    .behavior_version_latest()
                    .region(aws_sdk_sfn::config::Region::new("us-east-1"))
                    .endpoint_url("http://127.0.0.1:9")
                    .build(),
            ),
            slack: SlackClient::new("http://127.0.0.1:9/api", "t"),
            people: People::parse(batchless_core::shared::people::EMBEDDED, "staging").unwrap(),
            phrases: Phrases::new(&watch.approval).unwrap(),
            table: "t".into(),
            signing_secret: "s3cr3t".into(),
        }
    }

    use base64::Engine;
    use batchless_core::platform::slack;

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

    #[tokio::test]
    async fn forged_stale_and_unsigned_requests_get_401() {
        let d = deps();
        let body = r#"{"type":"event_callback","event_id":"Ev1","event":{}}"#;
        let now = time::now().timestamp();
        for req in [
            request(body, "wrong", now),
            request(body, "s3cr3t", now - 301),
            json!({"headers": {}, "body": body}),
        ] {
            let resp = handler(req, &d).await.unwrap();
            assert_eq!(resp["statusCode"], 401, "{resp}");
        }
    }

    #[tokio::test]
    async fn url_verification_is_answered_and_base64_bodies_are_read() {
        let d = deps();
        let body = r#"{"token":"x","challenge":"abc123","type":"url_verification"}"#;
        let resp = handler(request(body, "s3cr3t", time::now().timestamp()), &d)
            .await
            .unwrap();
        assert_eq!(resp["statusCode"], 200);
        assert_eq!(resp["body"], r#"{"challenge":"abc123"}"#);
        let mut req = request(body, "s3cr3t", time::now().timestamp());
        req["body"] = json!(base64::engine::general_purpose::STANDARD.encode(body));
        req["isBase64Encoded"] = json!(true);
        assert_eq!(handler(req, &d).await.unwrap()["statusCode"], 200);
    }
}
