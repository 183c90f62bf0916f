"""The replica does what AWS would do, checked through real requests (boto3 against the endpoint)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.exceptions
import pytest
import requests

from conftest import poll

BUILD_ROLE = "arn:aws:iam::123456789012:role/replica-selftest"


# --------------------------------------------------------------------------- helpers

def make_project(stack, name=None, env_vars=None, logs=None, buildspec=None, timeout=60,
                 artifacts=None):
    cb = stack.client("codebuild")
    name = name or f"selftest-{uuid.uuid4().hex[:8]}"
    kwargs = dict(
        name=name, source={"type": "GITHUB", "location": "https://github.com/example/app.git",
                           "buildspec": buildspec or "version: 0.2\nphases:\n  build:\n    commands:\n      - echo ok\n"},
        artifacts=artifacts or {"type": "NO_ARTIFACTS"},
        environment={"type": "LINUX_CONTAINER", "image": "aws/codebuild/standard:7.0",
                     "computeType": "BUILD_GENERAL1_SMALL", "environmentVariables": env_vars or []},
        serviceRole=BUILD_ROLE, timeoutInMinutes=timeout)
    if logs:
        kwargs["logsConfig"] = {"cloudWatchLogs": {"status": "ENABLED", **logs}}
    cb.create_project(**kwargs)
    return name


def wait_build(stack, build_id, timeout=30):
    cb = stack.client("codebuild")
    return poll(lambda: (lambda b: b if b["buildComplete"] else None)(
        cb.batch_get_builds(ids=[build_id])["builds"][0]), timeout, what=f"build {build_id}")


def log_lines(stack, group, stream):
    ev = stack.client("logs").get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)
    return [e["message"] for e in ev["events"]]


def events(stack, **params):
    return requests.get(f"{stack.replica}/events", params=params, timeout=10).json()["events"]


def wait_execution(stack, arn, timeout=30):
    sfn = stack.client("stepfunctions")
    return poll(lambda: (lambda d: d if d["status"] != "RUNNING" else None)(
        sfn.describe_execution(executionArn=arn)), timeout, what=f"execution {arn}")


def make_cluster_and_task(stack):
    ecs = stack.client("ecs")
    cluster = f"selftest-{uuid.uuid4().hex[:6]}"
    ecs.create_cluster(clusterName=cluster)
    stack.client("logs").create_log_group(logGroupName=f"/selftest/{cluster}")
    td = ecs.register_task_definition(
        family=f"{cluster}-task", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[{"name": "app", "image": "rails-app:latest", "essential": True,
                               "command": ["bin/rails", "db:migrate:status"],
                               "environment": [{"name": "RAILS_ENV", "value": "staging"}],
                               "logConfiguration": {"logDriver": "awslogs", "options": {
                                   "awslogs-group": f"/selftest/{cluster}", "awslogs-region": "us-east-1",
                                   "awslogs-stream-prefix": "selftest"}}}])["taskDefinition"]["taskDefinitionArn"]
    return cluster, td


NET = {"awsvpcConfiguration": {"subnets": ["subnet-12345678"], "securityGroups": ["sg-12345678"]}}


# --------------------------------------------------------------------------- CodeBuild

def test_build_failing_in_build_phase_still_runs_post_build(stack):
    project = make_project(stack)
    cb = stack.client("codebuild")
    spec = ("version: 0.2\nphases:\n  pre_build:\n    commands:\n      - echo pre\n"
            "  build:\n    commands:\n      - echo building\n      - exit 1\n      - echo never\n"
            "  post_build:\n    commands:\n      - echo post-build-ran\n")
    build = cb.start_build(projectName=project, buildspecOverride=spec)["build"]
    assert build["buildStatus"] == "IN_PROGRESS"
    b = wait_build(stack, build["id"])
    assert b["buildStatus"] == "FAILED"
    failed = [p for p in b["phases"] if p.get("phaseStatus") == "FAILED"]
    assert [p["phaseType"] for p in failed] == ["BUILD"]
    assert "exit 1" in failed[0]["contexts"][0]["message"]
    post = next(p for p in b["phases"] if p["phaseType"] == "POST_BUILD")
    assert post["phaseStatus"] == "SUCCEEDED"
    assert b["currentPhase"] == "COMPLETED"
    lines = log_lines(stack, b["logs"]["groupName"], b["logs"]["streamName"])
    assert "post-build-ran" in lines and "never" not in lines
    assert b["logs"]["groupName"] == f"/aws/codebuild/{project}"
    assert b["logs"]["streamName"] == build["id"].split(":", 1)[1]


def test_failing_pre_build_skips_build_and_post_build(stack):
    project = make_project(stack)
    spec = ("version: 0.2\nphases:\n  pre_build:\n    commands:\n      - exit 2\n"
            "  build:\n    commands:\n      - echo build-ran\n  post_build:\n    commands:\n      - echo post-ran\n")
    b = wait_build(stack, stack.client("codebuild").start_build(projectName=project, buildspecOverride=spec)["build"]["id"])
    assert b["buildStatus"] == "FAILED"
    types = [p["phaseType"] for p in b["phases"]]
    assert "BUILD" not in types and "POST_BUILD" not in types
    lines = log_lines(stack, b["logs"]["groupName"], b["logs"]["streamName"])
    assert "build-ran" not in lines and "post-ran" not in lines


def _pids_with(marker: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as fh:
                if marker.encode() in fh.read():
                    out.append(int(d))
        except OSError:
            pass
    return out


def test_stopped_build_is_stopped_and_its_process_is_gone(stack):
    project = make_project(stack)
    cb = stack.client("codebuild")
    marker = f"marker-{uuid.uuid4().hex}"
    spec = f"version: 0.2\nphases:\n  build:\n    commands:\n      - sleep 60 && echo {marker}\n"
    build = cb.start_build(projectName=project, buildspecOverride=spec)["build"]
    poll(lambda: _pids_with(marker), 15, what="the build's process")
    stopped = cb.stop_build(id=build["id"])["build"]
    assert stopped["buildStatus"] == "STOPPED"
    b = wait_build(stack, build["id"])
    assert b["buildStatus"] == "STOPPED"
    assert next(p for p in b["phases"] if p["phaseType"] == "BUILD")["phaseStatus"] == "STOPPED"
    poll(lambda: not _pids_with(marker), 10, what="the build's process to be gone")


def test_env_overrides_and_secrets_reach_the_build_and_logs_land_in_the_configured_stream(stack):
    sm = stack.client("secretsmanager")
    secret = f"selftest/db-{uuid.uuid4().hex[:6]}"
    sm.create_secret(Name=secret, SecretString=json.dumps({"url": "postgres://u:pw@db/app"}))
    group = f"/selftest/builds-{uuid.uuid4().hex[:6]}"
    stack.client("logs").create_log_group(logGroupName=group)
    project = make_project(stack, env_vars=[
        {"name": "DATABASE_URL", "value": f"{secret}:url", "type": "SECRETS_MANAGER"},
        {"name": "MODE", "value": "from-project", "type": "PLAINTEXT"}],
        logs={"groupName": group, "streamName": "migrate"})
    spec = ("version: 0.2\nenv:\n  variables:\n    FROM_SPEC: spec-value\n    MODE: from-spec\nphases:\n  build:\n    commands:\n"
            "      - echo \"db=$DATABASE_URL mode=$MODE extra=$EXTRA spec=$FROM_SPEC id=$CODEBUILD_BUILD_ID\"\n")
    cb = stack.client("codebuild")
    build = cb.start_build(projectName=project, buildspecOverride=spec,
                           environmentVariablesOverride=[{"name": "EXTRA", "value": "x1", "type": "PLAINTEXT"}])["build"]
    b = wait_build(stack, build["id"])
    assert b["buildStatus"] == "SUCCEEDED", b["phases"]
    assert b["logs"]["groupName"] == group
    assert b["logs"]["streamName"] == f"migrate/{build['id'].split(':', 1)[1]}"
    lines = log_lines(stack, group, b["logs"]["streamName"])
    assert f"db=postgres://u:pw@db/app mode=from-project extra=x1 spec=spec-value id={build['id']}" in lines


def test_build_of_a_chosen_sha_runs_that_commit(stack):
    repo = stack.info["app_repo"]["path"]
    first = stack.info["app_repo"]["head"]

    def git(*a):
        return subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()

    branch = f"selftest-{uuid.uuid4().hex[:6]}"
    git("checkout", "-q", "-b", branch, first)
    with open(os.path.join(repo, "PATCH_MARKER"), "w") as fh:
        fh.write(f"{branch}\n")
    git("add", "PATCH_MARKER")
    git("commit", "-q", "-m", "selftest commit")
    second = git("rev-parse", "HEAD")
    git("checkout", "-q", "main")
    project = make_project(stack, buildspec="version: 0.2\nphases:\n  build:\n    commands:\n"
                                            "      - cat PATCH_MARKER || echo no-marker\n      - bin/rails db:migrate\n")
    cb = stack.client("codebuild")
    b2 = wait_build(stack, cb.start_build(projectName=project, sourceVersion=second)["build"]["id"])
    b1 = wait_build(stack, cb.start_build(projectName=project, sourceVersion=first)["build"]["id"])
    assert b2["resolvedSourceVersion"] == second and b2["sourceVersion"] == second
    assert b1["resolvedSourceVersion"] == first
    assert branch in log_lines(stack, b2["logs"]["groupName"], b2["logs"]["streamName"])
    assert "no-marker" in log_lines(stack, b1["logs"]["groupName"], b1["logs"]["streamName"])
    unknown = wait_build(stack, cb.start_build(projectName=project, sourceVersion="0" * 40)["build"]["id"])
    assert unknown["buildStatus"] == "FAILED"
    dl = next(p for p in unknown["phases"] if p["phaseType"] == "DOWNLOAD_SOURCE")
    assert dl["phaseStatus"] == "FAILED" and dl["contexts"][0]["statusCode"] == "CLIENT_ERROR"


def test_idempotency_token_returns_the_same_build(stack):
    project = make_project(stack)
    cb = stack.client("codebuild")
    a = cb.start_build(projectName=project, idempotencyToken="tok-1")["build"]["id"]
    b = cb.start_build(projectName=project, idempotencyToken="tok-1")["build"]["id"]
    c = cb.start_build(projectName=project, idempotencyToken="tok-2")["build"]["id"]
    assert a == b != c
    assert set(cb.list_builds_for_project(projectName=project)["ids"]) == {a, c}


def test_start_build_fault_injection(stack):
    project = make_project(stack)
    r = requests.post(f"{stack.replica}/faults", json={"service": "codebuild", "operation": "StartBuild",
                                                       "error": "AccountLimitExceededException", "count": 1}, timeout=10)
    assert r.status_code == 201
    cb = stack.client("codebuild")
    try:
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            cb.start_build(projectName=project)
        assert exc.value.response["Error"]["Code"] == "AccountLimitExceededException"
        cb.start_build(projectName=project)  # only the next N calls fail
    finally:
        requests.delete(f"{stack.replica}/faults", timeout=10)


def test_build_state_change_event_and_dropped_event_fault(stack):
    project = make_project(stack)
    cb = stack.client("codebuild")
    ok = wait_build(stack, cb.start_build(projectName=project)["build"]["id"])

    def final_events(build):
        return [e for e in events(stack, source="aws.codebuild")
                if e["event"]["detail"]["build-id"] == build["arn"]
                and e["event"]["detail"]["build-status"] != "IN_PROGRESS"]

    evs = poll(lambda: final_events(ok), 10, what="the build's state change event")
    ev = evs[0]["event"]
    assert ev["detail-type"] == "CodeBuild Build State Change" and not evs[0]["dropped"]
    assert ev["detail"]["build-status"] == "SUCCEEDED" and ev["detail"]["project-name"] == project
    assert ev["detail"]["additional-information"]["logs"]["stream-name"] == ok["logs"]["streamName"]
    assert ev["resources"] == [ok["arn"]] and ev["account"] == "123456789012"

    requests.post(f"{stack.replica}/faults", json={"drop_events": {
        "source": "aws.codebuild", "detail_type": "CodeBuild Build State Change",
        "detail": {"build-status": "SUCCEEDED"}, "count": 1}}, timeout=10)
    try:
        lost = wait_build(stack, cb.start_build(projectName=project)["build"]["id"])
        after = wait_build(stack, cb.start_build(projectName=project)["build"]["id"])
        assert [e["dropped"] for e in poll(lambda: final_events(lost), 10, what="lost event record")] == [True]
        assert [e["dropped"] for e in poll(lambda: final_events(after), 10, what="next event")] == [False]
    finally:
        requests.delete(f"{stack.replica}/faults", timeout=10)


def _objects(stack, bucket, prefix=""):
    s3 = stack.client("s3")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode() for o in listed}


def test_artifacts_override_uploads_the_output_dir_to_s3(stack):
    s3 = stack.client("s3")
    bucket = f"selftest-artifacts-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    project = make_project(stack)  # the project itself has NO_ARTIFACTS: the override decides
    spec = ("version: 0.2\nenv:\n  variables:\n    OUT_DIR: out\nphases:\n  build:\n    commands:\n"
            "      - mkdir -p out/sub\n      - printf 'patch one' > out/0001.patch\n"
            "      - printf 'select 1;' > out/sub/check.sql\n      - printf 'not an artifact' > stray.txt\n"
            "artifacts:\n  files:\n    - '**/*'\n  base-directory: $OUT_DIR\n")
    cb = stack.client("codebuild")
    build = cb.start_build(projectName=project, buildspecOverride=spec, artifactsOverride={
        "type": "S3", "location": bucket, "path": "patches/p1", "name": "output", "packaging": "NONE",
        "namespaceType": "NONE"})["build"]
    assert build["artifacts"]["location"] == f"arn:aws:s3:::{bucket}/patches/p1/output"
    b = wait_build(stack, build["id"])
    assert b["buildStatus"] == "SUCCEEDED", b["phases"]
    assert b["artifacts"]["location"] == f"arn:aws:s3:::{bucket}/patches/p1/output"
    upload = next(p for p in b["phases"] if p["phaseType"] == "UPLOAD_ARTIFACTS")
    assert upload["phaseStatus"] == "SUCCEEDED"
    assert _objects(stack, bucket) == {"patches/p1/output/0001.patch": "patch one",
                                       "patches/p1/output/sub/check.sql": "select 1;"}
    lines = log_lines(stack, b["logs"]["groupName"], b["logs"]["streamName"])
    assert "Found 2 file(s)" in " ".join(lines)


def test_failed_build_still_uploads_its_artifacts_and_unmatched_paths_fail_the_upload(stack):
    s3 = stack.client("s3")
    bucket = f"selftest-artifacts-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    # the project's own artifacts (no override); discard-paths flattens the keys
    project = make_project(stack, artifacts={"type": "S3", "location": bucket, "path": "patches/p2",
                                             "name": "output", "packaging": "NONE"})
    cb = stack.client("codebuild")
    spec = ("version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p out/logs\n"
            "      - printf 'half done' > out/logs/partial.log\n      - exit 3\n      - printf never > out/never.txt\n"
            "artifacts:\n  files:\n    - '**/*'\n  base-directory: out\n  discard-paths: yes\n")
    b = wait_build(stack, cb.start_build(projectName=project, buildspecOverride=spec)["build"]["id"])
    assert b["buildStatus"] == "FAILED"
    assert [p["phaseType"] for p in b["phases"] if p.get("phaseStatus") == "FAILED"] == ["BUILD"]
    assert next(p for p in b["phases"] if p["phaseType"] == "UPLOAD_ARTIFACTS")["phaseStatus"] == "SUCCEEDED"
    assert _objects(stack, bucket) == {"patches/p2/output/partial.log": "half done"}
    assert b["artifacts"]["location"] == f"arn:aws:s3:::{bucket}/patches/p2/output"

    def upload_failure(spec_text):
        bb = wait_build(stack, cb.start_build(projectName=project, buildspecOverride=spec_text)["build"]["id"])
        assert bb["buildStatus"] == "FAILED"
        failed = [p for p in bb["phases"] if p.get("phaseStatus") == "FAILED"]
        assert [p["phaseType"] for p in failed] == ["UPLOAD_ARTIFACTS"]
        return failed[0]["contexts"][0]

    no_files = ("version: 0.2\nphases:\n  build:\n    commands:\n      - echo ok\n"
                "artifacts:\n  files:\n    - 'missing/*'\n")
    assert upload_failure(no_files) == {"statusCode": "CLIENT_ERROR", "message": "no matching artifact paths found"}
    no_base = ("version: 0.2\nphases:\n  build:\n    commands:\n      - echo ok\n"
               "artifacts:\n  files:\n    - '**/*'\n  base-directory: nowhere\n")
    assert upload_failure(no_base) == {"statusCode": "CLIENT_ERROR",
                                       "message": "no matching base directory path found for nowhere"}
    assert list(_objects(stack, bucket)) == ["patches/p2/output/partial.log"]


# --------------------------------------------------------------------------- ECS

def test_task_exit_code_is_reported(stack):
    cluster, td = make_cluster_and_task(stack)
    ecs = stack.client("ecs")
    task = ecs.run_task(cluster=cluster, taskDefinition=td, launchType="FARGATE", networkConfiguration=NET,
                        startedBy="selftest", overrides={"containerOverrides": [
                            {"name": "app", "command": ["sh", "-c", "echo task says $GREETING; exit 3"],
                             "environment": [{"name": "GREETING", "value": "hi"}]}]})["tasks"][0]
    d = poll(lambda: (lambda t: t if t["lastStatus"] == "STOPPED" else None)(
        ecs.describe_tasks(cluster=cluster, tasks=[task["taskArn"]])["tasks"][0]), 20, what="task to stop")
    assert d["containers"][0]["exitCode"] == 3
    assert d["stopCode"] == "EssentialContainerExited" and d["startedBy"] == "selftest"
    tid = task["taskArn"].split("/")[-1]
    assert "task says hi" in log_lines(stack, f"/selftest/{cluster}", f"selftest/app/{tid}")
    st = [e["event"]["detail"] for e in events(stack, source="aws.ecs", detail_type="ECS Task State Change") if e["event"]["detail"]["taskArn"] == task["taskArn"]]
    assert [x["lastStatus"] for x in st][-1] == "STOPPED" and st[-1]["containers"][0]["exitCode"] == 3
    # every timestamp as EventBridge writes it (a datetime left in the detail broke delivery to rules)
    for k in ("createdAt", "startedAt", "connectivityAt", "stoppedAt"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", st[-1][k]), (k, st[-1][k])


def test_stop_task_stops_a_running_task(stack):
    cluster, td = make_cluster_and_task(stack)
    ecs = stack.client("ecs")
    task = ecs.run_task(cluster=cluster, taskDefinition=td, networkConfiguration=NET, clientToken="ct-1",
                        overrides={"containerOverrides": [{"name": "app", "command": ["sleep", "60"]}]})["tasks"][0]
    again = ecs.run_task(cluster=cluster, taskDefinition=td, networkConfiguration=NET, clientToken="ct-1",
                         overrides={"containerOverrides": [{"name": "app", "command": ["sleep", "60"]}]})["tasks"][0]
    assert again["taskArn"] == task["taskArn"]
    poll(lambda: ecs.describe_tasks(cluster=cluster, tasks=[task["taskArn"]])["tasks"][0]["lastStatus"] == "RUNNING",
         15, what="task running")
    assert task["taskArn"] in ecs.list_tasks(cluster=cluster)["taskArns"]
    ecs.stop_task(cluster=cluster, task=task["taskArn"], reason="selftest stop")
    d = poll(lambda: (lambda t: t if t["lastStatus"] == "STOPPED" else None)(
        ecs.describe_tasks(cluster=cluster, tasks=[task["taskArn"]])["tasks"][0]), 20, what="task to stop")
    assert d["stopCode"] == "UserInitiated" and d["stoppedReason"] == "selftest stop"
    assert d["containers"][0]["exitCode"] in (137, 143)
    assert task["taskArn"] not in ecs.list_tasks(cluster=cluster)["taskArns"]
    assert task["taskArn"] in ecs.list_tasks(cluster=cluster, desiredStatus="STOPPED")["taskArns"]


# --------------------------------------------------------------------------- EventBridge / Step Functions

PASS_DEF = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})
FAIL_DEF = json.dumps({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom", "Cause": "on purpose"}}})
WAIT_DEF = json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}})


def make_sm(stack, definition, prefix="selftest"):
    return stack.client("stepfunctions").create_state_machine(
        name=f"{prefix}-{uuid.uuid4().hex[:8]}", definition=definition,
        roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]


def test_rule_with_input_transformer_starts_a_state_machine(stack):
    sm = make_sm(stack, PASS_DEF)
    ev = stack.client("events")
    rule = f"selftest-{uuid.uuid4().hex[:6]}"
    source = f"selftest.{rule}"
    ev.put_rule(Name=rule, EventPattern=json.dumps({"source": [source], "detail": {"kind": [{"prefix": "mig"}]}}))
    ev.put_targets(Rule=rule, Targets=[{"Id": "sm", "Arn": sm, "RoleArn": "arn:aws:iam::123456789012:role/ev",
                                        "InputTransformer": {
                                            "InputPathsMap": {"kind": "$.detail.kind", "n": "$.detail.n"},
                                            "InputTemplate": '{"job": "<kind>", "count": <n>, "note": "got <kind>"}'}}])
    ev.put_events(Entries=[{"Source": source, "DetailType": "t", "Detail": json.dumps({"kind": "other", "n": 1})},
                           {"Source": source, "DetailType": "t", "Detail": json.dumps({"kind": "migrate", "n": 7})}])
    sfn = stack.client("stepfunctions")
    execs = poll(lambda: sfn.list_executions(stateMachineArn=sm)["executions"], 15, what="an execution")
    time.sleep(0.3)
    execs = sfn.list_executions(stateMachineArn=sm)["executions"]
    assert len(execs) == 1
    d = wait_execution(stack, execs[0]["executionArn"])
    assert json.loads(d["input"]) == {"job": "migrate", "count": 7, "note": "got migrate"}
    assert d["status"] == "SUCCEEDED"


def test_disabled_rule_delivers_nothing(stack):
    sm = make_sm(stack, PASS_DEF)
    ev = stack.client("events")
    rule = f"selftest-{uuid.uuid4().hex[:6]}"
    ev.put_rule(Name=rule, EventPattern=json.dumps({"source": [f"selftest.{rule}"]}), State="DISABLED")
    ev.put_targets(Rule=rule, Targets=[{"Id": "sm", "Arn": sm}])
    ev.put_events(Entries=[{"Source": f"selftest.{rule}", "DetailType": "t", "Detail": "{}"}])
    time.sleep(1.0)  # asserting an absence: give a delivery the time it would take
    assert stack.client("stepfunctions").list_executions(stateMachineArn=sm)["executions"] == []


def test_execution_status_change_events(stack):
    sfn = stack.client("stepfunctions")
    ok = sfn.start_execution(stateMachineArn=make_sm(stack, PASS_DEF), input='{"a": 1}')["executionArn"]
    bad = sfn.start_execution(stateMachineArn=make_sm(stack, FAIL_DEF))["executionArn"]
    slow = sfn.start_execution(stateMachineArn=make_sm(stack, WAIT_DEF))["executionArn"]
    wait_execution(stack, ok)
    wait_execution(stack, bad)
    sfn.stop_execution(executionArn=slow, error="Cancelled", cause="selftest")
    assert sfn.describe_execution(executionArn=slow)["status"] == "ABORTED"

    def statuses(arn):
        return [e["event"]["detail"] for e in events(stack, source="aws.states")
                if e["event"]["detail"]["executionArn"] == arn]

    s_ok = poll(lambda: (lambda s: s if len(s) >= 2 else None)(statuses(ok)), 10, what="events of ok")
    assert [s["status"] for s in s_ok] == ["RUNNING", "SUCCEEDED"]
    assert json.loads(s_ok[1]["output"]) == {"a": 1} and s_ok[1]["stopDate"] >= s_ok[1]["startDate"]
    s_bad = poll(lambda: (lambda s: s if len(s) >= 2 else None)(statuses(bad)), 10, what="events of bad")
    assert s_bad[-1]["status"] == "FAILED" and s_bad[-1]["error"] == "Boom" and s_bad[-1]["cause"] == "on purpose"
    s_slow = poll(lambda: (lambda s: s if len(s) >= 2 else None)(statuses(slow)), 10, what="events of slow")
    assert [s["status"] for s in s_slow] == ["RUNNING", "ABORTED"]


def test_concurrent_conditional_puts_have_exactly_one_winner(stack):
    ddb = stack.client("dynamodb")
    table = f"selftest-{uuid.uuid4().hex[:6]}"
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    results: list[str] = []
    barrier = threading.Barrier(20)

    def worker(i: int) -> None:
        client = stack.client("dynamodb")
        barrier.wait()
        try:
            client.put_item(TableName=table, Item={"pk": {"S": "lock"}, "owner": {"S": str(i)}},
                            ConditionExpression="attribute_not_exists(pk)")
            results.append("won")
        except client.exceptions.ConditionalCheckFailedException:
            results.append("lost")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == ["lost"] * 19 + ["won"]


def test_scheduler_fire_renders_context_attributes(stack):
    sm = make_sm(stack, PASS_DEF)
    name = f"selftest-{uuid.uuid4().hex[:6]}"
    stack.client("scheduler").create_schedule(
        Name=name, ScheduleExpression="cron(0 3 * * ? *)", ScheduleExpressionTimezone="Asia/Tokyo",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": sm, "RoleArn": "arn:aws:iam::123456789012:role/s",
                "Input": '{"t": "<aws.scheduler.scheduled-time>", "id": "<aws.scheduler.execution-id>"}'})
    r = requests.post(f"{stack.replica}/scheduler/fire",
                      json={"schedule": name, "at": "2024-05-01T18:00:00Z", "deliveries": 2}, timeout=30).json()
    inputs = [json.loads(d["input"]) for d in r["deliveries"]]
    assert [i["t"] for i in inputs] == ["2024-05-01T18:00:00Z"] * 2
    assert inputs[0]["id"] != inputs[1]["id"]
    for d in r["deliveries"]:
        assert wait_execution(stack, d["execution_arn"])["status"] == "SUCCEEDED"


# --------------------------------------------------------------------------- Lambda (real functions)

def _binary_in_workspace(binary: str) -> bool:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    fdir = os.path.join(root, "functions")
    for d in os.listdir(fdir) if os.path.isdir(fdir) else []:
        cargo = os.path.join(fdir, d, "Cargo.toml")
        if os.path.exists(cargo):
            text = open(cargo).read()
            if d == binary or f'name = "{binary}"' in text:
                return True
    return False


def _notify(stack):
    fn = stack.info["functions"].get("NotifyFunction")
    if not fn:
        pytest.skip("the template has no NotifyFunction yet")
    if not _binary_in_workspace(fn["binary"]):
        pytest.skip(f"no function crate builds the {fn['binary']!r} binary yet")
    return fn


def test_rule_delivers_to_the_notify_lambda_which_posts_to_slack(stack):
    fn = _notify(stack)
    channel = f"C{uuid.uuid4().hex[:8].upper()}"
    ev = stack.client("events")
    rule = f"selftest-{uuid.uuid4().hex[:6]}"
    ev.put_rule(Name=rule, EventPattern=json.dumps({"source": [f"selftest.{rule}"]}))
    ev.put_targets(Rule=rule, Targets=[{"Id": "notify", "Arn": fn["arn"],
                                        "Input": json.dumps({"channel": channel, "text": "hello"})}])
    ev.put_events(Entries=[{"Source": f"selftest.{rule}", "DetailType": "t", "Detail": "{}"}])
    msgs = poll(lambda: requests.get(f"{stack.slack}/_fake/messages", params={"channel": channel},
                                     timeout=10).json()["messages"], 600, 0.5, "the notify function's Slack post")
    assert msgs[0]["method"] == "chat.postMessage" and msgs[0]["text"] == "hello" and msgs[0]["ok"]


def test_lambda_task_error_type_is_the_error_name_in_the_real_notify_function(stack):
    fn = _notify(stack)
    definition = json.dumps({"StartAt": "Call", "States": {
        "Call": {"Type": "Task", "Resource": fn["arn"], "Parameters": {"bogus_field": 1},
                 "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": True},
        "Caught": {"Type": "Pass", "End": True}}})
    sfn = stack.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=make_sm(stack, definition))["executionArn"]
    d = wait_execution(stack, arn, 600)
    out = json.loads(d["output"])
    cause = json.loads(out["Cause"])
    assert out["Error"] == cause["errorType"] and out["Error"] not in ("States.TaskFailed", "Exception")


# --------------------------------------------------------------------------- stub-emulator stack

def test_lambda_error_type_routes_catch_in_a_state_machine(stub_stack):
    definition = json.dumps({"StartAt": "Call", "States": {
        "Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                 "Parameters": {"FunctionName": stub_stack.info["functions"]["NotifyFunction"]["arn"],
                                "Payload": {"bogus": 1}},
                 "Catch": [{"ErrorEquals": ["InvalidInput"], "ResultPath": "$.error", "Next": "Handled"}],
                 "End": True},
        "Handled": {"Type": "Pass", "End": True}}})
    arn = stub_stack.client("stepfunctions").start_execution(stateMachineArn=make_sm(stub_stack, definition))["executionArn"]
    d = wait_execution(stub_stack, arn)
    assert d["status"] == "SUCCEEDED", d
    err = json.loads(d["output"])["error"]
    assert err["Error"] == "InvalidInput"
    assert json.loads(err["Cause"])["errorMessage"] == "unknown field `bogus`"
    inv = requests.get(f"{stub_stack.replica}/invocations", timeout=10).json()["invocations"]
    assert any(i["binary"] == "notify" and i["errored"] for i in inv)


def test_lambda_error_fault_answers_matching_invocations_without_running_the_function(stub_stack):
    fn = stub_stack.info["functions"]["NotifyFunction"]["arn"]
    definition = json.dumps({"StartAt": "Call", "States": {
        "Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                 "Parameters": {"FunctionName": fn, "Payload": {"bogus.$": "$.bogus"}},
                 "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Handled"}],
                 "End": True},
        "Handled": {"Type": "Pass", "End": True}}})
    sm = make_sm(stub_stack, definition)
    sfn = stub_stack.client("stepfunctions")
    requests.post(f"{stub_stack.replica}/faults", json={"lambda_error": {
        "function": "notify", "input": {"bogus": 2}, "error": "AwsServiceError", "count": 1}}, timeout=10)
    try:
        before = len(requests.get(f"{stub_stack.replica}/invocations", timeout=10).json()["invocations"])
        errors = []
        # Payload {"bogus": 1} does not match: the function runs; {"bogus": 2} gets the fault, once.
        for bogus in (1, 2, 2):
            arn = sfn.start_execution(stateMachineArn=sm, input=json.dumps({"bogus": bogus}))["executionArn"]
            d = wait_execution(stub_stack, arn)
            assert d["status"] == "SUCCEEDED", d
            errors.append(json.loads(d["output"])["error"]["Error"])
        assert errors == ["InvalidInput", "AwsServiceError", "InvalidInput"], errors
        inv = requests.get(f"{stub_stack.replica}/invocations", timeout=10).json()["invocations"][before:]
        assert [bool(i.get("injected")) for i in inv if i["binary"] == "notify"] == [False, True, False]
    finally:
        requests.delete(f"{stub_stack.replica}/faults", timeout=10)


def test_time_scale_shortens_waits(stub_stack):
    definition = json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": True}}})
    t0 = time.monotonic()
    arn = stub_stack.client("stepfunctions").start_execution(stateMachineArn=make_sm(stub_stack, definition))["executionArn"]
    assert wait_execution(stub_stack, arn, 20)["status"] == "SUCCEEDED"
    assert time.monotonic() - t0 < 10  # 60 s at time scale 60


def test_function_url_round_trip(stub_stack):
    url = stub_stack.info["function_urls"]["SlackEventsFunction"]
    r = requests.post(url + "slack/events?x=1", data=b'{"a":1}', headers={"Content-Type": "application/json",
                                                                         "X-Test": "yes"}, timeout=30)
    assert r.status_code == 201 and r.headers["x-echo"] == "1"
    assert r.json() == {"method": "POST", "rawPath": "/slack/events", "rawQueryString": "x=1",
                        "body": '{"a":1}', "isBase64Encoded": False, "header": "yes"}


def _signed(url, body, secret="testing", key="testing", when=None):
    """Headers of a SigV4 (service lambda) POST of `body` to `url`, as the SDKs sign it."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    req = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    auth = SigV4Auth(Credentials(key, secret), "lambda", "us-east-1")
    if when is None:
        auth.add_auth(req)
    else:
        import unittest.mock
        with unittest.mock.patch("botocore.auth.datetime") as dt:
            dt.datetime.now.return_value = when
            dt.datetime.utcnow.return_value = when
            auth.add_auth(req)
    return dict(req.headers.items())


def test_iam_function_url(stack):
    """AuthType AWS_IAM: unsigned, wrongly signed and stale requests are 403 before the function
    runs; a signed one reaches it with the caller in requestContext.authorizer.iam."""
    import datetime
    url = stack.info["function_urls"]["DecisionFunction"]
    body = json.dumps({"action": "approve", "patchId": f"selftest-{uuid.uuid4().hex[:8]}"}).encode()
    before = len(requests.get(f"{stack.replica}/invocations?function=decision", timeout=10).json()["invocations"])
    assert requests.post(url, data=body, timeout=30).status_code == 403
    assert requests.post(url, data=body, headers=_signed(url, body, secret="other"), timeout=30).status_code == 403
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=10)
    assert requests.post(url, data=body, headers=_signed(url, body, when=old), timeout=30).status_code == 403
    tampered = _signed(url, body)
    assert requests.post(url, data=body + b" ", headers=tampered, timeout=30).status_code == 403
    after = len(requests.get(f"{stack.replica}/invocations?function=decision", timeout=10).json()["invocations"])
    assert after == before, "a refused request never runs the function"
    r = requests.post(url, data=body, headers=_signed(url, body), timeout=60)
    # The real decision function: the default identity is the people map's local-operator,
    # and there is no such patch.
    assert r.status_code == 404 and "no patch selftest-" in r.json()["error"], r.text


def test_two_stacks_side_by_side(stack, stub_stack):
    assert stack.endpoint != stub_stack.endpoint and stack.slack != stub_stack.slack
    for s in (stack, stub_stack):
        assert requests.get(f"{s.replica}/health", timeout=10).json()["ok"]
        assert s.client("sts").get_caller_identity()["Account"] == "123456789012"
    # separate state: a table created in one does not exist in the other
    t = f"selftest-{uuid.uuid4().hex[:6]}"
    stub_stack.client("dynamodb").create_table(TableName=t, BillingMode="PAY_PER_REQUEST",
                                               AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                               KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    assert t not in stack.client("dynamodb").list_tables()["TableNames"]


# --------------------------------------------------------------------------- fake Slack

def test_fake_slack_rejects_unauthenticated_posts(stack):
    r = requests.post(f"{stack.slack}/api/chat.postMessage", json={"channel": "C1", "text": "x"}, timeout=10).json()
    assert r == {"ok": False, "error": "not_authed"}
    r1 = requests.post(f"{stack.slack}/api/chat.postMessage", json={"channel": "C1", "text": "x"},
                       headers={"Authorization": "Bearer xoxb-1"}, timeout=10).json()
    r2 = requests.post(f"{stack.slack}/api/chat.postMessage", data={"channel": "C1", "text": "y", "thread_ts": r1["ts"]},
                       headers={"Authorization": "Bearer xoxb-1"}, timeout=10).json()
    assert r1["ok"] and r2["ok"] and float(r2["ts"]) > float(r1["ts"]) and r1["channel"] == "C1"
    replies = requests.post(f"{stack.slack}/api/conversations.replies", data={"channel": "C1", "ts": r1["ts"]},
                            headers={"Authorization": "Bearer xoxb-1"}, timeout=10).json()
    assert [m["text"] for m in replies["messages"]] == ["x", "y"]


def test_fake_slack_send_signs_like_slack(stack):
    got: dict = {}

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):  # noqa: N802
            got["body"] = self.rfile.read(int(self.headers["Content-Length"])).decode()
            got["headers"] = dict(self.headers)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        body = "payload=%7B%22type%22%3A%22block_actions%22%7D"
        r = requests.post(f"{stack.slack}/_fake/send", json={
            "url": f"http://127.0.0.1:{srv.server_address[1]}/slack", "body": body,
            "content_type": "application/x-www-form-urlencoded", "retry_num": 1}, timeout=30).json()
        assert r["status"] == 200 and r["body"] == "ok"
        ts = got["headers"]["X-Slack-Request-Timestamp"]
        secret = stack.info["slack_signing_secret"]
        expected = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
        assert hmac.compare_digest(got["headers"]["X-Slack-Signature"], expected)
        assert got["body"] == body and got["headers"]["X-Slack-Retry-Num"] == "1"
        assert abs(int(ts) - time.time()) < 60
    finally:
        srv.shutdown()


# --------------------------------------------------------------------------- added gaps

def test_s3_object_fault_and_body_matched_dynamodb_fault(stack):
    s3 = stack.client("s3")
    bucket = f"selftest-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    requests.post(f"{stack.replica}/faults", json={"service": "s3", "operation": "PutObject",
                                                   "error": "AccessDenied", "count": 1}, timeout=10)
    db = stack.client("dynamodb")
    tables = []
    for _ in range(2):
        name = f"selftest-{uuid.uuid4().hex[:8]}"
        db.create_table(TableName=name, KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
        tables.append(name)
    requests.post(f"{stack.replica}/faults", json={"service": "dynamodb", "operation": "PutItem", "match": tables[1],
                                                   "after": 1, "error": "ValidationException", "count": 1}, timeout=10)
    try:
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            s3.put_object(Bucket=bucket, Key="a/b.log", Body=b"x")
        assert exc.value.response["Error"]["Code"] == "AccessDenied"
        s3.put_object(Bucket=bucket, Key="a/b.log", Body=b"x")
        # Another table's writes pass; the matched table's first write passes (after: 1), the second fails.
        db.put_item(TableName=tables[0], Item={"k": {"S": "1"}})
        db.put_item(TableName=tables[1], Item={"k": {"S": "1"}})
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            db.put_item(TableName=tables[1], Item={"k": {"S": "2"}})
        assert exc.value.response["Error"]["Code"] == "ValidationException"
        db.put_item(TableName=tables[1], Item={"k": {"S": "3"}})
        # `match` also reads the path: an S3 object's key.
        requests.post(f"{stack.replica}/faults", json={"service": "s3", "operation": "GetObject",
                                                       "match": "/reports/one.json", "error": "AccessDenied",
                                                       "count": 1}, timeout=10)
        s3.put_object(Bucket=bucket, Key="reports/one.json", Body=b"{}")
        s3.put_object(Bucket=bucket, Key="reports/two.json", Body=b"{}")
        assert s3.get_object(Bucket=bucket, Key="reports/two.json")["Body"].read() == b"{}"
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            s3.get_object(Bucket=bucket, Key="reports/one.json")
        assert exc.value.response["Error"]["Code"] == "AccessDenied"
        assert s3.get_object(Bucket=bucket, Key="reports/one.json")["Body"].read() == b"{}"
    finally:
        requests.delete(f"{stack.replica}/faults", timeout=10)


def test_codepipeline_job_results_are_recorded_and_final_once(stack):
    cp = stack.client("codepipeline")
    job = str(uuid.uuid4())
    cp.put_job_success_result(jobId=job, continuationToken="still-running")
    cp.put_job_success_result(jobId=job, outputVariables={"buildId": "b:1"})
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        cp.put_job_failure_result(jobId=job, failureDetails={"type": "JobFailed", "message": "late"})
    assert exc.value.response["Error"]["Code"] == "InvalidJobStateException"
    results = requests.get(f"{stack.replica}/codepipeline/jobs", timeout=10).json()["jobs"][job]
    assert [r["kind"] for r in results] == ["success", "success"]
    assert results[1]["request"]["outputVariables"] == {"buildId": "b:1"}


def test_codepipeline_action_executions_are_listed_until_their_job_ends(stack):
    cp = stack.client("codepipeline")
    pipeline = f"selftest-{uuid.uuid4().hex[:8]}"
    params = '{"commit": "c0ffee", "pipeline": {"executionId": "#{codepipeline.PipelineExecutionId}"}}'
    run = requests.post(f"{stack.replica}/codepipeline/executions", timeout=10, json={
        "pipelineName": pipeline, "provider": "Lambda",
        "configuration": {"FunctionName": "bridge", "UserParameters": params}}).json()
    pe = run["pipelineExecutionId"]
    assert pe in run["resolvedConfiguration"]["UserParameters"]

    def listed():
        return cp.list_action_executions(pipelineName=pipeline,
                                         filter={"pipelineExecutionId": pe})["actionExecutionDetails"]
    [action] = listed()
    assert (action["actionExecutionId"], action["status"]) == (run["actionExecutionId"], "InProgress")
    assert action["input"]["actionTypeId"] == {"category": "Invoke", "owner": "AWS", "provider": "Lambda",
                                               "version": "1"}
    assert action["input"]["configuration"]["UserParameters"] == params  # as configured
    assert action["input"]["resolvedConfiguration"] == run["resolvedConfiguration"]
    cp.put_job_success_result(jobId=run["jobId"], continuationToken="still-running")
    assert listed()[0]["status"] == "InProgress"
    cp.put_job_failure_result(jobId=run["jobId"], failureDetails={"type": "JobFailed", "message": "x"})
    assert listed()[0]["status"] == "Failed"
    for kwargs, code in [({"pipelineName": "no-such-pipeline"}, "PipelineNotFoundException"),
                         ({"pipelineName": pipeline, "filter": {"pipelineExecutionId": "nope"}},
                          "PipelineExecutionNotFoundException")]:
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            cp.list_action_executions(**kwargs)
        assert exc.value.response["Error"]["Code"] == code


def test_fake_slack_injected_failures(stack):
    url = stack.info["slack_url"]
    requests.post(f"{url}/_fake/fail", json={"method": "chat.postMessage", "error": "channel_not_found",
                                            "count": 1}, timeout=10)
    post = lambda: requests.post(f"{url}/api/chat.postMessage", json={"channel": "C1", "text": "hi"},  # noqa: E731
                                 headers={"Authorization": "Bearer xoxb-test"}, timeout=10).json()
    try:
        assert post() == {"ok": False, "error": "channel_not_found"}
        assert post()["ok"] is True
    finally:
        requests.delete(f"{url}/_fake/fail", timeout=10)


def test_get_log_events_pages_are_at_most_one_megabyte(stack):
    """moto returns 10,000 events a page whatever their size; AWS stops at 1 MB. Paging forward
    through the capped pages returns every event once, in order."""
    logs = stack.client("logs")
    group, stream = "/selftest/pages", "big"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    message = "x" * 998  # 998 + 26 bytes: 1,024 events fill a 1 MB page exactly
    t0 = int(time.time() * 1000)
    for batch in range(3):
        events = [{"timestamp": t0 + batch * 1000 + i // 10, "message": f"{batch:01d}{i:05d}{message[6:]}"}
                  for i in range(1000)]
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
    seen, sizes, token = [], [], None
    while True:
        kw = {"nextToken": token} if token else {"startFromHead": True}
        page = logs.get_log_events(logGroupName=group, logStreamName=stream, **kw)
        if not page["events"]:
            break
        sizes.append(sum(len(e["message"]) + 26 for e in page["events"]))
        seen.extend(e["message"][:6] for e in page["events"])
        assert page["nextForwardToken"] != token
        token = page["nextForwardToken"]
    assert max(sizes) <= 1_048_576, sizes
    assert len(sizes) == 3, sizes  # 3,000 events of 1,024 bytes: 1,024 + 1,024 + 952
    assert seen == [f"{b:01d}{i:05d}" for b in range(3) for i in range(1000)]
