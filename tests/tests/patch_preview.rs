//! Scenario tests of the data-patch dry run (issue 18) on the replica's real Rails app,
//! PostgreSQL, Redis and Sidekiq: the preview's exact counts, the database unchanged by it,
//! jobs captured (not run), outbound connections blocked, failed / cut-short / lock-bound dry
//! runs not approvable (the default setting), the preview's digest in the request hash, and the
//! real run measured beside its preview. The patches are `local/sample-app/script/patches/*`.

use std::time::Duration;

use anyhow::{Context, Result};
use batchless_scenarios::patch::Patches as P;
use batchless_scenarios::*;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(180);
const BOB: &str = "arn:aws:iam::123456789012:user/bob";
const ALICE_SLACK: &str = "U0ALICE01";

fn runner(commit: &str, script: &str, args: &[&str], extra: Value) -> Value {
    let mut r = json!({
        "ticket": "OPS-18",
        "ref": "main",
        "commit": commit,
        "kind": "runner",
        "script": script,
        "args": args,
        "reason": "dry-run scenario",
        "requestedBy": BOB,
    });
    if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            r.insert(k.clone(), v.clone());
        }
    }
    r
}

/// What the dry-run tests do beyond the shared data-patch fixture.
trait Preview {
    async fn submit(&self, input: &Value) -> Result<(String, String)>;
    async fn pending(&self, id: &str) -> Result<Value>;
    async fn approve(&self, id: &str) -> Result<()>;
    async fn previewed(&self, script: &str, args: &[&str]) -> Result<(String, String, Value)>;
}

impl Preview for P {
    async fn submit(&self, input: &Value) -> Result<(String, String)> {
        self.start_named("preview", input).await
    }

    /// The record once its preview is recorded and the approval request is posted.
    async fn pending(&self, id: &str) -> Result<Value> {
        eventually("the approval request", TIMEOUT, || async {
            let r = self.find_record(id).await?;
            Ok(r.filter(|r| r.get("approvalMessage").is_some() && r.get("preview").is_some()))
        })
        .await
    }

    /// Submit `script` with `args` at the app's head; the patch id, the execution and the
    /// record once its preview is recorded and the approval request posted.
    async fn previewed(&self, script: &str, args: &[&str]) -> Result<(String, String, Value)> {
        let input = runner(&self.stack.app_head()?, script, args, json!({}));
        let (id, arn) = self.submit(&input).await?;
        let rec = self.pending(&id).await?;
        Ok((id, arn, rec))
    }

    async fn approve(&self, id: &str) -> Result<()> {
        let (status, out) = self
            .click(id, ALICE_SLACK, "patch_approve", json!({}))
            .await?;
        anyhow::ensure!(status == 200, "approval click: {status} {out}");
        Ok(())
    }
}

fn count(p: &P, q: &str) -> Result<i64> {
    Ok(p.stack.sql_value(q)?.parse()?)
}

fn counts(rec: &Value, which: &str, table: &str) -> (u64, u64, u64) {
    let t = if which == "preview" {
        &rec["preview"]["measure"]["tables"][table]
    } else {
        &rec["actual"]["tables"][table]
    };
    (
        t["inserted"].as_u64().unwrap_or(0),
        t["updated"].as_u64().unwrap_or(0),
        t["deleted"].as_u64().unwrap_or(0),
    )
}

#[tokio::test]
async fn the_preview_counts_exactly_changes_nothing_and_the_run_matches_it() -> Result<()> {
    let p = P::setup().await?;
    let tag = unique_name("t").replace('-', "_");
    let (n, m) = (3, 2);
    p.stack.sql(&format!(
            "INSERT INTO sessions (token, user_id, expires_at) SELECT '{tag}-u-' || i, 1, '2030-01-01' FROM generate_series(1, {n}) i;
             INSERT INTO sessions (token, user_id, expires_at) SELECT '{tag}-d-' || i, 1, '2030-01-01' FROM generate_series(1, {m}) i;"
        ),
    )?;
    let (id, arn, rec) = p
        .previewed("script/patches/sessions_extend_and_purge.rb", &[&tag])
        .await?;
    let preview = &rec["preview"];
    assert_eq!(preview["outcome"], "ok", "{preview}");
    assert_eq!(preview["approvable"], true);
    assert_eq!(
        counts(&rec, "preview", "public.sessions"),
        (0, n, m),
        "{preview}"
    );
    assert_eq!(
        counts(&rec, "preview", "public.task_runs"),
        (1, 0, 0),
        "{preview}"
    );
    assert_eq!(preview["measure"]["rolledBack"], true);
    // The digest is part of the request hash decisions bind to.
    assert_eq!(rec["request"]["previewDigest"], preview["digest"]);
    // The database is as before the dry run.
    let like = |kind: &str| format!("token LIKE '{tag}-{kind}-%'");
    assert_eq!(
        count(
            &p,
            &format!("SELECT count(*) FROM sessions WHERE {}", like("d"))
        )?,
        m as i64
    );
    assert_eq!(
        count(
            &p,
            &format!(
                "SELECT count(*) FROM sessions WHERE {} AND expires_at = '2030-01-01'",
                like("u")
            )
        )?,
        n as i64
    );
    assert_eq!(
        count(
            &p,
            &format!("SELECT count(*) FROM task_runs WHERE arguments = '{tag}'")
        )?,
        0
    );
    // The dry run ran as its own build, and nothing else ran yet.
    assert_eq!(p.builds_of(&id, "BATCHLESS_PREVIEW_ID").await?.len(), 1);
    assert!(p.builds_of(&id, "BATCHLESS_PATCH_ID").await?.is_empty());
    // The approval request shows the preview.
    let ts = rec["approvalMessage"]["ts"].as_str().unwrap_or_default();
    let msgs = p.stack.slack_messages("C0PATCHES").await?;
    let msg = msgs
        .iter()
        .find(|m| m["ts"] == ts)
        .context("approval request")?
        .to_string();
    assert!(
        msg.contains(&format!(
            "public.sessions: 0 inserted, {n} updated, {m} deleted"
        )),
        "{msg}"
    );

    p.approve(&id).await?;
    let ended = p.stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(ended.status, "SUCCEEDED", "{ended:?}");
    assert_eq!(
        count(
            &p,
            &format!("SELECT count(*) FROM sessions WHERE {}", like("d"))
        )?,
        0
    );
    assert_eq!(
        count(
            &p,
            &format!(
                "SELECT count(*) FROM sessions WHERE {} AND expires_at = '2031-01-01'",
                like("u")
            )
        )?,
        n as i64
    );
    let rec = p.record(&id).await?;
    for table in ["public.sessions", "public.task_runs"] {
        assert_eq!(
            counts(&rec, "actual", table),
            counts(&rec, "preview", table),
            "{table}: {rec}"
        );
    }
    assert!(rec.get("previewFlags").is_none(), "{rec}");
    Ok(())
}

#[tokio::test]
async fn jobs_are_listed_not_run_in_the_dry_run_and_processed_after_the_run() -> Result<()> {
    let p = P::setup().await?;
    let tag = unique_name("jobs");
    let k = 3;
    let (id, arn, rec) = p
        .previewed(
            "script/patches/enqueue_totals_many.rb",
            &[&tag, &k.to_string()],
        )
        .await?;
    assert_eq!(
        rec["preview"]["measure"]["jobs"],
        json!({"RecomputeUserTotalsJob": k}),
        "{rec}"
    );
    // Nothing reached Redis: the worker ran none of them (it would record task_runs rows).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ran = format!("SELECT count(*) FROM task_runs WHERE source = '{tag}'");
    assert_eq!(count(&p, &ran)?, 0);
    p.approve(&id).await?;
    let ended = p.stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(ended.status, "SUCCEEDED", "{ended:?}");
    eventually("the jobs processed", TIMEOUT, || async {
        Ok((count(&p, &ran)? == k).then_some(()))
    })
    .await?;
    let rec = p.record(&id).await?;
    assert_eq!(
        rec["actual"]["jobs"],
        json!({"RecomputeUserTotalsJob": k}),
        "{rec}"
    );
    Ok(())
}

/// Wait for an execution that must end NotApproved on its dry run: no approval request, no
/// real build; returns the record.
async fn not_approvable(p: &P, id: &str, arn: &str) -> Result<Value> {
    let ended = p.stack.wait_end(arn, TIMEOUT).await?;
    assert_eq!(ended.status, "FAILED", "{ended:?}");
    assert_eq!(ended.error.as_deref(), Some("NotApproved"), "{ended:?}");
    let rec = p.record(id).await?;
    assert_eq!(rec["status"], "NOT_APPROVED", "{rec}");
    assert_eq!(rec["preview"]["approvable"], false, "{rec}");
    assert!(rec.get("approvalMessage").is_none(), "{rec}");
    assert!(p.builds_of(id, "BATCHLESS_PATCH_ID").await?.is_empty());
    Ok(rec)
}

#[tokio::test]
async fn raised_cut_short_and_lock_bound_dry_runs_are_shown_and_not_approvable() -> Result<()> {
    let p = P::setup().await?;
    let commit = p.stack.app_head()?;
    let tag = unique_name("raise");
    // Another session holds user 7's row for longer than the dry run's lock timeout.
    let mut holder = LockHolder::start(
        &p.stack,
        "SELECT id FROM users WHERE id = 7 FOR UPDATE",
        &tag,
    )?;
    let (raised, raised_arn) = p
        .submit(&runner(
            &commit,
            "script/patches/raises.rb",
            &[&tag],
            json!({}),
        ))
        .await?;
    let (slow, slow_arn) = p
        .submit(&runner(
            &commit,
            "script/patches/sleeps.rb",
            &["120"],
            json!({"dryRunTimeLimitSeconds": 5}),
        ))
        .await?;
    let (locked, locked_arn) = p
        .submit(&runner(
            &commit,
            "script/patches/touch_user.rb",
            &["7"],
            json!({}),
        ))
        .await?;
    let rec = not_approvable(&p, &raised, &raised_arn).await?;
    assert_eq!(rec["preview"]["outcome"], "raised", "{rec}");
    assert!(
        rec["preview"]["problem"]
            .as_str()
            .unwrap_or_default()
            .contains("patch raised on purpose"),
        "{rec}"
    );
    let rec = not_approvable(&p, &slow, &slow_arn).await?;
    assert_eq!(rec["preview"]["outcome"], "timed_out", "{rec}");
    let rec = not_approvable(&p, &locked, &locked_arn).await?;
    assert_eq!(rec["preview"]["outcome"], "lock_bound", "{rec}");
    holder.release();
    assert_eq!(
        count(
            &p,
            "SELECT count(*) FROM users WHERE name = 'touched by a patch'"
        )?,
        0
    );
    // The CLI cannot approve it either: it is no longer pending.
    Ok(())
}

#[tokio::test]
async fn an_outbound_http_call_is_blocked_and_counted() -> Result<()> {
    let p = P::setup().await?;
    let endpoint = p.stack.endpoint().to_string();
    let hostport = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let (_, arn, rec) = p
        .previewed("script/patches/calls_out.rb", &[&endpoint])
        .await?;
    let m = &rec["preview"]["measure"];
    assert_eq!(m["blockedConnections"][&hostport], 1, "{rec}");
    assert!(
        m["outputTail"]
            .as_str()
            .unwrap_or_default()
            .contains("blocked"),
        "{rec}"
    );
    assert_eq!(counts(&rec, "preview", "public.users"), (0, 1, 0));
    // Rejected: nothing else runs.
    p.stack.stop(&arn).await?;
    Ok(())
}

#[tokio::test]
async fn changed_code_gets_another_digest_and_one_approval_starts_only_its_patch() -> Result<()> {
    let p = P::setup().await?;
    let first = p.stack.app_head()?;
    let second = p.stack.commit_to_app(
        &unique_name("preview"),
        &[(
            "script/patches/sessions_extend_and_purge.rb",
            "Session.where(\"token LIKE ?\", \"#{ARGV.fetch(0)}-%\").delete_all\nUser.where(id: 2).update_all(updated_at: Time.current)\n",
        )],
        "another patch body",
    )?;
    let tag = unique_name("digest").replace('-', "_");
    let script = "script/patches/sessions_extend_and_purge.rb";
    let (a, a_arn) = p
        .submit(&runner(&first, script, &[&tag], json!({})))
        .await?;
    let (b, b_arn) = p
        .submit(&runner(&second, script, &[&tag], json!({})))
        .await?;
    let ra = p.pending(&a).await?;
    let rb = p.pending(&b).await?;
    assert_ne!(ra["preview"]["digest"], rb["preview"]["digest"]);
    assert_ne!(ra["request"]["requestHash"], rb["request"]["requestHash"]);
    assert!(
        rb["preview"]["measure"]["tables"]
            .get("public.users")
            .is_some(),
        "{rb}"
    );
    p.approve(&a).await?;
    let ended = p.stack.wait_end(&a_arn, TIMEOUT).await?;
    assert_eq!(ended.status, "SUCCEEDED", "{ended:?}");
    let rb = p.record(&b).await?;
    assert_eq!(rb["status"], "PENDING_APPROVAL", "{rb}");
    assert!(p.builds_of(&b, "BATCHLESS_PATCH_ID").await?.is_empty());
    p.stack.stop(&b_arn).await?;
    Ok(())
}

/// Issue 16: the approver sees exactly what runs. A reason hiding a bidi override is
/// `InvalidInput` before anything is recorded or posted; an e-mail argument shows verbatim in
/// the approval request (the one place it is not redacted) and a `<!channel>` in the reason is
/// escaped, not a mention.
#[tokio::test]
async fn the_approval_request_shows_the_command_verbatim_and_refuses_hidden_characters(
) -> Result<()> {
    const PATCHES: &str = "C0PATCHES";
    let p = P::setup().await?;
    let head = p.stack.app_head()?;
    let script = "script/patches/sessions_extend_and_purge.rb";
    let hidden = runner(
        &head,
        script,
        &["x"],
        json!({"reason": "fix totals\u{202e}lla ped"}),
    );
    let (id, arn) = p.submit(&hidden).await?;
    let ended = p.stack.wait_end(&arn, TIMEOUT).await?;
    Expect {
        cause_has: &["reason", "invisible or bidi-control character U+202E"],
        ..Expect::error("InvalidInput")
    }
    .check(&p.stack, &arn, &ended)
    .await?;
    assert!(p.find_record(&id).await?.is_none(), "nothing recorded");

    let email = format!("{}@example.com", unique_name("u"));
    let input = runner(
        &head,
        script,
        &[&email],
        json!({"reason": "<!channel> see <https://evil.example|OPS-18>"}),
    );
    let (id, arn) = p.submit(&input).await?;
    p.pending(&id).await?;
    let post = p.stack.slack_post_containing(PATCHES, &id).await?;
    let blocks = post["blocks"].to_string();
    // The command verbatim (the dry run's output tail, a log, stays redacted).
    let command = post["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["text"]["text"].as_str())
        .find(|t| t.starts_with("*Command*"))
        .unwrap_or_default();
    assert!(
        command.contains(&email) && !command.contains("REDACTED"),
        "the command verbatim: {blocks}"
    );
    assert!(
        blocks.contains("&lt;!channel&gt; see &lt;https://evil.example|OPS-18&gt;"),
        "{blocks}"
    );
    assert!(!blocks.contains("<!channel>"), "{blocks}");
    let (code, out, err) = p.stack.cli(&["patch", "cancel", &id])?;
    assert_eq!(code, 0, "{out}{err}");
    p.stack.wait_end(&arn, TIMEOUT).await?;
    Ok(())
}

/// The patch id and execution ARN `batchless patch submit` printed.
fn submitted(out: &str) -> Result<(String, String)> {
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("patch ")?.split_once(" submitted:"))
        .map(|(id, _)| id.to_string())
        .with_context(|| format!("no patch id in {out}"))?;
    let arn = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("execution: "))
        .map(str::to_string)
        .with_context(|| format!("no execution in {out}"))?;
    Ok((id, arn))
}

/// `batchless patch submit --dry-run-only` as bob: a runner `script` with one argument.
async fn dry_run_only(
    p: &P,
    script: &str,
    arg: &str,
    reason: &str,
) -> Result<(i32, String, String)> {
    p.stack
        .cli_as(
            Some("bob"),
            &[
                "patch",
                "submit",
                "--ticket",
                "OPS-18",
                "--ref",
                "main",
                "--kind",
                "runner",
                "--script",
                script,
                "--arg",
                arg,
                "--reason",
                reason,
                "--dry-run-only",
            ],
        )
        .await
}

/// `batchless patch submit --dry-run-only` (issue 18): the CLI follows the dry run and prints
/// its preview; nobody is asked, nothing runs for real, the database is unchanged, and an
/// approval of the previewed patch is refused and audited.
#[tokio::test]
async fn a_dry_run_only_request_prints_its_preview_and_asks_nobody() -> Result<()> {
    let p = P::setup().await?;
    let tag = unique_name("o").replace('-', "_");
    p.stack.sql(&format!(
        "INSERT INTO sessions (token, user_id, expires_at) SELECT '{tag}-u-' || i, 1, '2030-01-01' FROM generate_series(1, 2) i;
         INSERT INTO sessions (token, user_id, expires_at) VALUES ('{tag}-d-1', 1, '2030-01-01');"
    ))?;
    let (code, out, err) = dry_run_only(
        &p,
        "script/patches/sessions_extend_and_purge.rb",
        &tag,
        "what would this change?",
    )
    .await?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("dry run completed (build "), "{out}");
    assert!(
        out.contains("  preview: public.sessions: 0 inserted, 2 updated, 1 deleted"),
        "{out}"
    );
    let (id, arn) = submitted(&out)?;
    let ended = p.stack.wait_end(&arn, TIMEOUT).await?;
    Expect {
        entered: &["StartDryRun", "RecordPreview", "PreviewOnly?", "Previewed"],
        not_entered: &["RequestApproval", "StartPatchBuild"],
        ..Expect::succeeded()
    }
    .check(&p.stack, &arn, &ended)
    .await?;
    let output = ended.output.clone().unwrap_or_default();
    assert_eq!(output["status"], "PREVIEWED", "{output}");
    assert!(
        output["preview"]
            .to_string()
            .contains("2 updated, 1 deleted"),
        "{output}"
    );
    let rec = p.record(&id).await?;
    assert_eq!(rec["status"], "PREVIEWED", "{rec}");
    assert!(rec.get("approvalMessage").is_none(), "{rec}");
    assert_eq!(counts(&rec, "preview", "public.sessions"), (0, 2, 1));
    assert_eq!(p.builds_of(&id, "BATCHLESS_PREVIEW_ID").await?.len(), 1);
    assert!(p.builds_of(&id, "BATCHLESS_PATCH_ID").await?.is_empty());
    assert_eq!(
        count(
            &p,
            &format!("SELECT count(*) FROM sessions WHERE token LIKE '{tag}-%'")
        )?,
        3,
        "the dry run changed nothing"
    );
    // The preview is posted, so a dry run against production is never silent.
    let post = p.stack.slack_post_containing("C0ALERTS", &id).await?;
    let text = post["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("Dry run only") && text.contains("2 updated, 1 deleted"),
        "{text}"
    );
    // Approving it is refused, and the refusal is in the audit trail.
    let (code, out, err) = p
        .stack
        .cli_as(Some("alice"), &["patch", "approve", &id])
        .await?;
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        format!("{out}{err}").contains("a dry run only"),
        "{out}{err}"
    );
    let (records, _) = batchless_core::shared::audit::read_chain(
        &p.trail(batchless_core::shared::audit::PATCH_CHAIN),
    )
    .await?;
    let refused = records.iter().any(|r| {
        r.patch_id == id
            && r.event == "DECISION_REFUSED"
            && r.data["refusal"]["refusal"] == "dry_run_only"
    });
    assert!(refused, "the refused approval is audited");
    assert_eq!(p.record(&id).await?["status"], "PREVIEWED");
    // A dry run only that raises is still a preview (there is nothing to approve), shown as
    // failed, and the CLI exits non-zero.
    let (code, out, err) =
        dry_run_only(&p, "script/patches/raises.rb", "x", "does it work?").await?;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("dry run failed (raised)"), "{out}");
    let (id, _) = submitted(&out)?;
    assert_eq!(p.record(&id).await?["status"], "PREVIEWED");
    Ok(())
}

/// Rows that appear between the preview and the real run: the run changes more than it showed,
/// and the difference is flagged in the Slack thread, on the record and in the audit report (a
/// flag, not a violation: the run stays COMPLIANT).
#[tokio::test]
async fn a_run_that_changes_more_than_its_preview_is_flagged() -> Result<()> {
    let p = P::setup().await?;
    let tag = unique_name("f").replace('-', "_");
    let insert = |from: u32, to: u32| {
        format!(
            "INSERT INTO sessions (token, user_id, expires_at) SELECT '{tag}-u-' || i, 1, '2030-01-01' FROM generate_series({from}, {to}) i;"
        )
    };
    p.stack.sql(&insert(1, 2))?;
    let (id, arn, rec) = p
        .previewed("script/patches/sessions_extend_and_purge.rb", &[&tag])
        .await?;
    assert_eq!(counts(&rec, "preview", "public.sessions"), (0, 2, 0));
    p.stack.sql(&insert(3, 7))?;
    p.approve(&id).await?;
    let ended = p.stack.wait_end(&arn, TIMEOUT).await?;
    Expect {
        entered: &["AuditCheck", "Patched"],
        ..Expect::succeeded()
    }
    .check(&p.stack, &arn, &ended)
    .await?;
    let rec = p.record(&id).await?;
    assert_eq!(rec["verdict"], "COMPLIANT", "{rec}");
    assert_eq!(counts(&rec, "actual", "public.sessions"), (0, 7, 0));
    let flag = "public.sessions: 7 updated in the run, 2 in the preview";
    assert_eq!(rec["previewFlags"], json!([flag]), "{rec}");
    let ts = rec["approvalMessage"]["ts"].as_str().unwrap_or_default();
    let reply = eventually("the flagged result in the thread", TIMEOUT, || async {
        let msgs = p.stack.slack_messages("C0PATCHES").await?;
        Ok(msgs
            .into_iter()
            .find(|m| m["thread_ts"] == ts && m.to_string().contains("Preview:")))
    })
    .await?;
    let text = reply["text"].as_str().unwrap_or_default();
    assert!(
        text.contains(&format!(":triangular_flag_on_post: {flag}")),
        "{text}"
    );
    let since = rec["createdAt"].as_str().unwrap_or("2026-01-01");
    let (code, out, err) =
        p.stack
            .cli(&["audit", "report", "--since", &since[..10], "--format", "md"])?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("  - FLAG: {flag}")), "{out}");
    assert!(
        out.contains("  - preview: public.sessions: 0 inserted, 2 updated, 0 deleted"),
        "{out}"
    );
    Ok(())
}

/// Mail a patch sends: counted and captured in the dry run (nothing delivered), delivered by the
/// real run (the sample app delivers to files, one per recipient).
#[tokio::test]
async fn mail_is_counted_not_sent_in_the_dry_run_and_sent_by_the_run() -> Result<()> {
    let p = P::setup().await?;
    let tag = unique_name("m");
    let dir = std::path::Path::new("/tmp/sample-app-mails");
    let delivered = || {
        (1..=3)
            .filter(|i| dir.join(format!("{tag}-{i}@example.test")).exists())
            .count()
    };
    let (id, arn, rec) = p
        .previewed("script/patches/mails_notices.rb", &[&tag, "3"])
        .await?;
    assert_eq!(rec["preview"]["outcome"], "ok", "{rec}");
    assert_eq!(rec["preview"]["measure"]["mails"], 3, "{rec}");
    assert_eq!(delivered(), 0, "the dry run delivered mail");
    let post = p.stack.slack_post_containing("C0PATCHES", &id).await?;
    assert!(post.to_string().contains("mails: 3"), "{post}");
    p.approve(&id).await?;
    let ended = p.stack.wait_end(&arn, TIMEOUT).await?;
    assert_eq!(ended.status, "SUCCEEDED", "{ended:?}");
    assert_eq!(delivered(), 3, "the run delivers every mail");
    assert_eq!(p.record(&id).await?["actual"]["mails"], 3);
    Ok(())
}

/// The re-check after the dry run's wake (issue 15: a callback wakes, CodeBuild decides) fails:
/// the run errors before any preview is recorded or approval asked.
#[tokio::test]
async fn a_failing_recheck_of_the_dry_run_errors_the_run() -> Result<()> {
    let p = P::setup().await?;
    let head = p.stack.app_head()?;
    // The dry run's wait can time out before the build ends on a loaded machine (then the
    // safety-net poll, not the re-check, reads the build): up to three tries.
    for attempt in 1..=3 {
        p.stack
            .faults(&[fault::lambda_error(
                "poll-build",
                json!({"woken": true, "dryRun": true}),
                "AwsServiceError",
                1,
            )])
            .await?;
        let input = runner(
            &head,
            "script/patches/sessions_extend_and_purge.rb",
            &["r"],
            json!({}),
        );
        let started = p.submit(&input).await;
        let ended = match &started {
            Ok((_, arn)) => p.stack.wait_end(arn, TIMEOUT).await,
            Err(_) => Err(anyhow::anyhow!("not started")),
        };
        p.stack.clear_faults().await?;
        let ((id, arn), ended) = (started?, ended?);
        let states = p.stack.states_entered(&arn).await?;
        if !states.iter().any(|s| s == "RecheckDryRun") && attempt < 3 {
            continue;
        }
        Expect {
            entered: &["WaitForDryRun", "RecheckDryRun", "Errored"],
            not_entered: &["RecordPreview", "RequestApproval", "StartPatchBuild"],
            ..Expect::error("AwsServiceError")
        }
        .check(&p.stack, &arn, &ended)
        .await?;
        assert_eq!(p.record(&id).await?["status"], "ERROR");
        return Ok(());
    }
    unreachable!("the last attempt returns")
}
