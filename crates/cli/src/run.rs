//! `batchless run` and `batchless follow`.

use std::io::Read as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use batchless_core::platform::aws::AwsResultExt;
use batchless_core::platform::input;
use batchless_core::shared::people::People;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::args::{FollowArgs, RunArgs};
use crate::context::Ctx;
use crate::sfn;

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

pub fn has_started_by(input: &Value) -> bool {
    input.get("startedBy").is_some_and(|v| !v.is_null())
}

/// The person id behind `arn`, or the ARN itself with a warning when nobody in the people map
/// has it.
pub fn requester(people: Result<&People, String>, arn: &str) -> (String, Option<String>) {
    match people {
        Ok(p) => match p.by_principal(arn) {
            Some(person) => (person.id.clone(), None),
            None => (
                arn.to_string(),
                Some(format!(
                    "{arn} is nobody in the people map ({}); starting as the ARN itself",
                    p.environment()
                )),
            ),
        },
        Err(e) => (
            arn.to_string(),
            Some(format!("people map unavailable ({e}); starting as {arn}")),
        ),
    }
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

async fn resolve_requester(ctx: &Ctx) -> Result<String> {
    let who = ctx
        .sts()
        .get_caller_identity()
        .send()
        .await
        .aws("GetCallerIdentity")
        .context("who is starting this run (STS GetCallerIdentity)")?;
    let arn = who.arn().context("GetCallerIdentity returned no ARN")?;
    let people = People::load(&ctx.environment).map_err(|e| e.to_string());
    let (id, warning) = requester(people.as_ref().map_err(Clone::clone), arn);
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    Ok(id)
}

pub async fn run(ctx: &Ctx, args: RunArgs) -> Result<ExitCode> {
    args.validate().map_err(anyhow::Error::msg)?;
    let mut input = match (&args.input, &args.commit) {
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
    if !has_started_by(&input) {
        let person = resolve_requester(ctx).await?;
        input["startedBy"] = Value::String(person);
    }
    let commit = args
        .commit
        .as_ref()
        .and(input.get("commit").and_then(Value::as_str));
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| default_execution_name(&args.workflow, commit, Utc::now()));

    let client = ctx.sfn();
    let machine = sfn::require_state_machine(ctx, &client, &args.workflow).await?;
    let started = client
        .start_execution()
        .state_machine_arn(&machine)
        .name(name)
        .input(input.to_string())
        .send()
        .await
        .aws("StartExecution")?;
    let arn = started.execution_arn();
    eprintln!("started {arn}");
    if !ctx.is_local() {
        if let Some(region) = ctx.config.region() {
            eprintln!("console: {}", sfn::console_url(region.as_ref(), arn));
        }
    }
    if args.no_follow {
        println!("{arn}");
        return Ok(ExitCode::SUCCESS);
    }
    sfn::follow(&client, arn, Duration::from_millis(args.poll.poll_ms)).await
}

pub async fn follow(ctx: &Ctx, args: FollowArgs) -> Result<ExitCode> {
    sfn::follow(
        &ctx.sfn(),
        &args.execution_arn,
        Duration::from_millis(args.poll.poll_ms),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789ABCDEF01234567";

    #[test]
    fn the_migration_shortcut_builds_a_validated_input() {
        let v = migration_input(SHA, &[("RAILS_ENV".into(), "staging".into())]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "commit": SHA.to_ascii_lowercase(),
                "environmentOverrides": {"RAILS_ENV": "staging"}
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
    fn inputs_must_be_objects() {
        assert!(parse_input("[1]", "f.json")
            .unwrap_err()
            .to_string()
            .contains("JSON object"));
        assert!(parse_input("{", "f.json")
            .unwrap_err()
            .to_string()
            .contains("not JSON"));
        let v = parse_input(r#"{"startedBy": "bob"}"#, "f.json").unwrap();
        assert!(has_started_by(&v));
        assert!(!has_started_by(
            &parse_input(r#"{"startedBy": null}"#, "f").unwrap()
        ));
        assert!(!has_started_by(&parse_input("{}", "f").unwrap()));
    }

    #[test]
    fn requesters_come_from_the_people_map() {
        let people = People::parse(batchless_core::shared::people::EMBEDDED, "staging").unwrap();
        let (id, warning) = requester(Ok(&people), "arn:aws:iam::123456789012:user/bob");
        assert_eq!((id.as_str(), warning), ("bob", None));
        let stranger = "arn:aws:iam::123456789012:user/mallory";
        let (id, warning) = requester(Ok(&people), stranger);
        assert_eq!(id, stranger);
        assert!(warning.unwrap().contains("nobody in the people map"));
        let (id, warning) = requester(Err("no file".into()), stranger);
        assert_eq!(id, stranger);
        assert!(warning.unwrap().contains("no file"));
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
