//! `approval`: the Slack interactivity endpoint of data-patch approvals (a Lambda function URL).
//! Every request is verified first (HMAC-SHA256 over the raw body, constant-time compare,
//! 5-minute window) and must not have been seen before (a replayed timestamp + signature):
//! otherwise 401 and nothing is recorded. An Approve / Reject click is then decided under the
//! one rule set in core (`patch::store::decide`): the clicker is a person with the `approver`
//! role, not the requester, deciding once; the answer goes to the request's thread.

use batchless_core::patch::approval::{Decision, Via};
use batchless_core::patch::message::{self, APPROVE_ACTION, REJECT_ACTION};
use batchless_core::patch::store::{self, Backend, Decider};
use batchless_core::platform::slack::function_url::{header, respond, verified_body};
use batchless_core::platform::slack::SlackClient;
use batchless_core::shared::people::People;
use batchless_core::{platform::aws, platform::config, platform::time, Error};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};

struct Deps {
    backend: Backend,
    sfn: aws_sdk_sfn::Client,
    slack: SlackClient,
    people: People,
    signing_secret: String,
}

async fn handler(event: Value, deps: &Deps) -> Result<Value, Error> {
    let raw = match verified_body(&deps.signing_secret, &event, time::now().timestamp()) {
        Ok(raw) => raw,
        Err(response) => return Ok(response),
    };
    let (ts, sig) = (
        header(&event, "x-slack-request-timestamp").unwrap_or_default(),
        header(&event, "x-slack-signature").unwrap_or_default(),
    );
    if !store::remember_request(&deps.backend.db, &deps.backend.patches_table, ts, sig).await? {
        tracing::warn!("rejected a replayed Slack request");
        return Ok(respond(401, json!({ "error": "replayed request" })));
    }
    let Some(payload) = message::interaction_payload(&raw) else {
        return Ok(respond(
            400,
            json!({ "error": "not an interactivity payload" }),
        ));
    };
    if payload["type"] != "block_actions" {
        return Ok(respond(
            200,
            json!({ "ok": true, "ignored": payload["type"] }),
        ));
    }
    let Some(action) = payload["actions"].as_array().and_then(|a| a.first()) else {
        return Ok(respond(200, json!({ "ok": true, "ignored": "no action" })));
    };
    let decision = match action["action_id"].as_str() {
        Some(APPROVE_ACTION) => Decision::Approve,
        Some(REJECT_ACTION) => Decision::Reject,
        other => return Ok(respond(200, json!({ "ok": true, "ignored": other }))),
    };
    let patch_id = action["value"].as_str().unwrap_or_default();
    let user = payload["user"]["id"].as_str().unwrap_or_default();
    if let Err(e) = batchless_core::platform::input::identifier("value", patch_id, 80) {
        return Ok(respond(400, json!({ "error": e.to_string() })));
    }
    let decider = Decider {
        person: deps.people.by_slack_user(user),
        identity: format!("slack:{user}"),
        via: Via::Slack,
        comment: None,
    };
    let st = deps.backend.store();
    let outcome =
        match store::decide(&st, &deps.sfn, &deps.people, patch_id, &decider, decision).await {
            Ok(o) => o,
            Err(Error::NotFound(what)) => {
                return Ok(respond(
                    200,
                    json!({ "ok": false, "error": format!("no {what}") }),
                ))
            }
            Err(e) => return Err(e),
        };
    let who = decider
        .person
        .map(|p| p.name.clone())
        .unwrap_or_else(|| format!("<@{user}>"));
    let summary = outcome.summary(&who, decision);
    tracing::info!(patch = %patch_id, user, outcome = %outcome.outcome, status = %outcome.status, "decision handled");
    if let Some(thread) = &outcome.thread {
        if let Err(e) = deps
            .slack
            .post_message(&message::thread_reply(
                &thread.channel,
                &thread.ts,
                &summary,
            ))
            .await
        {
            tracing::warn!(error = %e, "could not post the decision in the thread");
        }
    }
    Ok(respond(
        200,
        json!({ "ok": true, "outcome": outcome, "text": summary }),
    ))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws::load_config().await;
    let deps = Deps {
        backend: Backend::from_env(&sdk)?,
        sfn: aws::sfn(&sdk),
        slack: config::slack_client(&sdk).await?,
        people: People::load(&config::environment()?)?,
        signing_secret: config::slack_signing_secret(&sdk).await?,
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        handler(event.payload, &deps)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use batchless_core::platform::slack;

    fn deps() -> Deps {
        // Nothing below reaches AWS: the requests are rejected before.
        let region = || aws_sdk_dynamodb::config::Region::new("us-east-1");
        let nowhere = "http://127.0.0.1:9";
        Deps {
            backend: Backend {
                db: aws_sdk_dynamodb::Client::from_conf(
                    aws_sdk_dynamodb::Config::builder()
                        .behavior_version_latest()
                        .region(region())
                        .endpoint_url(nowhere)
                        .build(),
                ),
                s3: aws_sdk_s3::Client::from_conf(
                    aws_sdk_s3::Config::builder()
                        .behavior_version_latest()
                        .region(region())
                        .endpoint_url(nowhere)
                        .build(),
                ),
                patches_table: "p".into(),
                audit_table: "a".into(),
                bucket: "b".into(),
            },
            sfn: aws_sdk_sfn::Client::from_conf(
                aws_sdk_sfn::Config::builder()
                    .behavior_version_latest()
                    .region(region())
                    .endpoint_url(nowhere)
                    .build(),
            ),
            slack: SlackClient::new("http://127.0.0.1:9/api", "t"),
            people: People::parse(batchless_core::shared::people::EMBEDDED, "staging").unwrap(),
            signing_secret: "s3cr3t".into(),
        }
    }

    #[tokio::test]
    async fn forged_stale_and_unsigned_requests_get_401() {
        let d = deps();
        let body = "payload=%7B%7D";
        let now = time::now().timestamp();
        let sign = |secret: &str, ts: i64| {
            json!({"headers": {
                "x-slack-request-timestamp": ts.to_string(),
                "x-slack-signature": slack::sign(secret, &ts.to_string(), body.as_bytes()),
            }, "body": body})
        };
        for req in [
            sign("wrong", now),
            sign("s3cr3t", now - 301),
            json!({"headers": {}, "body": body}),
        ] {
            assert_eq!(handler(req, &d).await.unwrap()["statusCode"], 401);
        }
    }
}
