//! The `batchless` command: local replica stacks, starting and following workflow runs,
//! the migration history and workflow coverage reports.

mod args;
mod audit_report;
mod context;
mod coverage;
mod jobs;
mod local;
mod migrations;
mod patch;
mod render;
mod run;
mod sessions;
mod sfn;
mod template;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command, MigrationsCommand};
use context::Ctx;

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // An empty variable (`BATCHLESS_STACK=`) means unset.
    let stack = cli.stack.as_deref().filter(|s| !s.is_empty());
    let env = cli.environment.as_deref().filter(|s| !s.is_empty());
    match cli.command {
        Command::Local(a) => local::local(stack, env, a).await,
        Command::Run(a) => run::run(&Ctx::new(stack, env).await?, a).await,
        Command::Follow(a) => run::follow(&Ctx::new(stack, env).await?, a).await,
        Command::Migrations(MigrationsCommand::List(a)) => {
            migrations::list(&Ctx::new(stack, env).await?, a).await
        }
        Command::Coverage(a) => coverage::coverage(&Ctx::new(stack, env).await?, a).await,
        Command::Jobs(c) => jobs::jobs(stack, env, c).await,
        Command::Sessions(a) => sessions::sessions(&Ctx::new(stack, env).await?, a).await,
        Command::Patch(c) => patch::patch(&Ctx::new(stack, env).await?, c).await,
        Command::Audit(c) => patch::audit_cmd(&Ctx::new(stack, env).await?, c).await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
