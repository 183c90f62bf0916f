//! The `batchless` command: local replica stacks, starting and following workflow runs,
//! approvals, the migration history, scheduled jobs, sessions, the audit trail and workflow
//! coverage reports.
//!
//! ```text
//! cli        the global options and the command enum (clap derive)
//! commands/  one module per command: its clap Args and its run()
//! context    the repository, the local stack, the environment, the AWS connection (made once)
//! identity   who is calling: STS identity, the person in the people map
//! parse      shared clap value parsers
//! sfn        Step Functions: state machine lookup, start, history, the follow loop
//! render     an execution's history as lines, and its summary
//! ```
//!
//! The plumbing imports no command, and no command imports another (the `layering` test in `testing.rs`).

mod cli;
mod commands;
mod context;
mod identity;
mod parse;
mod render;
mod sfn;
mod signed;
#[cfg(test)]
mod testing;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let cx = context::Context::new(cli.stack, cli.environment);
    match cli.command.run(&cx).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
