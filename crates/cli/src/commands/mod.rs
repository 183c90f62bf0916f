//! One module per command: each owns its clap arguments (derive) and its `run`. Commands share
//! only the plumbing modules (`context`, `identity`, `parse`, `sfn`, `render`), never one
//! another (the `layering` test in `testing.rs` checks it).

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::context::Context;

pub mod audit;
pub mod coverage;
pub mod follow;
pub mod jobs;
pub mod local;
pub mod migrations;
pub mod patch;
pub mod run;
pub mod sessions;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start, stop or inspect a local replica stack (runs `local/replica.py`).
    Local(local::Args),
    /// Start a workflow execution and follow it live until it ends.
    Run(run::Args),
    /// Attach to an execution (running or ended) and follow it live until it ends.
    Follow(follow::Args),
    /// The migration history recorded in the runs table.
    #[command(subcommand)]
    Migrations(migrations::Command),
    /// Which states, Choice branches and Catch handlers the recorded executions exercised.
    Coverage(coverage::Args),
    /// Scheduled jobs: list, validate, generate schedules, claim (cut-over), run, cancel, fire.
    #[command(subcommand)]
    Jobs(jobs::Command),
    /// Bastion sessions: logins, approvals, alerts and the dangerous commands flagged in each.
    Sessions(sessions::Args),
    /// Data patches: submit, approve, reject, cancel, show, list.
    #[command(subcommand)]
    Patch(patch::Command),
    /// The data-patch audit trail: verify the hash chain, report every patch since a date.
    #[command(subcommand)]
    Audit(audit::Command),
}

impl Command {
    pub async fn run(self, cx: &Context) -> Result<ExitCode> {
        match self {
            Command::Local(a) => local::run(cx, a).await,
            Command::Run(a) => run::run(cx, a).await,
            Command::Follow(a) => follow::run(cx, a).await,
            Command::Migrations(c) => migrations::run(cx, c).await,
            Command::Coverage(a) => coverage::run(cx, a).await,
            Command::Jobs(c) => jobs::run(cx, c).await,
            Command::Sessions(a) => sessions::run(cx, a).await,
            Command::Patch(c) => patch::run(cx, c).await,
            Command::Audit(c) => audit::run(cx, c).await,
        }
    }
}
