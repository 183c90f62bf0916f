#!/usr/bin/env bash
# make demo: bring up a local replica stack provisioned from infra/template.yaml and run every
# workflow once, showing what happened: the migration twice (a good one, then one whose `build`
# phase fails: the live run, the history, the Slack posts, the archived log), a scheduled job
# delivered three times at once (one run, two duplicates), and a bastion login with a dangerous
# console command and an executive's approval in Slack, and a data patch approved in Slack and
# audited. Everything runs the real app (local/sample-app, or APP=DIR: your own Rails app) against
# the stack's own PostgreSQL, Redis and Sidekiq worker; each section shows the rows it changed.
# KEEP=1 leaves the stack running afterwards (stop it with `target/debug/batchless local down --name demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
name="${DEMO_STACK:-demo}"
cli=target/debug/batchless
PY=.venv/bin/python
stop() { [ "${KEEP:-0}" = 1 ] || "$cli" local down --name "$name" >/dev/null 2>&1 || true; }
trap stop EXIT
"$cli" local down --name "$name" >/dev/null 2>&1 || true
app_args=()
[ -z "${APP:-}" ] || app_args=(--app "$(cd "$APP" && pwd)")
"$cli" local up --name "$name" --time-scale "${BATCHLESS_TIME_SCALE:-60}" "${app_args[@]}"
stack=".local/$name/stack.json"
field() { "$PY" -c "import json,sys; d=json.load(open('$stack')); print(eval(sys.argv[1]))" "$1"; }
repo=$(field "d['app_repo']['path']")
slack=$(field "d['slack_url']")
dburl=$(field "d['services']['postgres']['url']")
db() { psql "$dburl" -AtqX -v ON_ERROR_STOP=1 -c "$1"; }
sample=1; [ -z "${APP:-}" ] || sample=0

section() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }
schema() {
  echo "   schema_migrations: $(db "SELECT count(*) || ' versions, latest ' || max(version) FROM schema_migrations")"
  [ "$sample" = 0 ] || echo "   users columns: $(db "SELECT string_agg(column_name, ', ' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'users'")"
}

if [ "$sample" = 1 ]; then
  # A real schema change to deploy: the commit CodePipeline would start the migration at.
  v=$(date -u +%Y%m%d%H%M%S)
  printf 'class AddLastSeenAtToUsers < ActiveRecord::Migration[6.1]\n  def change\n    add_column :users, :last_seen_at, :datetime\n    add_index :users, :last_seen_at\n  end\nend\n' \
    > "$repo/db/migrate/${v}_add_last_seen_at_to_users.rb"
  git -C "$repo" add db/migrate && git -C "$repo" commit -qm "users.last_seen_at"
fi
commit=$(git -C "$repo" rev-parse main)

section "1. A migration at the app's main commit ${commit:0:12} (what CodePipeline starts): real bin/rails db:migrate"
echo " before:"; schema
"$cli" --stack "$name" run migration --commit "$commit"
echo " after:"; schema

section "2. A migration that fails in PostgreSQL (FAKE_EXIT_CODE=1 adds the sample app's FailOnPurpose): MigrationFailed, nothing changed"
if "$cli" --stack "$name" run migration --commit "$commit" --env-override FAKE_EXIT_CODE=1; then
  echo "unexpected: the failing migration succeeded" >&2
  exit 1
fi
echo " after the failure (the same as before: PostgreSQL rolled the migration back):"; schema

section "3. Migration history (batchless migrations list)"
"$cli" --stack "$name" migrations list

section "4. What Slack was told (the replica's fake Slack)"
curl -fsS "$slack/_fake/messages" | "$PY" -c '
import json, sys
data = json.load(sys.stdin)
msgs = data["messages"] if isinstance(data, dict) else data
for m in msgs:
    print("#%s  %s" % (m.get("channel"), m.get("text")))
    print()
'

section "5. The archived log of the failed run, from S3 (secrets are in the archive only; Slack and the cause are redacted)"
"$cli" --stack "$name" migrations list --json | "$PY" -c '
import json, sys
runs = json.load(sys.stdin)
failed = [r for r in runs if r.get("status") == "FAILED"]
print(failed[0]["logUri"] if failed else "")
' | while read -r uri; do
  [ -n "$uri" ] || continue
  echo "$uri"
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "$PY" - "$uri" "$(field "d['endpoint']")" <<'PYEOF'
import sys, boto3
uri, endpoint = sys.argv[1], sys.argv[2]
bucket, key = uri[5:].split("/", 1)
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
print("\n".join(body.splitlines()[-12:]))
print(s3.get_object(Bucket=bucket, Key=key + ".sha256")["Body"].read().decode().strip())
PYEOF
done
section "6. A scheduled job: EventBridge Scheduler delivers one occurrence three times at once"
[ "$sample" = 0 ] || rates_before=$(db "SELECT count(*) FROM exchange_rates")
at=$(date -u +%Y-%m-%dT%H:%M:00Z)
"$cli" --stack "$name" jobs fire sync-exchange-rates --at "$at" --deliveries 3 > ".local/$name/fire.json"
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "$PY" - ".local/$name/fire.json" "$(field "d['endpoint']")" <<'PYEOF'
import json, sys, time, boto3
fired = json.load(open(sys.argv[1]))
sfn = boto3.client("stepfunctions", endpoint_url=sys.argv[2], region_name="us-east-1")
print(f"occurrence {fired['schedule']} @ {fired['scheduled_time']}: {len(fired['deliveries'])} deliveries")
for d in fired["deliveries"]:
    deadline = time.time() + 120
    while (desc := sfn.describe_execution(executionArn=d["execution_arn"]))["status"] == "RUNNING":
        if time.time() > deadline:
            sys.exit(f"{d['execution_arn']} still running")
        time.sleep(0.5)
    out = json.loads(desc.get("output") or "{}")
    what = out.get("outcome") or out.get("status")
    detail = f"task {out['taskArn'].rsplit('/', 1)[-1]}, exit {out.get('exitCode')}" if out.get("taskArn") else ""
    print(f"  delivery {d['execution_id'][:8]}: {desc['status']} {what} {detail}")
PYEOF
"$cli" --stack "$name" jobs list
[ "$sample" = 0 ] || echo "exchange_rates rows: $rates_before before, $(db "SELECT count(*) FROM exchange_rates") after (one run of bin/rake rates:sync writes 3)"

section "7. The bastion watch: login, a dangerous console command, an executive's approval"
"$PY" scripts/demo_bastion.py "$stack"
"$cli" --stack "$name" sessions

section "8. A data patch: submitted with the CLI, approved in Slack, run at the pinned commit, audited"
if [ "$sample" = 0 ]; then
  echo "(skipped: it runs the sample app's bin/rake data:backfill_totals)"
  section "Done."
  exit 0
fi
totals() { db "SELECT count(*) FILTER (WHERE totals_recomputed_at IS NOT NULL) || ' of ' || count(*) || ' users have totals, sum ' || sum(orders_total_cents) || ' cents' FROM users"; }
echo " before: $(totals)"
"$cli" --stack "$name" patch submit --ticket OPS-1 --ref main --kind rake --task data:backfill_totals \
  --arg 2026-11-01 --reason "order totals were wrong after the import" | tee ".local/$name/patch.txt"
patch_id=$(awk 'NR==1 {print $2}' ".local/$name/patch.txt")
"$PY" scripts/demo_patch.py "$stack" "$patch_id" ".local/$name/patch_arn"
patch_arn=$(cat ".local/$name/patch_arn")
"$cli" --stack "$name" follow "$patch_arn"
# The task enqueued RecomputeUserTotalsJob; the stack's Sidekiq worker processes it.
for _ in $(seq 1 120); do
  [ "$(db "SELECT count(*) FROM task_runs WHERE name = 'RecomputeUserTotalsJob' AND source = 'data:backfill_totals'")" != 0 ] && break
  sleep 0.5
done
echo " after (the job the patch enqueued has run): $(totals)"
"$cli" --stack "$name" patch list
"$cli" --stack "$name" audit verify
"$cli" --stack "$name" audit report --since "$(date -u +%Y-%m-%d)"

section "Done. The stack is $( [ "${KEEP:-0}" = 1 ] && echo "still running (KEEP=1)" || echo "being stopped" )."
