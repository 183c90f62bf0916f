//! batchless core: every Lambda's logic, in layers.
//!
//! # Layout
//!
//! ```text
//! error      Error + Kind: the stable names ASL Retry/Catch match, and which are retryable
//! platform   knows no workflow: AWS clients, config, time, redaction, strict input, DynamoDB, Slack
//! sfn        Step Functions plumbing: the execution, caught step errors, task-token waits
//! shared     resources several workflows use: runs, locks, builds, tasks, logs, causes, people,
//!            audit, cleanup
//! migration  jobs  patch  bastion   one folder per workflow; no workflow imports another
//! lambda     run(): the one way a Lambda main starts (tracing, SdkConfig once, Deps, handler)
//! ```
//!
//! The rule `error, platform <- sfn <- shared <- {migration, jobs, patch, bastion}` is checked by
//! the `layering` test below, which reads every `use crate::` line. Lambda binaries under
//! `functions/<workflow>/<step>/` are a few lines each: they call [`lambda::run`] with one step's
//! `Deps` constructor and `handle`.

pub mod error;
pub mod lambda;
pub mod platform;
pub mod sfn;
pub mod shared;

pub mod bastion;
pub mod jobs;
pub mod migration;
pub mod patch;

pub use error::Error;

#[cfg(test)]
pub(crate) mod testing {
    /// Error metadata as the SDK's deserializers set it (mocked modeled errors lack it).
    pub fn meta(code: &str) -> aws_smithy_types::error::ErrorMetadata {
        aws_smithy_types::error::ErrorMetadata::builder()
            .code(code)
            .build()
    }

    /// DynamoDB's answer to a conditional write that did not hold.
    pub fn conditional_check_failed(
    ) -> aws_sdk_dynamodb::types::error::ConditionalCheckFailedException {
        aws_sdk_dynamodb::types::error::ConditionalCheckFailedException::builder()
            .meta(meta("ConditionalCheckFailedException"))
            .build()
    }

    /// `PutItem`'s error when its condition does not hold.
    pub fn put_item_failed() -> aws_sdk_dynamodb::operation::put_item::PutItemError {
        aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(
            conditional_check_failed(),
        )
    }

    /// `DeleteItem`'s error when its condition does not hold.
    pub fn delete_item_failed() -> aws_sdk_dynamodb::operation::delete_item::DeleteItemError {
        aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException(
            conditional_check_failed(),
        )
    }

    /// `UpdateItem`'s error when its condition does not hold.
    pub fn update_item_failed() -> aws_sdk_dynamodb::operation::update_item::UpdateItemError {
        aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
            conditional_check_failed(),
        )
    }

    /// The string attribute `name` of a mocked request's item, key or values (`None` when it
    /// is absent or not a string).
    pub fn attr_s<'a>(
        map: Option<&'a std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
        name: &str,
    ) -> Option<&'a str> {
        map?.get(name)?.as_s().ok().map(String::as_str)
    }

    /// A `PutItem` whose condition fails: the item is already there (`put_once` lost).
    pub fn put_item_exists() -> aws_smithy_mocks::Rule {
        aws_smithy_mocks::mock!(aws_sdk_dynamodb::Client::put_item).then_error(put_item_failed)
    }

    /// A one-request HTTP server on loopback: answers `response` (raw HTTP) and hands back the
    /// request it read (head and body).
    pub async fn serve_once(response: String) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/api", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = sock.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if seen.len() >= end + 4 + length || n == 0 {
                        break;
                    }
                }
                assert!(n > 0, "the client closed before sending a whole request");
            }
            sock.write_all(response.as_bytes()).await.unwrap();
            sock.shutdown().await.unwrap();
            String::from_utf8(seen).unwrap()
        });
        (base, server)
    }

    /// A raw HTTP/1.1 answer with a JSON body (`extra`: more header lines, each ending `\r\n`).
    pub fn answer(status: &str, extra: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    /// A conditional `DeleteItem` whose condition fails: nothing (of this owner) to delete.
    pub fn delete_item_absent() -> aws_smithy_mocks::Rule {
        aws_smithy_mocks::mock!(aws_sdk_dynamodb::Client::delete_item)
            .then_error(delete_item_failed)
    }
}

/// The layering rule, checked on the source: every `crate::<module>` a file names must be in
/// its own layer or below, and no workflow names another.
#[cfg(test)]
mod layering {
    use std::path::Path;

    const WORKFLOWS: [&str; 4] = ["migration", "jobs", "patch", "bastion"];

    /// 0: error, platform, lambda; 1: sfn; 2: shared; 3: the workflows.
    fn rank(top: &str) -> Option<u8> {
        match top {
            "error" | "platform" | "lambda" | "Error" | "testing" => Some(0),
            "sfn" => Some(1),
            "shared" => Some(2),
            w if WORKFLOWS.contains(&w) => Some(3),
            _ => None,
        }
    }

    /// Every violation in one file's text: (referenced module, why).
    pub(super) fn violations(own_top: &str, text: &str) -> Vec<String> {
        let Some(own) = rank(own_top) else {
            return vec![];
        };
        let re = regex::Regex::new(r"crate::([A-Za-z_]+)").unwrap();
        let mut found = Vec::new();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for cap in re.captures_iter(code) {
                let top = &cap[1];
                match rank(top) {
                    Some(r) if r > own => found.push(format!(
                        "{own_top} (layer {own}) uses crate::{top} (layer {r})"
                    )),
                    Some(3) if top != own_top => {
                        found.push(format!("workflow {own_top} uses workflow crate::{top}"))
                    }
                    None => {
                        found.push(format!("{own_top} uses crate::{top}, which is in no layer"))
                    }
                    _ => {}
                }
            }
        }
        found
    }

    #[test]
    fn every_module_uses_only_its_layer_and_below() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        batchless_layering::assert_no_violations(&src, |parts, text| match parts {
            [top] if top == "lib" => vec![],
            [top, ..] => violations(top, text),
            [] => unreachable!("a file has a name"),
        });
    }

    #[test]
    fn the_check_catches_each_kind_of_violation() {
        assert_eq!(violations("platform", "use crate::shared::runs;").len(), 1);
        assert_eq!(violations("sfn", "let x = crate::jobs::WORKFLOW;").len(), 1);
        assert_eq!(
            violations("patch", "use crate::migration::Execution;").len(),
            1
        );
        assert_eq!(violations("shared", "use crate::coverage;").len(), 1);
        assert!(violations("jobs", "use crate::shared::task; use crate::jobs::lease;").is_empty());
        assert!(violations("shared", "// crate::jobs in a comment").is_empty());
    }
}
