#!/usr/bin/env bash
# Bastion command-scanner throughput (issues 6 and 21): batchless's scanner vs `grep -E -f` on
# the same transcript, one core, on two deterministic inputs (a synthetic one with noise on
# every command line, and mostly ordinary console traffic). Fails if the scanner misses any
# planted dangerous command. Usage: bench/scanner.sh [MiB, default 64]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="$PWD/target/bench-scanner"
cargo build --quiet --release --manifest-path bench/scanner/Cargo.toml
work="$CARGO_TARGET_DIR/work"
bench="$CARGO_TARGET_DIR/release/scanner-bench"
if taskset -c 0 true 2>/dev/null; then
  exec taskset -c 0 "$bench" infra/bastion/watch.yaml "$work" "${1:-64}"
fi
exec "$bench" infra/bastion/watch.yaml "$work" "${1:-64}"
