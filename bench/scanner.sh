#!/usr/bin/env bash
# Bastion command-scanner throughput (issue 6): batchless's scanner vs `grep -E -f` on the same
# synthetic transcript, one core. Usage: bench/scanner.sh [MiB, default 64]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="$PWD/target/bench-scanner"
cargo build --quiet --release --manifest-path bench/scanner/Cargo.toml
work="$CARGO_TARGET_DIR/work"
taskset -c 0 "$CARGO_TARGET_DIR/release/scanner-bench" infra/bastion/watch.yaml "$work" "${1:-64}" 2>/dev/null \
  || "$CARGO_TARGET_DIR/release/scanner-bench" infra/bastion/watch.yaml "$work" "${1:-64}"
