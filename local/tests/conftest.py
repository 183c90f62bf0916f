"""Fixtures for the replica self-tests.

A session stack is started with `replica.py up --name pytest-<pid>` (template: $BATCHLESS_REPLICA_TEMPLATE,
else infra/template.yaml when it exists, else tests/fixtures/template.yaml) and torn down at the end,
or an already running stack named by $BATCHLESS_STACK_NAME is reused (and left running).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import boto3
import pytest
from botocore.config import Config

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
REPLICA = os.path.join(REPO, "local", "replica.py")
FIXTURE_TEMPLATE = os.path.join(HERE, "fixtures", "template.yaml")
sys.path.insert(0, os.path.join(REPO, "local"))


def poll(fn: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, what: str = "condition") -> Any:
    """Call fn until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def _up(name: str, *extra: str) -> dict[str, Any]:
    res = subprocess.run([sys.executable, REPLICA, "up", "--name", name, *extra], cwd=REPO,
                         capture_output=True, text=True, timeout=240)
    if res.returncode != 0:
        raise RuntimeError(f"replica up {name} failed:\n{res.stdout}\n{res.stderr}")
    with open(os.path.join(REPO, ".local", name, "stack.json")) as fh:
        return json.load(fh)


def _down(name: str) -> None:
    subprocess.run([sys.executable, REPLICA, "down", "--name", name], cwd=REPO, capture_output=True, timeout=120)


class Stack:
    def __init__(self, info: dict[str, Any]):
        self.info = info
        self.endpoint = info["endpoint"]
        self.replica = info["replica_url"]
        self.slack = info["slack_url"]

    def client(self, service: str, retries: int = 1) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(retries={"max_attempts": retries, "mode": "standard"},
                                          read_timeout=900))

    def new_user(self, prefix: str) -> tuple[str, dict[str, Any]]:
        """A new IAM user of the replica and its access key."""
        user = f"{prefix}-{uuid.uuid4().hex[:8]}"
        iam = self.client("iam")
        iam.create_user(UserName=user)
        return user, iam.create_access_key(UserName=user)["AccessKey"]

    def client_as(self, service: str, key: dict[str, Any]) -> Any:
        """A client signed with `key` (moto resolves the caller from the access key)."""
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])


def template_for_session() -> str:
    t = os.environ.get("BATCHLESS_REPLICA_TEMPLATE")
    if t:
        return t
    infra = os.path.join(REPO, "infra", "template.yaml")
    return infra if os.path.exists(infra) else FIXTURE_TEMPLATE


@pytest.fixture(scope="session")
def stack() -> Any:
    reuse = os.environ.get("BATCHLESS_STACK_NAME")
    if reuse:
        with open(os.path.join(REPO, ".local", reuse, "stack.json")) as fh:
            yield Stack(json.load(fh))
        return
    name = f"pytest-{os.getpid()}"
    try:
        info = _up(name, "--template", template_for_session())
        yield Stack(info)
    finally:
        _down(name)


# --------------------------------------------------------------------------- a stub Lambda emulator

class StubEmulator:
    """Speaks cargo lambda watch's invoke protocol (errors: HTTP 500 + {"errorType","errorMessage"})."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        stub = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                binary = self.path.split("/functions/")[1].split("/")[0]
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                event = json.loads(body or b"{}")
                stub.calls.append((binary, event))
                status, out = stub.handle(binary, event)
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, binary: str, event: Any) -> tuple[int, Any]:
        if binary == "notify":
            unknown = sorted(set(event) - {"channel", "text", "thread_ts"}) if isinstance(event, dict) else ["?"]
            if unknown:
                return 500, {"errorType": "InvalidInput", "errorMessage": f"unknown field `{unknown[0]}`"}
            return 200, {"ok": True}
        if binary == "slack-events":  # a function URL handler: echo the request
            return 200, {"statusCode": 201, "headers": {"content-type": "application/json", "x-echo": "1"},
                         "body": json.dumps({"method": event["requestContext"]["http"]["method"],
                                             "rawPath": event["rawPath"], "rawQueryString": event["rawQueryString"],
                                             "body": event.get("body"), "isBase64Encoded": event["isBase64Encoded"],
                                             "header": event["headers"].get("x-test")})}
        return 500, {"errorType": "UnknownFunction", "errorMessage": binary}

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="session")
def stub_stack() -> Any:
    """A second stack (fixture template, time scale 60) whose Lambda calls go to a Python stub emulator."""
    stub = StubEmulator()
    name = f"pytest-{os.getpid()}-stub"
    try:
        info = _up(name, "--template", FIXTURE_TEMPLATE, "--time-scale", "60", "--lambda-port", str(stub.port))
        s = Stack(info)
        s.stub = stub  # type: ignore[attr-defined]
        s.name = name  # type: ignore[attr-defined]
        yield s
    finally:
        _down(name)
        stub.close()
