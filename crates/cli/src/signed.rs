//! Requests to batchless's IAM-authenticated endpoints (the `decision` function URL): the
//! body is signed with SigV4 (service `lambda`) with the caller's own credentials, so the
//! endpoint learns who is calling from AWS, never from anything the CLI says.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{bail, Context as _, Result};
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use serde_json::Value;

use crate::context::Aws;

/// The headers SigV4 adds to a POST of `body` to `url` (a function URL), signed as
/// `identity` in `region` at `time`.
pub fn signing_headers(
    identity: &aws_smithy_runtime_api::client::identity::Identity,
    region: &str,
    time: SystemTime,
    url: &str,
    body: &[u8],
) -> Result<Vec<(String, String)>> {
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name("lambda")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .context("SigV4 signing parameters")?
        .into();
    let signable = SignableRequest::new(
        "POST",
        url,
        [("content-type", "application/json")].into_iter(),
        SignableBody::Bytes(body),
    )
    .context("a request to sign")?;
    let (instructions, _) = sign(signable, &params)
        .context("signing the request (SigV4)")?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// POST `body` to `url`, signed with the caller's credentials; the status and JSON answer.
pub async fn post(aws: &Aws, url: &str, body: &Value) -> Result<(u16, Value)> {
    let provider = aws
        .config
        .credentials_provider()
        .context("no AWS credentials to sign with")?;
    let creds = provider
        .provide_credentials()
        .await
        .context("reading your AWS credentials")?;
    let region = aws
        .config
        .region()
        .map(|r| r.to_string())
        .context("no AWS region (set AWS_REGION)")?;
    let bytes = serde_json::to_vec(body)?;
    let headers = signing_headers(&creds.into(), &region, SystemTime::now(), url, &bytes)?;
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(bytes);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("calling the decision endpoint {url}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let answer = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status == 403 && answer.get("Message").is_some() {
        bail!(
            "the decision endpoint refused the signed request ({}): your credentials may not invoke it",
            answer["Message"]
        );
    }
    Ok((status, answer))
}

/// Ask the decision endpoint (signed with your credentials: it decides who you are) to
/// approve, reject or cancel; print its answer. Exit 1 when it refused.
pub async fn decide(aws: &Aws, body: Value) -> Result<ExitCode> {
    let url = aws.decision_url()?;
    let (status, answer) = post(aws, &url, &body).await?;
    let line = answer["text"]
        .as_str()
        .map(str::to_string)
        .or_else(|| answer["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| answer.to_string());
    if let Some(c) = answer.get("cancelled") {
        println!(
            "patch {}: {}{}",
            c["patchId"].as_str().unwrap_or_default(),
            c["status"].as_str().unwrap_or_default(),
            if c["buildStopped"] == true {
                ", its build was stopped (the workflow records CANCELLED)"
            } else {
                ""
            }
        );
    } else if status == 200 {
        println!("{line}");
    } else {
        eprintln!("{line}");
    }
    Ok(if status == 200 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_request_carries_the_callers_key_and_a_signature() {
        let creds = aws_credential_types::Credentials::new("AKIDBOB", "secret", None, None, "t");
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let url = "https://abc.lambda-url.us-east-1.on.aws/";
        let h = signing_headers(&creds.into(), "us-east-1", at, url, b"{}").unwrap();
        let get = |k: &str| h.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let auth = get("authorization").unwrap();
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDBOB/20270115/us-east-1/lambda/aws4_request"
            ),
            "{auth}"
        );
        assert!(
            auth.contains("SignedHeaders=content-type;host;x-amz-date"),
            "{auth}"
        );
        assert_eq!(get("x-amz-date"), Some("20270115T080000Z"));
        // Another body, another signature.
        let h2 = signing_headers(
            &aws_credential_types::Credentials::new("AKIDBOB", "secret", None, None, "t").into(),
            "us-east-1",
            at,
            url,
            b"{\"x\":1}",
        )
        .unwrap();
        assert_ne!(
            h2.iter().find(|(n, _)| n == "authorization").unwrap().1,
            auth
        );
    }
}
