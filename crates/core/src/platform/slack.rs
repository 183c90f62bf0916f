//! The Slack Web API client (base URL configurable, so tests and the demo use the replica's
//! fake Slack) and Slack request-signature verification.

use aws_smithy_runtime_api::client::http::{HttpConnector, SharedHttpConnector};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::Kind;

pub const DEFAULT_BASE_URL: &str = "https://slack.com/api";
/// Slack's replay window for signed requests.
pub const MAX_SKEW_SECONDS: i64 = 5 * 60;

#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    #[error("slack {method} failed: {error}")]
    Api { method: String, error: String },
    #[error("slack {method} rate limited (retry after {retry_after}s)")]
    RateLimited { method: String, retry_after: u64 },
    #[error("slack {method}: transport error: {message}")]
    Transport { method: String, message: String },
}

impl SlackError {
    pub fn kind(&self) -> Kind {
        match self {
            SlackError::RateLimited { .. } => Kind::Throttled,
            _ => Kind::SlackError,
        }
    }
}

/// A message as posted: where it went and its `ts` (the thread key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Message {
    pub channel: String,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_ts: Option<String>,
}

#[derive(Clone)]
pub struct SlackClient {
    base_url: String,
    token: String,
    http: SharedHttpConnector,
}

/// How long one Web API call may take, connection included.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl std::fmt::Debug for SlackClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackClient")
            .field("base_url", &self.base_url)
            .field("token", &"[REDACTED]")
            .finish()
    }
}

impl SlackClient {
    /// A client on the process's one HTTPS connector ([`crate::platform::aws::https_connector`]),
    /// shared with the AWS SDK: one TLS configuration, one parse of the root certificates.
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Self {
        Self::with_connector(base_url, token, crate::platform::aws::https_connector())
    }

    /// A client on the given connector (a test's, or one with other TLS settings).
    pub fn with_connector(
        base_url: impl Into<String>,
        token: impl Into<String>,
        http: SharedHttpConnector,
    ) -> Self {
        SlackClient {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            token: token.into(),
            http,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Call a Web API method with a JSON body; Slack answers 200 with `ok: false` on errors.
    ///
    /// The HTTPS connector is the AWS SDK's (hyper + rustls with ring, the system's roots), so
    /// a function carries one HTTP stack, not two (BENCHMARKS.md, bootstrap size).
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, SlackError> {
        let transport = |message: String| SlackError::Transport {
            method: method.to_string(),
            message,
        };
        let mut request = HttpRequest::new(SdkBody::from(
            serde_json::to_vec(body).expect("a JSON value serializes"),
        ));
        request
            .set_method("POST")
            .map_err(|e| transport(e.to_string()))?;
        request
            .set_uri(format!("{}/{method}", self.base_url))
            .map_err(|e| transport(format!("bad URL: {e}")))?;
        let headers = request.headers_mut();
        headers.insert("content-type", "application/json; charset=utf-8");
        headers
            .try_insert("authorization", format!("Bearer {}", self.token))
            .map_err(|_| transport("the bot token is not a valid header value".into()))?;
        let exchange = async {
            let response = self
                .http
                .call(request)
                .await
                .map_err(|e| transport(e.to_string()))?;
            let status = response.status().as_u16();
            let retry_after = response.headers().get("retry-after").map(str::to_string);
            let bytes = ByteStream::new(response.into_body())
                .collect()
                .await
                .map_err(|e| transport(e.to_string()))?
                .into_bytes();
            Ok::<_, SlackError>((status, retry_after, bytes))
        };
        let (status, retry_after, bytes) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| transport(format!("no answer within {CALL_TIMEOUT:?}")))??;
        if status == 429 {
            return Err(SlackError::RateLimited {
                method: method.to_string(),
                retry_after: retry_after.and_then(|v| v.trim().parse().ok()).unwrap_or(1),
            });
        }
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| transport(format!("HTTP {status}, the answer is not JSON: {e}")))?;
        if value.get("ok").and_then(Value::as_bool) == Some(true) {
            Ok(value)
        } else {
            Err(SlackError::Api {
                method: method.to_string(),
                error: value
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown_error")
                    .to_string(),
            })
        }
    }

    pub async fn post_message(&self, message: &Message) -> Result<Posted, SlackError> {
        let body = serde_json::to_value(message).expect("message serializes");
        let resp = self.call("chat.postMessage", &body).await?;
        Ok(Posted {
            channel: resp
                .get("channel")
                .and_then(Value::as_str)
                .unwrap_or(&message.channel)
                .to_string(),
            ts: resp
                .get("ts")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
    }

    pub async fn permalink(&self, channel: &str, ts: &str) -> Result<String, SlackError> {
        let resp = self
            .call(
                "chat.getPermalink",
                &json!({"channel": channel, "message_ts": ts}),
            )
            .await?;
        Ok(resp
            .get("permalink")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing X-Slack-Request-Timestamp or X-Slack-Signature")]
    Missing,
    #[error("request timestamp is not a number")]
    BadTimestamp,
    #[error("request timestamp is more than 5 minutes from now")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

/// Verify a Slack request: HMAC-SHA256 of `v0:{timestamp}:{raw body}` with the signing secret,
/// compared in constant time with `X-Slack-Signature`, within a 5-minute window of `now`.
pub fn verify_signature(
    signing_secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    raw_body: &[u8],
    now_unix: i64,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if signing_secret.is_empty() {
        return Err(SignatureError::Mismatch);
    }
    if now_unix.abs_diff(ts) > MAX_SKEW_SECONDS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let expected = sign(signing_secret, timestamp.trim(), raw_body);
    if expected
        .as_bytes()
        .ct_eq(signature.trim().as_bytes())
        .into()
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// A Lambda function URL request from Slack: its headers (case-insensitive) and raw body.
pub mod function_url {
    use base64::Engine;
    use serde_json::{json, Value};

    pub fn header<'a>(event: &'a Value, name: &str) -> Option<&'a str> {
        event
            .get("headers")?
            .as_object()?
            .iter()
            .find_map(|(k, v)| {
                if k.eq_ignore_ascii_case(name) {
                    v.as_str()
                } else {
                    None
                }
            })
    }

    /// The body exactly as Slack signed it (function URLs base64-encode non-text bodies).
    pub fn raw_body(event: &Value) -> Result<Vec<u8>, String> {
        let body = event.get("body").and_then(Value::as_str).unwrap_or("");
        if event.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|e| format!("body is not valid base64: {e}"))
        } else {
            Ok(body.as_bytes().to_vec())
        }
    }

    pub fn respond(status: u16, body: Value) -> Value {
        json!({
            "statusCode": status,
            "headers": { "content-type": "application/json" },
            "body": body.to_string(),
        })
    }

    /// The signed body of a verified request, or the 4xx response to send (nothing else is
    /// done for a request that fails here).
    pub fn verified_body(
        signing_secret: &str,
        event: &Value,
        now_unix: i64,
    ) -> Result<Vec<u8>, Value> {
        let Ok(raw) = raw_body(event) else {
            return Err(respond(400, json!({ "error": "unreadable body" })));
        };
        if let Err(e) = super::verify_signature(
            signing_secret,
            header(event, "x-slack-request-timestamp"),
            header(event, "x-slack-signature"),
            &raw,
            now_unix,
        ) {
            tracing::warn!(reason = %e, "rejected a Slack request");
            return Err(respond(
                401,
                json!({ "error": "invalid request signature" }),
            ));
        }
        Ok(raw)
    }
}

/// A Slack id as it may be used in a key: 1..=200 of `[A-Za-z0-9._-]`.
fn slack_id(v: Option<&Value>) -> Option<String> {
    let v = v?.as_str()?;
    let ok = !v.is_empty()
        && v.len() <= 200
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then(|| v.to_string())
}

/// The replay key of a verified Events API body: its own `event_id` (the same on every retry
/// of one event, and signed with the body, unlike any header).
pub fn replay_key(body: &Value) -> Option<String> {
    slack_id(body.get("event_id"))
}

/// The replay key of a verified interactivity payload (the JSON of its `payload` field): its
/// `trigger_id`, which Slack makes unique per interaction, or else the first action's
/// `action_ts` with the user who acted.
pub fn interaction_replay_key(payload: &Value) -> Option<String> {
    if let Some(trigger) = slack_id(payload.get("trigger_id")) {
        return Some(format!("trigger:{trigger}"));
    }
    let action = payload.get("actions")?.as_array()?.first()?;
    let ts = slack_id(action.get("action_ts"))?;
    let user = slack_id(payload.get("user").and_then(|u| u.get("id")))?;
    Some(format!("action:{user}:{ts}"))
}

/// Whether a verified body (Events API or interactivity payload) comes from the configured
/// workspace and app: `Err` names the field that differs or is missing (`team_id` is
/// top-level in events and `team.id` in interactivity payloads).
pub fn check_app(body: &Value, team_id: &str, api_app_id: &str) -> Result<(), &'static str> {
    let team = body
        .get("team_id")
        .or_else(|| body.get("team").and_then(|t| t.get("id")))
        .and_then(Value::as_str);
    if team_id.is_empty() || team != Some(team_id) {
        return Err("team_id");
    }
    if api_app_id.is_empty() || body.get("api_app_id").and_then(Value::as_str) != Some(api_app_id) {
        return Err("api_app_id");
    }
    Ok(())
}

/// `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`.
pub fn sign(signing_secret: &str, timestamp: &str, raw_body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes()).expect("HMAC takes any key");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(raw_body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// Slack mrkdwn: `&`, `<`, `>` escaped (no `<!channel>`, no fake links), and a code fence
/// cannot be closed from inside (three backticks become `'''`).
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace("```", "'''")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked example from Slack's "Verifying requests from Slack" documentation.
    const DOC_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const DOC_TS: &str = "1531420618";
    const DOC_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOC_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn slack_documentation_example_verifies() {
        assert_eq!(sign(DOC_SECRET, DOC_TS, DOC_BODY.as_bytes()), DOC_SIG);
        let now = 1531420618 + 60;
        assert_eq!(
            verify_signature(
                DOC_SECRET,
                Some(DOC_TS),
                Some(DOC_SIG),
                DOC_BODY.as_bytes(),
                now
            ),
            Ok(())
        );
    }

    #[test]
    fn extreme_timestamps_are_stale_not_a_panic() {
        let body = DOC_BODY.as_bytes();
        for (ts, now) in [
            (i64::MIN.to_string(), i64::MAX),
            (i64::MAX.to_string(), i64::MIN),
            ("-9223372036854775808".to_string(), 1531420618),
        ] {
            assert_eq!(
                verify_signature(DOC_SECRET, Some(&ts), Some(DOC_SIG), body, now),
                Err(SignatureError::Stale)
            );
        }
    }

    #[test]
    fn an_empty_secret_verifies_nothing() {
        let sig = sign("", DOC_TS, DOC_BODY.as_bytes());
        assert_eq!(
            verify_signature(
                "",
                Some(DOC_TS),
                Some(&sig),
                DOC_BODY.as_bytes(),
                1531420618
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn forged_stale_and_missing_are_rejected() {
        let now = 1531420618;
        let body = DOC_BODY.as_bytes();
        let forged = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b504";
        assert_eq!(
            verify_signature(DOC_SECRET, Some(DOC_TS), Some(forged), body, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature("other-secret", Some(DOC_TS), Some(DOC_SIG), body, now),
            Err(SignatureError::Mismatch)
        );
        let mut tampered = body.to_vec();
        tampered[0] = b'T';
        assert_eq!(
            verify_signature(DOC_SECRET, Some(DOC_TS), Some(DOC_SIG), &tampered, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(DOC_SECRET, Some(DOC_TS), Some(DOC_SIG), body, now + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature(DOC_SECRET, Some(DOC_TS), Some(DOC_SIG), body, now - 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature(DOC_SECRET, None, Some(DOC_SIG), body, now),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(DOC_SECRET, Some("soon"), Some(DOC_SIG), body, now),
            Err(SignatureError::BadTimestamp)
        );
    }

    use crate::testing::{answer, serve_once};

    /// `method`'s call against a server that answers `response`; the call must fail.
    async fn failing_call(response: String, method: &str) -> SlackError {
        let (base, server) = serve_once(response).await;
        let err = SlackClient::new(base, "t")
            .call(method, &json!({}))
            .await
            .unwrap_err();
        server.await.unwrap();
        err
    }

    #[tokio::test]
    async fn a_call_posts_json_with_the_bearer_token_and_returns_the_answer() {
        let (base, server) = serve_once(answer(
            "200 OK",
            "",
            r#"{"ok":true,"channel":"C1","ts":"1.2"}"#,
        ))
        .await;
        let posted = SlackClient::new(base, "xoxb-token")
            .post_message(&Message {
                channel: "#ops".into(),
                text: "hello".into(),
                ..Message::default()
            })
            .await
            .unwrap();
        assert_eq!(
            posted,
            Posted {
                channel: "C1".into(),
                ts: "1.2".into()
            }
        );
        let request = server.await.unwrap();
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        let head = head.to_ascii_lowercase();
        assert!(
            head.starts_with("post /api/chat.postmessage http/1.1"),
            "{head}"
        );
        assert!(head.contains("authorization: bearer xoxb-token"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert_eq!(
            serde_json::from_str::<Value>(body).unwrap(),
            json!({"channel": "#ops", "text": "hello"})
        );
    }

    #[tokio::test]
    async fn ok_false_is_an_api_error_with_slacks_error_name() {
        let err = failing_call(
            answer("200 OK", "", r#"{"ok":false,"error":"channel_not_found"}"#),
            "chat.postMessage",
        )
        .await;
        assert!(
            matches!(&err, SlackError::Api { method, error } if method == "chat.postMessage" && error == "channel_not_found"),
            "{err:?}"
        );
        assert_eq!(err.kind(), Kind::SlackError);
    }

    #[tokio::test]
    async fn http_429_is_rate_limited_with_retry_after() {
        let err = failing_call(
            answer(
                "429 Too Many Requests",
                "retry-after: 7\r\n",
                r#"{"ok":false,"error":"ratelimited"}"#,
            ),
            "chat.update",
        )
        .await;
        assert!(
            matches!(&err, SlackError::RateLimited { retry_after: 7, .. }),
            "{err:?}"
        );
        assert_eq!(err.kind(), Kind::Throttled);
    }

    #[tokio::test]
    async fn a_non_json_answer_and_no_server_are_transport_errors() {
        let err = failing_call(
            answer("502 Bad Gateway", "", "<html>bad gateway</html>"),
            "chat.postMessage",
        )
        .await;
        assert!(
            matches!(&err, SlackError::Transport { message, .. } if message.contains("HTTP 502")),
            "{err:?}"
        );

        // Port 9 (discard) on loopback: nothing listens, the connection is refused.
        let err = SlackClient::new("http://127.0.0.1:9/api", "t")
            .call("chat.postMessage", &json!({}))
            .await
            .unwrap_err();
        assert!(matches!(err, SlackError::Transport { .. }), "{err:?}");
        assert_eq!(err.kind(), Kind::SlackError);
    }

    #[test]
    fn debug_never_shows_the_token() {
        let c = SlackClient::new("http://127.0.0.1:1/api", "xoxb-very-secret");
        assert!(!format!("{c:?}").contains("very-secret"));
    }

    #[test]
    fn replay_keys_come_from_the_payloads_own_ids() {
        let event = json!({"event_id": "Ev0123ABC", "event_time": 1});
        assert_eq!(replay_key(&event).as_deref(), Some("Ev0123ABC"));
        assert_eq!(replay_key(&json!({})), None);
        assert_eq!(replay_key(&json!({"event_id": ""})), None);
        assert_eq!(replay_key(&json!({"event_id": "a#b"})), None);
        let click = json!({
            "trigger_id": "398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c",
            "user": {"id": "U0CAROL01"},
            "actions": [{"action_ts": "1732800000.123456"}],
        });
        assert_eq!(
            interaction_replay_key(&click).as_deref(),
            Some("trigger:398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
        );
        let no_trigger = json!({
            "user": {"id": "U0CAROL01"},
            "actions": [{"action_ts": "1732800000.123456"}],
        });
        assert_eq!(
            interaction_replay_key(&no_trigger).as_deref(),
            Some("action:U0CAROL01:1732800000.123456")
        );
        assert_eq!(interaction_replay_key(&json!({"actions": []})), None);
    }

    #[test]
    fn only_the_configured_workspace_and_app_pass() {
        let ok = json!({"team_id": "T1", "api_app_id": "A1"});
        assert_eq!(check_app(&ok, "T1", "A1"), Ok(()));
        let interaction = json!({"team": {"id": "T1"}, "api_app_id": "A1"});
        assert_eq!(check_app(&interaction, "T1", "A1"), Ok(()));
        assert_eq!(check_app(&ok, "T2", "A1"), Err("team_id"));
        assert_eq!(check_app(&ok, "T1", "A2"), Err("api_app_id"));
        assert_eq!(
            check_app(&json!({"api_app_id": "A1"}), "T1", "A1"),
            Err("team_id")
        );
        assert_eq!(
            check_app(&json!({"team_id": "T1"}), "T1", "A1"),
            Err("api_app_id")
        );
        // Nothing configured matches nothing.
        assert_eq!(
            check_app(&json!({"team_id": "", "api_app_id": ""}), "", ""),
            Err("team_id")
        );
    }
}
