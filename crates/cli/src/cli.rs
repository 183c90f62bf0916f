//! The command line: the global options and the commands (`commands::Command`).

use clap::Parser;

use crate::commands::Command;

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

    /// Every command path (`jobs claim`, `patch submit`, ...), depth first.
    fn paths(cmd: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands() {
            let mut path = prefix.clone();
            path.push(sub.get_name().to_string());
            out.push(path.clone());
            paths(sub, path, out);
        }
    }

    #[test]
    fn help_lists_every_command_and_each_command_has_help() {
        let help = Cli::command().render_long_help().to_string();
        let top = [
            "local",
            "run",
            "follow",
            "migrations",
            "coverage",
            "jobs",
            "sessions",
            "patch",
            "audit",
        ];
        let listed: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        assert_eq!(listed, top);
        for name in top {
            assert!(
                help.lines().any(|l| l.trim_start().starts_with(name)),
                "`batchless --help` does not list {name}:\n{help}"
            );
        }
        let mut all = Vec::new();
        paths(&Cli::command(), vec![], &mut all);
        assert!(all.len() > top.len(), "{all:?}");
        for path in all {
            let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
            args.push("--help");
            let err = parse(&args).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp, "{args:?}");
            let text = err.to_string();
            assert!(
                text.contains(&format!("Usage: batchless {}", path.join(" "))),
                "{args:?}: {text}"
            );
        }
        let mut cmd = Cli::command();
        cmd.build();
        fn about(cmd: &clap::Command) {
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" {
                    assert!(sub.get_about().is_some(), "{} has no help", sub.get_name());
                    about(sub);
                }
            }
        }
        about(&cmd);
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
        let cli = parse(&["jobs", "validate", "--env", "production"]).unwrap();
        assert_eq!(cli.environment.as_deref(), Some("production"));
    }
}
