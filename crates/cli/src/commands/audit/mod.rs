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
    /// The chain to verify.
    #[arg(long, default_value = audit::PATCH_CHAIN)]
    pub chain: String,
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
        Command::Verify(_) => {
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
