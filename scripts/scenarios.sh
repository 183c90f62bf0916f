#!/usr/bin/env bash
# Start fresh replica stacks, run the replica self-tests and the scenario tests against them,
# print the workflow coverage of all their executions (every transition must be taken), and
# stop the stacks whatever happens.
#
# Three stacks: the shared one (staging), and two set up differently for the paths only such
# a deployment takes (tests/src/other.rs): production (`--env production`) and one with the
# patch dry run off (`--param PatchDryRun=off`, and the migration deploy-branch check on).
set -euo pipefail
cd "$(dirname "$0")/.."
name="test-$$"
prod="test-prod-$$"
nodry="test-nodry-$$"
cli=target/debug/batchless
# Time scale 60: a 10-minute wait timeout (the safety-net poll) passes in 10 s.
scale="${BATCHLESS_TIME_SCALE:-60}"
stop() {
  for s in "$name" "$prod" "$nodry"; do
    "$cli" local down --name "$s" >/dev/null 2>&1 || true
  done
}
trap stop EXIT
since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
"$cli" local up --name "$name" --time-scale "$scale"
"$cli" local up --name "$prod" --time-scale "$scale" -- --env production
"$cli" local up --name "$nodry" --time-scale "$scale" -- --param PatchDryRun=off --param MigrationDeployBranch=main
export BATCHLESS_STACK="$name" BATCHLESS_STACK_NAME="$name"
export BATCHLESS_PRODUCTION_STACK="$prod" BATCHLESS_NO_DRY_RUN_STACK="$nodry"
status=0
.venv/bin/python -m pytest -q local/tests || status=$?
cargo test -p batchless-scenarios -- --test-threads=1 || status=$?
echo
echo "== workflow coverage (execution histories of this run, all three stacks) =="
"$cli" --stack "$name" coverage --since "$since" --with-stack "$prod" --with-stack "$nodry" \
  --fail-under "${BATCHLESS_COVERAGE_MIN:-100}" || status=$?
exit $status
