"""Process-wide state of one running replica (the `serve` process)."""

from __future__ import annotations

import datetime
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

from . import ACCOUNT, REGION


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.timezone.utc)


def iso(dt: datetime.datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_ms(dt: datetime.datetime | None) -> int | None:
    if dt is None:
        return None
    return int(dt.timestamp() * 1000)


class Context:
    def __init__(self) -> None:
        self.name = "replica"
        self.state_dir = ""
        self.endpoint = ""
        self.moto_port = 0
        self.lambda_port = 0
        self.slack_port = 0
        self.time_scale = 1.0
        self.environment = "staging"
        self.region = REGION
        self.account = ACCOUNT
        self.app_repo = ""
        self.services: Any = None  # services.AppServices of this stack (PostgreSQL, Redis, worker)
        self.lock = threading.RLock()
        self.events: list[dict[str, Any]] = []
        self.events_by_id: dict[str, dict[str, Any]] = {}
        self.invocations: list[dict[str, Any]] = []
        self.functions_by_name: dict[str, dict[str, Any]] = {}  # physical name -> {logical_id, binary}
        self.function_urls: dict[str, str] = {}  # logical id -> physical name
        self.function_url_auth: dict[str, str] = {}  # logical id -> AuthType (NONE, AWS_IAM)
        self.children: dict[int, str] = {}  # pgid -> what
        self.pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="replica-async")
        self._clients: dict[str, Any] = {}
        self.stack: dict[str, Any] = {}

    # ------------------------------------------------------------------ helpers
    def scaled(self, seconds: float) -> float:
        if seconds is None:
            return seconds
        return float(seconds) / (self.time_scale or 1.0)

    def client(self, service: str, access_key: str = "testing") -> Any:
        """A boto3 client of the replica (`testing`, the default identity; another key only
        changes who CloudTrail records)."""
        with self.lock:
            c = self._clients.get((service, access_key))
            if c is None:
                c = boto3.client(
                    service, endpoint_url=self.endpoint, region_name=self.region,
                    aws_access_key_id=access_key, aws_secret_access_key="testing",
                    config=Config(retries={"max_attempts": 1}, read_timeout=900, connect_timeout=10,
                                  s3={"addressing_style": "path"}),
                )
                self._clients[(service, access_key)] = c
            return c

    def add_child(self, pgid: int, what: str) -> None:
        with self.lock:
            self.children[pgid] = what
            self._write_children()

    def remove_child(self, pgid: int) -> None:
        with self.lock:
            self.children.pop(pgid, None)
            self._write_children()

    def _write_children(self) -> None:
        if not self.state_dir:
            return
        path = os.path.join(self.state_dir, "children")
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            for pgid, what in self.children.items():
                fh.write(f"{pgid} {what}\n")
        os.replace(tmp, path)

    def kill_children(self, sig: int = signal.SIGTERM) -> None:
        with self.lock:
            pgids = list(self.children)
        for pgid in pgids:
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass


CTX = Context()
