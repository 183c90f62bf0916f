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
use batchless_scenarios::app::{migrate_within, migration_report, suffix, version};
use batchless_scenarios::p50_min_max_row;
use batchless_scenarios::Stack;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(600);

fn ms(v: &Value) -> f64 {
    v["durationMs"].as_f64().unwrap_or_default() / 1000.0
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
            let p = migration_report(&stack, &name, "preflight.json").await?;
            let m = migration_report(&stack, &name, "migrate.json").await?;
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
            p50_min_max_row(
                &format!("{n}: pre-flight (`preflight.json` durationMs)"),
                &mut pre
            )
        );
        println!(
            "{}",
            p50_min_max_row(
                &format!("{n}: the migrations themselves (sum of `migrate.json` `migrations[].durationMs`)"),
                &mut migrate
            )
        );
        println!(
            "{}",
            p50_min_max_row(
                &format!("{n}: the whole build (CodeBuild start → end)"),
                &mut build
            )
        );
        println!(
            "{}",
            p50_min_max_row(
                &format!("{n}: pre-flight's share of the build, %"),
                &mut share
            )
        );
    }
    Ok(())
}
