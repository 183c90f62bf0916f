"""make demo, part 3: an ECS Exec login to the bastion, a dangerous console command, and an
executive's approval in the Slack thread — all through the replica's real wire protocols:
CloudTrail's event via EventBridge PutEvents, the console hook's JSON line via CloudWatch Logs
(delivered to command-watch by the subscription filter), and a Slack Events API request signed
by the fake Slack and sent to the slack-events function URL."""

import json
import sys
import time
from datetime import datetime, timezone

import boto3
import requests

stack = json.load(open(sys.argv[1]))
endpoint, slack = stack["endpoint"], stack["slack_url"]
env = stack["environment"]
kw = dict(endpoint_url=endpoint, region_name=stack["region"],
          aws_access_key_id="testing", aws_secret_access_key="testing")
events, logs, sfn = (boto3.client(s, **kw) for s in ("events", "logs", "stepfunctions"))
cluster = stack["resources"]["BastionCluster"]["physical_id"]
channel = "C0BASTION"
session_id = f"bob-{int(time.time())}-0a1b2c3d4e5f"
task = "0123456789abcdef0123456789abcdef"
now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def poll(what, check, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    sys.exit(f"timed out waiting for {what}")


def thread_posts(ts):
    msgs = requests.get(f"{slack}/_fake/messages", params={"channel": channel}, timeout=10).json()["messages"]
    return [m for m in msgs if m.get("thread_ts") == ts or m.get("ts") == ts]


print(f"bob opens a rails console on the bastion (ECS Exec session {session_id})")
detail = {
    "eventVersion": "1.08",
    "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE",
                     "arn": "arn:aws:iam::123456789012:user/bob", "accountId": "123456789012"},
    "eventTime": now, "eventSource": "ecs.amazonaws.com", "eventName": "ExecuteCommand",
    "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.7",
    "userAgent": "aws-cli/2.15.0 Python/3.11 exec-env/ecs",
    "requestParameters": {"cluster": cluster, "container": "app", "command": "bin/rails console",
                          "interactive": True,
                          "task": f"arn:aws:ecs:us-east-1:123456789012:task/{cluster}/{task}"},
    "responseElements": {"clusterArn": f"arn:aws:ecs:us-east-1:123456789012:cluster/{cluster}",
                         "containerName": "app", "interactive": True,
                         "session": {"sessionId": session_id, "streamUrl": "wss://example", "tokenValue": "HIDDEN"},
                         "taskArn": f"arn:aws:ecs:us-east-1:123456789012:task/{cluster}/{task}"},
}
events.put_events(Entries=[{"Source": "aws.ecs", "DetailType": "AWS API Call via CloudTrail",
                            "Detail": json.dumps(detail)}])
login = poll("the login post", lambda: next(
    (m for m in requests.get(f"{slack}/_fake/messages", params={"channel": channel}, timeout=10).json()["messages"]
     if session_id in (m.get("text") or "") and not m.get("thread_ts")), None))
print(f"\n#{channel}  {login['text']}\n")

print("bob types a dangerous command; the console hook writes it to the container's log stream")
group, stream = f"/batchless/{env}/bastion/console", f"console/app/{task}"
logs.create_log_stream(logGroupName=group, logStreamName=stream)
line = json.dumps({"batchless": "console-command", "v": 1, "taskId": task,
                   "command": "Order.where(state: 'stale').delete_all", "time": now, "pid": 42},
                  separators=(",", ":"))  # as infra/bastion/console_hook.rb writes it
logs.put_log_events(logGroupName=group, logStreamName=stream,
                    logEvents=[{"timestamp": int(time.time() * 1000), "message": line}])
hit = poll("the dangerous-command post", lambda: next(
    (m for m in thread_posts(login["ts"]) if "delete_all" in (m.get("text") or "")), None))
print(f"\n  ↳ {hit['text']}\n")

print("carol (executive) replies in the thread: 承認します")
ts = f"{time.time():.6f}"
body = json.dumps({"token": "unused", "team_id": "T0REPLICA", "api_app_id": "A0BATCHLESS",
                   "type": "event_callback", "event_id": f"Ev{int(time.time())}", "event_time": int(time.time()),
                   "event": {"type": "message", "channel": channel, "user": "U0CAROL01", "text": "承認します",
                             "ts": ts, "thread_ts": login["ts"], "channel_type": "channel"}})
sent = requests.post(f"{slack}/_fake/send", timeout=30, json={
    "url": stack["function_urls"]["SlackEventsFunction"], "body": body, "content_type": "application/json"}).json()
print(f"  slack-events answered HTTP {sent['status']}")
arn = next(e["executionArn"] for e in sfn.list_executions(
    stateMachineArn=stack["state_machines"]["BastionSessionStateMachine"])["executions"]
    if session_id in e["name"])
end = poll("the watch to end", lambda: (lambda d: d if d["status"] != "RUNNING" else None)(
    sfn.describe_execution(executionArn=arn)))
print(f"  the watch ended {end['status']} (no alert will fire)\n")
for m in thread_posts(login["ts"])[1:]:
    print(f"  ↳ {m['text']}")
