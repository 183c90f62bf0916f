//! `batchless patch submit|approve|reject|cancel|show|list`. Decisions and cancels are made on
//! the server: a SigV4-signed request to the IAM-authenticated decision endpoint, which takes
//! the caller from AWS and decides under the same rule set as the Slack buttons. The CLI
//! writes no decision and wakes no workflow itself.

use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use batchless_core::patch::approval::Decision;
use batchless_core::patch::store;
use batchless_core::patch::{self, Kind};
use batchless_core::platform::time;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::context::{Aws, Context};
use crate::identity::caller;
use crate::{sfn, signed};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Request a data patch: resolves the ref to its commit and starts the data-patch workflow.
    Submit(SubmitArgs),
    /// Approve a pending patch (you must have the approver role and not be its requester).
    Approve(DecideArgs),
    /// Reject a pending patch.
    Reject(DecideArgs),
    /// Cancel a patch: a pending one ends at once, a running one has its build stopped.
    Cancel(IdArgs),
    /// A patch's record: request, decisions, build, verdict, log.
    Show(IdArgs),
    /// The newest patches of the environment.
    List(ListArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Rake,
    Runner,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[arg(long)]
    pub ticket: String,
    /// Branch, tag or full commit SHA; resolved to the commit with `git ls-remote`.
    #[arg(long = "ref")]
    pub git_ref: String,
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// The rake task (kind rake).
    #[arg(long)]
    pub task: Option<String>,
    /// The script path in the repository (kind runner).
    #[arg(long)]
    pub script: Option<String>,
    /// An argument for the task or script (repeat for more; each is quoted safely).
    #[arg(long = "arg", allow_hyphen_values = true)]
    pub args: Vec<String>,
    #[arg(long)]
    pub reason: String,
    /// The app's git repository (URL or path) [default: BATCHLESS_APP_REPO, or the local stack's].
    #[arg(long, env = "BATCHLESS_APP_REPO")]
    pub repo: Option<String>,
    /// Ask for more approvers than the environment requires.
    #[arg(long)]
    pub required_approvals: Option<u32>,
    /// Seconds to wait for approval [default: the environment's, 24 h].
    #[arg(long)]
    pub approval_timeout: Option<u64>,
    /// Run only the dry run (rolled back), follow it and print its preview: nobody is asked to
    /// approve and nothing runs for real. Exit 0 when the dry run completed cleanly.
    #[arg(long, conflicts_with_all = ["required_approvals", "approval_timeout"])]
    pub dry_run_only: bool,
    #[command(flatten)]
    pub poll: sfn::PollArgs,
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    pub patch_id: String,
    #[arg(long)]
    pub comment: Option<String>,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    pub patch_id: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, default_value_t = 20)]
    pub limit: i32,
}

/// `git ls-remote` the ref; a full SHA is taken as is.
pub fn resolve_ref(repo: &str, git_ref: &str) -> Result<String> {
    if let Ok(sha) = batchless_core::platform::input::commit_sha("ref", git_ref) {
        return Ok(sha);
    }
    patch::git_ref("ref", git_ref).map_err(|e| anyhow::anyhow!("{e}"))?;
    let out = std::process::Command::new("git")
        .args(["ls-remote", "--", repo, git_ref])
        .output()
        .with_context(|| format!("running git ls-remote {repo}"))?;
    if !out.status.success() {
        bail!(
            "git ls-remote {repo} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let wanted = [
        git_ref.to_string(),
        format!("refs/heads/{git_ref}"),
        format!("refs/tags/{git_ref}^{{}}"),
        format!("refs/tags/{git_ref}"),
    ];
    for w in &wanted {
        if let Some(sha) = text
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .find(|(_, name)| name == w)
            .map(|(sha, _)| sha.to_string())
        {
            return Ok(sha);
        }
    }
    bail!("{git_ref:?} is not a branch or tag of {repo} (no commit SHA: nothing submitted)")
}

async fn submit(aws: &Aws, a: SubmitArgs) -> Result<ExitCode> {
    let repo = match (&a.repo, &aws.stack) {
        (Some(r), _) => r.clone(),
        (None, Some(s)) => s
            .app_repo
            .as_ref()
            .and_then(|r| r["path"].as_str())
            .map(str::to_string)
            .context("the local stack has no app repository")?,
        (None, None) => bail!("which repository? pass --repo or set BATCHLESS_APP_REPO"),
    };
    let commit = resolve_ref(&repo, &a.git_ref)?;
    let mut input = json!({
        "ticket": a.ticket,
        "ref": a.git_ref,
        "commit": commit,
        "kind": match a.kind { KindArg::Rake => Kind::Rake, KindArg::Runner => Kind::Runner },
        "args": a.args,
        "reason": a.reason,
    });
    if a.dry_run_only {
        input["dryRunOnly"] = json!(true);
    }
    for (k, v) in [
        ("task", a.task.map(Value::from)),
        ("script", a.script.map(Value::from)),
        ("requiredApprovals", a.required_approvals.map(Value::from)),
        (
            "approvalTimeoutSeconds",
            a.approval_timeout.map(Value::from),
        ),
    ] {
        if let Some(v) = v {
            input[k] = v;
        }
    }
    let client = aws.sfn();
    let machine = sfn::require_state_machine(aws, &client, patch::WORKFLOW).await?;
    let name = patch::execution_name(&a.ticket, time::now());
    let execution = sfn::submit(aws, &client, patch::WORKFLOW, &machine, &name, &input).await?;
    println!("patch {name} submitted: {} at {commit}", a.git_ref);
    println!("  execution: {execution}");
    if !a.dry_run_only {
        println!("  approve:   batchless patch approve {name}   (or the Slack buttons)");
        return Ok(ExitCode::SUCCESS);
    }
    println!("  dry run only: following it; nobody is asked to approve, nothing runs for real");
    let followed = sfn::follow(&client, &execution, a.poll.interval()).await?;
    if followed == ExitCode::from(130) {
        return Ok(followed);
    }
    let b = aws.patch_backend(&caller(aws).await?.account);
    let rec = store::must_get(&b.db, &b.patches_table, &name)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for l in preview_lines(&rec) {
        println!("{l}");
    }
    let clean = rec.status == patch::Status::Previewed
        && rec
            .preview
            .as_ref()
            .is_some_and(|p| p.outcome == batchless_core::patch::preview::Outcome::Ok);
    Ok(if clean && followed == ExitCode::SUCCESS {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Preview and actual side by side, for a reader.
fn preview_lines(rec: &store::PatchRecord) -> Vec<String> {
    use batchless_core::patch::preview::summary_lines;
    let mut lines: Vec<String> = batchless_core::patch::workflow::preview_lines(rec)
        .into_iter()
        .enumerate()
        .map(|(i, l)| if i == 0 { l } else { format!("  preview: {l}") })
        .collect();
    if let Some(a) = &rec.actual {
        lines.extend(
            summary_lines(a)
                .into_iter()
                .map(|l| format!("  actual:  {l}")),
        );
    }
    lines.extend(rec.preview_flags.iter().map(|f| format!("  flag:    {f}")));
    lines
}

async fn decide(aws: &Aws, a: DecideArgs, decision: Decision) -> Result<ExitCode> {
    let mut body = json!({"action": decision.as_str(), "patchId": a.patch_id});
    if let Some(c) = a.comment {
        body["comment"] = json!(c);
    }
    signed::decide(aws, body).await
}

async fn cancel(aws: &Aws, a: IdArgs) -> Result<ExitCode> {
    signed::decide(aws, json!({"action": "cancel", "patchId": a.patch_id})).await
}

async fn show(aws: &Aws, a: IdArgs) -> Result<ExitCode> {
    let b = aws.patch_backend(&caller(aws).await?.account);
    let mut rec = store::must_get(&b.db, &b.patches_table, &a.patch_id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    rec.task_token = rec.task_token.map(|_| "[held by the workflow]".into());
    println!("{}", serde_json::to_string_pretty(&rec)?);
    // Preview and actual side by side, for a reader (stderr: stdout stays the record's JSON).
    for l in preview_lines(&rec) {
        eprintln!("{l}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(aws: &Aws, a: ListArgs) -> Result<ExitCode> {
    let b = aws.patch_backend(&caller(aws).await?.account);
    let recs = store::list(&b.db, &b.patches_table, &aws.environment, a.limit)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for r in recs {
        let (ticket, requester, command) = r
            .request
            .as_ref()
            .map(|q| (q.ticket.as_str(), q.requester.as_str(), q.command.as_str()))
            .unwrap_or_default();
        println!(
            "{}  {:<16} {:<10} {:<8} {:<10} {}",
            r.created_at,
            r.status,
            ticket,
            requester,
            r.verdict.map(|v| v.as_str()).unwrap_or("-"),
            command
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run(cx: &Context, cmd: Command) -> Result<ExitCode> {
    let aws = cx.aws().await?;
    match cmd {
        Command::Submit(a) => submit(aws, a).await,
        Command::Approve(a) => decide(aws, a, Decision::Approve).await,
        Command::Reject(a) => decide(aws, a, Decision::Reject).await,
        Command::Cancel(a) => cancel(aws, a).await,
        Command::Show(a) => show(aws, a).await,
        Command::List(a) => list(aws, a).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_resolve_through_git_and_shas_pass_through() {
        let dir = std::env::temp_dir().join(format!("batchless-ref-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .args([
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@e",
                    "-c",
                    "init.defaultBranch=main",
                ])
                .args(args)
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(ok.status.success(), "{ok:?}");
            String::from_utf8(ok.stdout).unwrap().trim().to_string()
        };
        git(&["init", "-q"]);
        git(&["commit", "-q", "--allow-empty", "-m", "one"]);
        git(&["branch", "fix/x"]);
        let head = git(&["rev-parse", "HEAD"]);
        let repo = dir.to_str().unwrap();
        assert_eq!(resolve_ref(repo, "fix/x").unwrap(), head);
        assert_eq!(resolve_ref(repo, "main").unwrap(), head);
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(resolve_ref(repo, sha).unwrap(), sha);
        assert!(resolve_ref(repo, "nope")
            .unwrap_err()
            .to_string()
            .contains("no commit SHA"));
        assert!(resolve_ref(repo, "a;b").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_commands_parse() {
        let parse = crate::testing::parse_subcommand::<Command>;
        let submit = [
            "submit", "--ticket", "OPS-1", "--ref", "main", "--kind", "rake", "--task", "t",
            "--arg", "-x", "--reason", "r",
        ];
        let Command::Submit(a) = parse(&submit).unwrap() else {
            panic!("not submit")
        };
        assert_eq!(a.ticket, "OPS-1");
        assert_eq!(a.args, vec!["-x"]);
        let mut bad_kind = submit;
        bad_kind[6] = "sh";
        assert!(parse(&bad_kind).is_err());
        assert!(parse(&["approve", "p1", "--comment", "ok"]).is_ok());
        assert!(parse(&["list", "--limit", "5"]).is_ok());
    }
}
