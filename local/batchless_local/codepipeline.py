"""CodePipeline job results, which moto does not serve: `PutJobSuccessResult` and
`PutJobFailureResult` are recorded per job id (GET /_replica/codepipeline/jobs), and a job
that already has a final result rejects another one with `InvalidJobStateException`, as AWS
does. A success with a `continuationToken` is not final (the action stays in progress)."""

from __future__ import annotations

import json
import threading
from typing import Any

from .context import utcnow

_lock = threading.Lock()
JOBS: dict[str, list[dict[str, Any]]] = {}

TARGET_PREFIX = "CodePipeline_20150709."


def _final(result: dict[str, Any]) -> bool:
    return result["kind"] == "failure" or not result["request"].get("continuationToken")


def handle(operation: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = json.loads(body or b"{}")
    job_id = request.get("jobId")
    if not job_id:
        return 400, {"__type": "ValidationException", "message": "jobId is required"}
    kind = {"PutJobSuccessResult": "success", "PutJobFailureResult": "failure"}[operation]
    with _lock:
        results = JOBS.setdefault(job_id, [])
        if results and _final(results[-1]):
            return 400, {"__type": "InvalidJobStateException",
                         "message": f"job {job_id} already has a final result ({results[-1]['kind']})"}
        results.append({"kind": kind, "request": request, "time": utcnow().isoformat()})
    return 200, {}


def listing() -> dict[str, list[dict[str, Any]]]:
    with _lock:
        return json.loads(json.dumps(JOBS))


def wsgi_intercept(environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes] | None:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if not target.startswith(TARGET_PREFIX):
        return None
    operation = target[len(TARGET_PREFIX):]
    if operation not in ("PutJobSuccessResult", "PutJobFailureResult"):
        return None
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    status, payload = handle(operation, body)
    data = json.dumps(payload).encode()
    return status, [("Content-Type", "application/x-amz-json-1.1")], data
