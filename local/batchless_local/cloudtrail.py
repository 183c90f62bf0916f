"""CloudTrail management events for Step Functions `StartExecution`, and `LookupEvents` (moto has none).

Every successful StartExecution request that reaches moto's Step Functions handler is recorded as
the CloudTrail record AWS writes (caller resolved from the request's access key the way moto's STS
`GetCallerIdentity` does; the execution input left out). `LookupEvents` (JSON protocol, served by
moto's CloudTrail handler on the same port) returns them newest first, filtered and paginated like AWS.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import threading
import uuid
from typing import Any
from urllib.parse import unquote

from .context import utcnow

EVENT_VERSION = "1.09"
RESOURCE_TYPE = "AWS::StepFunctions::StateMachine"
LOOKUP_KEYS = ("EventId", "EventName", "ReadOnly", "Username", "ResourceType", "ResourceName", "EventSource",
               "AccessKeyId")
MAX_RESULTS = 50

_lock = threading.Lock()
EVENTS: list[dict[str, Any]] = []  # oldest first: {seq, time (epoch s), account, region, username, record}
_seq = 0


class LookupEventsError(Exception):
    """A LookupEvents request AWS would reject: `code` is the AWS error name."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _iso(dt: datetime.datetime) -> str:
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _java_date(dt: datetime.datetime) -> str:
    """The date text Step Functions' CloudTrail records carry (`Jan 2, 2025, 3:04:05 PM`, UTC)."""
    dt = dt.astimezone(datetime.timezone.utc)
    return dt.strftime("%b %-d, %Y, %-I:%M:%S %p")


# --------------------------------------------------------------------------- recording

def identity(access_key: str, account: str, region: str, signing_key: str | None = None) -> dict[str, Any]:
    """The CloudTrail `userIdentity` of a request whose access key moto reads as `access_key`:
    moto's STS `GetCallerIdentity` answer (an IAM user's access key → that user, an assumed role's →
    the role session, anything else → moto's default `arn:aws:sts::<account>:user/moto`).
    `accessKeyId` is the key the request was signed with (`signing_key`, default `access_key`)."""
    from moto.sts.models import sts_backends
    from moto.utilities.utils import get_partition

    user_id, arn, account_id = sts_backends[account][get_partition(region)].get_caller_identity(access_key, region)
    access_key = signing_key or access_key
    if ":assumed-role/" in arn:
        role, session = arn.split(":assumed-role/", 1)[1].split("/", 1)
        return {"type": "AssumedRole", "principalId": user_id, "arn": arn, "accountId": account_id,
                "accessKeyId": access_key,
                "sessionContext": {"sessionIssuer": {
                    "type": "Role", "principalId": user_id.split(":")[0],
                    "arn": f"arn:{get_partition(region)}:iam::{account_id}:role/{role}",
                    "accountId": account_id, "userName": role}},
                "_username": session}
    name = arn.rsplit("/", 1)[-1]
    return {"type": "IAMUser", "principalId": user_id, "arn": arn, "accountId": account_id,
            "accessKeyId": access_key, "userName": name, "_username": name}


def record_start_execution(request: dict[str, Any], response: dict[str, Any], access_key: str, account: str,
                           region: str, user_agent: str = "", signing_key: str | None = None) -> dict[str, Any]:
    """Record one successful StartExecution call; returns the CloudTrail record."""
    params: dict[str, Any] = {"stateMachineArn": request.get("stateMachineArn")}
    if request.get("name"):
        params["name"] = request["name"]  # `input` is left out, as AWS does (sensitive)
    start = response.get("startDate")
    elements = {"executionArn": response.get("executionArn"),
                "startDate": _java_date(start) if isinstance(start, datetime.datetime) else start}
    return record_call("states.amazonaws.com", "StartExecution", params, elements,
                       [(RESOURCE_TYPE, params["stateMachineArn"])], access_key, account, region,
                       user_agent, signing_key)


def record_run_task(request: dict[str, Any], tasks: list[dict[str, Any]], access_key: str, account: str,
                    region: str, user_agent: str = "", signing_key: str | None = None) -> dict[str, Any]:
    """Record one successful ECS RunTask call (issue 15: the audit sweep reads them): the request's
    cluster, taskDefinition, count, startedBy, launchType, group and overrides, as AWS records them;
    `responseElements.tasks[]` with `taskArn`, `taskDefinitionArn`, `clusterArn`, `startedBy`."""
    params = {k: v for k, v in request.items() if v is not None}
    elements = {"tasks": [{k: t.get(k) for k in ("taskArn", "taskDefinitionArn", "clusterArn", "startedBy",
                                                 "group", "lastStatus") if t.get(k) is not None}
                          for t in tasks], "failures": []}
    resources = [("AWS::ECS::TaskDefinition", t.get("taskDefinitionArn", "")) for t in tasks[:1]]
    return record_call("ecs.amazonaws.com", "RunTask", params, elements, resources, access_key, account,
                       region, user_agent, signing_key)


def record_execute_command(request: dict[str, Any], elements: dict[str, Any], task_definition_arn: str,
                           access_key: str, account: str, region: str, user_agent: str = "",
                           signing_key: str | None = None) -> dict[str, Any]:
    """Record one successful ECS ExecuteCommand call (issue 15: the sweep alerts one into a job task):
    `requestParameters` `{cluster, container, command, interactive, task}`, `responseElements` the answer
    without the session's token and stream URL, as AWS records it."""
    return record_call("ecs.amazonaws.com", "ExecuteCommand", request, elements,
                       [("AWS::ECS::TaskDefinition", task_definition_arn)], access_key, account, region,
                       user_agent, signing_key)


def record_update_schedule(request: dict[str, Any], schedule_arn: str, access_key: str, account: str,
                           region: str, user_agent: str = "", signing_key: str | None = None) -> dict[str, Any]:
    """Record one successful EventBridge Scheduler UpdateSchedule call (issue 20: `jobs pause` /
    `resume` leave this evidence, with the caller's real identity): `requestParameters` `{name,
    groupName, state, description, scheduleExpression, scheduleExpressionTimezone}` as sent (the
    target left out), `responseElements` `{scheduleArn}`."""
    params = {k: v for k, v in request.items() if v is not None}
    return record_call("scheduler.amazonaws.com", "UpdateSchedule", params, {"scheduleArn": schedule_arn},
                       [("AWS::Scheduler::Schedule", schedule_arn)], access_key, account, region,
                       user_agent, signing_key)


def record_signing_change(source: str, name: str, params: dict[str, Any], resource: tuple[str, str],
                          access_key: str, account: str, region: str, user_agent: str = "",
                          signing_key: str | None = None) -> dict[str, Any]:
    """Record one successful change to what may sign (issue 15: the audit sweep reads them): KMS
    `PutKeyPolicy` (`requestParameters` `{keyId, policyName}`, the policy left out), Lambda
    `UpdateFunctionCode20150331v2` / `UpdateFunctionConfiguration20150331v2` / `CreateFunction20150331`
    (`{functionName, role?}`) and IAM `UpdateAssumeRolePolicy` / `PutRolePolicy` / `AttachRolePolicy`
    (`{roleName, policyName | policyArn}`), as AWS names them."""
    return record_call(source, name, params, None, [resource], access_key, account, region, user_agent,
                       signing_key)


# The access key the replica's stand-in for CloudFormation (provision.py) signs with: its calls
# are recorded as AWS records a call CloudFormation made for a stack (`invokedBy` and
# `sourceIPAddress` `cloudformation.amazonaws.com`).
CLOUDFORMATION_ACCESS_KEY = "REPLICACLOUDFORMATION"
CLOUDFORMATION = "cloudformation.amazonaws.com"


def record_call(source: str, name: str, params: dict[str, Any], elements: dict[str, Any] | None,
                resources: list[tuple[str, str]], access_key: str, account: str, region: str,
                user_agent: str = "", signing_key: str | None = None) -> dict[str, Any]:
    """Record one successful management API call; returns the CloudTrail record."""
    global _seq
    who = identity(access_key, account, region, signing_key)
    username = who.pop("_username")
    by_cloudformation = (signing_key or access_key) == CLOUDFORMATION_ACCESS_KEY
    if by_cloudformation:
        who["invokedBy"] = CLOUDFORMATION
    with _lock:
        now = utcnow().replace(microsecond=0)
        _seq += 1
        record = {
            "eventVersion": EVENT_VERSION, "userIdentity": who, "eventTime": _iso(now),
            "eventSource": source, "eventName": name, "awsRegion": region,
            "sourceIPAddress": CLOUDFORMATION if by_cloudformation else "127.0.0.1",
            "userAgent": user_agent, "requestParameters": params,
            "responseElements": elements, "requestID": str(uuid.uuid4()), "eventID": str(uuid.uuid4()),
            "readOnly": False, "eventType": "AwsApiCall", "managementEvent": True,
            "recipientAccountId": account, "eventCategory": "Management",
        }
        EVENTS.append({"seq": _seq, "time": int(now.timestamp()), "account": account, "region": region,
                       "username": username, "record": record, "resources": resources})
    return record


# --------------------------------------------------------------------------- LookupEvents

def _epoch(value: Any, what: str) -> float | None:
    """StartTime/EndTime: epoch seconds (what the SDKs send) or an ISO 8601 string."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        dt = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise LookupEventsError("InvalidTimeRangeException", f"{what} is not a valid timestamp: {value}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp()


def _attribute_value(entry: dict[str, Any], key: str) -> list[str]:
    rec = entry["record"]
    return {
        "EventId": [rec["eventID"]], "EventName": [rec["eventName"]],
        "ReadOnly": [str(rec["readOnly"]).lower()], "Username": [entry["username"]],
        "ResourceType": [t for t, _ in entry["resources"]], "ResourceName": [n for _, n in entry["resources"]],
        "EventSource": [rec["eventSource"]], "AccessKeyId": [rec["userIdentity"].get("accessKeyId", "")],
    }[key]


def _shape(entry: dict[str, Any]) -> dict[str, Any]:
    rec = entry["record"]
    return {
        "EventId": rec["eventID"], "EventName": rec["eventName"], "ReadOnly": str(rec["readOnly"]).lower(),
        "AccessKeyId": rec["userIdentity"].get("accessKeyId", ""), "EventTime": entry["time"],
        "EventSource": rec["eventSource"], "Username": entry["username"],
        "Resources": [{"ResourceType": t, "ResourceName": n} for t, n in entry["resources"]],
        "CloudTrailEvent": json.dumps(rec, separators=(",", ":")),
    }


def lookup_events(request: dict[str, Any], account: str, region: str) -> dict[str, Any]:
    """LookupEvents: one lookup attribute at most, StartTime/EndTime inclusive, newest first,
    MaxResults 1..50 (default 50), NextToken bound to the other parameters."""
    attrs = request.get("LookupAttributes") or []
    if len(attrs) > 1:
        raise LookupEventsError("InvalidLookupAttributesException", "You can specify only one lookup attribute.")
    attr = None
    if attrs:
        key, value = attrs[0].get("AttributeKey"), attrs[0].get("AttributeValue")
        if key not in LOOKUP_KEYS:
            raise LookupEventsError("InvalidLookupAttributesException", f"Invalid attribute key: {key}")
        if not value:
            raise LookupEventsError("InvalidLookupAttributesException", "AttributeValue must not be empty.")
        attr = (key, str(value))
    start = _epoch(request.get("StartTime"), "StartTime")
    end = _epoch(request.get("EndTime"), "EndTime")
    if start is not None and end is not None and start > end:
        raise LookupEventsError("InvalidTimeRangeException", "Start time must be before end time.")
    category = request.get("EventCategory")
    if category not in (None, "insight"):
        raise LookupEventsError("InvalidEventCategoryException", f"Invalid event category: {category}")
    limit = request.get("MaxResults")
    limit = MAX_RESULTS if limit is None else int(limit)
    if not 1 <= limit <= MAX_RESULTS:
        raise LookupEventsError("InvalidMaxResultsException", f"MaxResults must be between 1 and {MAX_RESULTS}.")
    fingerprint = hashlib.sha256(json.dumps([attr, start, end, category], default=str).encode()).hexdigest()[:16]
    before = None
    token = request.get("NextToken")
    if token:
        try:
            t = json.loads(base64.urlsafe_b64decode(token.encode()))
            before, bound = int(t["before"]), t["params"]
        except (ValueError, KeyError, TypeError):
            raise LookupEventsError("InvalidNextTokenException", "Invalid NextToken.") from None
        if bound != fingerprint:
            raise LookupEventsError("InvalidNextTokenException",
                               "The NextToken was used in a request with different parameters.")
    if category == "insight":
        return {"Events": []}  # only management events are recorded
    with _lock:
        entries = [e for e in reversed(EVENTS) if e["account"] == account and e["region"] == region]
    selected = []
    for e in entries:
        if before is not None and e["seq"] >= before:
            continue
        if (start is not None and e["time"] < start) or (end is not None and e["time"] > end):
            continue
        if attr is not None and attr[1] not in _attribute_value(e, attr[0]):
            continue
        selected.append(e)
        if len(selected) > limit:
            break
    out: dict[str, Any] = {"Events": [_shape(e) for e in selected[:limit]]}
    if len(selected) > limit:
        out["NextToken"] = base64.urlsafe_b64encode(json.dumps(
            {"before": selected[limit - 1]["seq"], "params": fingerprint}).encode()).decode()
    return out


# --------------------------------------------------------------------------- moto hooks

def signing_key_of(headers: Any) -> str | None:
    """The access key a request was SigV4-signed with (its `Authorization` credential)."""
    m = re.search(r"Credential=([^/,\s]+)/", headers.get("Authorization", ""))
    return m.group(1) if m else None


def cloudtrail_replacements(original: dict[str, Any]) -> dict[str, Any]:
    """Record StartExecution in moto's Step Functions handler and UpdateSchedule in its Scheduler handler;
    serve LookupEvents in its CloudTrail handler (registered in patches.py)."""
    from moto.core.exceptions import JsonRESTError

    class _Invalid(JsonRESTError):
        code = 400

    orig_start = original["start_execution"]

    def start_execution(self):  # type: ignore[no-untyped-def]
        result = orig_start(self)  # raises on failure: nothing is recorded
        response = getattr(result, "result", None)
        if isinstance(response, dict):
            request = {k: self._get_param(k) for k in ("stateMachineArn", "name")}
            record_start_execution(request, response, self.get_access_key(), self.current_account, self.region,
                                   self.headers.get("User-Agent", ""), signing_key_of(self.headers))
        return result

    def handle_lookup_events(self):  # type: ignore[no-untyped-def]
        try:
            body = json.loads(self.body or "{}")
        except ValueError:
            body = {}
        try:
            return json.dumps(lookup_events(body, self.current_account, self.region))
        except LookupEventsError as exc:
            raise _Invalid(exc.code, exc.message) from None

    orig_update_schedule = original["update_schedule"]

    def update_schedule(self):  # type: ignore[no-untyped-def]
        result = orig_update_schedule(self)  # raises on failure: nothing is recorded
        try:
            arn = json.loads(result)["ScheduleArn"]
        except (TypeError, ValueError, KeyError):
            return result
        request = {"name": self.uri.split("?")[0].split("/")[-1]}
        for k in ("GroupName", "State", "Description", "ScheduleExpression", "ScheduleExpressionTimezone"):
            request[k[0].lower() + k[1:]] = self._get_param(k)
        record_update_schedule(request, arn, self.get_access_key(), self.current_account, self.region,
                               self.headers.get("User-Agent", ""), signing_key_of(self.headers))
        return result

    def lambda_change(event_name: str, orig, created: bool = False):  # type: ignore[no-untyped-def]
        """UpdateFunctionCode / UpdateFunctionConfiguration (`{functionName}`, plus `role` when
        the call sets one) and CreateFunction (`{functionName, role}`)."""
        def change(self):  # type: ignore[no-untyped-def]
            result = orig(self)  # raises on failure: nothing is recorded
            status = result[0] if isinstance(result, tuple) else 200
            if status == (201 if created else 200):
                body = self.json_body or {}
                name = body.get("FunctionName", "").rsplit(":", 1)[-1] if created \
                    else unquote(self.path.rsplit("/", 2)[-2])
                arn = name if name.startswith("arn:") else \
                    f"arn:aws:lambda:{self.region}:{self.current_account}:function:{name}"
                params = {"functionName": name}
                if body.get("Role"):
                    params["role"] = body["Role"]
                record_signing_change("lambda.amazonaws.com", event_name, params,
                                      ("AWS::Lambda::Function", arn), self.get_access_key(),
                                      self.current_account, self.region, self.headers.get("User-Agent", ""),
                                      signing_key_of(self.headers))
            return result
        return change

    def iam_change(event_name: str, orig, *extra: str):  # type: ignore[no-untyped-def]
        """UpdateAssumeRolePolicy / PutRolePolicy / AttachRolePolicy: `{roleName}` plus the
        policy's name or ARN (documents left out), recorded in us-east-1 as AWS records IAM's
        events whatever region the caller used."""
        def change(self):  # type: ignore[no-untyped-def]
            result = orig(self)  # raises on failure: nothing is recorded
            role = self._get_param("RoleName")
            params = {"roleName": role}
            for k in extra:
                params[k[0].lower() + k[1:]] = self._get_param(k)
            record_signing_change("iam.amazonaws.com", event_name, params,
                                  ("AWS::IAM::Role", f"arn:aws:iam::{self.current_account}:role/{role}"),
                                  self.get_access_key(), self.current_account, "us-east-1",
                                  self.headers.get("User-Agent", ""), signing_key_of(self.headers))
            return result
        return change

    orig_put_key_policy = original["put_key_policy"]

    def put_key_policy(self):  # type: ignore[no-untyped-def]
        result = orig_put_key_policy(self)  # raises on failure: nothing is recorded
        key_id = self._get_param("KeyId")
        arn = key_id if str(key_id).startswith("arn:") else \
            f"arn:aws:kms:{self.region}:{self.current_account}:key/{key_id}"
        record_signing_change("kms.amazonaws.com", "PutKeyPolicy",
                              {"keyId": key_id, "policyName": self._get_param("PolicyName")},
                              ("AWS::KMS::Key", arn), self.get_access_key(), self.current_account, self.region,
                              self.headers.get("User-Agent", ""), signing_key_of(self.headers))
        return result

    return {"start_execution": start_execution, "lookup_events": handle_lookup_events,
            "update_schedule": update_schedule, "put_key_policy": put_key_policy,
            "update_function_code": lambda_change("UpdateFunctionCode20150331v2", original["update_function_code"]),
            "update_function_configuration": lambda_change("UpdateFunctionConfiguration20150331v2",
                                                           original["update_function_configuration"]),
            "create_function": lambda_change("CreateFunction20150331", original["create_function"], created=True),
            "update_assume_role_policy": iam_change("UpdateAssumeRolePolicy", original["update_assume_role_policy"]),
            "put_role_policy": iam_change("PutRolePolicy", original["put_role_policy"], "PolicyName"),
            "attach_role_policy": iam_change("AttachRolePolicy", original["attach_role_policy"], "PolicyArn")}
