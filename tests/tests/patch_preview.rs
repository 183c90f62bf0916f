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
    p.stack
        .sfn
        .stop_execution()
        .execution_arn(&arn)
        .send()
        .await?;
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
    p.stack
        .sfn
        .stop_execution()
        .execution_arn(&b_arn)
        .send()
        .await?;
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
