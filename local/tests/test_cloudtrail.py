"""CloudTrail LookupEvents for Step Functions StartExecution, through boto3 against the replica."""

from __future__ import annotations

import json
import re
import time
import uuid

import boto3
import botocore.exceptions
import pytest

PASS_DEF = json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}})


def _sm(stack):
    return stack.client("stepfunctions").create_state_machine(
        name=f"selftest-ct-{uuid.uuid4().hex[:8]}", definition=PASS_DEF,
        roleArn="arn:aws:iam::123456789012:role/sfn")["stateMachineArn"]


def _by_resource(ct, arn, **kw):
    return ct.lookup_events(LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": arn}], **kw)


def test_start_execution_is_recorded_with_the_caller_and_found_by_lookup_events(stack):
    user, key = stack.new_user("selftest")
    user_arn = f"arn:aws:iam::123456789012:user/{user}"
    assert stack.client_as("sts", key).get_caller_identity()["Arn"] == user_arn  # how moto resolves the key
    assert stack.client("sts").get_caller_identity()["Arn"] == "arn:aws:sts::123456789012:user/moto"

    sm = _sm(stack)
    t0 = int(time.time()) - 1
    by_user, by_default = f"by-user-{uuid.uuid4().hex[:8]}", f"by-default-{uuid.uuid4().hex[:8]}"
    started_user = stack.client_as("stepfunctions", key).start_execution(
        stateMachineArn=sm, name=by_user, input='{"password": "hunter2"}')
    started_default = stack.client("stepfunctions").start_execution(stateMachineArn=sm, name=by_default, input="{}")
    with pytest.raises(botocore.exceptions.ClientError):  # a failed call is not recorded
        stack.client("stepfunctions").start_execution(stateMachineArn=sm + "-missing", name="nope")

    ct = stack.client("cloudtrail")
    events = _by_resource(ct, sm)["Events"]
    records = [json.loads(e["CloudTrailEvent"]) for e in events]
    assert [r["requestParameters"]["name"] for r in records] == [by_default, by_user]  # newest first
    assert _by_resource(ct, sm + "-missing")["Events"] == []

    d_event, u_event = events
    d_rec, u_rec = records
    assert u_rec["userIdentity"] == {"type": "IAMUser", "principalId": u_rec["userIdentity"]["principalId"],
                                     "arn": user_arn, "accountId": "123456789012",
                                     "accessKeyId": key["AccessKeyId"], "userName": user}
    assert d_rec["userIdentity"]["arn"] == "arn:aws:sts::123456789012:user/moto"
    assert d_rec["userIdentity"]["userName"] == "moto" and d_rec["userIdentity"]["accessKeyId"] == "testing"
    assert u_rec["requestParameters"] == {"stateMachineArn": sm, "name": by_user}  # no input
    assert "hunter2" not in u_event["CloudTrailEvent"]
    assert u_rec["responseElements"]["executionArn"] == started_user["executionArn"]
    assert d_rec["responseElements"]["executionArn"] == started_default["executionArn"]
    assert u_rec["responseElements"]["startDate"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", u_rec["eventTime"])
    for k, v in {"eventSource": "states.amazonaws.com", "eventName": "StartExecution", "awsRegion": "us-east-1",
                 "sourceIPAddress": "127.0.0.1", "readOnly": False, "eventType": "AwsApiCall",
                 "managementEvent": True, "recipientAccountId": "123456789012"}.items():
        assert u_rec[k] == v, k
    assert u_rec["eventVersion"] and str(uuid.UUID(u_rec["eventID"])) == u_rec["eventID"]
    assert u_event["EventId"] == u_rec["eventID"] and u_event["EventName"] == "StartExecution"
    assert u_event["ReadOnly"] == "false" and u_event["EventSource"] == "states.amazonaws.com"
    assert u_event["AccessKeyId"] == key["AccessKeyId"] and u_event["Username"] == user
    assert d_event["Username"] == "moto" and d_event["AccessKeyId"] == "testing"
    assert u_event["Resources"] == [{"ResourceType": "AWS::StepFunctions::StateMachine", "ResourceName": sm}]
    assert u_event["EventTime"].timestamp() >= t0

    # the other lookup attributes, and the time window (epoch seconds, inclusive)
    mine = ct.lookup_events(LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": user}])["Events"]
    assert [e["EventId"] for e in mine] == [u_event["EventId"]]
    named = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "StartExecution"}],
                             StartTime=t0)["Events"]
    assert {u_event["EventId"], d_event["EventId"]} <= {e["EventId"] for e in named}
    window = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventSource",
                                                 "AttributeValue": "states.amazonaws.com"}],
                              StartTime=t0, EndTime=int(time.time()) + 1)["Events"]
    assert {u_event["EventId"], d_event["EventId"]} <= {e["EventId"] for e in window}
    before = ct.lookup_events(StartTime=t0 - 3600, EndTime=t0 - 1)["Events"]
    assert not {u_event["EventId"], d_event["EventId"]} & {e["EventId"] for e in before}
    by_id = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventId", "AttributeValue": d_event["EventId"]}])
    assert [e["EventId"] for e in by_id["Events"]] == [d_event["EventId"]]


def test_an_assumed_role_session_is_recorded_as_assumed_role(stack):
    role = f"selftest-{uuid.uuid4().hex[:8]}"
    stack.client("iam").create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}]}))
    creds = stack.client("sts").assume_role(RoleArn=f"arn:aws:iam::123456789012:role/{role}",
                                            RoleSessionName="alice")["Credentials"]
    session = boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                            aws_session_token=creds["SessionToken"], region_name="us-east-1")
    arn = session.client("sts", endpoint_url=stack.endpoint).get_caller_identity()["Arn"]
    sm = _sm(stack)
    session.client("stepfunctions", endpoint_url=stack.endpoint).start_execution(stateMachineArn=sm, name="as-role")
    (event,) = _by_resource(stack.client("cloudtrail"), sm)["Events"]
    who = json.loads(event["CloudTrailEvent"])["userIdentity"]
    assert who["type"] == "AssumedRole" and who["arn"] == arn
    assert who["sessionContext"]["sessionIssuer"]["arn"] == f"arn:aws:iam::123456789012:role/{role}"
    assert event["Username"] == "alice" and event["AccessKeyId"] == creds["AccessKeyId"]


def test_lookup_events_paginates_newest_first_and_rejects_bad_requests(stack):
    sm = _sm(stack)
    sfn = stack.client("stepfunctions")
    names = [f"page-{i}-{uuid.uuid4().hex[:6]}" for i in range(5)]
    for n in names:
        sfn.start_execution(stateMachineArn=sm, name=n)
    ct = stack.client("cloudtrail")

    def name(e):
        return json.loads(e["CloudTrailEvent"])["requestParameters"]["name"]

    pages, token = [], None
    while True:
        kw = {"NextToken": token} if token else {}
        page = _by_resource(ct, sm, MaxResults=2, **kw)
        pages.append([name(e) for e in page["Events"]])
        token = page.get("NextToken")
        if not token:
            break
    assert pages == [names[4:2:-1], names[2:0:-1], names[:1]]
    assert [name(e) for e in _by_resource(ct, sm)["Events"]] == names[::-1]  # MaxResults defaults to 50
    paged = ct.get_paginator("lookup_events").paginate(
        LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": sm}], PaginationConfig={"PageSize": 3})
    assert [name(e) for p in paged for e in p["Events"]] == names[::-1]

    def code(**kw):
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            ct.lookup_events(**kw)
        return exc.value.response["Error"]["Code"]

    first = _by_resource(ct, sm, MaxResults=2)
    assert code(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "StartExecution"}],
                NextToken=first["NextToken"]) == "InvalidNextTokenException"  # bound to the first call's filter
    assert code(NextToken="not-a-token") == "InvalidNextTokenException"
    assert code(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "StartExecution"},
                                  {"AttributeKey": "Username", "AttributeValue": "moto"}]) == \
        "InvalidLookupAttributesException"
    assert code(MaxResults=51) == "InvalidMaxResultsException"
    now = int(time.time())
    assert code(StartTime=now, EndTime=now - 60) == "InvalidTimeRangeException"


def test_changes_to_what_signs_are_recorded_with_the_caller(stack):
    """KMS PutKeyPolicy and Lambda UpdateFunctionConfiguration (issue 15: the sweep alerts them)."""
    user, key = stack.new_user("selftest-signer")
    kms = stack.client_as("kms", key)
    key_id = stack.client("kms").create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"}]})
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=policy)
    ct = stack.client("cloudtrail")
    found = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "PutKeyPolicy"}])
    records = [json.loads(e["CloudTrailEvent"]) for e in found["Events"]]
    mine = [r for r in records if r["requestParameters"]["keyId"] == key_id]
    assert len(mine) == 1, records
    assert mine[0]["eventSource"] == "kms.amazonaws.com"
    assert mine[0]["userIdentity"]["arn"] == f"arn:aws:iam::123456789012:user/{user}"
    assert "Principal" not in json.dumps(mine[0])  # the policy itself is not recorded
    event = next(e for e in found["Events"] if key_id in e["CloudTrailEvent"])
    assert event["Resources"] == [{"ResourceType": "AWS::KMS::Key",
                                   "ResourceName": f"arn:aws:kms:us-east-1:123456789012:key/{key_id}"}]

    lam = stack.client("lambda")
    name = lam.list_functions()["Functions"][0]["FunctionName"]
    stack.client_as("lambda", key).update_function_configuration(FunctionName=name, Description="changed")
    found = ct.lookup_events(LookupAttributes=[
        {"AttributeKey": "EventName", "AttributeValue": "UpdateFunctionConfiguration20150331v2"}])
    records = [json.loads(e["CloudTrailEvent"]) for e in found["Events"]]
    assert any(r["requestParameters"] == {"functionName": name} and r["eventSource"] == "lambda.amazonaws.com"
               and r["userIdentity"]["userName"] == user for r in records), records
    with pytest.raises(botocore.exceptions.ClientError):  # a failed call is not recorded
        lam.update_function_configuration(FunctionName="no-such-function", Description="x")
    found = ct.lookup_events(LookupAttributes=[
        {"AttributeKey": "EventName", "AttributeValue": "UpdateFunctionConfiguration20150331v2"}])
    assert not any("no-such-function" in e["CloudTrailEvent"] for e in found["Events"])


def _records(ct, name):
    found = ct.lookup_events(LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": name}])
    return [json.loads(e["CloudTrailEvent"]) for e in found["Events"]]


def test_signing_roles_changes_are_recorded_and_the_deploy_is_cloudformations(stack):
    """IAM trust/permission changes (in us-east-1, as AWS records IAM) and CreateFunction with its
    role; the replica's own deploy of the stack's functions carries `invokedBy` CloudFormation."""
    user, key = stack.new_user("selftest-roles")
    iam = stack.client_as("iam", key)
    role = f"selftest-role-{uuid.uuid4().hex[:8]}"
    stack.client("iam").create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}))
    iam.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"AWS": "*"}}]}))
    iam.put_role_policy(RoleName=role, PolicyName="more", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    ct = stack.client("cloudtrail")
    for name, params in [("UpdateAssumeRolePolicy", {"roleName": role}),
                         ("PutRolePolicy", {"roleName": role, "policyName": "more"})]:
        mine = [r for r in _records(ct, name) if r["requestParameters"].get("roleName") == role]
        assert len(mine) == 1, (name, mine)
        assert mine[0]["requestParameters"] == params  # no policy document
        assert (mine[0]["eventSource"], mine[0]["awsRegion"]) == ("iam.amazonaws.com", "us-east-1")
        assert mine[0]["userIdentity"]["userName"] == user and "invokedBy" not in mine[0]["userIdentity"]

    fn = f"selftest-fn-{uuid.uuid4().hex[:8]}"
    role_arn = f"arn:aws:iam::123456789012:role/{role}"
    stack.client_as("lambda", key).create_function(
        FunctionName=fn, Runtime="provided.al2023", Role=role_arn, Handler="bootstrap",
        Code={"ZipFile": b"PK\x05\x06" + bytes(18)})
    created = _records(ct, "CreateFunction20150331")
    mine = [r for r in created if r["requestParameters"]["functionName"] == fn]
    assert len(mine) == 1 and mine[0]["requestParameters"]["role"] == role_arn, mine
    assert mine[0]["sourceIPAddress"] == "127.0.0.1"
    # The stack's own functions were created by its deploy.
    deployed = [r for r in created if r["requestParameters"]["functionName"] != fn
                and not r["requestParameters"]["functionName"].startswith("selftest-")]
    assert deployed, created
    for r in deployed:
        assert r["userIdentity"]["invokedBy"] == "cloudformation.amazonaws.com", r
        assert r["sourceIPAddress"] == "cloudformation.amazonaws.com", r
