"""collect-logs benchmark (issue 8): copy 10 MB and 100 MB build logs from CloudWatch Logs to S3
on a running local stack, side by side with the AWS CLI doing the same, in the same run.

    .venv/bin/python bench/collect_logs.py --stack bench [--sizes 10,100] [--aws .venv-bench/bin/aws]

- batchless: the native release `collect-logs` bootstrap, started against a local Lambda Runtime
  API (bench/lambda_harness.py) with the stack's function environment; one event per size.
  Wall time is process start → answer; peak RSS is the process's VmHWM.
- AWS CLI: `aws logs get-log-events` paging forward (one CLI process per page, JSON to a page
  file, the messages appended to one file), then `aws s3 cp` of that file. Wall time and the
  peak RSS of the largest process of the pipeline (GNU time's %M of the driving shell: wait4
  from a small parent, since Linux starts a child's ru_maxrss at its parent's RSS).
Both copies are checked against the log's expected bytes and SHA-256. GetLogEvents pages are
at most 1 MB on the replica, as on AWS (local/batchless_local/logs.py).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time

import boto3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lambda_harness import invoke, stack_info  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MB = 1_000_000

# A shell loop over the AWS CLI; $AWS, $GROUP, $STREAM, $OUT, $BUCKET, $KEY, $PY from the env.
CLI_SCRIPT = r"""
set -euo pipefail
work=$(dirname "$OUT")
token=""
: > "$OUT"
while :; do
  if [ -z "$token" ]; then
    "$AWS" logs get-log-events --log-group-name "$GROUP" --log-stream-name "$STREAM" --start-from-head --output json > "$work/page.json"
  else
    "$AWS" logs get-log-events --log-group-name "$GROUP" --log-stream-name "$STREAM" --next-token "$token" --output json > "$work/page.json"
  fi
  next=$("$PY" -c 'import json,sys
p=json.load(open(sys.argv[1]))
with open(sys.argv[2],"a") as f:
    for e in p["events"]: f.write(e["message"].rstrip("\n")+"\n")
print(p.get("nextForwardToken","") if p["events"] else "")' "$work/page.json" "$OUT")
  if [ -z "$next" ] || [ "$next" = "$token" ]; then break; fi
  token=$next
done
"$AWS" s3 cp --only-show-errors "$OUT" "s3://$BUCKET/$KEY"
"""


def log_lines(target_bytes: int):
    """Deterministic lines like a Rails migration build log (≈ 60–400 bytes each)."""
    i = 0
    size = 0
    words = ("CREATE INDEX", "ALTER TABLE", "UPDATE", "INSERT INTO", "SELECT", "-> 0.0132s",
             "== 20261128093000 AddIndexToOrders: migrating", "backfilling batch")
    while size < target_bytes:
        w = words[i % len(words)]
        pad = "x" * ((i * 7919) % 300)
        line = f"[Container] 2026/11/28 10:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d} {w} #{i} {pad}"
        size += len(line) + 1
        i += 1
        yield line


def fill(logs, group: str, stream: str, target_bytes: int) -> tuple[int, str]:
    """Put a log of about target_bytes; returns its size and SHA-256 as collect-logs writes it."""
    try:
        logs.create_log_group(logGroupName=group)
    except logs.exceptions.ResourceAlreadyExistsException:
        pass
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    h = hashlib.sha256()
    total = 0
    batch, batch_bytes = [], 0
    t0 = int(time.time() * 1000) - 3_600_000
    for n, line in enumerate(log_lines(target_bytes)):
        h.update(line.encode() + b"\n")
        total += len(line) + 1
        if len(batch) == 10_000 or batch_bytes + len(line) + 26 > 1_000_000:
            logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)
            batch, batch_bytes = [], 0
        batch.append({"timestamp": t0 + n // 100, "message": line})
        batch_bytes += len(line) + 26
    if batch:
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)
    return total, h.hexdigest()


def s3_sha(s3, bucket: str, key: str) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    for chunk in s3.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1 << 20):
        h.update(chunk)
        n += len(chunk)
    return n, h.hexdigest()


def run_cli(aws: str, env: dict[str, str], group: str, stream: str, bucket: str, key: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as work:
        proc_env = {**os.environ, **env, "AWS": aws, "GROUP": group, "STREAM": stream,
                    "OUT": os.path.join(work, "build.log"), "BUCKET": bucket, "KEY": key, "PY": sys.executable}
        rss_file = os.path.join(work, "maxrss")
        t0 = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file, "bash", "-c", CLI_SCRIPT], env=proc_env)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"the AWS CLI copy failed ({proc.returncode})")
        with open(rss_file) as fh:
            return elapsed, int(fh.read().split()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack", required=True)
    ap.add_argument("--sizes", default="10,100", help="MB (10^6 bytes), comma-separated")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "collect-logs"))
    ap.add_argument("--aws", default=os.path.join(ROOT, ".venv-bench", "bin", "aws"))
    args = ap.parse_args()

    info = stack_info(args.stack)
    env = {k: str(v) for k, v in info["lambda_environment"].items()}
    endpoint, region = info["endpoint"], info["region"]
    kw = dict(endpoint_url=endpoint, region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing")
    logs, s3 = boto3.client("logs", **kw), boto3.client("s3", **kw)
    bucket = env["LOGS_BUCKET"]
    function = next((f["name"] for f in info["functions"].values() if f["binary"] == "collect-logs"), "collect-logs")
    cli_env = {"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": region, "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_PAGER": ""}
    rows = []
    run = f"{int(time.time())}"
    for size in [int(s) for s in args.sizes.split(",")]:
        group, stream = "/bench/collect-logs", f"{run}-{size}mb"
        t = time.perf_counter()
        nbytes, sha = fill(logs, group, stream, size * MB)
        print(f"  {size} MB log: {nbytes:,} bytes put in {time.perf_counter() - t:.1f} s", file=sys.stderr)

        event = {"workflow": "bench", "executionName": f"collect-{run}-{size}", "name": "build",
                 "logGroup": group, "logStream": stream}
        res = invoke(args.bin, function, env, event, timeout=900,
                         log_path=os.path.join(ROOT, "target", "bench", f"collect-logs-{size}.log"))
        if res.outcome != "ok":
            raise SystemExit(f"collect-logs {size} MB: {res.outcome}: {res.body[:500]}")
        key = f"logs/bench/collect-{run}-{size}/build.log"
        got = s3_sha(s3, bucket, key)
        if got != (nbytes, sha):
            raise SystemExit(f"collect-logs {size} MB: S3 has {got}, expected {(nbytes, sha)}")
        ours = (res.handled_ms / 1000.0, res.peak_rss_kb)

        cli_key = f"bench/cli-{run}-{size}/build.log"
        cli = run_cli(args.aws, cli_env, group, stream, bucket, cli_key)
        got = s3_sha(s3, bucket, cli_key)
        if got != (nbytes, sha):
            raise SystemExit(f"AWS CLI {size} MB: S3 has {got}, expected {(nbytes, sha)}")
        rows.append((size, nbytes, ours, cli))
        print(f"  {size} MB: batchless {ours[0]:.1f} s {ours[1] / 1024:.1f} MiB, "
              f"AWS CLI {cli[0]:.1f} s {cli[1] / 1024:.1f} MiB", file=sys.stderr)

    print("| log | copier | wall time | throughput | peak RSS | S3 object = log (size, SHA-256) |")
    print("|---|---|---:|---:|---:|---|")
    for size, nbytes, ours, cli in rows:
        for name, (secs, rss) in (("batchless `collect-logs` (release, process start → answer)", ours),
                                  ("AWS CLI: `get-log-events` pages → file, `s3 cp`", cli)):
            print(f"| {size} MB ({nbytes:,} B) | {name} | {secs:.1f} s | {nbytes / MB / secs:.1f} MB/s | "
                  f"{rss / 1024:.1f} MiB | yes |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
