//! Claim benchmark (issue 4): latency p50/p99 and throughput of the occurrence claim with 1, 10
//! and 100 concurrent claimers on a local replica stack, the winners per occurrence (must be
//! exactly 1), and the same race with a read-then-write "claim" (GetItem, then an unconditional
//! PutItem) to show why the conditional write is the claim.
//!
//! ```sh
//! target/debug/batchless local up --name bench --time-scale 60
//! BATCHLESS_STACK=bench cargo run -p batchless-scenarios --example claim-bench [-- --rounds 20]
//! ```
//! Uses the real `batchless_core::jobs::occurrence::claim` (the function the workflow and
//! `batchless jobs claim` use) against the stack's occurrences table. Results: BENCHMARKS.md.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use batchless_core::jobs::occurrence::{self, Claim, Occurrence};
use batchless_core::platform::dynamo;
use batchless_scenarios::Stack;

fn occ(key: &str, by: &str) -> Occurrence {
    Occurrence {
        occurrence_key: key.into(),
        scheduled_time: key.rsplit('#').next().unwrap_or_default().into(),
        source: "bench".into(),
        ..Occurrence::new("bench", chrono::Utc::now(), "bench", by)
    }
}

/// The wrong way: look, then write. Returns whether this claimer "won".
async fn read_then_write(
    db: &aws_sdk_dynamodb::Client,
    table: &str,
    o: &Occurrence,
) -> Result<bool> {
    if occurrence::get(db, table, &o.occurrence_key)
        .await?
        .is_some()
    {
        return Ok(false);
    }
    db.put_item()
        .table_name(table)
        .set_item(Some(dynamo::to_item(o)))
        .send()
        .await?;
    Ok(true)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    batchless_scenarios::percentile(sorted, p).unwrap_or_default()
}

#[tokio::main]
async fn main() -> Result<()> {
    let rounds = batchless_scenarios::count_arg("--rounds", 20)?;
    let stack = Stack::from_env().await?;
    let table = stack
        .table("OccurrencesTable")
        .context("the stack has no OccurrencesTable")?;
    let run = std::process::id();
    println!(
        "claim benchmark on stack {} ({} rounds per level; one occurrence per round)",
        stack.name, rounds
    );
    println!("| claimers | claims | p50 | p99 | claims/s | winners per occurrence | read-then-write winners (max) |");
    println!("|---:|---:|---:|---:|---:|---|---:|");
    for n in [1usize, 10, 100] {
        let mut lat = Vec::new();
        let mut winners = Vec::new();
        let start = Instant::now();
        for r in 0..rounds {
            let key = format!("bench-{run}-{n}#r{r}");
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let db = stack.db.clone();
                    let table = table.clone();
                    let o = occ(&key, &format!("claimer-{i}"));
                    tokio::spawn(async move {
                        let t = Instant::now();
                        let res = occurrence::claim(&db, &table, &o).await;
                        (t.elapsed(), res)
                    })
                })
                .collect();
            let mut won = 0;
            for h in handles {
                let (d, res) = h.await?;
                lat.push(d);
                if res? == Claim::Won {
                    won += 1;
                }
            }
            winners.push(won);
        }
        let elapsed = start.elapsed();
        // The same race, read-then-write.
        let mut naive_max = 0;
        for r in 0..rounds.min(5) {
            let key = format!("bench-naive-{run}-{n}#r{r}");
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    let db = stack.db.clone();
                    let table = table.clone();
                    let o = occ(&key, &format!("claimer-{i}"));
                    tokio::spawn(async move { read_then_write(&db, &table, &o).await })
                })
                .collect();
            let mut won = 0;
            for h in handles {
                if h.await?? {
                    won += 1;
                }
            }
            naive_max = naive_max.max(won);
        }
        lat.sort();
        let all_one = winners.iter().all(|w| *w == 1);
        println!(
            "| {n} | {} | {:.1} ms | {:.1} ms | {:.0} | {} | {naive_max} |",
            lat.len(),
            pct(&lat, 0.5).as_secs_f64() * 1000.0,
            pct(&lat, 0.99).as_secs_f64() * 1000.0,
            lat.len() as f64 / elapsed.as_secs_f64(),
            if all_one {
                "exactly 1 in every round".to_string()
            } else {
                format!("{winners:?}")
            },
        );
        if !all_one {
            anyhow::bail!("an occurrence had {winners:?} winners");
        }
    }
    Ok(())
}
