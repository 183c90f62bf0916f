//! Test helpers: parse one command's arguments alone; and the layering check of the CLI's
//! own modules.

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "t")]
struct OnlyArgs<A: Args> {
    #[command(flatten)]
    args: A,
}

#[derive(Debug, Parser)]
#[command(name = "t")]
struct OnlySubcommand<S: Subcommand> {
    #[command(subcommand)]
    command: S,
}

/// A command's `Args` parsed from `args` (without the program and command names).
pub fn parse_args<A: Args>(args: &[&str]) -> Result<A, clap::Error> {
    OnlyArgs::<A>::try_parse_from(std::iter::once("t").chain(args.iter().copied())).map(|t| t.args)
}

/// A command's subcommand enum parsed from `args` (`["list", "--limit", "5"]`).
pub fn parse_subcommand<S: Subcommand>(args: &[&str]) -> Result<S, clap::Error> {
    OnlySubcommand::<S>::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
        .map(|t| t.command)
}

/// The plumbing (every module outside `commands/`, except `cli` and `main` which assemble the
/// commands) names no command, and no command names another.
mod layering {
    use std::path::Path;

    /// The problems in one file: `own` is its command (`Some("jobs")` for
    /// `commands/jobs/template.rs`), `None` for plumbing.
    pub(super) fn violations(own: Option<&str>, text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(i) = rest.find("commands::") {
                let after = &rest[i + "commands::".len()..];
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                match own {
                    None => found.push(format!("plumbing names command {name}")),
                    Some(own) if own != name => {
                        found.push(format!("command {own} names command {name}"))
                    }
                    _ => {}
                }
                rest = after;
            }
            if own.is_some() && code.contains("super::super") {
                found.push("a command reaches above its own module (super::super)".into());
            }
        }
        found
    }

    #[test]
    fn plumbing_names_no_command_and_commands_not_one_another() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        batchless_layering::assert_no_violations(&src, |parts, text| {
            let own = match parts {
                [top] if top == "main" || top == "cli" || top == "testing" => return vec![],
                [commands, module] if commands == "commands" && module == "mod" => return vec![],
                [commands, command, ..] if commands == "commands" => Some(command.as_str()),
                _ => None,
            };
            violations(own, text)
        });
    }

    #[test]
    fn the_check_catches_each_kind_of_violation() {
        assert_eq!(violations(None, "use crate::commands::jobs;").len(), 1);
        assert_eq!(
            violations(Some("audit"), "use crate::commands::patch::x;").len(),
            1
        );
        assert_eq!(violations(Some("run"), "use super::super::jobs;").len(), 1);
        assert!(violations(Some("jobs"), "use crate::commands::jobs::template;").is_empty());
        assert!(violations(Some("jobs"), "use crate::sfn; // crate::commands::patch").is_empty());
    }
}
