//! `batchless audit verify|report`: the data-patch audit trail — verify its hash chain, and
//! report every patch since a date ([`report`]).

pub mod report;

use std::process::ExitCode;

use anyhow::Result;
use batchless_core::platform::time;
use batchless_core::shared::audit;
use clap::{Args, Subcommand, ValueEnum};

use crate::context::Context;
use crate::identity::caller;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Verify the hash chain against itself, its head and its S3 anchors; exit 1 naming every problem.
    Verify(VerifyArgs),
    /// Every patch since a date: who asked, who approved, what ran at which SHA, when, verdict, log.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The chain to verify (the data-patch chain is also cross-checked with the patches table
    /// and the data-patch executions).
    #[arg(long, default_value = audit::PATCH_CHAIN)]
    pub chain: String,
    /// The KMS key checkpoints must be signed with (default `alias/batchless-<env>-audit-signing`).
    #[arg(long)]
    pub signing_key: Option<String>,
}

/// Executions this young may not have recorded their request yet.
const GRACE_SECONDS: i64 = 600;

/// Every patch id in the patches table (its patch records: they carry an environment and a
/// status; the table's other items, e.g. replay markers, do not).
async fn patch_ids(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    environment: &str,
) -> Result<Vec<String>> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let mut ids = Vec::new();
    let mut start = None;
    loop {
        let out = db
            .scan()
            .table_name(table)
            .consistent_read(true)
            .filter_expression("environment = :e AND attribute_exists(#s)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":e", AttributeValue::S(environment.to_string()))
            .projection_expression("patchId")
            .set_exclusive_start_key(start)
            .send()
            .await?;
        for item in out.items() {
            if let Some(AttributeValue::S(id)) = item.get("patchId") {
                ids.push(id.clone());
            }
        }
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    Ok(ids)
}

/// The data-patch executions that must have audit records: all but those that failed
/// `InvalidInput` (refused before anything was recorded) and those still starting.
async fn audited_executions(sfn: &aws_sdk_sfn::Client, arn: &str) -> Result<Vec<(String, String)>> {
    use aws_sdk_sfn::types::ExecutionStatus;
    let mut out = Vec::new();
    let mut token = None;
    let now = time::now().timestamp();
    loop {
        let page = sfn
            .list_executions()
            .state_machine_arn(arn)
            .set_next_token(token)
            .send()
            .await?;
        for e in page.executions() {
            let status = e.status();
            if *status == ExecutionStatus::Running && now - e.start_date().secs() < GRACE_SECONDS {
                continue;
            }
            if *status == ExecutionStatus::Failed {
                let d = sfn
                    .describe_execution()
                    .execution_arn(e.execution_arn())
                    .send()
                    .await?;
                if d.error() == Some("InvalidInput") {
                    continue;
                }
            }
            out.push((e.name().to_string(), status.as_str().to_string()));
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(out)
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

/// `2026-11-01` or an RFC 3339 time, as the sortable UTC form records use.
pub fn since(text: &str) -> Result<String> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(format!("{d}T00:00:00Z"));
    }
    let t = time::parse("since", text).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(time::rfc3339(t))
}

pub async fn run(cx: &Context, cmd: Command) -> Result<ExitCode> {
    let aws = cx.aws().await?;
    let b = aws.patch_backend(&caller(aws).await?.account);
    let chain = match &cmd {
        Command::Verify(a) => a.chain.clone(),
        Command::Report(_) => audit::PATCH_CHAIN.to_string(),
    };
    let trail = audit::Trail {
        chain: &chain,
        ..b.trail()
    };
    match cmd {
        Command::Verify(a) => {
            let cross = if chain == audit::PATCH_CHAIN {
                let sfn = aws.sfn();
                let executions =
                    match crate::sfn::find_state_machine(aws, &sfn, "data-patch").await? {
                        Some(arn) => audited_executions(&sfn, &arn).await?,
                        None => Vec::new(),
                    };
                Some(audit::CrossCheck {
                    patches: patch_ids(&b.db, &b.patches_table, &aws.environment).await?,
                    executions,
                })
            } else {
                None
            };
            let signing_key = a
                .signing_key
                .unwrap_or_else(|| format!("alias/{}", aws.resource("audit-signing")));
            let kms = batchless_core::platform::aws::kms(&aws.config);
            let checks = audit::Checks {
                kms: &kms,
                signing_key: &signing_key,
                cross,
            };
            let v = audit::verify_full(&trail, &checks)
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
        Command::Report(a) => {
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
    fn since_accepts_dates_and_times() {
        assert_eq!(since("2026-11-01").unwrap(), "2026-11-01T00:00:00Z");
        assert_eq!(
            since("2026-11-01T10:00:00+01:00").unwrap(),
            "2026-11-01T09:00:00Z"
        );
        assert!(since("yesterday").is_err());
    }

    #[test]
    fn the_commands_parse() {
        let parse = crate::testing::parse_subcommand::<Command>;
        let Command::Verify(v) = parse(&["verify"]).unwrap() else {
            panic!("not verify")
        };
        assert_eq!(v.chain, audit::PATCH_CHAIN);
        let Command::Report(r) =
            parse(&["report", "--since", "2026-11-01", "--format", "html"]).unwrap()
        else {
            panic!("not report")
        };
        assert!(matches!(r.format, Format::Html));
        assert!(parse(&["report"]).is_err());
    }
}
