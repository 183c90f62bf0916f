//! `batchless run`: start a workflow execution (a JSON input, or `--commit` for a migration)
//! and follow it live. A person's run (a data patch, a migration, a job run) is submitted
//! through the decision endpoint first, which writes the caller in as its starter and seals
//! the input (`--seal-only` prints that input for a start from the console).

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use batchless_core::platform::input;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::context::Context;
use crate::parse;
use crate::sfn::{self, PollArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Workflow to start: migration, scheduled-job, data-patch, bastion-session.
    pub workflow: String,
    /// Execution input: a JSON file, or `-` for standard input.
    #[arg(long, value_name = "FILE|-", required_unless_present = "commit")]
    pub input: Option<String>,
    /// Shortcut for `run migration`: the full commit SHA to migrate.
    #[arg(long, value_name = "SHA", conflicts_with = "input")]
    pub commit: Option<String>,
    /// With --commit: an environment variable for the migration build (repeatable).
    #[arg(long = "env-override", value_name = "K=V", requires = "commit", value_parser = parse::key_value)]
    pub env_overrides: Vec<(String, String)>,
    /// Execution name [default: generated; `migration-<sha7>-<time>` with --commit].
    #[arg(long)]
    pub name: Option<String>,
    /// Print the execution ARN and return without following it.
    #[arg(long)]
    pub no_follow: bool,
    /// Start nothing: print the input as the decision endpoint sealed it for execution
    /// `--name`, to start from the Step Functions console under exactly that name.
    #[arg(long, requires = "name", conflicts_with = "no_follow")]
    pub seal_only: bool,
    #[command(flatten)]
    pub poll: PollArgs,
}

impl Args {
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

/// `{"commit": sha, "environmentOverrides": {...}}`, validated the way the workflow will.
pub fn migration_input(commit: &str, overrides: &[(String, String)]) -> Result<Value> {
    let commit = input::commit_sha("commit", commit)?;
    let mut env = Map::new();
    for (k, v) in overrides {
        input::env_override_name("environmentOverrides", k)?;
        if env.insert(k.clone(), Value::String(v.clone())).is_some() {
            bail!("--env-override {k} given twice");
        }
    }
    Ok(serde_json::json!({"commit": commit, "environmentOverrides": env}))
}

/// An execution input read from a file: a JSON object.
pub fn parse_input(text: &str, source: &str) -> Result<Value> {
    let v: Value = serde_json::from_str(text).with_context(|| format!("{source} is not JSON"))?;
    if !v.is_object() {
        bail!("{source}: the execution input must be a JSON object");
    }
    Ok(v)
}

/// A readable, unique execution name (≤ 80 characters, no `:`):
/// `migration-<sha7>-20261128T130509Z` for a commit, else `<workflow>-20261128T130509Z-<8 hex>`.
/// (Always named: the local replica would otherwise name every execution `None`.)
pub fn default_execution_name(workflow: &str, commit: Option<&str>, now: DateTime<Utc>) -> String {
    let time = now.format("%Y%m%dT%H%M%SZ");
    let mut name = match commit {
        Some(c) => format!(
            "{workflow}-{}-{time}",
            c.chars().take(7).collect::<String>()
        ),
        None => format!(
            "{workflow}-{time}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ),
    };
    name.truncate(80);
    name
}

pub async fn run(cx: &Context, args: Args) -> Result<ExitCode> {
    let aws = cx.aws().await?;
    args.validate().map_err(anyhow::Error::msg)?;
    let input = match (&args.input, &args.commit) {
        (_, Some(commit)) => {
            if args.workflow != "migration" {
                bail!(
                    "--commit is the shortcut of `run migration`; give {} an --input",
                    args.workflow
                );
            }
            migration_input(commit, &args.env_overrides)?
        }
        (Some(path), None) => {
            let (text, source) = if path == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("reading standard input")?;
                (s, "standard input".to_string())
            } else {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
                (text, path.clone())
            };
            parse_input(&text, &source)?
        }
        (None, None) => bail!("give --input <file|-> or --commit <sha>"),
    };
    let commit = args
        .commit
        .as_ref()
        .and(input.get("commit").and_then(Value::as_str));
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| default_execution_name(&args.workflow, commit, Utc::now()));

    if args.seal_only {
        if !sfn::is_submitted(&args.workflow) {
            bail!(
                "a {} run is not submitted: there is nothing to seal",
                args.workflow
            );
        }
        let sealed = sfn::seal(aws, &args.workflow, &name, &input).await?;
        eprintln!("sealed for execution {name} (start it under exactly that name)");
        println!("{}", serde_json::to_string_pretty(&sealed)?);
        return Ok(ExitCode::SUCCESS);
    }
    let client = aws.sfn();
    let machine = sfn::require_state_machine(aws, &client, &args.workflow).await?;
    // A person's run is submitted (the decision endpoint writes in who started it and seals
    // the input); a bastion-session watch names nobody.
    let arn = if sfn::is_submitted(&args.workflow) {
        sfn::submit(aws, &client, &args.workflow, &machine, &name, &input).await?
    } else {
        sfn::start(&client, &machine, &name, &input).await?
    };
    eprintln!("started {arn}");
    if !aws.is_local() {
        if let Some(region) = aws.config.region() {
            eprintln!("console: {}", sfn::console_url(region.as_ref(), &arn));
        }
    }
    if args.no_follow {
        println!("{arn}");
        return Ok(ExitCode::SUCCESS);
    }
    sfn::follow(&client, &arn, args.poll.interval()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789ABCDEF01234567";

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        crate::testing::parse_args(args)
    }

    #[test]
    fn the_migration_shortcut_parses() {
        let run = parse(&[
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
        assert!(parse(&["migration"]).is_err());
        assert!(parse(&["migration", "--input", "-", "--commit", "abc"]).is_err());
        // --env-override only goes with --commit.
        let run = parse(&["data-patch", "--input", "f.json", "--env-override", "A=1"]).unwrap();
        assert!(run
            .validate()
            .unwrap_err()
            .contains("--env-override goes with --commit"));
        assert!(parse(&["data-patch", "--env-override", "A=1"]).is_err());
        assert!(parse(&["migration", "--commit", "a", "--env-override", "=1"]).is_err());
        // --seal-only names the execution it seals for, and follows nothing.
        assert!(parse(&["data-patch", "--input", "f.json", "--seal-only"]).is_err());
        assert!(parse(&[
            "data-patch",
            "--input",
            "f",
            "--name",
            "n",
            "--seal-only",
            "--no-follow"
        ])
        .is_err());
        assert!(
            parse(&["data-patch", "--input", "f", "--name", "n", "--seal-only"])
                .unwrap()
                .seal_only
        );
        let run = parse(&["data-patch", "--input", "f.json", "--name", "n1"]).unwrap();
        assert_eq!(run.input.as_deref(), Some("f.json"));
        assert_eq!(run.name.as_deref(), Some("n1"));
        assert_eq!(run.validate(), Ok(()));
    }

    #[test]
    fn the_migration_shortcut_builds_a_validated_input() {
        let v = migration_input(SHA, &[("RAILS_LOG_LEVEL".into(), "debug".into())]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "commit": SHA.to_ascii_lowercase(),
                "environmentOverrides": {"RAILS_LOG_LEVEL": "debug"}
            })
        );
        assert!(migration_input("abc123", &[])
            .unwrap_err()
            .to_string()
            .contains("commit"));
        assert!(migration_input(SHA, &[("lower".into(), "x".into())]).is_err());
        assert!(migration_input(SHA, &[("AWS_SECRET_ACCESS_KEY".into(), "x".into())]).is_err());
        let twice = [
            ("A".to_string(), "1".to_string()),
            ("A".to_string(), "2".to_string()),
        ];
        assert!(migration_input(SHA, &twice)
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }

    #[test]
    fn the_migration_shortcut_refuses_a_denylisted_override() {
        let err = migration_input(SHA, &[("RAILS_ENV".into(), "production".into())]).unwrap_err();
        assert!(err.to_string().contains("RAILS_ENV is reserved"), "{err}");
    }

    #[test]
    fn inputs_must_be_objects() {
        assert!(parse_input("[1]", "f.json")
            .unwrap_err()
            .to_string()
            .contains("JSON object"));
        assert!(parse_input("{", "f.json")
            .unwrap_err()
            .to_string()
            .contains("not JSON"));
        assert!(parse_input("{}", "f").is_ok());
    }

    #[test]
    fn default_names_are_valid_execution_names() {
        let now = DateTime::parse_from_rfc3339("2026-11-28T13:05:09Z")
            .unwrap()
            .with_timezone(&Utc);
        let n = default_execution_name("migration", Some(SHA), now);
        assert_eq!(n, "migration-0123456-20261128T130509Z");
        let a = default_execution_name("data-patch", None, now);
        let b = default_execution_name("data-patch", None, now);
        assert!(
            a.starts_with("data-patch-20261128T130509Z-") && a.len() == 36,
            "{a}"
        );
        assert_ne!(a, b);
        for n in [n, a, default_execution_name(&"w".repeat(100), None, now)] {
            assert!(!n.contains(':') && n.len() <= 80, "{n}");
        }
    }
}
