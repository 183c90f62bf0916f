//! Configuration from the function's environment (set by the template) and the clients that
//! depend on it.

use aws_types::SdkConfig;

use crate::error::Error;
use crate::platform::slack::{SlackClient, DEFAULT_BASE_URL};

/// A required environment variable, or a `ConfigError` naming it.
pub fn required(name: &str) -> Result<String, Error> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(Error::config(format!(
            "environment variable {name} is not set"
        ))),
    }
}

pub fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A comma-separated environment variable (`JOB_SUBNETS`, `SIGNING_KEY_ARNS`), blanks
/// dropped; empty when unset.
pub fn list(name: &str) -> Vec<String> {
    optional(name)
        .as_deref()
        .map(split_list)
        .unwrap_or_default()
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The deployment environment every record carries (`staging`, `production`, ...).
pub fn environment() -> Result<String, Error> {
    required("BATCHLESS_ENV")
}

/// The Slack client: base URL from `SLACK_API_BASE_URL`; the bot token from `SLACK_BOT_TOKEN`
/// or, on AWS, from the Secrets Manager secret named by `SLACK_TOKEN_SECRET_ARN` (a plain
/// token or JSON with `bot_token`).
pub async fn slack_client(config: &SdkConfig) -> Result<SlackClient, Error> {
    let base = optional("SLACK_API_BASE_URL").unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    let token = match optional("SLACK_BOT_TOKEN") {
        Some(t) => t,
        None => {
            let arn = required("SLACK_TOKEN_SECRET_ARN")?;
            secret_field(config, &arn, "bot_token").await?
        }
    };
    Ok(SlackClient::new(base, token))
}

/// A secret's value: the whole string, or `field` when the secret is a JSON object.
pub async fn secret_field(
    config: &SdkConfig,
    secret_id: &str,
    field: &str,
) -> Result<String, Error> {
    use crate::platform::aws::AwsResultExt;
    let out = crate::platform::aws::secrets(config)
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .aws("GetSecretValue")?;
    let raw = out
        .secret_string()
        .ok_or_else(|| Error::config(format!("secret {secret_id} has no string value")))?;
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Object(map)) => map
            .get(field)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| Error::config(format!("secret {secret_id} has no field {field}"))),
        _ => Ok(raw.to_string()),
    }
}

/// The Slack signing secret: `SLACK_SIGNING_SECRET`, else the `signing_secret` field of the
/// secret named by `SLACK_SIGNING_SECRET_ARN`. Read at start-up; one shorter than Slack's
/// (32 characters) is refused with an error naming where it came from, never its value.
pub async fn slack_signing_secret(config: &SdkConfig) -> Result<String, Error> {
    let (secret, source) = match optional("SLACK_SIGNING_SECRET") {
        Some(s) => (s, "SLACK_SIGNING_SECRET".to_string()),
        None => {
            let arn = required("SLACK_SIGNING_SECRET_ARN")?;
            let s = secret_field(config, &arn, "signing_secret").await?;
            (s, format!("field signing_secret of secret {arn}"))
        }
    };
    check_signing_secret(&secret, &source)?;
    Ok(secret)
}

/// Slack's signing secrets are 32 characters; anything shorter (an empty or placeholder value)
/// would let a guessed key sign requests.
pub const MIN_SIGNING_SECRET_CHARS: usize = 32;

pub fn check_signing_secret(secret: &str, source: &str) -> Result<(), Error> {
    let n = secret.trim().chars().count();
    if n < MIN_SIGNING_SECRET_CHARS {
        return Err(Error::config(format!(
            "the Slack signing secret ({source}) has {n} characters, at least \
             {MIN_SIGNING_SECRET_CHARS} required: set it to the Slack app's signing secret"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_signing_secret_is_refused_naming_its_source_not_its_value() {
        for secret in ["", "replace-me", "  0123456789abcdef0123456789abcde  "] {
            let err = check_signing_secret(secret, "SLACK_SIGNING_SECRET").unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("SLACK_SIGNING_SECRET"), "{msg}");
            assert!(
                secret.trim().is_empty() || !msg.contains(secret.trim()),
                "{msg}"
            );
            assert_eq!(err.kind(), crate::error::Kind::ConfigError);
        }
        check_signing_secret("8f742231b10e8888abcd99yyyzzz85a5", "x").unwrap();
    }

    #[test]
    fn lists_drop_blanks() {
        assert_eq!(split_list(" a, ,b "), vec!["a", "b"]);
        assert!(split_list(" , ").is_empty());
    }
}
