#!/usr/bin/env bash
# make demo: bring up a local replica stack provisioned from infra/template.yaml, run the
# migration workflow twice (a good migration, then one whose `build` phase fails), and show
# what happened: the live run, the history, the Slack posts, the archived log. KEEP=1 leaves
# the stack running afterwards (stop it with `target/debug/batchless local down --name demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
name="${DEMO_STACK:-demo}"
cli=target/debug/batchless
PY=.venv/bin/python
stop() { [ "${KEEP:-0}" = 1 ] || "$cli" local down --name "$name" >/dev/null 2>&1 || true; }
trap stop EXIT
"$cli" local down --name "$name" >/dev/null 2>&1 || true
"$cli" local up --name "$name" --time-scale "${BATCHLESS_TIME_SCALE:-60}"
stack=".local/$name/stack.json"
field() { "$PY" -c "import json,sys; d=json.load(open('$stack')); print(eval(sys.argv[1]))" "$1"; }
commit=$(git -C "$(field "d['app_repo']['path']")" rev-parse main)
slack=$(field "d['slack_url']")

section() { printf '\n\033[1m== %s ==\033[0m\n' "$*"; }

section "1. A migration at the app's main commit ${commit:0:12} (what CodePipeline starts)"
"$cli" --stack "$name" run migration --commit "$commit"

section "2. A migration whose 'rails db:migrate' fails (FAKE_EXIT_CODE=1): the workflow fails MigrationFailed"
if "$cli" --stack "$name" run migration --commit "$commit" --env-override FAKE_EXIT_CODE=1; then
  echo "unexpected: the failing migration succeeded" >&2
  exit 1
fi

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
section "Done. The stack is $( [ "${KEEP:-0}" = 1 ] && echo "still running (KEEP=1)" || echo "being stopped" )."
