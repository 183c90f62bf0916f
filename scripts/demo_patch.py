"""make demo, part 4: a data patch approved in Slack. Waits for the approval request the
workflow posted, shows it, then sends bob's click (the requester: refused) and alice's click
(an approver: approved) as Slack interactivity requests signed by the fake Slack to the real
`approval` function URL. Writes the execution ARN (for `batchless follow`) to the file named
by the third argument."""

import json
import sys
import time
import urllib.parse

import boto3
import requests

stack, patch_id = json.load(open(sys.argv[1])), sys.argv[2]
slack = stack["slack_url"]
kw = dict(endpoint_url=stack["endpoint"], region_name=stack["region"],
          aws_access_key_id="testing", aws_secret_access_key="testing")
table = boto3.resource("dynamodb", **kw).Table(stack["resources"]["PatchesTable"]["physical_id"])

deadline = time.time() + 60
while not (rec := table.get_item(Key={"patchId": patch_id}, ConsistentRead=True).get("Item", {})).get("approvalMessage"):
    if time.time() > deadline:
        sys.exit("timed out waiting for the approval request")
    time.sleep(0.5)
ts = rec["approvalMessage"]["ts"]
posted = requests.get(f"{slack}/_fake/messages", params={"channel": "C0PATCHES"}, timeout=10).json()["messages"]
request = next(m for m in posted if m.get("ts") == ts)
for block in request.get("blocks", []):
    for text in [block.get("text", {}).get("text")] + [f.get("text") for f in block.get("fields", [])]:
        if text:
            print("  | " + text.replace("\n", "\n  | "))


def click(user, n):
    # A real click's own ids: trigger_id (the approval function's replay key) and action_ts.
    action_ts = f"{time.time():.6f}{n}"
    payload = {"type": "block_actions", "user": {"id": user}, "trigger_id": f"t{action_ts}",
               "actions": [{"action_id": "patch_approve", "value": patch_id, "type": "button",
                            "action_ts": action_ts}]}
    spec = {"url": stack["function_urls"]["ApprovalFunction"],
            "body": "payload=" + urllib.parse.quote(json.dumps(payload)),
            "content_type": "application/x-www-form-urlencoded"}
    resp = requests.post(f"{slack}/_fake/send", json=spec, timeout=30).json()
    print(f"  click by {user}: HTTP {resp['status']}: {json.loads(resp['body']).get('text')}")


click("U0LOCAL01", 1)  # the requester (the replica's default identity) cannot approve
click("U0ALICE01", 2)
with open(sys.argv[3], "w") as out:
    out.write(rec["request"]["executionArn"])
