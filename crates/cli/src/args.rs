//! Command-line arguments (clap derive). Parsing is unit-tested with `try_parse_from`.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// batchless: the operational chores of the old batch server, as Step Functions workflows.
///
/// Talks to AWS through the normal credential chain, or to a local replica stack with
/// `--stack NAME` (started by `batchless local up`).
#[derive(Debug, Parser)]
#[command(name = "batchless", version, propagate_version = true)]
pub struct Cli {
    /// Talk to the local replica stack NAME (its endpoint, region and test credentials come
    /// from `.local/NAME/stack.json`) instead of AWS.
    #[arg(long, global = true, env = "BATCHLESS_STACK", value_name = "NAME")]
    pub stack: Option<String>,

    /// Environment whose resources to use (`batchless-<ENV>-...`) [default: the stack's
    /// environment with --stack, else staging].
    #[arg(long = "env", global = true, env = "BATCHLESS_ENV", value_name = "ENV")]
    pub environment: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start, stop or inspect a local replica stack (runs `local/replica.py`).
    Local(LocalArgs),
    /// Start a workflow execution and follow it live until it ends.
    Run(RunArgs),
    /// Attach to an execution (running or ended) and follow it live until it ends.
    Follow(FollowArgs),
    /// The migration history recorded in the runs table.
    #[command(subcommand)]
    Migrations(MigrationsCommand),
    /// Which states, Choice branches and Catch handlers the recorded executions exercised.
    Coverage(CoverageArgs),
    /// Scheduled jobs: list, validate, generate schedules, claim (cut-over), run, cancel, fire.
    #[command(subcommand)]
    Jobs(crate::jobs::JobsCommand),
    /// Bastion sessions: logins, approvals, alerts and the dangerous commands flagged in each.
    Sessions(SessionsArgs),
    /// Data patches: submit, approve, reject, cancel, show, list.
    #[command(subcommand)]
    Patch(crate::patch::PatchCommand),
    /// The data-patch audit trail: verify the hash chain, report every patch since a date.
    #[command(subcommand)]
    Audit(crate::patch::AuditCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LocalVerb {
    /// Start the stack and provision it from infra/template.yaml.
    Up,
    /// Stop the stack.
    Down,
    /// Show whether the stack is running.
    Status,
}

impl LocalVerb {
    pub fn as_str(self) -> &'static str {
        match self {
            LocalVerb::Up => "up",
            LocalVerb::Down => "down",
            LocalVerb::Status => "status",
        }
    }
}

#[derive(Debug, Args)]
pub struct LocalArgs {
    /// up | down | status
    pub verb: LocalVerb,
    /// Stack name [default: --stack, else dev; `status` without one shows every stack].
    #[arg(long)]
    pub name: Option<String>,
    /// Replica time scale (e.g. 0.1 makes Wait states and builds ten times faster).
    #[arg(long, value_name = "X")]
    pub time_scale: Option<f64>,
    /// Further arguments passed to the launcher as they are.
    #[arg(last = true)]
    pub extra: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Workflow to start: migration, scheduled-job, data-patch, bastion-session.
    pub workflow: String,
    /// Execution input: a JSON file, or `-` for standard input.
    #[arg(long, value_name = "FILE|-", required_unless_present = "commit")]
    pub input: Option<String>,
    /// Shortcut for `run migration`: the full commit SHA to migrate.
    #[arg(long, value_name = "SHA", conflicts_with = "input")]
    pub commit: Option<String>,
    /// With --commit: an environment variable for the migration build (repeatable).
    #[arg(long = "env-override", value_name = "K=V", requires = "commit", value_parser = parse_key_value)]
    pub env_overrides: Vec<(String, String)>,
    /// Execution name [default: generated; `migration-<sha7>-<time>` with --commit].
    #[arg(long)]
    pub name: Option<String>,
    /// Print the execution ARN and return without following it.
    #[arg(long)]
    pub no_follow: bool,
    #[command(flatten)]
    pub poll: PollArgs,
}

impl RunArgs {
    /// What clap cannot say: `--env-override` goes only with `--commit` (clap waives a
    /// `requires` when the required argument conflicts with a present one).
    pub fn validate(&self) -> Result<(), String> {
        if !self.env_overrides.is_empty() && self.commit.is_none() {
            return Err(
                "--env-override goes with --commit; put overrides in the --input file".into(),
            );
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct FollowArgs {
    /// The execution ARN.
    pub execution_arn: String,
    #[command(flatten)]
    pub poll: PollArgs,
}

#[derive(Debug, Args, Clone, Copy)]
pub struct PollArgs {
    /// How often to poll the execution history, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000, hide = true)]
    pub poll_ms: u64,
}

#[derive(Debug, Subcommand)]
pub enum MigrationsCommand {
    /// List migration runs, newest first.
    List(MigrationsListArgs),
}

#[derive(Debug, Args)]
pub struct MigrationsListArgs {
    /// How many runs to show.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i32).range(1..))]
    pub limit: i32,
    /// Print the run records as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SessionsArgs {
    /// Only sessions that logged in at or after this time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Print the sessions (with flagged commands and judged replies) as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CoverageArgs {
    /// Workflow to report (repeatable) [default: every statemachines/*.asl.json].
    #[arg(long = "workflow", value_name = "W")]
    pub workflows: Vec<String>,
    /// Directory of the definitions [default: <repo>/statemachines].
    #[arg(long, value_name = "DIR")]
    pub definitions: Option<PathBuf>,
    /// Only executions started at or after this time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when overall coverage (all items of all workflows) is below PCT percent.
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    pub fail_under: Option<f64>,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected K=V, got {s:?}")),
    }
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 100"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("batchless").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_migration_shortcut() {
        let cli = parse(&[
            "--env",
            "production",
            "run",
            "migration",
            "--commit",
            "abc",
            "--env-override",
            "A=1",
            "--env-override",
            "B=x=y",
            "--no-follow",
        ])
        .unwrap();
        assert_eq!(cli.environment.as_deref(), Some("production"));
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.workflow, "migration");
        assert_eq!(run.commit.as_deref(), Some("abc"));
        assert_eq!(
            run.env_overrides,
            vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert!(run.no_follow);
        assert_eq!(run.poll.poll_ms, 1000);
    }

    #[test]
    fn run_needs_input_or_commit_but_not_both() {
        assert!(parse(&["run", "migration"]).is_err());
        assert!(parse(&["run", "migration", "--input", "-", "--commit", "abc"]).is_err());
        // --env-override only goes with --commit.
        let cli = parse(&[
            "run",
            "data-patch",
            "--input",
            "f.json",
            "--env-override",
            "A=1",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert!(run
            .validate()
            .unwrap_err()
            .contains("--env-override goes with --commit"));
        assert!(parse(&["run", "data-patch", "--env-override", "A=1"]).is_err());
        assert!(parse(&["run", "migration", "--commit", "a", "--env-override", "=1"]).is_err());
        let cli = parse(&["run", "data-patch", "--input", "f.json", "--name", "n1"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.input.as_deref(), Some("f.json"));
        assert_eq!(run.name.as_deref(), Some("n1"));
        assert_eq!(run.validate(), Ok(()));
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli = parse(&["follow", "arn:x", "--stack", "ci", "--poll-ms", "50"]).unwrap();
        assert_eq!(cli.stack.as_deref(), Some("ci"));
        let Command::Follow(f) = cli.command else {
            panic!("not follow")
        };
        assert_eq!(f.execution_arn, "arn:x");
        assert_eq!(f.poll.poll_ms, 50);
    }

    #[test]
    fn local_verbs() {
        let cli = parse(&[
            "local",
            "up",
            "--name",
            "ci",
            "--time-scale",
            "0.1",
            "--",
            "--verbose",
        ])
        .unwrap();
        let Command::Local(l) = cli.command else {
            panic!("not local")
        };
        assert_eq!(l.verb, LocalVerb::Up);
        assert_eq!(l.name.as_deref(), Some("ci"));
        assert_eq!(l.time_scale, Some(0.1));
        assert_eq!(l.extra, vec!["--verbose"]);
        assert!(parse(&["local", "restart"]).is_err());
    }

    #[test]
    fn migrations_list() {
        let cli = parse(&["migrations", "list", "--limit", "5", "--json"]).unwrap();
        let Command::Migrations(MigrationsCommand::List(l)) = cli.command else {
            panic!("not migrations list")
        };
        assert_eq!((l.limit, l.json), (5, true));
        assert!(parse(&["migrations", "list", "--limit", "0"]).is_err());
        let cli = parse(&["migrations", "list"]).unwrap();
        let Command::Migrations(MigrationsCommand::List(l)) = cli.command else {
            panic!("not migrations list")
        };
        assert_eq!((l.limit, l.json), (20, false));
    }

    #[test]
    fn sessions_options() {
        let cli = parse(&["sessions", "--since", "2026-11-28T13:00:00Z", "--json"]).unwrap();
        let Command::Sessions(a) = cli.command else {
            panic!("not sessions")
        };
        assert_eq!(a.since.unwrap().to_rfc3339(), "2026-11-28T13:00:00+00:00");
        assert!(a.json);
        assert!(parse(&["sessions", "--since", "last week"]).is_err());
    }

    #[test]
    fn coverage_options() {
        let cli = parse(&[
            "coverage",
            "--workflow",
            "migration",
            "--workflow",
            "data-patch",
            "--since",
            "2026-11-28T13:00:00+09:00",
            "--fail-under",
            "80%",
        ])
        .unwrap();
        let Command::Coverage(c) = cli.command else {
            panic!("not coverage")
        };
        assert_eq!(c.workflows, vec!["migration", "data-patch"]);
        assert_eq!(c.since.unwrap().to_rfc3339(), "2026-11-28T04:00:00+00:00");
        assert_eq!(c.fail_under, Some(80.0));
        assert!(parse(&["coverage", "--since", "yesterday"]).is_err());
        assert!(parse(&["coverage", "--fail-under", "120"]).is_err());
    }

    #[test]
    fn every_command_has_help() {
        let mut cmd = Cli::command();
        for sub in cmd.get_subcommands_mut() {
            assert!(sub.get_about().is_some(), "{} has no help", sub.get_name());
        }
    }
}
