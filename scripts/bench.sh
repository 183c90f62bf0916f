#!/usr/bin/env bash
# make bench: every benchmark of issues 8 and 21 in one run, on its own replica stack; the tables go
# to target/bench/results.md (with the machine they ran on) and are read in BENCHMARKS.md.
# Not a test and not in CI. BENCH_SKIP="package demo ..." skips sections by name:
#   startup (stub + empty function) cost startup-replica collect-logs workflow claim lateness dry-run preflight scanner package demo
# BENCH_PROFILE=bench-dev builds and measures the functions with the cheaper profile (harness
# development only; BENCHMARKS.md's numbers are from the release profile).
set -euo pipefail
cd "$(dirname "$0")/.."

STACK=bench
OUT=target/bench/results.md
SKIP=" ${BENCH_SKIP:-} "
PROFILE=${BENCH_PROFILE:-release}
# the functions from infra/template.yaml (Metadata.BuildProperties.Binary) and the packages that
# build them (cargo metadata), plus the empty function: no list of paths to keep up to date
PKGS=$(.venv/bin/python bench/functions.py --cargo-args)
mkdir -p target/bench

want() { [[ "$SKIP" != *" $1 "* ]]; }
section() { printf '\n## %s\n\n' "$1" >> "$OUT"; echo "== $1" >&2; }
timed() { local t0=$SECONDS; "$@"; echo "  ($(( SECONDS - t0 )) s)" >&2; }

{
  echo "# make bench results"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' + uncommitted changes')"
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GB RAM, $(uname -sr)"
  echo "- toolchain: $(rustc --version), $(.venv/bin/python --version), moto $(.venv/bin/python -c 'import moto; print(moto.__version__)')"
  echo "- profile of the function binaries: $PROFILE"
} > "$OUT"

# Native bootstraps of the functions and the empty function only (not the CLI: its SSO features
# would be unified into the functions' SDK build).
if want startup || want startup-replica || want collect-logs; then
  echo "== $PROFILE build of the functions and the empty function" >&2
  timed cargo build -q --profile "$PROFILE" $PKGS
fi

# Against the AWS endpoint stub, next to the empty function: needs no stack (issue 21).
if want startup; then
  section "Start-up against the floor (native $PROFILE, local Runtime API, AWS endpoint stub, 11 runs per binary)"
  timed .venv/bin/python bench/startup.py --profile "$PROFILE" >> "$OUT"
fi

if want cost; then
  section "What batchless costs to run (bench/cost.py)"
  timed .venv/bin/python -m pytest -q bench/test_cost.py >&2
  { echo "Seed workload (\`bench/cost.py --show-default\`), the bastion always on as in the template:"; echo
    .venv/bin/python bench/cost.py; echo
    echo "The same with a bastion task per session instead (\`--set bastion_always_on=false\`):"; echo
    .venv/bin/python bench/cost.py --set bastion_always_on=false; } >> "$OUT"
fi

if want startup-replica || want collect-logs || want workflow || want claim || want lateness || want dry-run || want preflight; then
# a 60-minute migration build needs more than the project's default 60-minute timeout
target/debug/batchless local up --name "$STACK" --time-scale 60 -- --param MigrationTimeoutMinutes=90 >&2
trap 'target/debug/batchless local down --name "$STACK" >&2 || true' EXIT

if want startup-replica; then
  section "Start-up against the replica (native $PROFILE, local Runtime API, 11 runs per function)"
  timed .venv/bin/python bench/startup.py --profile "$PROFILE" --stack "$STACK" >> "$OUT"
fi

if want collect-logs; then
  section "collect-logs: CloudWatch Logs → S3 vs the AWS CLI"
  command -v /usr/bin/time >/dev/null || { export DEBIAN_FRONTEND=noninteractive; apt-get install -y -qq time >/dev/null; }
  [ -x .venv-bench/bin/aws ] || { python3 -m venv .venv-bench && .venv-bench/bin/pip install -q --disable-pip-version-check -r bench/requirements.txt; }
  echo "AWS CLI: $(.venv-bench/bin/aws --version 2>&1)" >> "$OUT"; echo >> "$OUT"
  timed .venv/bin/python bench/collect_logs.py --stack "$STACK" --bin "target/$PROFILE/collect-logs" >> "$OUT"
fi

if want workflow; then
  section "Workflow cost per migration run (time scale 60)"
  BATCHLESS_STACK=$STACK timed cargo run -q -p batchless-scenarios --example workflow-cost >> "$OUT"
fi

if want claim; then
  section "Occurrence claim contention"
  BATCHLESS_STACK=$STACK timed cargo run -q -p batchless-scenarios --example claim-bench >> "$OUT"
fi

if want lateness; then
  section "Scheduled-job lateness: delivery to task start (issue 20)"
  BATCHLESS_STACK=$STACK timed cargo run -q -p batchless-scenarios --example lateness-bench >> "$OUT"
fi

if want dry-run; then
  section "Data-patch dry run: latency added before the approval request, overhead over a plain run (issue 18)"
  BATCHLESS_STACK=$STACK timed cargo run -q -p batchless-scenarios --example dry-run-bench >> "$OUT"
fi

if want preflight; then
  section "Migration pre-flight: added time for 1 and 20 pending migrations (issue 19)"
  BATCHLESS_STACK=$STACK timed cargo run -q -p batchless-scenarios --example preflight-bench >> "$OUT"
fi

target/debug/batchless local down --name "$STACK" >&2
trap - EXIT
fi

if want scanner; then
  section "Bastion command scanner vs grep"
  timed bench/scanner.sh >> "$OUT"
fi

if want package; then
  section "arm64 release bootstraps (make package)"
  timed make --no-print-directory package | sed 's/^/    /' >> "$OUT"
fi

if want demo; then
  section "make demo after a warm build"
  make --no-print-directory build >/dev/null
  t0=$(date +%s.%N)
  make --no-print-directory demo > target/bench/demo.log 2>&1
  echo "make demo: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}') s (log: target/bench/demo.log)" >> "$OUT"
fi

echo "== results: $OUT" >&2
cat "$OUT"
