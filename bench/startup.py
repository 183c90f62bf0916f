"""Start-up benchmark (issue 8): for every function, its native release `bootstrap` started
against a local Lambda Runtime API (bench/lambda_harness.py) with the environment of a running
local stack, handed its representative event (bench/events/<function>.json, made ready for each
run by `lambda_harness.prepare_event`), N times:

- init: process start → first `GET /invocation/next` (runtime and clients built);
- first event handled: process start → the answer (`/response`, or `/error` for a named
  function error: the outcome column says which);
- peak RSS of the process (its VmHWM, bench/lambda_harness.py);
- the stripped native binary's size.

    .venv/bin/python bench/startup.py --stack bench [--runs 11] [--bin-dir target/release] [function ...]

Targets: median first event handled ≤ 25 ms, peak RSS ≤ 32 MB (MiB here).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lambda_harness import invoke, median, prepare_event, stack_info  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def event_for(function: str) -> str:
    with open(os.path.join(ROOT, "bench", "events", f"{function}.json")) as fh:
        return fh.read()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack", required=True)
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, "target", "release"))
    ap.add_argument("functions", nargs="*")
    args = ap.parse_args()

    info = stack_info(args.stack)
    env = {k: str(v) for k, v in info["lambda_environment"].items()}
    names = {f["binary"]: f["name"] for f in info["functions"].values()}
    functions = args.functions or sorted(os.listdir(os.path.join(ROOT, "functions")))
    log_dir = os.path.join(ROOT, "target", "bench", "startup")
    os.makedirs(log_dir, exist_ok=True)

    rows = []
    failed = []
    for f in functions:
        binary = os.path.join(args.bin_dir, f)
        template = event_for(f)
        inits, handled, rss, outcomes, last_body = [], [], [], {}, ""
        for _ in range(args.runs):
            event = prepare_event(template, info["slack_signing_secret"])
            r = invoke(binary, names.get(f, f), env, event, timeout=60,
                   log_path=os.path.join(log_dir, f"{f}.log"))
            outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
            last_body = r.body
            if r.init_ms is None or r.handled_ms is None:
                failed.append(f"{f}: {r.outcome}")
                break
            inits.append(r.init_ms)
            handled.append(r.handled_ms)
            rss.append(r.peak_rss_kb)
        if not handled:
            continue
        outcome = ", ".join(f"{k} ×{v}" if len(outcomes) > 1 else k for k, v in outcomes.items())
        row = (f, median(inits), median(handled), max(handled), max(rss) / 1024,
               os.path.getsize(binary) / (1024 * 1024), outcome)
        rows.append(row)
        print(f"  {f}: init {row[1]:.1f} ms, handled {row[2]:.1f} ms (max {row[3]:.1f}), "
              f"{row[4]:.1f} MiB, {outcome}: {last_body[:160]}", file=sys.stderr)

    print(f"| function | init (median) | first event handled (median) | slowest of {args.runs} | peak RSS | "
          "native binary (MiB) | answer |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for f, init, med, worst, mib, size, outcome in rows:
        flag = lambda bad: " ✗" if bad else ""  # noqa: E731
        print(f"| {f} | {init:.1f} ms | {med:.1f} ms{flag(med > 25)} | {worst:.1f} ms | "
              f"{mib:.1f} MiB{flag(mib > 32)} | {size:.1f} | {outcome} |")
    if rows:
        allmed = median([r[2] for r in rows])
        print(f"\n{len(rows)} functions; median of the medians {allmed:.1f} ms; "
              f"over 25 ms: {sum(r[2] > 25 for r in rows)}; over 32 MiB: {sum(r[4] > 32 for r in rows)}.")
    for f in failed:
        print(f"startup: {f}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
