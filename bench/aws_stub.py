"""An AWS endpoint stub for the start-up benchmark (issue 21): one loopback HTTP server, set as
the function's `AWS_ENDPOINT_URL` (and `SLACK_API_BASE_URL` = `<url>/api`), that answers every
call a batchless function makes at once with a canned, valid response, so that a function's
start-up figure is its own and not the replica's (moto answers in 5-30 ms per call on these two
cores).

The service is read from the SigV4 credential scope of the request's `Authorization` header
(`Credential=KEY/DATE/REGION/<service>/aws4_request`), the operation from `X-Amz-Target`
(JSON protocols), the S3 REST method + query, or the query protocol's `Action=` (STS).
Answers are "nothing there / done": GetItem finds no item, writes succeed, StartExecution /
StartBuild / RunTask start something, BatchGetBuilds / DescribeTasks report the id as not found,
GetLogEvents is at the end of its stream, a secret is the Slack secret's JSON. What each answer
leads the function to do is what the benchmark reports as its outcome, with the calls made.

An operation the stub does not know gets a 400 `UnknownOperationException`, and is recorded as
unknown, so a function that starts calling something new shows up in the table rather than
silently measuring an error path.

Standard library only. `python bench/aws_stub.py [--port N]` serves it on its own (prints the URL);
`Stub()` serves it from a thread of the caller (bench/startup.py).
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

REGION = "us-east-1"
ACCOUNT = "123456789012"
SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


def _now() -> float:
    return round(time.time(), 3)


def _arn(service: str, resource: str) -> str:
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}"


# ---------------------------------------------------------------- JSON protocols (X-Amz-Target)
def _dynamodb(op: str, req: dict) -> dict | None:
    table = req.get("TableName", "t")
    return {
        "GetItem": {},  # no such item
        "PutItem": {},
        "UpdateItem": {},
        "DeleteItem": {},
        "Query": {"Items": [], "Count": 0, "ScannedCount": 0},
        "Scan": {"Items": [], "Count": 0, "ScannedCount": 0},
        "TransactWriteItems": {},
        "TransactGetItems": {"Responses": []},
        "BatchGetItem": {"Responses": {}, "UnprocessedKeys": {}},
        "BatchWriteItem": {"UnprocessedItems": {}},
        "DescribeTable": {"Table": {"TableName": table, "TableStatus": "ACTIVE"}},
    }.get(op)


def _sfn(op: str, req: dict) -> dict | None:
    if op == "StartExecution":
        sm = req.get("stateMachineArn", _arn("states", "stateMachine:sm"))
        name = req.get("name") or str(uuid.uuid4())
        return {"executionArn": sm.replace(":stateMachine:", ":execution:") + ":" + name,
                "startDate": _now()}
    if op == "DescribeExecution":
        ex = req.get("executionArn", _arn("states", "execution:sm:x"))
        sm = ex.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0]
        return {"executionArn": ex, "stateMachineArn": sm, "name": ex.rsplit(":", 1)[-1],
                "status": "RUNNING", "startDate": _now(), "input": "{}"}
    return {"SendTaskSuccess": {}, "SendTaskFailure": {}, "SendTaskHeartbeat": {},
            "StopExecution": {"stopDate": _now()}}.get(op)


def _codebuild(op: str, req: dict) -> dict | None:
    if op == "StartBuild":
        project = req.get("projectName", "p")
        bid = f"{project}:{uuid.uuid4()}"
        return {"build": {"id": bid, "arn": _arn("codebuild", f"build/{bid}"), "projectName": project,
                          "buildStatus": "IN_PROGRESS", "currentPhase": "QUEUED", "startTime": _now(),
                          "sourceVersion": req.get("sourceVersion", "main"), "buildNumber": 1}}
    if op == "BatchGetBuilds":
        return {"builds": [], "buildsNotFound": req.get("ids", [])}
    if op == "StopBuild":
        bid = req.get("id", "p:x")
        return {"build": {"id": bid, "arn": _arn("codebuild", f"build/{bid}"), "buildStatus": "STOPPED",
                          "projectName": bid.split(":")[0]}}
    if op == "ListBuildsForProject":
        return {"ids": []}
    return None


def _ecs(op: str, req: dict) -> dict | None:
    cluster = req.get("cluster", "c").rsplit("/", 1)[-1]
    if op == "RunTask":
        tid = uuid.uuid4().hex
        return {"tasks": [{"taskArn": _arn("ecs", f"task/{cluster}/{tid}"),
                           "clusterArn": _arn("ecs", f"cluster/{cluster}"),
                           "taskDefinitionArn": _arn("ecs", f"task-definition/{req.get('taskDefinition', 'td')}:1"),
                           "lastStatus": "PROVISIONING", "desiredStatus": "RUNNING", "createdAt": _now()}],
                "failures": []}
    if op == "DescribeTasks":
        return {"tasks": [], "failures": [{"arn": t, "reason": "MISSING"} for t in req.get("tasks", [])]}
    if op == "StopTask":
        return {"task": {"taskArn": req.get("task", ""), "lastStatus": "STOPPED", "desiredStatus": "STOPPED"}}
    return None


def _logs(op: str, req: dict) -> dict | None:
    if op == "GetLogEvents":
        # the end of the stream: the token given back is the one passed in
        token = req.get("nextToken") or "f/00000000000000000000000000000000000000000000000000000000"
        return {"events": [], "nextForwardToken": token, "nextBackwardToken": "b/0"}
    return {"FilterLogEvents": {"events": [], "searchedLogStreams": []},
            "PutLogEvents": {"nextSequenceToken": "1"}, "CreateLogStream": {},
            "DescribeLogStreams": {"logStreams": []}}.get(op)


def _secretsmanager(op: str, req: dict, stub: "Stub") -> dict | None:
    if op != "GetSecretValue":
        return None
    sid = req.get("SecretId", "s")
    name = sid.split(":secret:", 1)[-1]
    return {"ARN": sid if sid.startswith("arn:") else _arn("secretsmanager", f"secret:{sid}-AbCdEf"),
            "Name": name, "VersionId": "00000000-0000-0000-0000-000000000001",
            "VersionStages": ["AWSCURRENT"], "CreatedDate": _now(),
            "SecretString": json.dumps(stub.secret)}


def _cloudtrail(op: str, req: dict) -> dict | None:
    return {"LookupEvents": {"Events": []}}.get(op)


def _codepipeline(op: str, req: dict) -> dict | None:
    # The pipeline execution the request names has the bridge's Lambda action in progress, with
    # the UserParameters of bench/events/pipeline-bridge.json (its commit, that pipeline).
    pipeline, execution = req.get("pipelineName", ""), (req.get("filter") or {}).get("pipelineExecutionId", "")
    params = {"commit": "0123456789abcdef0123456789abcdef01234567",
              "pipeline": {"name": pipeline, "executionId": execution}}
    action = {
        "pipelineExecutionId": execution, "actionExecutionId": "00000000-0000-4000-8000-00000000a0e1",
        "stageName": "Migrate", "actionName": "DbMigrate", "status": "InProgress",
        "startTime": _now(), "lastUpdateTime": _now(),
        "input": {"actionTypeId": {"category": "Invoke", "owner": "AWS", "provider": "Lambda", "version": "1"},
                  "configuration": {"FunctionName": "batchless-staging-pipeline-bridge",
                                    "UserParameters": json.dumps(params)},
                  "resolvedConfiguration": {"FunctionName": "batchless-staging-pipeline-bridge",
                                            "UserParameters": json.dumps(params)}},
    }
    return {"PutJobSuccessResult": {}, "PutJobFailureResult": {},
            "ListActionExecutions": {"actionExecutionDetails": [action]}}.get(op)


def _kms(op: str, req: dict) -> dict | None:
    key = _arn("kms", "key/00000000-0000-0000-0000-000000000000")
    algorithm = req.get("SigningAlgorithm", "ECDSA_SHA_256")
    return {
        # Every seal verifies (a submission's, a decision's): the function goes on its way.
        "Verify": {"KeyId": key, "SignatureValid": True, "SigningAlgorithm": algorithm},
        "Sign": {"KeyId": key, "Signature": "c2VhbGVkLWJ5LXN0dWI=", "SigningAlgorithm": algorithm},
    }.get(op)


JSON_SERVICES = {
    "dynamodb": _dynamodb, "states": _sfn, "codebuild": _codebuild, "ecs": _ecs, "logs": _logs,
    "cloudtrail": _cloudtrail, "codepipeline": _codepipeline, "kms": _kms,
}


# ---------------------------------------------------------------- S3 (REST, path style) and STS (query)
# The shim's reports of a build that applied two migrations, one of them flagged.
_ADD_INDEX = {"version": "20261120090000", "class": "AddIndexToOrdersCreatedAt",
              "file": "db/migrate/20261120090000_add_index_to_orders_created_at.rb"}
_ADD_COLUMN = {"version": "20261121100000", "class": "AddNoteToInvoices",
               "file": "db/migrate/20261121100000_add_note_to_invoices.rb"}
MIGRATION_REPORTS = {
    "preflight.json": {
        "version": 1, "approach": "scratch-database", "policy": "report",
        "pending": [
            {**_ADD_INDEX, "disablesDdlTransaction": False, "sha256": "9f2c" * 16, "scratchMs": 41,
             "statements": [{"sql": 'CREATE INDEX "index_orders_on_created_at" ON "orders" ("created_at")', "line": 3}]},
            {**_ADD_COLUMN, "disablesDdlTransaction": False, "sha256": "1a7e" * 16, "scratchMs": 12,
             "statements": [{"sql": 'ALTER TABLE "invoices" ADD "note" text', "line": 3}]},
        ],
        "findings": [
            {"rule": "index-without-concurrently", **_ADD_INDEX, "line": 3,
             "message": "CREATE INDEX without CONCURRENTLY locks writes to orders while it builds",
             "recipe": "disable_ddl_transaction! and add_index ..., algorithm: :concurrently",
             "sql": 'CREATE INDEX "index_orders_on_created_at" ON "orders" ("created_at")'},
        ],
        "error": None, "digest": "5b0e" * 16, "gate": "pass", "durationMs": 930,
    },
    "migrate.json": {
        "version": 1, "lockTimeout": "5s", "statementTimeout": "30min", "lockRetries": 3,
        "migrations": [
            {**_ADD_INDEX, "status": "up", "attempts": [], "durationMs": 18, "lockWaitMs": 0, "retries": 0},
            {**_ADD_COLUMN, "status": "up", "attempts": [], "durationMs": 4, "lockWaitMs": 0, "retries": 0},
        ],
        "failure": None,
    },
}


def _s3(method: str, path: str, query: dict[str, list[str]]) -> tuple[str, int, bytes, dict[str, str]]:
    """(operation, status, body, headers)"""
    xml = {"Content-Type": "application/xml"}
    etag = {"ETag": '"d41d8cd98f00b204e9800998ecf8427e"'}
    parts = path.lstrip("/").split("/", 1)
    bucket, key = parts[0], (parts[1] if len(parts) > 1 else "")
    ns = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
    if method == "PUT" and "partNumber" in query:
        return "UploadPart", 200, b"", etag
    if method == "PUT":
        return "PutObject", 200, b"", {**etag, "x-amz-version-id": "v1"}
    if method == "POST" and "uploads" in query:
        body = (f'<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult {ns}>'
                f"<Bucket>{bucket}</Bucket><Key>{key}</Key><UploadId>stub-upload</UploadId>"
                "</InitiateMultipartUploadResult>")
        return "CreateMultipartUpload", 200, body.encode(), xml
    if method == "POST" and "uploadId" in query:
        body = (f'<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUploadResult {ns}>'
                f"<Location>http://stub/{bucket}/{key}</Location><Bucket>{bucket}</Bucket><Key>{key}</Key>"
                '<ETag>"d41d8cd98f00b204e9800998ecf8427e-1"</ETag></CompleteMultipartUploadResult>')
        return "CompleteMultipartUpload", 200, body.encode(), {**xml, "x-amz-version-id": "v1"}
    if method == "DELETE" and "uploadId" in query:
        return "AbortMultipartUpload", 204, b"", {}
    if method == "DELETE":
        return "DeleteObject", 204, b"", {}
    if method == "GET" and query.get("list-type") == ["2"]:
        body = (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult {ns}><Name>{bucket}</Name>'
                f"<Prefix>{query.get('prefix', [''])[0]}</Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys>"
                "<IsTruncated>false</IsTruncated></ListBucketResult>")
        return "ListObjectsV2", 200, body.encode(), xml
    if method == "GET" and key.endswith(("/report/preflight.json", "/report/migrate.json")):
        # what the migration build's shim uploads (read-migration-report)
        name = key.rsplit("/", 1)[1]
        return "GetObject", 200, json.dumps(MIGRATION_REPORTS[name]).encode(), {**etag, "Content-Type": "application/json"}
    if method in ("GET", "HEAD") and key:
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code>'
                f"<Message>The specified key does not exist.</Message><Key>{key}</Key></Error>")
        op = "GetObject" if method == "GET" else "HeadObject"
        return op, 404, (body.encode() if method == "GET" else b""), xml
    return f"{method} (unknown S3 operation)", 400, b"", xml


def _sts(form: dict[str, list[str]]) -> tuple[str, int, bytes]:
    action = form.get("Action", [""])[0]
    if action == "GetCallerIdentity":
        body = ('<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                f"<GetCallerIdentityResult><Arn>arn:aws:iam::{ACCOUNT}:user/bench</Arn>"
                f"<UserId>AIDABENCH</UserId><Account>{ACCOUNT}</Account></GetCallerIdentityResult>"
                "<ResponseMetadata><RequestId>00000000-0000-0000-0000-000000000000</RequestId>"
                "</ResponseMetadata></GetCallerIdentityResponse>")
        return action, 200, body.encode()
    return action or "(unknown STS action)", 400, b""


# ---------------------------------------------------------------- Slack Web API
def _slack(method: str, req: dict) -> dict:
    channel = req.get("channel", "C0STUB")
    if method in ("chat.postMessage", "chat.update"):
        return {"ok": True, "channel": channel, "ts": req.get("ts") or f"{time.time():.6f}",
                "message": {"text": req.get("text", "")}}
    if method == "chat.getPermalink":
        return {"ok": True, "channel": channel,
                "permalink": f"https://example.slack.com/archives/{channel}/p{req.get('message_ts', '1').replace('.', '')}"}
    return {"ok": True}


class Stub:
    """The stub, served from a daemon thread on 127.0.0.1:<port> (0: any free port).

    `calls` lists every call answered since the last `reset()`: "service.Operation", with the
    stub's own time per call in `service_ms`.
    """

    def __init__(self, port: int = 0, signing_secret: str = "bench-signing-secret-0123456789abcdef") -> None:
        self.secret = {"bot_token": "xoxb-bench-stub", "signing_secret": signing_secret}
        self.calls: list[str] = []
        self.times: list[tuple[float, float]] = []  # (arrival, answered) perf_counter per call
        self.unknown: list[str] = []
        self.service_ms = 0.0
        self._lock = threading.Lock()
        self.httpd = self._server(port)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.calls, self.times, self.unknown, self.service_ms = [], [], [], 0.0

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _record(self, call: str, known: bool, t0: float) -> None:
        with self._lock:
            self.calls.append(call)
            self.times.append((t0, time.perf_counter()))
            if not known:
                self.unknown.append(call)
            self.service_ms += (time.perf_counter() - t0) * 1000.0

    def _server(self, port: int) -> ThreadingHTTPServer:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self) -> None:
                # arrival: the request line and headers were read just before this method ran
                t0 = time.perf_counter()
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                if url.path.startswith("/api/"):
                    method = url.path[len("/api/"):]
                    try:
                        req = json.loads(raw or b"{}")
                    except ValueError:
                        req = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                    self._reply(200, json.dumps(_slack(method, req)).encode(),
                                {"Content-Type": "application/json"})
                    stub._record(f"slack.{method}", True, t0)
                    return
                m = SCOPE.search(self.headers.get("Authorization", ""))
                service = m.group(2) if m else "?"
                target = self.headers.get("X-Amz-Target", "")
                if service == "s3":
                    op, status, body, headers = _s3(self.command, url.path, parse_qs(url.query, keep_blank_values=True))
                    self._reply(status, body, headers)
                    stub._record(f"s3.{op}", status < 400 or op in ("GetObject", "HeadObject"), t0)
                    return
                if service == "sts":
                    op, status, body = _sts(parse_qs(raw.decode()))
                    self._reply(status, body, {"Content-Type": "text/xml"})
                    stub._record(f"sts.{op}", status == 200, t0)
                    return
                op = target.rsplit(".", 1)[-1]
                req = json.loads(raw or b"{}") if raw else {}
                fn = JSON_SERVICES.get(service)
                if service == "secretsmanager":
                    out = _secretsmanager(op, req, stub)
                else:
                    out = fn(op, req) if fn else None
                ctype = "application/x-amz-json-1.0" if service in ("dynamodb", "states") \
                    else "application/x-amz-json-1.1"
                if out is None:
                    err = {"__type": "UnknownOperationException", "message": f"stub: {service} {target}"}
                    self._reply(400, json.dumps(err).encode(), {"Content-Type": ctype})
                    stub._record(f"{service}.{op or self.command}", False, t0)
                    return
                self._reply(200, json.dumps(out).encode(), {"Content-Type": ctype})
                stub._record(f"{service}.{op}", True, t0)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle  # noqa: N815

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a killed function's open connection

        return Server(("127.0.0.1", port), Handler)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    stub = Stub(args.port)
    print(stub.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stub.close()


if __name__ == "__main__":
    main()
