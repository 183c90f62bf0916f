//! `batchless coverage`: how much of each workflow the recorded executions exercised.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use batchless_asl::{self as coverage, Coverage, HistoryEvent};
use batchless_core::platform::aws::AwsResultExt;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::context::{self, Context};
use crate::parse;
use crate::sfn;

const SUFFIX: &str = ".asl.json";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Workflow to report (repeatable) [default: every statemachines/*.asl.json].
    #[arg(long = "workflow", value_name = "W")]
    pub workflows: Vec<String>,
    /// Directory of the definitions [default: <repo>/statemachines].
    #[arg(long, value_name = "DIR")]
    pub definitions: Option<PathBuf>,
    /// Only executions started at or after this time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse::time)]
    pub since: Option<DateTime<Utc>>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also count the executions of this local stack (repeatable): one report over the runs of
    /// several stacks, e.g. environments set up differently (`make test` adds its production
    /// and no-dry-run stacks).
    #[arg(long = "with-stack", value_name = "NAME")]
    pub with_stacks: Vec<String>,
    /// Exit 1 when overall coverage (all items of all workflows) is below PCT percent.
    #[arg(long, value_name = "PCT", value_parser = parse::percent)]
    pub fail_under: Option<f64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowReport {
    pub workflow: String,
    pub state_machine: String,
    pub deployed: bool,
    pub coverage: Coverage,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub environment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    pub workflows: Vec<WorkflowReport>,
    pub covered: usize,
    pub total: usize,
    pub percent: f64,
}

impl Report {
    pub fn new(
        environment: &str,
        since: Option<DateTime<Utc>>,
        workflows: Vec<WorkflowReport>,
    ) -> Report {
        let covered = workflows.iter().map(|w| w.coverage.covered()).sum();
        let total = workflows.iter().map(|w| w.coverage.total()).sum();
        Report {
            environment: environment.to_string(),
            since: since.map(batchless_core::platform::time::rfc3339),
            workflows,
            covered,
            total,
            percent: coverage::percent(covered, total),
        }
    }
}

/// The workflows with a definition in `dir` (`<workflow>.asl.json`), sorted.
pub fn workflows_in(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(w) = name.strip_suffix(SUFFIX) {
            out.push(w.to_string());
        }
    }
    out.sort();
    Ok(out)
}

pub fn definition_path(dir: &Path, workflow: &str) -> PathBuf {
    dir.join(format!("{workflow}{SUFFIX}"))
}

/// Coverage of the definition file by the histories (items in the file's order).
pub fn analyze_file(path: &Path, histories: &[Vec<HistoryEvent>]) -> Result<Coverage> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    coverage::analyze_text(&text, histories)
        .with_context(|| format!("{} is not a JSON definition", path.display()))
}

/// The text report:
/// ```text
/// migration: states 14/15, choice branches 5/6, catches 7/9 (12 executions)
///   never entered: MigrationInProgress
///   branch never taken: Outcome? -> Errored [rule 0]
///   catch never taken: CollectLogs catch[0] (States.ALL) -> RecordRun
/// ```
pub fn render(report: &Report) -> String {
    let mut out = Vec::new();
    for w in &report.workflows {
        let c = &w.coverage;
        let runs = if w.deployed {
            format!(
                "{} execution{}",
                c.executions,
                if c.executions == 1 { "" } else { "s" }
            )
        } else {
            format!("not deployed: no state machine {}", w.state_machine)
        };
        out.push(format!(
            "{}: states {}/{}, choice branches {}/{}, catches {}/{} ({runs})",
            w.workflow,
            c.states.covered,
            c.states.total,
            c.choice_branches.covered,
            c.choice_branches.total,
            c.catches.covered,
            c.catches.total,
        ));
        if !w.deployed {
            continue; // every item is a gap: listing them says nothing
        }
        for s in c.states.missed() {
            out.push(format!("  never entered: {s}"));
        }
        for b in c.choice_branches.missed() {
            out.push(format!("  branch never taken: {b}"));
        }
        for k in c.catches.missed() {
            out.push(format!("  catch never taken: {k}"));
        }
        for n in &c.notes {
            out.push(format!("  note: {n}"));
        }
    }
    out.push(format!(
        "total: {}/{} ({:.1}%)",
        report.covered, report.total, report.percent
    ));
    out.join("\n")
}

/// `Some(message)` when the report is below the threshold.
pub fn below(report: &Report, fail_under: Option<f64>) -> Option<String> {
    let min = fail_under?;
    (report.percent < min).then(|| {
        format!(
            "coverage {:.1}% is below --fail-under {min}%",
            report.percent
        )
    })
}

async fn executions(
    client: &aws_sdk_sfn::Client,
    machine: &str,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<String>> {
    let since_ms = since.map(|t| t.timestamp_millis());
    let all = client
        .list_executions()
        .state_machine_arn(machine)
        .max_results(1000)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .aws("ListExecutions")?;
    Ok(all
        .iter()
        .filter(|e| {
            let started = e.start_date().to_millis().unwrap_or(i64::MAX);
            since_ms.is_none_or(|s| started >= s)
        })
        .map(|e| e.execution_arn().to_string())
        .collect())
}

pub async fn run(cx: &Context, args: Args) -> Result<ExitCode> {
    let aws = cx.aws().await?;
    let dir: PathBuf = match &args.definitions {
        Some(d) => d.clone(),
        None => context::repo_root()?.join("statemachines"),
    };
    let workflows = if args.workflows.is_empty() {
        workflows_in(&dir)?
    } else {
        args.workflows.clone()
    };
    if workflows.is_empty() {
        bail!("no *{SUFFIX} definitions in {}", dir.display());
    }
    let others: Vec<Context> = args
        .with_stacks
        .iter()
        .map(|name| Context::new(Some(name.clone()), None))
        .collect();
    let mut stacks = vec![aws];
    for other in &others {
        stacks.push(other.aws().await?);
    }
    let mut sources = Vec::new();
    for stack in stacks {
        let client = stack.sfn();
        let machines = sfn::state_machines(&client).await?;
        sources.push((stack, client, machines));
    }
    let mut reports = Vec::new();
    for workflow in workflows {
        let path = definition_path(&dir, &workflow);
        // A bad or missing definition fails before any history is read.
        analyze_file(&path, &[])?;
        let mut histories: Vec<Vec<HistoryEvent>> = Vec::new();
        let mut deployed = false;
        for (stack, client, machines) in &sources {
            let name = stack.state_machine_name(&workflow);
            let Some((_, arn)) = machines.iter().find(|(n, _)| *n == name) else {
                continue;
            };
            deployed = true;
            for execution in executions(client, arn, args.since).await? {
                histories.push(sfn::history(client, &execution).await?);
            }
        }
        reports.push(WorkflowReport {
            coverage: analyze_file(&path, &histories)?,
            state_machine: aws.state_machine_name(&workflow),
            workflow,
            deployed,
        });
    }
    let report = Report::new(&aws.environment, args.since, reports);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", render(&report));
    }
    Ok(match below(&report, args.fail_under) {
        Some(msg) => {
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn definition() -> Value {
        json!({
            "StartAt": "Check",
            "States": {
                "Check": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.ok", "BooleanEquals": true, "Next": "Work"}],
                    "Default": "Errored"
                },
                "Work": {
                    "Type": "Task", "Resource": "${Fn}", "End": true,
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Errored"}]
                },
                "Errored": {"Type": "Fail", "Error": "Broken"}
            }
        })
    }

    fn happy_history() -> Vec<HistoryEvent> {
        let ev = |id: i64, kind: &str, name: Option<&str>, input: Option<&str>| HistoryEvent {
            id,
            previous_event_id: Some(id - 1),
            kind: kind.into(),
            name: name.map(str::to_string),
            input: input.map(str::to_string),
            ..Default::default()
        };
        vec![
            ev(1, "ExecutionStarted", None, None),
            ev(
                2,
                "ChoiceStateEntered",
                Some("Check"),
                Some(r#"{"ok":true}"#),
            ),
            ev(3, "ChoiceStateExited", Some("Check"), None),
            ev(4, "TaskStateEntered", Some("Work"), Some(r#"{"ok":true}"#)),
            ev(5, "TaskStateExited", Some("Work"), None),
            ev(6, "ExecutionSucceeded", None, None),
        ]
    }

    fn report() -> Report {
        let cov = coverage::analyze(&definition(), &[happy_history()]);
        let undeployed = coverage::analyze(&definition(), &[]);
        Report::new(
            "staging",
            None,
            vec![
                WorkflowReport {
                    workflow: "migration".into(),
                    state_machine: "batchless-staging-migration".into(),
                    deployed: true,
                    coverage: cov,
                },
                WorkflowReport {
                    workflow: "data-patch".into(),
                    state_machine: "batchless-staging-data-patch".into(),
                    deployed: false,
                    coverage: undeployed,
                },
            ],
        )
    }

    #[test]
    fn the_text_report_lists_every_gap() {
        assert_eq!(
            render(&report()),
            "\
migration: states 2/3, choice branches 1/2, catches 0/1 (1 execution)
  never entered: Errored
  branch never taken: Check -> Errored [Default]
  catch never taken: Work catch[0] (States.ALL) -> Errored
data-patch: states 0/3, choice branches 0/2, catches 0/1 (not deployed: no state machine batchless-staging-data-patch)
total: 3/12 (25.0%)"
        );
    }

    #[test]
    fn the_json_report_has_the_same_numbers() {
        let v = serde_json::to_value(report()).unwrap();
        assert_eq!(v["workflows"][0]["coverage"]["states"]["covered"], 2);
        assert_eq!(v["workflows"][0]["coverage"]["choiceBranches"]["total"], 2);
        assert_eq!(
            v["workflows"][0]["coverage"]["catches"]["items"][0],
            json!({"id": "Work catch[0] (States.ALL) -> Errored", "hits": 0})
        );
        assert_eq!(v["workflows"][1]["deployed"], false);
        assert_eq!(v["percent"], 25.0);
    }

    #[test]
    fn options() {
        let c: Args = crate::testing::parse_args(&[
            "--workflow",
            "migration",
            "--workflow",
            "data-patch",
            "--since",
            "2026-11-28T13:00:00+09:00",
            "--with-stack",
            "prod-1",
            "--with-stack",
            "nodry-1",
            "--fail-under",
            "80%",
        ])
        .unwrap();
        assert_eq!(c.workflows, vec!["migration", "data-patch"]);
        assert_eq!(c.since.unwrap().to_rfc3339(), "2026-11-28T04:00:00+00:00");
        assert_eq!(c.fail_under, Some(80.0));
        assert_eq!(c.with_stacks, vec!["prod-1", "nodry-1"]);
        assert!(crate::testing::parse_args::<Args>(&["--since", "yesterday"]).is_err());
        assert!(crate::testing::parse_args::<Args>(&["--fail-under", "120"]).is_err());
    }

    #[test]
    fn fail_under() {
        let r = report();
        assert_eq!(below(&r, None), None);
        assert_eq!(below(&r, Some(25.0)), None);
        assert_eq!(
            below(&r, Some(80.0)).as_deref(),
            Some("coverage 25.0% is below --fail-under 80%")
        );
    }

    #[test]
    fn definitions_are_found_by_suffix() {
        let dir = std::env::temp_dir().join(format!("batchless-defs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("migration.asl.json"), definition().to_string()).unwrap();
        std::fs::write(dir.join("data-patch.asl.json"), "{}").unwrap();
        std::fs::write(dir.join("README.md"), "").unwrap();
        assert_eq!(workflows_in(&dir).unwrap(), vec!["data-patch", "migration"]);
        let cov = analyze_file(&definition_path(&dir, "migration"), &[happy_history()]).unwrap();
        assert_eq!(cov.states.covered, 2);
        assert!(analyze_file(&definition_path(&dir, "bastion-session"), &[]).is_err());
        let empty = analyze_file(&definition_path(&dir, "data-patch"), &[]).unwrap();
        assert_eq!(empty.total(), 0);
        std::fs::write(dir.join("broken.asl.json"), "{").unwrap();
        let err = analyze_file(&definition_path(&dir, "broken"), &[]).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a JSON definition"),
            "{err:#}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
