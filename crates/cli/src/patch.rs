//! `batchless patch submit|approve|reject|cancel|show|list` and `batchless audit verify|report`.
//! Decisions go through the same rule set as the Slack buttons (core `patch::store::decide`),
//! with the person behind the caller's identity (STS `GetCallerIdentity`).

use std::process::ExitCode;

use crate::audit_report as report;
use anyhow::{bail, Context as _, Result};
use batchless_core::patch::approval::{Decision, Via};
use batchless_core::patch::store::{self, ApprovalWait, Backend, Decider};
use batchless_core::patch::{self, Kind};
use batchless_core::shared::people::People;
use batchless_core::{platform::time, shared::audit};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::context::Ctx;

#[derive(Debug, Subcommand)]
pub enum PatchCommand {
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

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain against itself, its head and its S3 anchors; exit 1 naming every problem.
    Verify {
        /// The chain to verify.
        #[arg(long, default_value = audit::PATCH_CHAIN)]
        chain: String,
    },
    /// Every patch since a date: who asked, who approved, what ran at which SHA, when, verdict, log.
    Report(ReportArgs),
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

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Md,
    Html,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A date (2026-11-01) or an RFC 3339 time.
    #[arg(long)]
    pub since: String,
    #[arg(long, value_enum, default_value = "md")]
    pub format: Format,
}

/// Who is calling (STS `GetCallerIdentity`, asked once per command).
struct Caller {
    account: String,
    arn: String,
}

async fn caller(ctx: &Ctx) -> Result<Caller> {
    let out = ctx
        .sts()
        .get_caller_identity()
        .send()
        .await
        .context("STS GetCallerIdentity")?;
    Ok(Caller {
        account: out.account().unwrap_or_default().to_string(),
        arn: out.arn().unwrap_or_default().to_string(),
    })
}

fn backend(ctx: &Ctx, caller: &Caller) -> Backend {
    Backend {
        db: ctx.dynamodb(),
        s3: batchless_core::platform::aws::s3(&ctx.config),
        patches_table: format!("batchless-{}-patches", ctx.environment),
        audit_table: format!("batchless-{}-audit", ctx.environment),
        bucket: format!("batchless-{}-logs-{}", ctx.environment, caller.account),
    }
}

/// The waits table, where the workflow keeps its approval wait's task token.
fn waits_table(ctx: &Ctx) -> String {
    format!("batchless-{}-waits", ctx.environment)
}

fn people(ctx: &Ctx) -> Result<People> {
    People::load(&ctx.environment).map_err(|e| anyhow::anyhow!("{e}"))
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

async fn submit(ctx: &Ctx, a: SubmitArgs) -> Result<ExitCode> {
    let repo = match (&a.repo, &ctx.stack) {
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
    let requested_by = caller(ctx).await?.arn;
    let mut input = json!({
        "ticket": a.ticket,
        "ref": a.git_ref,
        "commit": commit,
        "kind": match a.kind { KindArg::Rake => Kind::Rake, KindArg::Runner => Kind::Runner },
        "args": a.args,
        "reason": a.reason,
        "requestedBy": requested_by,
    });
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
    let sfn = ctx.sfn();
    let arn = crate::sfn::require_state_machine(ctx, &sfn, patch::WORKFLOW).await?;
    let name = patch::execution_name(&a.ticket, time::now());
    let out = sfn
        .start_execution()
        .state_machine_arn(&arn)
        .name(&name)
        .input(input.to_string())
        .send()
        .await
        .context("StartExecution")?;
    println!("patch {name} submitted: {} at {commit}", a.git_ref);
    println!("  execution: {}", out.execution_arn());
    println!("  approve:   batchless patch approve {name}   (or the Slack buttons)");
    Ok(ExitCode::SUCCESS)
}

async fn decide(ctx: &Ctx, a: DecideArgs, decision: Decision) -> Result<ExitCode> {
    let me = caller(ctx).await?;
    let b = backend(ctx, &me);
    let people = people(ctx)?;
    let arn = me.arn;
    let decider = Decider {
        person: people.by_principal(&arn),
        identity: arn.clone(),
        via: Via::Cli,
        comment: a.comment,
    };
    let (sfn, waits) = (ctx.sfn(), waits_table(ctx));
    let wait = ApprovalWait {
        sfn: &sfn,
        table: &waits,
    };
    let outcome = store::decide(&b.store(), &wait, &people, &a.patch_id, &decider, decision)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let who = decider.person.map(|p| p.id.clone()).unwrap_or(arn);
    println!("{}", outcome.summary(&who, decision));
    Ok(if outcome.refusal.is_some() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn cancel(ctx: &Ctx, a: IdArgs) -> Result<ExitCode> {
    let me = caller(ctx).await?;
    let b = backend(ctx, &me);
    let people = people(ctx)?;
    let arn = me.arn;
    let person = people
        .by_principal(&arn)
        .with_context(|| format!("{arn} is nobody in the people map"))?;
    let codebuild = batchless_core::platform::aws::codebuild(&ctx.config);
    let (sfn, waits) = (ctx.sfn(), waits_table(ctx));
    let wait = ApprovalWait {
        sfn: &sfn,
        table: &waits,
    };
    let out = store::cancel(&b.store(), &wait, &codebuild, &a.patch_id, person)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "patch {}: {}{}",
        out.patch_id,
        out.status,
        if out.build_stopped {
            ", its build was stopped (the workflow records CANCELLED)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

async fn show(ctx: &Ctx, a: IdArgs) -> Result<ExitCode> {
    let b = backend(ctx, &caller(ctx).await?);
    let mut rec = store::must_get(&b.db, &b.patches_table, &a.patch_id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    rec.task_token = rec.task_token.map(|_| "[held by the workflow]".into());
    println!("{}", serde_json::to_string_pretty(&rec)?);
    Ok(ExitCode::SUCCESS)
}

async fn list(ctx: &Ctx, a: ListArgs) -> Result<ExitCode> {
    let b = backend(ctx, &caller(ctx).await?);
    let recs = store::list(&b.db, &b.patches_table, &ctx.environment, a.limit)
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

pub async fn patch(ctx: &Ctx, cmd: PatchCommand) -> Result<ExitCode> {
    match cmd {
        PatchCommand::Submit(a) => submit(ctx, a).await,
        PatchCommand::Approve(a) => decide(ctx, a, Decision::Approve).await,
        PatchCommand::Reject(a) => decide(ctx, a, Decision::Reject).await,
        PatchCommand::Cancel(a) => cancel(ctx, a).await,
        PatchCommand::Show(a) => show(ctx, a).await,
        PatchCommand::List(a) => list(ctx, a).await,
    }
}

/// `2026-11-01` or an RFC 3339 time, as the sortable UTC form records use.
pub fn since(text: &str) -> Result<String> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(format!("{d}T00:00:00Z"));
    }
    let t = time::parse("since", text).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(time::rfc3339(t))
}

pub async fn audit_cmd(ctx: &Ctx, cmd: AuditCommand) -> Result<ExitCode> {
    let b = backend(ctx, &caller(ctx).await?);
    let chain = match &cmd {
        AuditCommand::Verify { chain } => chain.clone(),
        AuditCommand::Report(_) => audit::PATCH_CHAIN.to_string(),
    };
    let trail = audit::Trail {
        chain: &chain,
        ..b.trail()
    };
    match cmd {
        AuditCommand::Verify { .. } => {
            let v = audit::verify_trail(&trail)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if v.ok() {
                println!(
                    "audit chain OK: {} records, {} S3 anchors, head {} ({})",
                    v.records,
                    v.anchors,
                    v.last_seq,
                    &v.last_hash[..12.min(v.last_hash.len())]
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!(
                    "audit chain BROKEN: {} problem(s) in {} records",
                    v.problems.len(),
                    v.records
                );
                for p in &v.problems {
                    println!("  - {p}");
                }
                Ok(ExitCode::FAILURE)
            }
        }
        AuditCommand::Report(a) => {
            let since = since(&a.since)?;
            let (records, _) = audit::read_chain(&trail)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let r = report::build(&records, &since);
            print!(
                "{}",
                match a.format {
                    Format::Md => report::markdown(&r),
                    Format::Html => report::html(&r),
                }
            );
            Ok(ExitCode::SUCCESS)
        }
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
    fn since_accepts_dates_and_times() {
        assert_eq!(since("2026-11-01").unwrap(), "2026-11-01T00:00:00Z");
        assert_eq!(
            since("2026-11-01T10:00:00+01:00").unwrap(),
            "2026-11-01T09:00:00Z"
        );
        assert!(since("yesterday").is_err());
    }
}
