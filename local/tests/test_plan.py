"""The provisioning plan is a pure function of the template (no stack needed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import FIXTURE_TEMPLATE, REPLICA, REPO
from batchless_local.cfn import PlanError, build_plan, kebab


def _copy_fixture(tmp_path) -> str:
    dest = tmp_path / "tpl"
    shutil.copytree(os.path.dirname(FIXTURE_TEMPLATE), dest)
    return str(dest / "template.yaml")


def _res(plan, lid):
    return next(r for r in plan["resources"] if r["logical_id"] == lid)


def test_plan_resolves_intrinsics_and_names():
    plan = build_plan(FIXTURE_TEMPLATE)
    table = _res(plan, "RunsTable")
    assert table["physical_name"] == "batchless-staging-runs"
    assert table["properties"]["KeySchema"][0] == {"AttributeName": "pk", "KeyType": "HASH"}
    # default physical name like CloudFormation, explicit name when given
    assert _res(plan, "PlainProject")["physical_name"] == "batchless-staging-PlainProject"
    assert _res(plan, "NotifyFunction")["binary"] == "notify"
    assert _res(plan, "NotifyFunction")["physical_name"] == "batchless-staging-notify"
    # Globals merged, !Ref of a table inside a function's environment
    assert plan["lambda_environment"]["RUNS_TABLE"] == "batchless-staging-runs"
    # !If on a condition, !Sub with pseudo parameters
    assert _res(plan, "RailsEnvParameter")["properties"]["Value"] == "staging"
    assert _res(plan, "PatchTaskDefinition")["properties"]["ContainerDefinitions"][0]["Image"].startswith(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/")
    # substitutions applied into the ASL
    sm = _res(plan, "RunJobStateMachine")
    assert '"TableName": "batchless-staging-runs"' in sm["definition"]
    assert "arn:aws:lambda:us-east-1:123456789012:function:batchless-staging-notify" in sm["definition"]
    # skipped types and false conditions are listed with a reason
    assert _res(plan, "BuildPolicy")["action"] == "skipped" and _res(plan, "BuildPolicy")["reason"]
    assert _res(plan, "ProductionOnlyQueue")["action"] == "skipped"
    # dependency order: the table comes before the state machine that names it
    order = [r["logical_id"] for r in plan["resources"]]
    assert order.index("RunsTable") < order.index("RunJobStateMachine")


def test_production_parameters_change_the_plan():
    plan = build_plan(FIXTURE_TEMPLATE, environment="production")
    assert plan["stack_name"] == "batchless-production"
    assert _res(plan, "RailsEnvParameter")["properties"]["Value"] == "production"
    assert _res(plan, "ProductionOnlyQueue")["action"] == "create"
    plan2 = build_plan(FIXTURE_TEMPLATE, params={"SlackApiBaseUrl": "http://x/api"})
    assert plan2["lambda_environment"]["SLACK_API_BASE_URL"] == "http://x/api"
    with pytest.raises(PlanError, match="unknown parameter"):
        build_plan(FIXTURE_TEMPLATE, params={"Nope": "1"})


def test_renaming_a_table_key_changes_the_plan(tmp_path):
    path = _copy_fixture(tmp_path)
    text = open(path).read().replace("AttributeName: pk", "AttributeName: partition_key")
    open(path, "w").write(text)
    before = _res(build_plan(FIXTURE_TEMPLATE), "RunsTable")["properties"]
    after = _res(build_plan(path), "RunsTable")["properties"]
    assert before != after
    assert after["KeySchema"][0]["AttributeName"] == "partition_key"


def test_dropped_definition_substitution_is_an_error_naming_it(tmp_path):
    path = _copy_fixture(tmp_path)
    text = open(path).read().replace("        RunsTable: !Ref RunsTable\n", "")
    open(path, "w").write(text)
    with pytest.raises(PlanError) as exc:
        build_plan(path)
    assert "${RunsTable}" in str(exc.value)
    assert "RunJobStateMachine" in str(exc.value)


def test_conflicting_function_environment_is_an_error_naming_both(tmp_path):
    path = _copy_fixture(tmp_path)
    text = open(path).read().replace(
        "          SLACK_SIGNING_SECRET_ARN: !Ref SlackSigningSecret\n",
        "          SLACK_SIGNING_SECRET_ARN: !Ref SlackSigningSecret\n          RUNS_TABLE: other-table\n")
    open(path, "w").write(text)
    with pytest.raises(PlanError) as exc:
        build_plan(path)
    msg = str(exc.value)
    assert "RUNS_TABLE" in msg and "NotifyFunction" in msg and "SlackEventsFunction" in msg


def test_plan_cli_prints_json_without_starting_anything():
    res = subprocess.run([sys.executable, REPLICA, "plan", "--template", FIXTURE_TEMPLATE],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    assert {r["logical_id"] for r in plan["resources"]} >= {"RunsTable", "RunJobStateMachine"}


def test_kebab_fallback_binary_name():
    assert kebab("StartMigrationBuildFunction") == "start-migration-build"
    assert kebab("Notify") == "notify"


@pytest.mark.skipif(not os.path.exists(os.path.join(REPO, "infra", "template.yaml")),
                    reason="infra/template.yaml not written yet")
def test_project_template_plans():
    plan = build_plan(os.path.join(REPO, "infra", "template.yaml"))
    assert plan["resources"], "the project template has no resources"


def test_every_function_of_the_template_has_a_start_up_benchmark_event():
    # `make bench` hands each function its event (bench/events/<binary or short name>.json) and
    # fails on a function without one; this catches the gap in `make test`, not hours into a bench.
    plan = build_plan(os.path.join(REPO, "infra", "template.yaml"))
    events = {f[: -len(".json")] for f in os.listdir(os.path.join(REPO, "bench", "events")) if f.endswith(".json")}
    functions = [r for r in plan["resources"] if r.get("type") == "AWS::Serverless::Function" and r.get("binary")]
    assert len(functions) > 30
    missing = [r["binary"] for r in functions
               if r["binary"] not in events and r["physical_name"].removeprefix("batchless-staging-") not in events]
    assert missing == []
