//! Migration pre-flight benchmark (issue 19): what the pre-flight (pending list, SQL recorded on
//! a scratch database built from production's schema, lint, gate) adds to a migration run, for 1
//! and for 20 pending migrations, through the real migration workflow, CodeBuild and the sample
//! app on a local replica stack.
//!
//! ```sh
//! target/debug/batchless local up --name bench --time-scale 60
//! BATCHLESS_STACK=bench cargo run -p batchless-scenarios --example preflight-bench [-- --runs 3]
//! ```
//! Each run commits N new safe migrations (a table and an index each) on a branch of the app and
//! migrates that commit. Reported from the shim's own reports: the pre-flight's duration
//! (`preflight.json` `durationMs`: dump, scratch database, recording, lint, gate, scratch
//! database dropped) next to the migrations' own time on production (`migrate.json`, each
//! migration's `durationMs`), and the whole build (CodeBuild start → end). The pre-flight is what a run without it would not spend.

use std::time::Duration;

use anyhow::{Context, Result};
use batchless_scenarios::app::{migrate_within, suffix, version};
use batchless_scenarios::Stack;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(600);

async fn report(stack: &Stack, execution: &str, file: &str) -> Result<Value> {
    let bucket = stack.bucket("LogsBucket")?;
    let body = stack
        .object(&format!(
            "s3://{bucket}/migrations/{execution}/report/{file}"
        ))
        .await
        .with_context(|| format!("{file} of {execution}"))?;
    Ok(serde_json::from_slice(&body)?)
}

fn ms(v: &Value) -> f64 {
    v["durationMs"].as_f64().unwrap_or_default() / 1000.0
}

fn row(label: &str, v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    let p50 = batchless_scenarios::percentile(v, 0.5).unwrap_or_default();
    format!(
        "| {label} | {p50:.2} | {:.2} | {:.2} |",
        v.first().copied().unwrap_or_default(),
        v.last().copied().unwrap_or_default()
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let runs = batchless_scenarios::count_arg("--runs", 3)?;
    let stack = Stack::cleared().await?;
    println!("{runs} runs per size; seconds (p50 / min / max):");
    println!();
    println!("| pending migrations: measure | p50 | min | max |");
    println!("| --- | ---: | ---: | ---: |");
    for n in [1usize, 20] {
        let (mut pre, mut migrate, mut build, mut share) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let sfx = suffix();
            let files: Vec<(String, String)> = (0..n)
                .map(|i| {
                    let v = version();
                    let table = format!("bench_pf_{sfx}_{i}");
                    let file = format!("db/migrate/{v}_bench_pf{}n{i}.rb", sfx);
                    let source = format!(
                        "class {} < ActiveRecord::Migration[6.1]\n  def change\n    create_table :{table} do |t|\n      t.string :label\n    end\n    add_index :{table}, :label\n  end\nend\n",
                        batchless_scenarios::app::camel(&format!("bench_pf{sfx}n{i}"))
                    );
                    (file, source)
                })
                .collect();
            let refs: Vec<(&str, &str)> = files
                .iter()
                .map(|(f, s)| (f.as_str(), s.as_str()))
                .collect();
            let commit = stack.commit_to_app(
                &format!("bench-preflight-{sfx}"),
                &refs,
                &format!("{n} pending migrations (benchmark)"),
            )?;
            let (_, name, end) = migrate_within(&stack, &commit, "bench-pf", TIMEOUT).await?;
            anyhow::ensure!(end.status == "SUCCEEDED", "{end:?}");
            let p = report(&stack, &name, "preflight.json").await?;
            let m = report(&stack, &name, "migrate.json").await?;
            anyhow::ensure!(
                p["pending"].as_array().map(Vec::len) == Some(n),
                "pre-flight saw {:?} pending, not {n}",
                p["pending"].as_array().map(Vec::len)
            );
            let build_id = end
                .output
                .as_ref()
                .and_then(|o| o["buildId"].as_str())
                .context("buildId")?;
            let b = stack.build(build_id).await?;
            let total = b.end_time().context("end")?.as_secs_f64()
                - b.start_time().context("start")?.as_secs_f64();
            pre.push(ms(&p));
            // migrate.json times each migration (`migrations[].durationMs`), not the whole task.
            migrate.push(
                m["migrations"]
                    .as_array()
                    .map(|a| a.iter().map(ms).sum())
                    .unwrap_or_default(),
            );
            build.push(total);
            share.push(100.0 * ms(&p) / total);
        }
        println!(
            "{}",
            row(
                &format!("{n}: pre-flight (`preflight.json` durationMs)"),
                &mut pre
            )
        );
        println!(
            "{}",
            row(
                &format!("{n}: the migrations themselves (sum of `migrate.json` `migrations[].durationMs`)"),
                &mut migrate
            )
        );
        println!(
            "{}",
            row(
                &format!("{n}: the whole build (CodeBuild start → end)"),
                &mut build
            )
        );
        println!(
            "{}",
            row(
                &format!("{n}: pre-flight's share of the build, %"),
                &mut share
            )
        );
    }
    Ok(())
}
