"""What the tamper-evident audit and the sweep need from the replica (issue 15): KMS asymmetric
Sign/Verify with the template's signing key, S3 object versions and delete markers, CloudTrail
records of ECS RunTask; and the template gives audit/ writes to the audit writer alone, and the
decision endpoint's callers no direct invoke."""

from __future__ import annotations

import json
import os
import re
import time
import uuid

import botocore.exceptions
import pytest

from conftest import REPO
from batchless_local.cfn import build_plan


def test_the_signing_key_is_asymmetric_and_verifies_only_its_own_signatures(stack):
    kms = stack.client("kms")
    meta = kms.describe_key(KeyId="alias/batchless-staging-audit-signing")["KeyMetadata"]
    assert (meta["KeySpec"], meta["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    msg = b"batchless-audit-checkpoint-v1\n{}"
    sig = kms.sign(KeyId="alias/batchless-staging-audit-signing", Message=msg, MessageType="RAW",
                   SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    ok = kms.verify(KeyId="alias/batchless-staging-audit-signing", Message=msg, MessageType="RAW",
                    Signature=sig, SigningAlgorithm="ECDSA_SHA_256")
    assert ok["SignatureValid"] is True
    other = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    forged = kms.sign(KeyId=other, Message=msg, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    try:
        res = kms.verify(KeyId="alias/batchless-staging-audit-signing", Message=msg, MessageType="RAW",
                         Signature=forged, SigningAlgorithm="ECDSA_SHA_256")
        assert res["SignatureValid"] is False
    except botocore.exceptions.ClientError as exc:
        assert exc.response["Error"]["Code"] == "KMSInvalidSignatureException"
    assert kms.get_public_key(KeyId="alias/batchless-staging-audit-signing")["PublicKey"]


def test_the_logs_bucket_keeps_every_version_and_delete_marker(stack):
    s3 = stack.client("s3")
    bucket = next(b["Name"] for b in s3.list_buckets()["Buckets"] if "-logs-" in b["Name"])
    key = f"audit/selftest-{uuid.uuid4().hex[:8]}/anchors/000000000001.json"
    s3.put_object(Bucket=bucket, Key=key, Body=b"1")
    s3.put_object(Bucket=bucket, Key=key, Body=b"2")
    s3.delete_object(Bucket=bucket, Key=key)
    out = s3.list_object_versions(Bucket=bucket, Prefix=key)
    assert len(out["Versions"]) == 2
    assert len(out["DeleteMarkers"]) == 1 and out["DeleteMarkers"][0]["IsLatest"]
    oldest = out["Versions"][-1]["VersionId"]
    assert s3.get_object(Bucket=bucket, Key=key, VersionId=oldest)["Body"].read() == b"1"
    # A conditional create does not overwrite (the audit writer writes each object once).
    key2 = key.replace("000000000001", "000000000002")
    s3.put_object(Bucket=bucket, Key=key2, Body=b"1", IfNoneMatch="*")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.put_object(Bucket=bucket, Key=key2, Body=b"2", IfNoneMatch="*")
    assert exc.value.response["Error"]["Code"] == "PreconditionFailed"


def test_object_lock_refuses_deleting_a_retained_version(stack):
    s3 = stack.client("s3")
    bucket = f"selftest-lock-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    put = s3.put_object(Bucket=bucket, Key="audit/x", Body=b"1", ObjectLockMode="COMPLIANCE",
                        ObjectLockRetainUntilDate="2099-01-01T00:00:00Z")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        s3.delete_object(Bucket=bucket, Key="audit/x", VersionId=put["VersionId"])
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    # A delete marker is still allowed (as on AWS): verify reads versions, not the current object.
    assert s3.delete_object(Bucket=bucket, Key="audit/x")["DeleteMarker"] is True


def _cluster_and_family(ecs, script):
    """A new cluster and a one-container task definition running `sh -c script`."""
    cluster = ecs.create_cluster(clusterName=f"selftest-{uuid.uuid4().hex[:8]}")["cluster"]["clusterArn"]
    family = f"selftest-{uuid.uuid4().hex[:8]}"
    ecs.register_task_definition(family=family, containerDefinitions=[
        {"name": "app", "image": "x", "essential": True, "memory": 128, "command": ["sh", "-c", script]}])
    return cluster, family


def test_run_task_is_recorded_in_cloudtrail(stack):
    ecs = stack.client("ecs")
    cluster, family = _cluster_and_family(ecs, "true")
    task = ecs.run_task(cluster=cluster, taskDefinition=family, startedBy="selftest")["tasks"][0]["taskArn"]
    events = stack.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "RunTask"}])["Events"]
    records = [json.loads(e["CloudTrailEvent"]) for e in events]
    mine = [r for r in records if r["requestParameters"].get("taskDefinition") == family]
    assert len(mine) == 1, records
    r = mine[0]
    assert r["eventSource"] == "ecs.amazonaws.com"
    assert r["requestParameters"]["startedBy"] == "selftest"
    assert [t["taskArn"] for t in r["responseElements"]["tasks"]] == [task]
    assert r["userIdentity"]["arn"] == "arn:aws:sts::123456789012:user/moto"


def test_execute_command_checks_the_task_and_is_recorded_in_cloudtrail(stack):
    ecs = stack.client("ecs")
    cluster, family = _cluster_and_family(ecs, "sleep 30")
    task = ecs.run_task(cluster=cluster, taskDefinition=family)["tasks"][0]["taskArn"]
    deadline = time.time() + 30
    while ecs.describe_tasks(cluster=cluster, tasks=[task])["tasks"][0]["lastStatus"] != "RUNNING":
        assert time.time() < deadline, "the task never ran"
        time.sleep(0.2)
    with pytest.raises(botocore.exceptions.ClientError):  # not interactive
        ecs.execute_command(cluster=cluster, task=task, command="/bin/sh", interactive=False)
    with pytest.raises(botocore.exceptions.ClientError):  # no such task
        ecs.execute_command(cluster=cluster, task=task + "0", command="/bin/sh", interactive=True)
    answer = ecs.execute_command(cluster=cluster, task=task, command="rails c", interactive=True)
    assert answer["taskArn"] == task and answer["containerName"] == "app" and answer["session"]["sessionId"]
    events = stack.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "ExecuteCommand"}])["Events"]
    records = [json.loads(e["CloudTrailEvent"]) for e in events]
    mine = [r for r in records if r["requestParameters"].get("task") == task]
    assert len(mine) == 1, records  # the refused calls are not recorded
    assert mine[0]["requestParameters"]["command"] == "rails c"
    assert "tokenValue" not in json.dumps(mine[0])
    ecs.stop_task(cluster=cluster, task=task)


def test_only_the_audit_writer_may_write_the_audit_prefix():
    with open(os.path.join(REPO, "infra", "template.yaml"), encoding="utf-8") as fh:
        text = fh.read()
    body = text.split("\nResources:\n", 1)[1]
    blocks = re.split(r"\n(?=  [A-Za-z0-9]+:\n)", body)
    writers = []
    for block in blocks:
        name = block.strip().split(":", 1)[0]
        lines = block.splitlines()
        for i, line in enumerate(lines):
            if "s3:PutObject" in line and any("Effect: Allow" in x for x in lines[max(0, i - 2):i + 1]) \
                    and any("/audit/*" in x for x in lines[i:i + 3]):
                writers.append(name)
                # not a YAML anchor other functions could alias into their policies
                assert not any("&" in x for x in lines[max(0, i - 2):i + 1]), name
    assert sorted(set(writers)) == ["AuditCheckFunction"], writers
    assert "Sid: AuditWriterOnly" in text and "Sid: NobodyElseSigns" in text


def test_only_the_migration_build_may_write_its_reports():
    # read-migration-report takes preflight.json, migrate.json and source.json as the build's
    # word: a Deny for every other principal on the prefix, and no other role granted a write.
    plan = build_plan(os.path.join(REPO, "infra", "template.yaml"))
    (policy,) = [r for r in plan["resources"] if r["logical_id"] == "LogsBucketPolicy"]
    (deny,) = [st for st in policy["properties"]["PolicyDocument"]["Statement"]
               if st.get("Sid") == "MigrationReportsWriterOnly"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
    assert set(_listed(deny["Action"])) == {"s3:PutObject", "s3:DeleteObject"}
    assert _listed(deny["Resource"])[0].endswith("/migrations/*")
    role = next(r for r in plan["resources"] if r["logical_id"] == "MigrationProjectRole")
    assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": role["attrs"]["Arn"]}}, deny
    writers = sorted({r["logical_id"] for r in plan["resources"] if r["type"] != "AWS::S3::BucketPolicy"
                      for st in _statements(r.get("properties", {}))
                      if st["Effect"] == "Allow" and any(a in ("s3:PutObject", "s3:*", "*")
                                                         for a in _listed(st.get("Action", [])))
                      and any(str(x).endswith("/migrations/*") for x in _listed(st.get("Resource", [])))})
    assert writers == ["MigrationProjectRole"], writers


def _statements(node):
    """Every IAM policy statement anywhere in a resolved resource's properties."""
    if isinstance(node, dict):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            yield node
        for v in node.values():
            yield from _statements(v)
    elif isinstance(node, list):
        for v in node:
            yield from _statements(v)


def _listed(v):
    return v if isinstance(v, list) else [v]


def test_the_decision_endpoint_is_invoked_through_its_url_only():
    # A direct lambda:InvokeFunction passes a request context of the caller's choosing, so any
    # approver's ARN: the only grant of it on the decision function is conditioned on
    # lambda:InvokedViaFunctionUrl, next to the URL's own action (both needed since Oct 2025).
    plan = build_plan(os.path.join(REPO, "infra", "template.yaml"))
    decision = next(r for r in plan["resources"] if r["logical_id"] == "DecisionFunction")
    arn = f"arn:aws:lambda:{plan['region']}:{plan['account']}:function:{decision['physical_name']}"
    grants = {}
    for r in plan["resources"]:
        if r["type"] == "AWS::Lambda::Permission":
            assert r["properties"].get("FunctionName") not in (arn, decision["physical_name"]), r
        for st in _statements(r.get("properties", {})):
            if st["Effect"] != "Allow":
                continue
            actions = _listed(st.get("Action", []))
            resources = _listed(st.get("Resource", []))
            hits = [a for a in actions if a in ("*", "lambda:*", "lambda:InvokeFunction", "lambda:Invoke*")]
            if "NotAction" in st or (hits and any(x in ("*", arn) or x.startswith(arn + ":") for x in resources)):
                grants.setdefault(r["logical_id"], []).append(st)
    assert list(grants) == ["DecisionCallerPolicy"], grants
    (invoke,) = grants["DecisionCallerPolicy"]
    assert _listed(invoke["Resource"]) == [arn]
    assert invoke["Condition"] == {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}
    policy = next(r for r in plan["resources"] if r["logical_id"] == "DecisionCallerPolicy")
    url = [st for st in policy["properties"]["PolicyDocument"]["Statement"]
           if st["Action"] == "lambda:InvokeFunctionUrl"]
    assert url and url[0]["Resource"] == arn
    assert url[0]["Condition"] == {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}


def test_whoever_may_sign_is_a_signer_the_sweep_watches():
    # A role a signing key's policy lets sign, but whose changes the sweep does not watch, could
    # be handed to someone unnoticed: the key policies' signers, the sweep's SIGNING_ROLE_ARNS
    # and crates/core's SIGNING_FUNCTIONS name the same functions (the pipeline bridge among them).
    plan = build_plan(os.path.join(REPO, "infra", "template.yaml"))
    by_id = {r["logical_id"]: r for r in plan["resources"]}
    signers = set()
    for r in plan["resources"]:
        if r["type"] != "AWS::KMS::Key" or r["properties"].get("KeyUsage") != "SIGN_VERIFY":
            continue
        statements = r["properties"]["KeyPolicy"]["Statement"]
        allowed = {p for st in statements if st["Effect"] == "Allow" and "kms:Sign" in _listed(st["Action"])
                   for p in _listed(st["Principal"]["AWS"])}
        (deny,) = [st for st in statements if st.get("Sid") == "NobodyElseSigns"]
        assert set(_listed(deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"])) == allowed, r["logical_id"]
        signers |= allowed
    sweep = by_id["AuditCheckFunction"]["properties"]["Environment"]["Variables"]["SIGNING_ROLE_ARNS"]
    assert set(sweep.split(",")) == signers
    prefix = "batchless-staging-"  # build_plan's default environment
    functions = set()
    for arn in signers:
        logical = arn.rsplit("/", 1)[1][len(prefix):].removesuffix("Role")
        functions.add(by_id[logical]["physical_name"][len(prefix):])
    with open(os.path.join(REPO, "crates", "core", "src", "patch", "check.rs"), encoding="utf-8") as fh:
        listed = re.search(r"pub const SIGNING_FUNCTIONS: \[&str; \d+\] = \[(.*?)\];", fh.read(), re.S)
    assert functions == set(re.findall(r'"([a-z-]+)"', listed.group(1)))
    assert "pipeline-bridge" in functions
