//! Log archiving: stream a CloudWatch Logs stream to S3 page by page (bounded memory: one
//! multipart part at a time), recording its SHA-256 and size, and keep a redacted tail for
//! Slack and CodePipeline. Logs are referred to by `s3://` URI and console URLs, never by a
//! presigned URL.

use std::collections::VecDeque;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::platform::aws::AwsResultExt;

/// S3's minimum part size is 5 MiB; parts of 8 MiB keep memory flat and requests few.
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// A part is sent as soon as it reaches `PART_BYTES`, so the write that crosses that line adds
/// at most one log event (CloudWatch Logs: 256 KiB at most) or its newline. Every part buffer
/// gets exactly this capacity up front: a buffer grown by doubling reallocates to 16 MiB, and
/// the allocator's heap then grew with the log's size (BENCHMARKS.md, collect-logs).
const PART_CAPACITY: usize = PART_BYTES + 256 * 1024;
pub const TAIL_LINES: usize = 40;
pub const TAIL_MAX_CHARS: usize = 3000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CollectedLogs {
    pub uri: String,
    pub console_url: String,
    pub log_console_url: String,
    pub sha256: String,
    pub bytes: u64,
    pub lines: u64,
    /// The last lines, redacted.
    pub tail: String,
}

#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub group: &'a str,
    pub stream: &'a str,
}

#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub region: &'a str,
}

/// Keeps the last lines within a line and character budget.
#[derive(Debug, Default)]
pub struct Tail {
    lines: VecDeque<String>,
    chars: usize,
}

impl Tail {
    pub fn push(&mut self, line: &str) {
        let line: String = line.chars().take(TAIL_MAX_CHARS).collect();
        self.chars += line.chars().count() + 1;
        self.lines.push_back(line);
        while self.lines.len() > TAIL_LINES || (self.chars > TAIL_MAX_CHARS && self.lines.len() > 1)
        {
            if let Some(old) = self.lines.pop_front() {
                self.chars -= old.chars().count() + 1;
            }
        }
    }

    /// The tail, redacted.
    pub fn render(&self) -> String {
        let joined = self.lines.iter().cloned().collect::<Vec<_>>().join("\n");
        crate::platform::redact::redact(&joined).into_owned()
    }
}

/// Multipart upload that starts only when the data outgrows one part.
struct Upload<'a> {
    s3: &'a aws_sdk_s3::Client,
    target: &'a Target<'a>,
    buffer: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
}

impl<'a> Upload<'a> {
    async fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.buffer.capacity() == 0 {
            self.buffer.reserve_exact(PART_CAPACITY.max(data.len()));
        }
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= PART_BYTES {
            self.flush_part().await?;
        }
        Ok(())
    }

    async fn flush_part(&mut self) -> Result<(), Error> {
        if self.upload_id.is_none() {
            let out = self
                .s3
                .create_multipart_upload()
                .bucket(self.target.bucket)
                .key(self.target.key)
                .content_type("text/plain; charset=utf-8")
                .send()
                .await
                .aws("CreateMultipartUpload")?;
            self.upload_id = out.upload_id().map(str::to_string);
        }
        let number = self.parts.len() as i32 + 1;
        let body = std::mem::take(&mut self.buffer);
        let out = self
            .s3
            .upload_part()
            .bucket(self.target.bucket)
            .key(self.target.key)
            .upload_id(self.upload_id.clone().unwrap_or_default())
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .aws("UploadPart")?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build(),
        );
        Ok(())
    }

    async fn finish(mut self) -> Result<(), Error> {
        match self.upload_id.clone() {
            None => {
                self.s3
                    .put_object()
                    .bucket(self.target.bucket)
                    .key(self.target.key)
                    .content_type("text/plain; charset=utf-8")
                    .body(ByteStream::from(std::mem::take(&mut self.buffer)))
                    .send()
                    .await
                    .aws("PutObject")?;
            }
            Some(upload_id) => {
                if !self.buffer.is_empty() {
                    self.flush_part().await?;
                }
                self.s3
                    .complete_multipart_upload()
                    .bucket(self.target.bucket)
                    .key(self.target.key)
                    .upload_id(upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(std::mem::take(&mut self.parts)))
                            .build(),
                    )
                    .send()
                    .await
                    .aws("CompleteMultipartUpload")?;
            }
        }
        Ok(())
    }

    async fn abort(&self) {
        if let Some(upload_id) = &self.upload_id {
            let _ = self
                .s3
                .abort_multipart_upload()
                .bucket(self.target.bucket)
                .key(self.target.key)
                .upload_id(upload_id)
                .send()
                .await;
        }
    }
}

/// Copy `source` to `target`, then write `<key>.sha256` (sha256sum format) beside it.
pub async fn collect(
    logs: &aws_sdk_cloudwatchlogs::Client,
    s3: &aws_sdk_s3::Client,
    source: Source<'_>,
    target: Target<'_>,
) -> Result<CollectedLogs, Error> {
    let mut upload = Upload {
        s3,
        target: &target,
        buffer: Vec::new(),
        upload_id: None,
        parts: Vec::new(),
    };
    let result = copy(logs, &source, &mut upload).await;
    let (hasher, bytes, lines, tail) = match result {
        Ok(v) => v,
        Err(e) => {
            upload.abort().await;
            return Err(e);
        }
    };
    upload.finish().await?;
    let sha256 = hex::encode(hasher.finalize());
    let file_name = target.key.rsplit('/').next().unwrap_or(target.key);
    s3.put_object()
        .bucket(target.bucket)
        .key(format!("{}.sha256", target.key))
        .content_type("text/plain")
        .body(ByteStream::from(
            format!("{sha256}  {file_name}\n").into_bytes(),
        ))
        .send()
        .await
        .aws("PutObject")?;
    Ok(CollectedLogs {
        uri: format!("s3://{}/{}", target.bucket, target.key),
        console_url: s3_console_url(target.region, target.bucket, target.key),
        log_console_url: cloudwatch_console_url(target.region, source.group, source.stream),
        sha256,
        bytes,
        lines,
        tail: tail.render(),
    })
}

async fn copy(
    logs: &aws_sdk_cloudwatchlogs::Client,
    source: &Source<'_>,
    upload: &mut Upload<'_>,
) -> Result<(Sha256, u64, u64, Tail), Error> {
    let mut hasher = Sha256::new();
    let (mut bytes, mut lines) = (0u64, 0u64);
    let mut tail = Tail::default();
    let mut token: Option<String> = None;
    loop {
        let res = logs
            .get_log_events()
            .log_group_name(source.group)
            .log_stream_name(source.stream)
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await
            .aws("GetLogEvents");
        let out = match res {
            Ok(out) => out,
            Err(e) if e.is_code("ResourceNotFoundException") && token.is_none() => {
                let note = format!(
                    "(no log stream {}/{}: the run ended before it wrote any output)\n",
                    source.group, source.stream
                );
                hasher.update(note.as_bytes());
                upload.write(note.as_bytes()).await?;
                tail.push(note.trim_end());
                return Ok((hasher, note.len() as u64, 1, tail));
            }
            Err(e) => return Err(e.into()),
        };
        for event in out.events() {
            let message = event.message().unwrap_or_default();
            let message = message.strip_suffix('\n').unwrap_or(message);
            for line in message.split('\n') {
                tail.push(line);
                lines += 1;
            }
            hasher.update(message.as_bytes());
            hasher.update(b"\n");
            upload.write(message.as_bytes()).await?;
            upload.write(b"\n").await?;
            bytes += message.len() as u64 + 1;
        }
        let next = out.next_forward_token().map(str::to_string);
        // GetLogEvents signals the end by returning the token it was given.
        if next.is_none() || next == token || out.events().is_empty() && token.is_some() {
            return Ok((hasher, bytes, lines, tail));
        }
        token = next;
    }
}

pub fn s3_console_url(region: &str, bucket: &str, key: &str) -> String {
    format!(
        "https://s3.console.aws.amazon.com/s3/object/{bucket}?region={region}&prefix={}",
        url_escape(key)
    )
}

pub fn cloudwatch_console_url(region: &str, group: &str, stream: &str) -> String {
    // The CloudWatch console double-escapes path segments ("/" → "$252F").
    let esc = |s: &str| url_escape(s).replace('%', "$25");
    format!(
        "https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups/log-group/{}/log-events/{}",
        esc(group),
        esc(stream)
    )
}

fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatchlogs::operation::get_log_events::GetLogEventsOutput;
    use aws_sdk_cloudwatchlogs::types::OutputLogEvent;
    use aws_sdk_s3::operation::put_object::PutObjectOutput;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    #[test]
    fn tail_keeps_the_last_lines_redacted() {
        let mut t = Tail::default();
        for i in 0..100 {
            t.push(&format!("line {i}"));
        }
        t.push("DATABASE_URL=postgres://app:pw123@db/app");
        let out = t.render();
        assert!(out.starts_with("line 61"), "{out}");
        assert!(!out.contains("pw123"));
        assert_eq!(out.lines().count(), TAIL_LINES);
    }

    #[test]
    fn tail_respects_the_character_budget() {
        let mut t = Tail::default();
        for _ in 0..10 {
            t.push(&"x".repeat(1000));
        }
        assert!(t.render().len() <= TAIL_MAX_CHARS + 1);
    }

    #[test]
    fn console_urls() {
        assert_eq!(
            s3_console_url("us-east-1", "b", "logs/migration/e1/build.log"),
            "https://s3.console.aws.amazon.com/s3/object/b?region=us-east-1&prefix=logs%2Fmigration%2Fe1%2Fbuild.log"
        );
        assert!(
            cloudwatch_console_url("us-east-1", "/aws/codebuild/m", "abc")
                .ends_with("log-group/$252Faws$252Fcodebuild$252Fm/log-events/abc")
        );
    }

    #[tokio::test]
    async fn pages_until_the_token_repeats_and_hashes_what_it_wrote() {
        let page = |msgs: &[&str], token: &str| {
            let mut b = GetLogEventsOutput::builder().next_forward_token(token);
            for m in msgs {
                b = b.events(OutputLogEvent::builder().message(*m).build());
            }
            b.build()
        };
        let get = mock!(aws_sdk_cloudwatchlogs::Client::get_log_events)
            .sequence()
            .output(move || page(&["a", "b"], "t1"))
            .output(move || page(&["c\n"], "t2"))
            .output(move || page(&[], "t2"))
            .build();
        let put = mock!(aws_sdk_s3::Client::put_object)
            .then_output(|| PutObjectOutput::builder().build());
        let logs = mock_client!(aws_sdk_cloudwatchlogs, [&get]);
        let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&put]);
        let out = collect(
            &logs,
            &s3,
            Source {
                group: "g",
                stream: "s",
            },
            Target {
                bucket: "b",
                key: "logs/x/build.log",
                region: "us-east-1",
            },
        )
        .await
        .unwrap();
        assert_eq!(out.bytes, 6);
        assert_eq!(out.lines, 3);
        assert_eq!(out.sha256, hex::encode(Sha256::digest(b"a\nb\nc\n")));
        assert_eq!(out.uri, "s3://b/logs/x/build.log");
        assert_eq!(out.tail, "a\nb\nc");
        assert_eq!(get.num_calls(), 3);
        assert_eq!(put.num_calls(), 2, "the log and its .sha256");
    }
}
