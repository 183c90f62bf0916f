"""Start-up benchmark (issues 8 and 21): every function's native `bootstrap` started as Lambda
starts it, against a local Lambda Runtime API (bench/lambda_harness.py), handed its
representative event (bench/events/<binary>.json, made ready for each run by
`lambda_harness.prepare_event`), N times, next to the empty `lambda_runtime` function
(bench/empty-function) built with the same profile, in the same run, interleaved round by round
(each round starts every binary once) so that the machine's drift hits all rows alike.

Where the functions' AWS calls go:
- default: the AWS endpoint stub (bench/aws_stub.py), answering each call at once with a canned
  valid response; the environment is each function's own from `infra/template.yaml` (the local
  provisioning's plan), with `AWS_ENDPOINT_URL` and `SLACK_API_BASE_URL` pointing at the stub.
  This is the figure against the floor (issue 21).
- `--stack NAME`: a running replica stack (moto), with that stack's environment: the second
  view, which includes the replica's latency (issue 8).

Per binary:
- init: process start → first `GET /invocation/next` (runtime and clients built);
- first event handled: process start → the answer (`/response`, or `/error` for a named
  function error: the answer column says which);
- peak RSS of the process (VmHWM); the native binary's size;
- with the stub: the AWS/Slack calls the function made per event and the stub's own time.

    .venv/bin/python bench/startup.py [--stack NAME] [--runs 11] [--profile release] [binary ...]

Targets: against the stub, median first event ≤ 1.5 × the empty function's and peak RSS ≤ 2 ×
the empty function's (issue 21); against the replica, median first event ≤ 25 ms and peak RSS
≤ 32 MB (issue 8). Raw samples go to target/bench/startup-<stub|replica>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from aws_stub import Stub  # noqa: E402
from functions import EMPTY, from_template  # noqa: E402
from lambda_harness import invoke, median, prepare_event, stack_info  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST_EVENT_RATIO = 1.5
RSS_RATIO = 2.0
EMPTY_EVENT = '{"bench": "empty function", "run": "{{RUN}}"}'


def event_for(binary: str, short_name: str) -> str | None:
    for name in (binary, short_name):
        path = os.path.join(ROOT, "bench", "events", f"{name}.json")
        if os.path.exists(path):
            with open(path) as fh:
                return fh.read()
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack", help="measure against this running replica stack instead of the stub")
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--profile", default="release", help="cargo profile the binaries were built with")
    ap.add_argument("--bin-dir", help="default: target/<profile>")
    ap.add_argument("--wrapper", help="a command put before each binary, e.g. 'strace -f -c -o target/bench/%%s.strace' "
                    "(%%s: the binary's name); the timings then include the wrapper's cost")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for every binary (A/B runs, e.g. SSL_CERT_FILE=...)")
    ap.add_argument("functions", nargs="*", help="binaries to measure (default: every function)")
    args = ap.parse_args()
    bin_dir = args.bin_dir or os.path.join(ROOT, "target", args.profile)
    mode = "replica" if args.stack else "stub"

    fns = from_template()
    if args.functions:
        fns = [f for f in fns if f.binary in args.functions or f.short_name in args.functions]
    stub = None
    if args.stack:
        info = stack_info(args.stack)
        shared_env = {k: str(v) for k, v in info["lambda_environment"].items()}
        signing = info["slack_signing_secret"]
        envs = {f.binary: shared_env for f in fns}
        names = {f["binary"]: f["name"] for f in info["functions"].values()}
    else:
        stub = Stub()
        signing = stub.secret["signing_secret"]
        common = {"AWS_ENDPOINT_URL": stub.url, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
                  "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                  "AWS_SESSION_TOKEN": "bench"}
        envs = {f.binary: {**f.environment, **common, "SLACK_API_BASE_URL": f"{stub.url}/api"} for f in fns}
        names = {f.binary: f.name for f in fns}

    extra_env = dict(kv.split("=", 1) for kv in args.env)
    for e in envs.values():
        e.update(extra_env)
    events: dict[str, str] = {}
    problems: list[str] = []
    for f in fns:
        ev = event_for(f.binary, f.short_name)
        if ev is None:
            problems.append(f"{f.binary}: no bench/events/{f.binary}.json (or {f.short_name}.json)")
        elif not os.path.exists(os.path.join(bin_dir, f.binary)):
            problems.append(f"{f.binary}: no binary {os.path.join(bin_dir, f.binary)}")
        else:
            events[f.binary] = ev
    binaries = [EMPTY] + [f.binary for f in fns if f.binary in events]
    events[EMPTY] = EMPTY_EVENT
    envs.setdefault(EMPTY, {k: v for k, v in next(iter(envs.values()), {}).items()
                            if k.startswith("AWS_") or k == "RUST_LOG"} | extra_env)
    names[EMPTY] = "batchless-bench-empty-function"
    if not os.path.exists(os.path.join(bin_dir, EMPTY)):
        print(f"startup: no {EMPTY} in {bin_dir} (cargo build --profile {args.profile} -p {EMPTY})",
              file=sys.stderr)
        return 1

    log_dir = os.path.join(ROOT, "target", "bench", "startup")
    os.makedirs(log_dir, exist_ok=True)
    samples: dict[str, list[dict]] = {b: [] for b in binaries}
    dead: set[str] = set()
    for run in range(args.runs):
        for b in binaries:
            if b in dead:
                continue
            event = prepare_event(events[b], signing)
            if stub:
                stub.reset()
            wrapper = [w.replace("%s", b) for w in args.wrapper.split()] if args.wrapper else None
            r = invoke(os.path.join(bin_dir, b), names.get(b, b), envs[b], event, timeout=60,
                       log_path=os.path.join(log_dir, f"{b}.{mode}.log"), wrapper=wrapper)
            s = {"init_ms": r.init_ms, "handled_ms": r.handled_ms, "rss_kb": r.peak_rss_kb,
                 "outcome": r.outcome, "body": r.body[:300], "rss_by_mapping": r.rss_by_mapping,
                 "cpu_ms": r.cpu_ms, "minor_faults": r.minor_faults}
            if stub:
                s |= {"calls": list(stub.calls), "unknown": list(stub.unknown),
                      "stub_ms": round(stub.service_ms, 3),
                      # each call's arrival and answer, ms from process start (a timeline)
                      "call_ms": [(round((a - r.t0) * 1000, 2), round((b - r.t0) * 1000, 2)) for a, b in stub.times]}
            samples[b].append(s)
            if r.init_ms is None or r.handled_ms is None:
                problems.append(f"{b}: {r.outcome} (run {run + 1}; {r.body[:200]})")
                dead.add(b)
        print(f"  round {run + 1}/{args.runs} done", file=sys.stderr)
    if stub:
        stub.close()
    with open(os.path.join(ROOT, "target", "bench", f"startup-{mode}.json"), "w") as fh:
        json.dump({"profile": args.profile, "runs": args.runs, "samples": samples}, fh, indent=1)

    rows = []
    for b in binaries:
        ok = [s for s in samples[b] if s["init_ms"] is not None and s["handled_ms"] is not None]
        if not ok or b in dead:
            continue
        outcomes = Counter(s["outcome"] for s in ok)
        calls = ok[-1].get("calls", [])
        rows.append({
            "binary": b,
            "init": median([s["init_ms"] for s in ok]),
            "handled": median([s["handled_ms"] for s in ok]),
            "after_init": median([s["handled_ms"] - s["init_ms"] for s in ok]),
            "worst": max(s["handled_ms"] for s in ok),
            "rss": max(s["rss_kb"] for s in ok) / 1024,
            "size": os.path.getsize(os.path.join(bin_dir, b)) / (1024 * 1024),
            "outcome": ", ".join(f"{k} ×{v}" if len(outcomes) > 1 else k for k, v in outcomes.items()),
            "calls": calls,
            "unknown": sorted({u for s in ok for u in s.get("unknown", [])}),
            "stub_ms": median([s.get("stub_ms", 0.0) for s in ok]),
            "rss_map": ok[-1].get("rss_by_mapping"),
            "cpu": median([s["cpu_ms"] for s in ok if s.get("cpu_ms") is not None] or [0.0]),
        })
        x = rows[-1]
        print(f"  {b}: init {x['init']:.1f} ms, handled {x['handled']:.1f} ms (max {x['worst']:.1f}), "
              f"{x['rss']:.1f} MiB, {x['outcome']}, calls {calls}: {ok[-1]['body'][:160]}", file=sys.stderr)

    print(table(rows, mode, args.runs, args.profile))
    for p in problems:
        print(f"startup: {p}", file=sys.stderr)
    return 1 if problems else 0


def table(rows: list[dict], mode: str, runs: int, profile: str) -> str:
    out = []
    empty = next((r for r in rows if r["binary"] == EMPTY), None)
    mark = lambda bad: " ✗" if bad else ""  # noqa: E731
    if mode == "stub" and empty:
        out.append(f"Profile `{profile}`, {runs} runs per binary (interleaved), AWS endpoint stub. "
                   f"Floor: `{EMPTY}` first event {empty['handled']:.2f} ms, init {empty['init']:.2f} ms, "
                   f"peak RSS {empty['rss']:.2f} MiB. Targets: first event ≤ {FIRST_EVENT_RATIO}×, "
                   f"peak RSS ≤ {RSS_RATIO}× the empty function's.")
        out.append("")
        out.append(f"| function | init | first event | × empty | event after init | slowest of {runs} | CPU (× empty) | "
                   "peak RSS | × empty | binary (MiB) | AWS/Slack calls per event (stub time) | answer |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
        for r in rows:
            fr, rr = r["handled"] / empty["handled"], r["rss"] / empty["rss"]
            calls = Counter(r["calls"])
            calls_s = ", ".join(f"{k}{' ×' + str(v) if v > 1 else ''}" for k, v in calls.items()) or "none"
            if r["unknown"]:
                calls_s += f"; **unknown to the stub: {', '.join(r['unknown'])}**"
            if r["calls"]:
                calls_s += f" ({r['stub_ms']:.1f} ms)"
            out.append(f"| {r['binary']} | {r['init']:.1f} ms | {r['handled']:.1f} ms | "
                       f"{fr:.2f}{mark(fr > FIRST_EVENT_RATIO)} | {r['after_init']:.1f} ms | {r['worst']:.1f} ms | "
                       f"{r['cpu']:.1f} ms ({r['cpu'] / empty['cpu']:.1f}) | "
                       f"{r['rss']:.1f} MiB | {rr:.2f}{mark(rr > RSS_RATIO)} | {r['size']:.1f} | {calls_s} | "
                       f"{r['outcome']} |")
        fns = [r for r in rows if r["binary"] != EMPTY]
        if fns:
            over_t = [r for r in fns if r["handled"] / empty["handled"] > FIRST_EVENT_RATIO]
            over_m = [r for r in fns if r["rss"] / empty["rss"] > RSS_RATIO]
            out.append("")
            out.append(f"{len(fns)} functions; first event {min(r['handled'] for r in fns):.1f}–"
                       f"{max(r['handled'] for r in fns):.1f} ms "
                       f"({min(r['handled'] for r in fns) / empty['handled']:.2f}–"
                       f"{max(r['handled'] for r in fns) / empty['handled']:.2f}× the empty function), "
                       f"median of the medians {median([r['handled'] for r in fns]):.1f} ms; "
                       f"over {FIRST_EVENT_RATIO}×: {len(over_t)}; peak RSS over {RSS_RATIO}×: {len(over_m)}.")
        if all(r.get("rss_map") for r in rows):
            out.append("")
            out.append("Where the resident memory is while each process waits for its second event (MiB, "
                       "/proc/PID/smaps of the last run; VmHWM above can be a little higher):")
            out.append("")
            kinds = list(rows[0]["rss_map"])
            out.append("| function | " + " | ".join(kinds) + " | total |")
            out.append("|---|" + "---:|" * (len(kinds) + 1))
            for r in rows:
                m = r["rss_map"]
                out.append(f"| {r['binary']} | " + " | ".join(f"{m[k] / 1024:.2f}" for k in kinds)
                           + f" | {sum(m.values()) / 1024:.2f} |")
        return "\n".join(out)
    out.append(f"| function | init (median) | first event handled (median) | slowest of {runs} | peak RSS | "
               "native binary (MiB) | answer |")
    out.append("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        out.append(f"| {r['binary']} | {r['init']:.1f} ms | {r['handled']:.1f} ms{mark(r['handled'] > 25)} | "
                   f"{r['worst']:.1f} ms | {r['rss']:.1f} MiB{mark(r['rss'] > 32)} | {r['size']:.1f} | "
                   f"{r['outcome']} |")
    fns = [r for r in rows if r["binary"] != EMPTY]
    if fns:
        out.append(f"\n{len(fns)} functions; median of the medians {median([r['handled'] for r in fns]):.1f} ms; "
                   f"over 25 ms: {sum(r['handled'] > 25 for r in fns)}; over 32 MiB: {sum(r['rss'] > 32 for r in fns)}.")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
