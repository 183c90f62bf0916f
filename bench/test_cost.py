"""The cost model's arithmetic (bench/cost.py): `.venv/bin/python -m pytest bench/test_cost.py`.

Each case is worked out by hand from the prices and the ASL, so a wrong count, a unit slip
(per-1,000 vs per-million, MB vs GB, hours vs minutes) or a lost term fails it."""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cost  # noqa: E402
from cost import DAYS_PER_MONTH, HOURS_PER_MONTH, PRICES, WEEKS_PER_MONTH  # noqa: E402

# A workload with nothing in it: only the fixed parts of the stack are left.
NOTHING = {"migrations_per_day": 0, "jobs": [], "patches_per_week": 0, "bastion_sessions_per_week": 0,
           "bastion_always_on": False}


def test_polls_match_the_measured_migration_counts():
    # BENCHMARKS.md, full run 2026-12-05: 1-minute build 14 transitions / 11 invocations, 0 polls;
    # the 60-minute build ran 63 minutes: 32 / 23, 6 polls (event delivered).
    assert cost.build_polls(0) == 0
    assert cost.build_polls(1) == 0
    assert cost.build_polls(9.9) == 0
    assert cost.build_polls(10) == 0  # ends as the first timeout fires (the race, +2, not modelled)
    assert cost.build_polls(10.5) == 1
    assert cost.build_polls(60) == 5
    w = {**cost.DEFAULT_WORKLOAD, "migration_build_minutes": 60}
    r = cost.migration_run(w)
    assert (r.transitions, r.invocations + r.big_invocations) == (29, 21)
    w["migration_build_minutes"] = 63
    r = cost.migration_run(w)
    assert (r.transitions, r.invocations + r.big_invocations) == (32, 23)
    w["migration_build_minutes"] = 10.5
    r = cost.migration_run(w)
    assert (r.transitions, r.invocations + r.big_invocations) == (17, 13)
    w["migration_build_minutes"] = 1
    r = cost.migration_run(w)
    assert (r.transitions, r.invocations + r.big_invocations) == (14, 11)


def test_patch_and_job_paths_follow_the_asl():
    w = {**cost.DEFAULT_WORKLOAD, "patch_build_minutes": 25, "approvals_per_patch": 2}
    r = cost.patch_run(w)
    assert r.transitions == 17 + 3 * 2  # two 10-minute timeouts before a 25-minute build ends
    assert r.invocations + r.big_invocations == 12 + 2 + 2 * 2
    j = cost.job_run(w, {"name": "x", "count": 1, "runs_per_hour": 1, "minutes": 3, "vcpu": 0.25, "memory_gb": 0.5})
    assert (j.transitions, j.invocations + j.big_invocations, j.ddb_writes) == (15, 8, 10)


def test_empty_workload_costs_only_the_fixed_parts():
    r = cost.monthly(NOTHING)
    s = r["services"]
    assert s["Step Functions (Standard transitions)"] == 0
    assert s["CodeBuild (arm1.small minutes)"] == 0
    assert s["Fargate (arm64 vCPU-hours + GB-hours)"] == 0
    assert s["DynamoDB (on-demand requests)"] == 0
    # missed-run-check every 30 minutes + the daily audit sweep, 128 MB, 150 ms each
    fixed_inv = 2 * HOURS_PER_MONTH + DAYS_PER_MONTH
    assert r["usage"]["lambda_requests"] == pytest.approx(fixed_inv)
    lam = fixed_inv * 0.128 * 0.150 * PRICES["lambda_arm_per_gb_s"] + fixed_inv * 0.20 / 1e6
    assert s["Lambda (arm64 GB-seconds + requests)"] == pytest.approx(lam)
    assert s["EventBridge Scheduler (invocations)"] == pytest.approx(fixed_inv * 1e-6)
    assert s["Secrets Manager (3 secrets + calls)"] == pytest.approx(1.20 + fixed_inv * 0.05 / 10000)
    # 4 keys; the daily sweep's watermark signed and verified
    assert s["KMS (4 keys + Sign/Verify)"] == pytest.approx(4.00 + 2 * DAYS_PER_MONTH * 0.15 / 10000)
    assert s["CloudWatch alarms (5)"] == pytest.approx(0.50)
    assert r["total"] == pytest.approx(sum(s.values()))


def test_one_sixty_minute_migration_a_day_by_hand():
    w = {**NOTHING, "migrations_per_day": 1, "migration_build_minutes": 60}
    d = cost.monthly(w)["services"]
    base = cost.monthly(NOTHING)["services"]
    runs = DAYS_PER_MONTH  # 30.42
    assert d["Step Functions (Standard transitions)"] == pytest.approx(runs * 29 * 0.025 / 1000)  # $0.022
    assert d["CodeBuild (arm1.small minutes)"] == pytest.approx(runs * 60 * 0.0034)  # $6.21
    # 20 of the 21 invocations at 128 MB, collect-logs at 256 MB, 150 ms each
    extra_gb_s = runs * (20 * 0.128 + 1 * 0.256) * 0.150
    extra = extra_gb_s * PRICES["lambda_arm_per_gb_s"] + runs * 21 * 0.20 / 1e6
    assert d["Lambda (arm64 GB-seconds + requests)"] - base["Lambda (arm64 GB-seconds + requests)"] \
        == pytest.approx(extra)
    # 60 min × 0.2 MB of build log, kept 400 days: in S3 as the archive
    archive_gb = runs * 12 / 1024 * 400 / DAYS_PER_MONTH
    assert d["S3 (log archive: storage + PUTs)"] == pytest.approx(archive_gb * 0.023 + runs * 1 * 0.005 / 1000)
    # CloudWatch Logs: the build log + 2 KiB per invocation, in GiB; ingested once, kept 400 days
    log_gib = runs * (12 + 21 * 2 / 1024) / 1024
    logs = log_gib * 0.50 + log_gib * 400 / DAYS_PER_MONTH * 0.03
    assert d["CloudWatch Logs (ingestion + storage)"] - base["CloudWatch Logs (ingestion + storage)"] \
        == pytest.approx(logs)


def test_fargate_bills_a_minute_at_least_and_the_always_on_bastion():
    job = {"name": "tiny", "count": 1, "runs_per_hour": 1, "minutes": 0.1, "vcpu": 1.0, "memory_gb": 2.0}
    w = {**NOTHING, "jobs": [job], "fargate_startup_seconds": 0}
    f = cost.monthly(w)["services"]["Fargate (arm64 vCPU-hours + GB-hours)"]
    assert f == pytest.approx(HOURS_PER_MONTH * (1 / 60) * (0.03238 + 2 * 0.00356))
    w = {**NOTHING, "bastion_always_on": True}
    f = cost.monthly(w)["services"]["Fargate (arm64 vCPU-hours + GB-hours)"]
    assert f == pytest.approx(730 * (0.5 * 0.03238 + 1.0 * 0.00356))  # $14.42
    # a task per session instead: 3 sessions a week of 1 h + 40 s start-up
    w = {**NOTHING, "bastion_sessions_per_week": 3, "bastion_session_hours": 1.0}
    f = cost.monthly(w)["services"]["Fargate (arm64 vCPU-hours + GB-hours)"]
    h = 3 * WEEKS_PER_MONTH * (1 + 40 / 3600)
    assert f == pytest.approx(h * (0.5 * 0.03238 + 1.0 * 0.00356))


def test_costs_scale_linearly_with_runs():
    one = cost.monthly({**NOTHING, "patches_per_week": 1})
    ten = cost.monthly({**NOTHING, "patches_per_week": 10})
    base = cost.monthly(NOTHING)
    for name in ("Step Functions (Standard transitions)", "CodeBuild (arm1.small minutes)",
                 "DynamoDB (on-demand requests)"):
        assert ten["services"][name] - base["services"][name] == \
            pytest.approx(10 * (one["services"][name] - base["services"][name]))
    assert ten["usage"]["transitions"] == pytest.approx(10 * WEEKS_PER_MONTH * 17)


def test_seed_workload_and_the_instance():
    r = cost.monthly({})
    assert r["t3_medium"] == pytest.approx(0.0416 * 730)  # $30.37
    assert r["ratio_to_t3_medium"] == pytest.approx(r["total"] / r["t3_medium"])
    occ = 4 * 4 * HOURS_PER_MONTH + 20 * HOURS_PER_MONTH + 10 * DAYS_PER_MONTH
    assert r["usage"]["job_occurrences"] == pytest.approx(occ)
    # every occurrence: 10 writes (BENCHMARKS.md, claim table), plus the other workflows' writes
    assert r["usage"]["ddb_writes"] >= 10 * occ
    assert r["per_workflow"]["migration"]["runs_per_month"] == pytest.approx(3 * DAYS_PER_MONTH)


def test_workload_file_and_overrides(tmp_path):
    p = tmp_path / "w.json"
    p.write_text(json.dumps({"migrations_per_day": 7}))
    w = cost.load_workload(str(p), ["patches_per_week=4"])
    assert w == {"migrations_per_day": 7, "patches_per_week": 4}
    p.write_text(json.dumps({"migrations_per_hour": 7}))
    with pytest.raises(SystemExit, match="unknown workload key"):
        cost.load_workload(str(p), [])
    with pytest.raises(SystemExit, match="not a scalar"):
        cost.load_workload(None, ["jobs=[]"])


def test_the_key_count_is_the_templates():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "infra", "template.yaml"), encoding="utf-8") as fh:
        keys = fh.read().count("Type: AWS::KMS::Key\n")
    assert keys == 4
    s = cost.monthly({})["services"]
    assert s["KMS (4 keys + Sign/Verify)"] >= keys * PRICES["kms_key_per_month"]


def test_each_job_occurrence_signs_and_verifies_its_claim():
    one = cost.monthly({})["usage"]["kms_requests"]
    more = cost.monthly({"jobs": [*cost.DEFAULT_WORKLOAD["jobs"],
                                  {"name": "x", "count": 1, "runs_per_hour": 1, "minutes": 1,
                                   "vcpu": 0.25, "memory_gb": 0.5}]})["usage"]["kms_requests"]
    assert more - one == pytest.approx(2 * HOURS_PER_MONTH)
