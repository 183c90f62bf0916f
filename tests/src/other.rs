//! Stacks set up differently from the shared one (another environment, a parameter off), for
//! the paths only such a deployment takes. `scripts/scenarios.sh` starts each once and names
//! it in an environment variable, so the coverage report reads its executions too; without
//! the variable a test starts its own and stops it when done.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{repo_root, Stack};

/// How the other stack differs from the shared one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// `--env production` (the require-approval migration policy, production names).
    Production,
    /// `PatchDryRun=off`: data patches go to their approval request without a dry run. Also
    /// `MigrationDeployBranch=main` (no other test of this stack migrates), so a migration at a
    /// commit off `main` stops at the build's deploy-branch check.
    NoDryRun,
}

impl Setup {
    /// The variable `scripts/scenarios.sh` names the running stack in.
    pub const fn env_var(self) -> &'static str {
        match self {
            Setup::Production => "BATCHLESS_PRODUCTION_STACK",
            Setup::NoDryRun => "BATCHLESS_NO_DRY_RUN_STACK",
        }
    }

    /// The replica's `up` options (after `batchless local up ... --`).
    pub const fn replica_args(self) -> &'static [&'static str] {
        match self {
            Setup::Production => &["--env", "production"],
            Setup::NoDryRun => &[
                "--param",
                "PatchDryRun=off",
                "--param",
                "MigrationDeployBranch=main",
            ],
        }
    }

    const fn prefix(self) -> &'static str {
        match self {
            Setup::Production => "prod",
            Setup::NoDryRun => "nodry",
        }
    }
}

/// A running stack of that [`Setup`]; stopped on drop if this process started it.
pub struct OtherStack {
    pub name: String,
    started: bool,
}

impl OtherStack {
    /// The stack named by the setup's variable, or a new one (time scale 60).
    pub fn up(setup: Setup) -> Result<OtherStack> {
        if let Ok(name) = std::env::var(setup.env_var()) {
            return Ok(OtherStack {
                name,
                started: false,
            });
        }
        let name = format!("{}-{}", setup.prefix(), std::process::id());
        let out = Command::new(repo_root().join("target/debug/batchless"))
            .current_dir(repo_root())
            .args(["local", "up", "--name", &name, "--time-scale", "60", "--"])
            .args(setup.replica_args())
            .output()
            .context("batchless local up")?;
        if !out.status.success() {
            bail!(
                "local up {:?} failed: {}{}",
                setup.replica_args(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(OtherStack {
            name,
            started: true,
        })
    }

    /// Its clients, faults cleared.
    pub async fn stack(&self) -> Result<Stack> {
        let stack = Stack::named(&self.name).await?;
        stack.clear_faults().await?;
        Ok(stack)
    }
}

impl Drop for OtherStack {
    fn drop(&mut self) {
        if self.started {
            let _ = Command::new(repo_root().join("target/debug/batchless"))
                .current_dir(repo_root())
                .args(["local", "down", "--name", &self.name])
                .output();
        }
    }
}
