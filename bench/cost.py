"""What batchless costs to run on AWS per month (issue 21): a workload in, the monthly cost per
service out, next to the always-on EC2 instance a batch server typically is.

    .venv/bin/python bench/cost.py                       # the seed workload (DEFAULT_WORKLOAD)
    .venv/bin/python bench/cost.py --workload my.json    # a JSON (or YAML) file: any subset of the keys
    .venv/bin/python bench/cost.py --set migrations_per_day=10 --set patches_per_week=5
    .venv/bin/python bench/cost.py --json                # the numbers as JSON

Where each input comes from (BENCHMARKS.md, "What batchless costs to run", says it per line):
- state transitions and Lambda invocations per run: the migration counts measured by
  `bench/workflow_cost.rs` (14 transitions + 11 invocations for a build under 10 minutes, +3 / +2
  per 10-minute `WaitForBuild` timeout: 32 / 23 for the 63-minute run of a 60-minute build,
  2026-12-05); the other workflows'
  happy paths traced state by state in `statemachines/*.asl.json` (the same rules);
- DynamoDB writes per job occurrence: BENCHMARKS.md's table (10 for a `forbid` job); the other
  workflows' writes counted from the code (`crates/core`), stated as estimates;
- sizes: `infra/template.yaml` (Lambda 128 MB, command-watch / collect-logs 256 MB, arm64;
  CodeBuild ARM_CONTAINER BUILD_GENERAL1_SMALL; job task 0.25 vCPU / 0.5 GB and the always-on
  bastion service 0.5 vCPU / 1 GB, ARM64; 3 secrets, 4 KMS keys, 5 alarms, 400-day log retention);
- Lambda billed duration per invocation: an assumption (`lambda_ms_per_invocation`), because no
  benchmark measures it on AWS; the start-up benchmark bounds its init part;
- prices: PRICES, us-east-1, each with its source and the date it was read.
Free tiers are not subtracted (they are shown separately), so the figures are an upper bound for
a small account and exact for one that already uses its free tiers elsewhere.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass

HOURS_PER_MONTH = 730.0  # AWS's pricing pages use 730 hours per month
DAYS_PER_MONTH = HOURS_PER_MONTH / 24.0  # 30.42
WEEKS_PER_MONTH = DAYS_PER_MONTH / 7.0  # 4.35

# us-east-1 on-demand list prices, read 2026-12-01 (BENCHMARKS.md cites each page).
PRICES = {
    "sfn_per_transition": 0.025 / 1000,  # Standard Workflows
    "lambda_arm_per_gb_s": 0.0000133334,  # first 7.5 bn GB-s per month
    "lambda_per_request": 0.20 / 1e6,
    "codebuild_arm_small_per_min": 0.0034,  # arm1.small: ASSUMED, no page found (see BENCHMARKS.md)
    "fargate_arm_per_vcpu_h": 0.03238,
    "fargate_arm_per_gb_h": 0.00356,
    "ddb_per_write_request": 0.625 / 1e6,  # on-demand WRU
    "ddb_per_read_request": 0.125 / 1e6,  # on-demand RRU
    "s3_standard_per_gb_month": 0.023,
    "s3_per_put": 0.005 / 1000,  # PUT, COPY, POST, LIST
    "s3_per_get": 0.0004 / 1000,
    "logs_ingest_per_gb": 0.50,
    "logs_storage_per_gb_month": 0.03,
    "scheduler_per_invocation": 1.00 / 1e6,
    "secret_per_month": 0.40,
    "secrets_per_api_call": 0.05 / 10000,
    "kms_key_per_month": 1.00,  # https://aws.amazon.com/kms/pricing/ (read 2026-12-05)
    # Sign/Verify with the ECC signing keys: the secondary pages disagree ($0.03 and "5x the
    # symmetric rate"); the higher, $0.15 per 10,000, is used (20,000 a month are free).
    "kms_per_asymmetric_request": 0.15 / 10000,
    "alarm_per_month": 0.10,  # ASSUMED standard-resolution alarm metric (not searched)
    "t3_medium_per_hour": 0.0416,  # Linux on-demand
}

FREE_TIERS = {  # per month, not subtracted; shown so that a reader can
    "Step Functions": "4,000 transitions",
    "Lambda": "1 M requests and 400,000 GB-s",
    "CodeBuild": "100 build minutes (general1.small / arm1.small)",
    "EventBridge Scheduler": "14 M invocations",
    "CloudWatch Logs": "5 GB ingestion + storage + scanned",
}

# The seed's shape (issue 21): a few migrations a day, a few dozen cron jobs, weekly patches, the
# bastion of the template (an always-on ECS service of one task).
DEFAULT_WORKLOAD: dict = {
    "migrations_per_day": 3,
    "migration_build_minutes": 5,
    "jobs": [
        # name, how many such jobs, runs per hour each, task minutes, task size (the template's job
        # task definition: 0.25 vCPU / 0.5 GB)
        {"name": "every 15 minutes", "count": 4, "runs_per_hour": 4, "minutes": 1, "vcpu": 0.25, "memory_gb": 0.5},
        {"name": "hourly", "count": 20, "runs_per_hour": 1, "minutes": 2, "vcpu": 0.25, "memory_gb": 0.5},
        {"name": "nightly", "count": 10, "runs_per_hour": 1 / 24, "minutes": 15, "vcpu": 0.5, "memory_gb": 1.0},
    ],
    "patches_per_week": 2,
    "patch_build_minutes": 5,
    "approvals_per_patch": 1,
    "bastion_sessions_per_week": 3,
    "bastion_session_hours": 1.0,
    # the template's BastionService keeps one task up (DesiredCount 1); false = a task per session
    "bastion_always_on": True,
    "bastion_vcpu": 0.5,
    "bastion_memory_gb": 1.0,
    "dangerous_command_batches_per_session": 20,  # command-watch invocations (log subscription batches)
    # assumptions where nothing is measured (BENCHMARKS.md says so per line)
    "lambda_ms_per_invocation": 150,  # billed ms, init included (provided.al2023 bills init)
    "fargate_startup_seconds": 40,  # billed from image pull to task end
    "build_log_mb_per_minute": 0.2,
    "job_log_mb_per_run": 0.05,
    "lambda_log_kb_per_invocation": 2.0,
    "bastion_log_mb_per_session_hour": 1.0,
    "log_retention_days": 400,  # the template's RetentionInDays
    "s3_archive_retention_days": 400,
}

# ---------------------------------------------------------------- per-run counts (from the ASL)
WAIT_TIMEOUT_MIN = 10  # WaitForBuild's TimeoutSeconds 600 (migration and data-patch ASL)


def build_polls(build_minutes: float) -> int:
    """Safety-net poll cycles during a build of `build_minutes` with the state-change event
    delivered: one per 10-minute WaitForBuild timeout before the build ends (measured: 0 for 1
    minute, 5 for 60 minutes; a build ending right at a timeout can race one more, +2 transitions)."""
    if build_minutes <= 0:
        return 0
    return max(0, math.ceil(build_minutes / WAIT_TIMEOUT_MIN) - 1)


@dataclass
class Run:
    """One execution of a workflow: what it costs in each unit."""
    transitions: int
    invocations: int  # Lambda invocations (128 MB unless in big_invocations)
    big_invocations: int = 0  # 256 MB functions (collect-logs, command-watch)
    ddb_writes: int = 0
    ddb_reads: int = 0
    s3_puts: int = 0
    codebuild_minutes: float = 0.0
    fargate_vcpu_h: float = 0.0
    fargate_gb_h: float = 0.0
    log_mb: float = 0.0  # CloudWatch Logs ingestion (build/task/console output + Lambda logs)
    archive_mb: float = 0.0  # copied to S3 by collect-logs
    secret_calls: int = 0
    kms_requests: int = 0  # Sign / Verify with the signing keys


def migration_run(w: dict) -> Run:
    m = w["migration_build_minutes"]
    p = build_polls(m)
    # ValidateInput AcquireLock StartBuild WaitForBuild RecheckBuild BuildEnded? CollectLogs
    # ReadReport NeedsApproval? RecordRun ReleaseLock Notify Outcome? Migrated = 14 (measured
    # 2026-12-05), + WaitForBuild PollBuild BuildEnded? per poll.
    # Lambda: validate-input lock start-migration-build register-wait poll-build collect-logs
    # read-migration-report record-run lock notify + complete-wait = 11 (measured), +
    # register-wait poll-build per poll.
    inv = 11 + 2 * p
    return Run(transitions=14 + 3 * p, invocations=inv - 1, big_invocations=1,
               # lock put + release, wait token put + take, run record put + update, poll: 1 put
               ddb_writes=6 + p, ddb_reads=2 + p, s3_puts=1, codebuild_minutes=math.ceil(m),
               log_mb=m * w["build_log_mb_per_minute"] + inv * w["lambda_log_kb_per_invocation"] / 1024,
               archive_mb=m * w["build_log_mb_per_minute"], secret_calls=1,
               # pipeline-bridge seals the input (Sign), ValidateInput verifies it
               kms_requests=2)


def job_run(w: dict, job: dict) -> Run:
    # ClaimOccurrence Duplicate? AcquireLease LeaseAcquired? RunTask WaitForTask TaskWoken
    # PollTask TaskStopped? UsePolledOutcome CollectLogs RecordJobRun Notify? Outcome?
    # Succeeded = 15 (Notify only on failure; a task outliving its wait adds WaitForTask
    # TaskWoken PollTask TaskStopped? per wait, not modelled).
    # Lambda: claim-occurrence acquire-job-lease run-job-task register-wait poll-task
    # collect-logs record-job-run + complete-wait = 8. DynamoDB: 10 writes (BENCHMARKS.md,
    # claim table).
    minutes = job["minutes"] + w["fargate_startup_seconds"] / 60.0
    billed_h = max(minutes, 1.0) / 60.0  # Fargate: per second, 1-minute minimum
    inv = 8
    return Run(transitions=15, invocations=inv - 1, big_invocations=1, ddb_writes=10, ddb_reads=2,
               s3_puts=1, fargate_vcpu_h=job["vcpu"] * billed_h, fargate_gb_h=job["memory_gb"] * billed_h,
               log_mb=w["job_log_mb_per_run"] + inv * w["lambda_log_kb_per_invocation"] / 1024,
               archive_mb=w["job_log_mb_per_run"],
               # the claim's seal (Sign); the missed-run check verifies it
               kms_requests=2)


def patch_run(w: dict) -> Run:
    m = w["patch_build_minutes"]
    p = build_polls(m)
    a = w["approvals_per_patch"]
    # ValidateInput RecordRequest DryRun? ApprovalWindow RequestApproval CheckApproval Approved?
    # StartPatchBuild WaitForBuild RecheckBuild BuildEnded? CollectLogs AuditCheck RecordOutcome
    # Notify Outcome? Patched = 17 without a dry run, + 3 per poll.
    # Lambda: validate-patch-request record-patch request-approval (register, then check)
    # start-patch-build register-wait poll-build collect-logs audit-check record-patch
    # notify-patch-result + complete-wait = 12, + approval per click (slack-events is not
    # involved), + 2 per poll. A dry run adds StartDryRun WaitForDryRun RecheckDryRun
    # DryRunEnded? RecordPreview PreviewOnly? (not modelled).
    inv = 12 + a + 2 * p
    return Run(transitions=17 + 3 * p, invocations=inv - 1, big_invocations=1,
               # patch record put + updates (request, approval(s), enqueue, outcome), audit entries
               # (request, approval, outcome), wait token put + take: an estimate from the code
               ddb_writes=10 + 2 * a + p, ddb_reads=6 + a + p, s3_puts=2,
               codebuild_minutes=math.ceil(m),
               log_mb=m * w["build_log_mb_per_minute"] + inv * w["lambda_log_kb_per_invocation"] / 1024,
               archive_mb=m * w["build_log_mb_per_minute"], secret_calls=3 + a,
               # the submission's seal (Verify), each decision sealed and verified, the audit
               # chain's checkpoint (Sign)
               kms_requests=2 + 2 * a)


def bastion_session(w: dict) -> Run:
    # OpenSession WaitForApproval ConfirmApproval Confirmed? Approved = 5 (approved before the
    # reminder).
    # Lambda: watch-login open-session session-deadline (register) slack-events (the
    # executive's reply) session-deadline (confirm) = 5, + command-watch per log batch (256 MB).
    h = w["bastion_session_hours"]
    batches = w["dangerous_command_batches_per_session"]
    fargate_h = 0.0 if w["bastion_always_on"] else h + w["fargate_startup_seconds"] / 3600.0
    inv = 5
    return Run(transitions=5, invocations=inv, big_invocations=batches,
               ddb_writes=6 + batches // 4, ddb_reads=3, fargate_vcpu_h=w["bastion_vcpu"] * fargate_h,
               fargate_gb_h=w["bastion_memory_gb"] * fargate_h,
               log_mb=h * w["bastion_log_mb_per_session_hour"]
               + (inv + batches) * w["lambda_log_kb_per_invocation"] / 1024,
               secret_calls=inv + batches,
               # the approval evidence sealed (slack-events), verified (session-deadline)
               kms_requests=2)


def monthly(w: dict) -> dict:
    """Monthly usage per unit and cost per service for workload `w` (DEFAULT_WORKLOAD's keys)."""
    w = {**DEFAULT_WORKLOAD, **w}
    runs: list[tuple[str, float, Run]] = [
        ("migration", w["migrations_per_day"] * DAYS_PER_MONTH, migration_run(w)),
        ("data patch", w["patches_per_week"] * WEEKS_PER_MONTH, patch_run(w)),
        ("bastion session", w["bastion_sessions_per_week"] * WEEKS_PER_MONTH, bastion_session(w)),
    ]
    for job in w["jobs"]:
        runs.append((f"job: {job['name']}", job["count"] * job["runs_per_hour"] * HOURS_PER_MONTH, job_run(w, job)))
    occurrences = sum(n for name, n, _ in runs if name.startswith("job: "))

    u = {k: 0.0 for k in ("transitions", "invocations", "big_invocations", "ddb_writes", "ddb_reads", "s3_puts",
                          "codebuild_minutes", "fargate_vcpu_h", "fargate_gb_h", "log_mb", "archive_mb",
                          "secret_calls", "kms_requests")}
    per_workflow = {}
    for name, n, r in runs:
        for k in u:
            u[k] += n * getattr(r, k)
        per_workflow[name] = {"runs_per_month": n, "transitions_per_run": r.transitions,
                              "invocations_per_run": r.invocations + r.big_invocations}
    # fixed, workload-independent parts of the stack
    missed_checks = 2 * HOURS_PER_MONTH  # missed-run-check: rate(30 minutes)
    audit_sweeps = DAYS_PER_MONTH  # audit-check: daily
    u["invocations"] += missed_checks + audit_sweeps
    u["ddb_reads"] += occurrences  # missed-run-check reads each occurrence in its window once
    u["secret_calls"] += missed_checks + audit_sweeps
    u["kms_requests"] += 2 * audit_sweeps  # the sweep's watermark, signed and verified
    u["log_mb"] += (missed_checks + audit_sweeps) * w["lambda_log_kb_per_invocation"] / 1024
    scheduler_invocations = occurrences + missed_checks + audit_sweeps
    if w["bastion_always_on"]:
        u["fargate_vcpu_h"] += w["bastion_vcpu"] * HOURS_PER_MONTH
        u["fargate_gb_h"] += w["bastion_memory_gb"] * HOURS_PER_MONTH
        u["log_mb"] += 0.0  # console output is counted per session above

    p = PRICES
    gb_s = (u["invocations"] * 0.128 + u["big_invocations"] * 0.256) * w["lambda_ms_per_invocation"] / 1000.0
    requests = u["invocations"] + u["big_invocations"]
    log_gb = u["log_mb"] / 1024.0
    stored_log_gb = log_gb * w["log_retention_days"] / DAYS_PER_MONTH  # steady state
    archive_gb = u["archive_mb"] / 1024.0 * w["s3_archive_retention_days"] / DAYS_PER_MONTH
    services = {
        "Step Functions (Standard transitions)": u["transitions"] * p["sfn_per_transition"],
        "Lambda (arm64 GB-seconds + requests)": gb_s * p["lambda_arm_per_gb_s"] + requests * p["lambda_per_request"],
        "CodeBuild (arm1.small minutes)": u["codebuild_minutes"] * p["codebuild_arm_small_per_min"],
        "Fargate (arm64 vCPU-hours + GB-hours)": u["fargate_vcpu_h"] * p["fargate_arm_per_vcpu_h"]
        + u["fargate_gb_h"] * p["fargate_arm_per_gb_h"],
        "DynamoDB (on-demand requests)": u["ddb_writes"] * p["ddb_per_write_request"]
        + u["ddb_reads"] * p["ddb_per_read_request"],
        "S3 (log archive: storage + PUTs)": archive_gb * p["s3_standard_per_gb_month"] + u["s3_puts"] * p["s3_per_put"],
        "CloudWatch Logs (ingestion + storage)": log_gb * p["logs_ingest_per_gb"]
        + stored_log_gb * p["logs_storage_per_gb_month"],
        "EventBridge Scheduler (invocations)": scheduler_invocations * p["scheduler_per_invocation"],
        "Secrets Manager (3 secrets + calls)": 3 * p["secret_per_month"] + u["secret_calls"] * p["secrets_per_api_call"],
        "KMS (4 keys + Sign/Verify)": 4 * p["kms_key_per_month"] + u["kms_requests"] * p["kms_per_asymmetric_request"],
        "CloudWatch alarms (5)": 5 * p["alarm_per_month"],
    }
    total = sum(services.values())
    t3 = p["t3_medium_per_hour"] * HOURS_PER_MONTH
    usage = {**u, "lambda_gb_s": gb_s, "lambda_requests": requests, "log_gb_ingested": log_gb,
             "log_gb_stored": stored_log_gb, "archive_gb_stored": archive_gb,
             "scheduler_invocations": scheduler_invocations, "job_occurrences": occurrences}
    return {"workload": w, "usage": usage, "per_workflow": per_workflow, "services": services,
            "total": total, "t3_medium": t3, "ratio_to_t3_medium": total / t3}


def render(result: dict) -> str:
    u, out = result["usage"], []
    out.append("| service | monthly usage | monthly cost |")
    out.append("|---|---|---:|")
    usage_text = {
        "Step Functions (Standard transitions)": f"{u['transitions']:,.0f} transitions",
        "Lambda (arm64 GB-seconds + requests)": f"{u['lambda_requests']:,.0f} requests, {u['lambda_gb_s']:,.0f} GB-s",
        "CodeBuild (arm1.small minutes)": f"{u['codebuild_minutes']:,.0f} build minutes",
        "Fargate (arm64 vCPU-hours + GB-hours)": f"{u['fargate_vcpu_h']:,.1f} vCPU-h, {u['fargate_gb_h']:,.1f} GB-h",
        "DynamoDB (on-demand requests)": f"{u['ddb_writes']:,.0f} writes, {u['ddb_reads']:,.0f} reads",
        "S3 (log archive: storage + PUTs)": f"{u['archive_gb_stored']:,.2f} GB stored, {u['s3_puts']:,.0f} PUTs",
        "CloudWatch Logs (ingestion + storage)": f"{u['log_gb_ingested']:,.2f} GB in, {u['log_gb_stored']:,.1f} GB kept",
        "EventBridge Scheduler (invocations)": f"{u['scheduler_invocations']:,.0f} invocations",
        "Secrets Manager (3 secrets + calls)": f"{u['secret_calls']:,.0f} GetSecretValue",
        "KMS (4 keys + Sign/Verify)": f"{u['kms_requests']:,.0f} requests",
        "CloudWatch alarms (5)": "fixed",
    }
    for name, cost in sorted(result["services"].items(), key=lambda kv: -kv[1]):
        out.append(f"| {name} | {usage_text[name]} | ${cost:,.2f} |")
    out.append(f"| **total** | | **${result['total']:,.2f}** |")
    out.append(f"| always-on on-demand t3.medium (Linux, 730 h, no EBS) | | ${result['t3_medium']:,.2f} |")
    out.append("")
    out.append(f"batchless / t3.medium = **{result['ratio_to_t3_medium']:.2f}**.")
    out.append("")
    out.append("| workflow | runs per month | transitions per run | Lambda invocations per run |")
    out.append("|---|---:|---:|---:|")
    for name, row in result["per_workflow"].items():
        out.append(f"| {name} | {row['runs_per_month']:,.0f} | {row['transitions_per_run']} | "
                   f"{row['invocations_per_run']} |")
    out.append("")
    out.append("Free tiers not subtracted: " + "; ".join(f"{k} {v}" for k, v in FREE_TIERS.items()) + ".")
    return "\n".join(out)


def load_workload(path: str | None, sets: list[str]) -> dict:
    w: dict = {}
    if path:
        with open(path) as fh:
            text = fh.read()
        try:
            w = json.loads(text)
        except ValueError:
            import yaml  # noqa: PLC0415 (optional: only for YAML workload files)
            w = yaml.safe_load(text)
        unknown = set(w) - set(DEFAULT_WORKLOAD)
        if unknown:
            raise SystemExit(f"cost.py: unknown workload key(s) {', '.join(sorted(unknown))}")
    for s in sets:
        k, _, v = s.partition("=")
        if k not in DEFAULT_WORKLOAD or k == "jobs":
            raise SystemExit(f"cost.py: --set {k}: not a scalar workload key")
        w[k] = json.loads(v)
    return w


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", help="JSON or YAML file with any of the workload keys (default: the seed's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one scalar key")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--show-default", action="store_true", help="print the default workload as JSON")
    args = ap.parse_args()
    if args.show_default:
        print(json.dumps(DEFAULT_WORKLOAD, indent=2))
        return 0
    result = monthly(load_workload(args.workload, args.set))
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
