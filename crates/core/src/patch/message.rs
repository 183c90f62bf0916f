//! What Slack shows for a data patch: the approval request (Block Kit, with Approve / Reject
//! buttons) and the result in the request's thread. The approval request shows the command
//! **verbatim** (issue 16: the approver approves exactly what runs; the approval channel is the
//! place for it); every other text, and every text posted elsewhere, is redacted. Every user
//! text is mrkdwn-escaped ([`escape`]); invisible and bidi-control characters never get here
//! (`input::visible_text` refused them).

use serde_json::{json, Value};

use super::{Kind, PatchRun};
use crate::platform::redact::redact;
use crate::platform::slack::Message;

pub const APPROVE_ACTION: &str = "patch_approve";
pub const REJECT_ACTION: &str = "patch_reject";

/// Repository link templates (configuration): `{commit}`, `{path}`, `{base}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    /// e.g. `https://github.com/acme/app/blob/{commit}/{path}`
    pub file: String,
    /// e.g. `https://github.com/acme/app/compare/{base}...{commit}`
    pub diff: String,
}

impl Links {
    /// The script (or the rake tasks directory) at the pinned commit.
    pub fn script(&self, run: &PatchRun) -> String {
        let path = match run.kind {
            Kind::Runner => run.target.as_str(),
            Kind::Rake => "lib/tasks",
        };
        self.file
            .replace("{commit}", &run.commit)
            .replace("{path}", path)
    }

    /// The diff between the deployed commit and the patch's commit.
    pub fn diff(&self, run: &PatchRun, deployed: &str) -> String {
        self.diff
            .replace("{base}", deployed)
            .replace("{commit}", &run.commit)
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

pub use crate::platform::slack::escape;

/// The dry run's preview as Block Kit sections (next to the command and commit).
pub fn preview_blocks(preview: Option<&super::preview::Preview>) -> Vec<Value> {
    let Some(p) = preview else {
        return vec![json!({"type": "section", "text": {"type": "mrkdwn",
            "text": "*Dry run*\nnone (the dry run is off in this environment): nothing shows what this patch will change"}})];
    };
    let mut text = format!(
        "*Dry run* (one transaction, rolled back): {}",
        p.outcome.describe()
    );
    if let Some(problem) = &p.problem {
        text.push_str(&format!("\n:warning: {}", escape(problem)));
    }
    let lines = p
        .measure
        .as_ref()
        .map(super::preview::summary_lines)
        .unwrap_or_default();
    if !lines.is_empty() {
        text.push_str(&format!("\n```{}```", escape(&lines.join("\n"))));
    }
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})];
    if let Some(m) = &p.measure {
        let tail: Vec<&str> = m.output_tail.lines().rev().take(8).collect();
        if !tail.is_empty() {
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
                "text": format!("*Dry-run output (last lines, redacted)*\n```{}```", escape(&tail.join("\n")))}}));
        }
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
        "text": format!("dry-run build `{}` · preview digest `{}`", escape(&p.build_id), short(&p.digest))}]}));
    blocks
}

/// The approval request.
pub fn approval_request(
    run: &PatchRun,
    channel: &str,
    links: &Links,
    deployed: Option<&str>,
    expires_at: &str,
    preview: Option<&super::preview::Preview>,
) -> Message {
    let command = escape(&run.command);
    let reason = escape(&redact(&run.reason));
    let diff = match deployed {
        Some(base) => format!(
            "<{}|diff against the deployed {}>",
            links.diff(run, base),
            short(base)
        ),
        None => "no deployed commit recorded yet (no migration has succeeded)".to_string(),
    };
    let text = format!(
        "Data patch {} ({}) by {} needs {} approval(s): `{}` at {}",
        run.patch_id,
        run.ticket,
        escape(&run.requester_name),
        run.required_approvals,
        command,
        short(&run.commit)
    );
    let mut blocks = json!([
        {"type": "header", "text": {"type": "plain_text", "text": format!("Data patch approval: {}", run.ticket)}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": format!("*Ticket*\n{}", run.ticket)},
            {"type": "mrkdwn", "text": format!("*Requester*\n{} ({})", escape(&run.requester_name), escape(&run.requester))},
            {"type": "mrkdwn", "text": format!("*Commit*\n`{}` (what runs; ref `{}` as given, not verified to point at it)", short(&run.commit), escape(&run.git_ref))},
            {"type": "mrkdwn", "text": format!("*Environment*\n{}", run.environment)},
            {"type": "mrkdwn", "text": format!("*Approvals needed*\n{} (not the requester)", run.required_approvals)},
            {"type": "mrkdwn", "text": format!("*Expires*\n{expires_at}")},
        ]},
        {"type": "section", "text": {"type": "mrkdwn", "text": format!("*Command*\n```{command}```")}},
        {"type": "section", "text": {"type": "mrkdwn", "text": format!("*Reason*\n{reason}")}},
        {"type": "context", "elements": [
            {"type": "mrkdwn", "text": format!("<{}|{} at {}> · {}", links.script(run), escape(&run.target), short(&run.commit), diff)},
            {"type": "mrkdwn", "text": format!("patch `{}` · request hash `{}`", run.patch_id, short(&run.request_hash))},
        ]},
        {"type": "actions", "block_id": "patch_decision", "elements": [
            {"type": "button", "action_id": APPROVE_ACTION, "style": "primary", "value": run.patch_id,
             "text": {"type": "plain_text", "text": "Approve"},
             "confirm": {"title": {"type": "plain_text", "text": "Approve this patch?"},
                         "text": {"type": "mrkdwn", "text": format!("`{command}` will run against {} at `{}`.", run.environment, short(&run.commit))},
                         "confirm": {"type": "plain_text", "text": "Approve"},
                         "deny": {"type": "plain_text", "text": "Cancel"}}},
            {"type": "button", "action_id": REJECT_ACTION, "style": "danger", "value": run.patch_id,
             "text": {"type": "plain_text", "text": "Reject"}},
        ]},
    ]);
    if let Some(list) = blocks.as_array_mut() {
        // After the command and the reason, before the links and the buttons.
        for (i, b) in preview_blocks(preview).into_iter().enumerate() {
            list.insert(4 + i, b);
        }
    }
    Message {
        channel: channel.to_string(),
        text,
        blocks: Some(blocks),
        thread_ts: None,
    }
}

/// A reply in the request's thread.
pub fn thread_reply(channel: &str, thread_ts: &str, text: &str) -> Message {
    Message {
        channel: channel.to_string(),
        text: redact(text).into_owned(),
        blocks: None,
        thread_ts: Some(thread_ts.to_string()),
    }
}

/// Parse a Slack interactivity body (`payload=<url-encoded JSON>`).
pub fn interaction_payload(raw: &[u8]) -> Option<Value> {
    let body = std::str::from_utf8(raw).ok()?;
    let encoded = body.split('&').find_map(|kv| kv.strip_prefix("payload="))?;
    let decoded = url_decode(encoded)?;
    serde_json::from_str(&decoded).ok()
}

fn url_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::tests::{exec, people, request};
    use crate::patch::{validate, Policy};

    fn links() -> Links {
        Links {
            file: "https://git.example/app/blob/{commit}/{path}".into(),
            diff: "https://git.example/app/compare/{base}...{commit}".into(),
        }
    }

    #[test]
    fn the_request_shows_everything_an_approver_needs() {
        let run = validate(request(), &exec(), "staging", &people(), Policy::default()).unwrap();
        let m = approval_request(
            &run,
            "C1",
            &links(),
            Some("aaaaaaaaaaaa1111"),
            "2026-11-29T13:00:00Z",
            None,
        );
        let blocks = m.blocks.unwrap().to_string();
        for needle in [
            "OPS-42",
            "Bob Example",
            "0123456789ab",
            "bin/rake data:backfill_totals",
            "totals were wrong",
            "https://git.example/app/blob/0123456789abcdef0123456789abcdef01234567/lib/tasks",
            "https://git.example/app/compare/aaaaaaaaaaaa1111...0123456789abcdef0123456789abcdef01234567",
            "patch_approve",
            "patch_reject",
        ] {
            assert!(blocks.contains(needle), "{needle} missing from {blocks}");
        }
    }

    /// Issue 16: the approver sees the command exactly as it runs (an e-mail argument and a
    /// `TOKEN_SCOPE=all` are not redacted away), and user text cannot mention, link or close the
    /// code block.
    #[test]
    fn the_request_shows_the_command_verbatim_and_escapes_user_text() {
        let mut req = request();
        req["args"] = json!(["user@example.com", "TOKEN_SCOPE=all", "<!channel>", "a```b"]);
        req["reason"] = json!("<!channel> see <https://evil.example|the ticket> & ```");
        let run = validate(req, &exec(), "staging", &people(), Policy::default()).unwrap();
        let m = approval_request(&run, "C1", &links(), None, "2026-11-29T13:00:00Z", None);
        let blocks = m.blocks.unwrap().to_string();
        for needle in [
            "user@example.com",
            "TOKEN_SCOPE=all",
            "&lt;!channel&gt;",
            "&lt;https://evil.example|the ticket&gt; &amp; '''",
            "not verified to point at it",
        ] {
            assert!(blocks.contains(needle), "{needle} missing from {blocks}");
        }
        assert!(m.text.contains("user@example.com"), "{}", m.text);
        for absent in ["REDACTED", "<!channel>", "<https://evil", "a```b"] {
            assert!(!blocks.contains(absent), "{absent} in {blocks}");
        }
        // Elsewhere (the thread, logs) the command stays redacted.
        let reply = thread_reply("C1", "1.2", &format!("ran `{}`", run.command));
        assert!(!reply.text.contains("user@example.com"), "{}", reply.text);
    }

    #[test]
    fn invisible_characters_in_a_patch_are_refused() {
        for (field, value) in [
            ("args", json!(["rm\u{202e}"])),
            ("reason", json!("ok\u{200b}")),
        ] {
            let mut req = request();
            req[field] = value;
            let err = validate(req, &exec(), "staging", &people(), Policy::default()).unwrap_err();
            assert!(
                err.to_string().contains("invisible or bidi-control"),
                "{err}"
            );
        }
    }

    #[test]
    fn interaction_payloads_are_decoded() {
        let raw = b"payload=%7B%22type%22%3A%22block_actions%22%2C%22user%22%3A%7B%22id%22%3A%22U1%22%7D%2C%22t%22%3A%22a+b%22%7D";
        let v = interaction_payload(raw).unwrap();
        assert_eq!(v["user"]["id"], "U1");
        assert_eq!(v["t"], "a b");
        assert!(interaction_payload(b"nothing=here").is_none());
        assert!(interaction_payload(b"payload=%ZZ").is_none());
    }
}
