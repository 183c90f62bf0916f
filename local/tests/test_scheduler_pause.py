"""What `batchless jobs pause` / `resume` need from the replica (issue 20): Scheduler GetSchedule /
UpdateSchedule round-trip every field (UpdateSchedule replaces the whole schedule), and every
successful UpdateSchedule is a CloudTrail record with the caller's identity (the pause's evidence)."""

from __future__ import annotations

import json
import uuid



def test_update_schedule_keeps_every_field_and_is_recorded_with_the_caller(stack):
    user, key = stack.new_user("pauser")
    name = f"selftest-pause-{uuid.uuid4().hex[:8]}"
    target = {"Arn": "arn:aws:states:us-east-1:123456789012:stateMachine:nowhere",
              "RoleArn": "arn:aws:iam::123456789012:role/scheduler", "Input": '{"job": "x"}',
              "RetryPolicy": {"MaximumEventAgeInSeconds": 1800, "MaximumRetryAttempts": 185},
              "DeadLetterConfig": {"Arn": "arn:aws:sqs:us-east-1:123456789012:dlq"}}
    sched = stack.client("scheduler")
    sched.create_schedule(Name=name, ScheduleExpression="cron(0 3 * * ? *)", ScheduleExpressionTimezone="Asia/Tokyo",
                          Description="x: the job", FlexibleTimeWindow={"Mode": "OFF"}, Target=target,
                          State="ENABLED")
    got = sched.get_schedule(Name=name)
    mine = stack.client_as("scheduler", key)
    mine.update_schedule(Name=name, GroupName=got["GroupName"], ScheduleExpression=got["ScheduleExpression"],
                         ScheduleExpressionTimezone=got["ScheduleExpressionTimezone"],
                         FlexibleTimeWindow=got["FlexibleTimeWindow"], Target=got["Target"],
                         Description="x: the job [paused by alice at 2026-12-01T19:00:00Z: why]", State="DISABLED")
    after = sched.get_schedule(Name=name)
    assert after["State"] == "DISABLED"
    assert after["Description"].endswith("[paused by alice at 2026-12-01T19:00:00Z: why]")
    assert after["ScheduleExpressionTimezone"] == "Asia/Tokyo"
    assert after["Target"]["Input"] == '{"job": "x"}'
    assert after["Target"]["RetryPolicy"]["MaximumEventAgeInSeconds"] == 1800
    assert after["Target"]["DeadLetterConfig"]["Arn"].endswith(":dlq")

    ct = stack.client("cloudtrail")
    events = ct.lookup_events(LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": after["Arn"]}])
    events = events["Events"]
    assert [e["EventName"] for e in events] == ["UpdateSchedule"]
    assert events[0]["Username"] == user
    assert events[0]["EventSource"] == "scheduler.amazonaws.com"
    record = json.loads(events[0]["CloudTrailEvent"])
    assert record["userIdentity"]["arn"] == f"arn:aws:iam::123456789012:user/{user}"
    assert record["requestParameters"]["name"] == name
    assert record["requestParameters"]["state"] == "DISABLED"
    assert "target" not in record["requestParameters"]
    assert record["responseElements"]["scheduleArn"] == after["Arn"]

    # A failed call (no such schedule) is not recorded.
    try:
        mine.update_schedule(Name=name + "-nope", ScheduleExpression="cron(0 3 * * ? *)",
                             FlexibleTimeWindow={"Mode": "OFF"}, Target=target, State="DISABLED")
    except Exception:  # noqa: BLE001
        pass
    named = ct.lookup_events(LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": user}])["Events"]
    assert len(named) == 1
