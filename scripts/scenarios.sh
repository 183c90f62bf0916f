#!/usr/bin/env bash
# Start a fresh replica stack, run the replica self-tests and the scenario tests against it,
# print the workflow coverage, and stop the stack whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
name="test-$$"
cli=target/debug/batchless
# Time scale 60: a 10-minute wait timeout (the safety-net poll) passes in 10 s.
scale="${BATCHLESS_TIME_SCALE:-60}"
stop() { "$cli" local down --name "$name" >/dev/null 2>&1 || true; }
trap stop EXIT
since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
"$cli" local up --name "$name" --time-scale "$scale"
export BATCHLESS_STACK="$name" BATCHLESS_STACK_NAME="$name"
status=0
.venv/bin/python -m pytest -q local/tests || status=$?
cargo test -p batchless-scenarios -- --test-threads=1 || status=$?
echo
echo "== workflow coverage (execution histories of this run) =="
"$cli" --stack "$name" coverage --since "$since" || status=$?
exit $status
