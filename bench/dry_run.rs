//! Data-patch dry-run benchmark (issue 18): what the dry run adds before the approval request,
//! and what it costs over a plain run of the same patch, through the real data-patch workflow,
//! CodeBuild and the sample app on a local replica stack.
//!
//! ```sh
//! target/debug/batchless local up --name bench --time-scale 60
//! BATCHLESS_STACK=bench cargo run -p batchless-scenarios --example dry-run-bench [-- --runs 5]
//! ```
//! Each run submits `script/patches/sessions_extend_and_purge.rb` over 20 + 5 fresh rows, waits
//! for the approval request, approves it and waits for the end; then starts the same command at
//! the same commit as a plain build of the patch project (its own buildspec: `eval` of the
//! command, no shim, no transaction). Reported:
//! - **added latency**: from `DryRun?` leaving to `RequestApproval` entered (every state that
//!   exists only because of the dry run), split into the dry-run build (CodeBuild start → end)
//!   and the workflow around it (start, wake, re-check, reading and recording the preview);
//! - **build durations** of the dry run, the real run (shim in run mode) and the plain run,
//!   and the command's own time inside the shim (`durationMs` of each measure).

use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_sfn::types::HistoryEvent;
use batchless_scenarios::patch::Patches;
use batchless_scenarios::{eventually, p50_min_max_row, unique_name, Stack};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(300);
const SCRIPT: &str = "script/patches/sessions_extend_and_purge.rb";

fn secs(d: aws_smithy_types::DateTime) -> f64 {
    d.as_secs_f64()
}

/// When the state `name` was first entered (or exited), from the history.
fn at(history: &[HistoryEvent], name: &str, entered: bool) -> Result<f64> {
    history
        .iter()
        .find(|e| {
            let d = if entered {
                e.state_entered_event_details().map(|d| d.name())
            } else {
                e.state_exited_event_details().map(|d| d.name())
            };
            d == Some(name)
        })
        .map(|e| secs(*e.timestamp()))
        .with_context(|| format!("{name} not {}", if entered { "entered" } else { "exited" }))
}

fn build_seconds(b: &aws_sdk_codebuild::types::Build) -> Result<f64> {
    Ok(
        secs(*b.end_time().context("build not ended")?)
            - secs(*b.start_time().context("no start")?),
    )
}

async fn plain_build(p: &Patches, commit: &str, command: &str) -> Result<f64> {
    let id = unique_name("bench-plain");
    let build_id = p
        .start_outside_build(
            commit,
            &[
                ("BATCHLESS_PATCH_ID", &id),
                ("BATCHLESS_PATCH_COMMAND", command),
                ("BATCHLESS_OUTPUT_DIR", "tmp/batchless-output"),
            ],
        )
        .await?;
    let build = eventually("the plain build's end", TIMEOUT, || async {
        let b = p.stack.build(&build_id).await?;
        Ok(b.end_time().is_some().then_some(b))
    })
    .await?;
    anyhow::ensure!(
        build.build_status().map(|s| s.as_str()) == Some("SUCCEEDED"),
        "the plain build {build_id} did not succeed: {:?}",
        build.build_status()
    );
    build_seconds(&build)
}

#[tokio::main]
async fn main() -> Result<()> {
    let runs = batchless_scenarios::count_arg("--runs", 5)?;
    let p = Patches::on(Stack::cleared().await?)?;
    let commit = p.stack.app_head()?;
    let (mut added, mut dry_build, mut around) = (Vec::new(), Vec::new(), Vec::new());
    let (mut real_build, mut plain, mut dry_cmd, mut real_cmd) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let tag = unique_name("bench").replace('-', "_");
        p.stack.sql(&format!(
            "INSERT INTO sessions (token, user_id, expires_at) SELECT '{tag}-u-' || i, 1, '2030-01-01' FROM generate_series(1, 20) i;
             INSERT INTO sessions (token, user_id, expires_at) SELECT '{tag}-d-' || i, 1, '2030-01-01' FROM generate_series(1, 5) i;"
        ))?;
        let input = json!({
            "ticket": "BENCH-18", "ref": "main", "commit": commit, "kind": "runner",
            "script": SCRIPT, "args": [tag], "reason": "dry-run benchmark",
            "requestedBy": "arn:aws:iam::123456789012:user/bob",
        });
        let (id, arn) = p.start_named("bench", &input).await?;
        let rec = eventually("the approval request", TIMEOUT, || async {
            let r = p.find_record(&id).await?;
            Ok(r.filter(|r| r.get("approvalMessage").is_some()))
        })
        .await?;
        anyhow::ensure!(
            rec["preview"]["outcome"] == "ok",
            "dry run: {}",
            rec["preview"]
        );
        let history = p.stack.history(&arn).await?;
        let lag = at(&history, "RequestApproval", true)? - at(&history, "DryRun?", false)?;
        let dry = p.builds_of(&id, "BATCHLESS_PREVIEW_ID").await?;
        let dry_s = build_seconds(dry.first().context("no dry-run build")?)?;
        added.push(lag);
        dry_build.push(dry_s);
        around.push(lag - dry_s);
        dry_cmd.push(
            rec["preview"]["measure"]["durationMs"]
                .as_f64()
                .unwrap_or_default()
                / 1000.0,
        );
        let (status, body) = p
            .click(&id, "U0ALICE01", "patch_approve", json!({}))
            .await?;
        anyhow::ensure!(status == 200, "approval click: {status} {body}");
        let ended = p.stack.wait_end(&arn, TIMEOUT).await?;
        anyhow::ensure!(ended.status == "SUCCEEDED", "{ended:?}");
        let real = p.builds_of(&id, "BATCHLESS_PATCH_ID").await?;
        real_build.push(build_seconds(real.first().context("no real build")?)?);
        let rec = p.record(&id).await?;
        real_cmd.push(rec["actual"]["durationMs"].as_f64().unwrap_or_default() / 1000.0);
        let command = rec["request"]["command"]
            .as_str()
            .context("no command")?
            .to_string();
        plain.push(plain_build(&p, &commit, &command).await?);
    }
    println!(
        "{runs} runs of `bin/rails runner {SCRIPT} TAG` (20 rows updated, 5 deleted), seconds:"
    );
    println!();
    println!("| | p50 | min | max |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "{}",
        p50_min_max_row(
            "added before the approval request (`DryRun?` left → `RequestApproval` entered)",
            &mut added
        )
    );
    println!(
        "{}",
        p50_min_max_row(
            "… of which the dry-run build (CodeBuild start → end)",
            &mut dry_build
        )
    );
    println!(
        "{}",
        p50_min_max_row(
            "… of which the workflow around it (start, wake, re-check, preview recorded)",
            &mut around
        )
    );
    println!(
        "{}",
        p50_min_max_row("dry-run build (shim, rolled back)", &mut dry_build.clone())
    );
    println!(
        "{}",
        p50_min_max_row("real-run build (shim in run mode)", &mut real_build)
    );
    println!(
        "{}",
        p50_min_max_row(
            "plain build (the project's own buildspec, no shim)",
            &mut plain
        )
    );
    println!(
        "{}",
        p50_min_max_row(
            "the command inside the shim, dry run (`durationMs`)",
            &mut dry_cmd
        )
    );
    println!(
        "{}",
        p50_min_max_row(
            "the command inside the shim, real run (`durationMs`)",
            &mut real_cmd
        )
    );
    Ok(())
}
