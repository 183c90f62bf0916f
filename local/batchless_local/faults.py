"""Fault injection: make the next N calls of an operation fail, or drop emitted events."""

from __future__ import annotations

import io
import json
import re
import threading
from typing import Any

_lock = threading.Lock()
_faults: list[dict[str, Any]] = []

# X-Amz-Target prefixes → service names used in fault specs
_TARGET_SERVICES = {
    "CodeBuild_20161006": "codebuild", "AmazonEC2ContainerServiceV20141113": "ecs",
    "DynamoDB_20120810": "dynamodb", "AWSStepFunctions": "stepfunctions", "AWSEvents": "events",
    "Logs_20140328": "logs", "secretsmanager": "secretsmanager", "AmazonSSM": "ssm",
    "AWSScheduler": "scheduler",
}

_STATUS = {"AccessDenied": 403, "NoSuchBucket": 404, "SlowDown": 503, "InternalError": 500,
           "ThrottlingException": 400, "AccountLimitExceededException": 400,
           "ServiceUnavailableException": 503, "InternalServerError": 500, "InternalFailure": 500,
           "ServiceException": 500}


def add(spec: dict[str, Any]) -> dict[str, Any]:
    if "lambda_error" in spec:
        d = dict(spec["lambda_error"])
        for k in ("function", "error"):
            if not d.get(k):
                raise ValueError(f"lambda_error needs {k!r}")
        entry = {"kind": "lambda_error", "function": d["function"], "input": d.get("input") or {},
                 "error": d["error"], "message": d.get("message") or f"Injected {d['error']}",
                 "remaining": int(d.get("count", 1))}
    elif "drop_events" in spec:
        d = dict(spec["drop_events"])
        entry = {"kind": "drop_events", "source": d.get("source"), "detail_type": d.get("detail_type"),
                 "detail": d.get("detail") or {}, "remaining": int(d.get("count", 1))}
    else:
        for k in ("service", "operation", "error"):
            if not spec.get(k):
                raise ValueError(f"fault needs {k!r}")
        entry = {"kind": "error", "service": spec["service"].lower(), "operation": spec["operation"],
                 "error": spec["error"], "message": spec.get("message") or f"Injected {spec['error']}",
                 "status": int(spec.get("status") or _STATUS.get(spec["error"], 400)),
                 "match": spec.get("match"), "skip": int(spec.get("after", 0)),
                 "remaining": int(spec.get("count", 1))}
    with _lock:
        _faults.append(entry)
    return entry


def clear() -> None:
    with _lock:
        _faults.clear()


def listing() -> list[dict[str, Any]]:
    with _lock:
        return [dict(f) for f in _faults]


def _take(pred) -> dict[str, Any] | None:
    with _lock:
        for f in _faults:
            if f["remaining"] > 0 and pred(f):
                if f.get("skip", 0) > 0:
                    # `after`: let the first N matching calls through.
                    f["skip"] -= 1
                    return None
                f["remaining"] -= 1
                return dict(f)
    return None


def _subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _subset(v, actual[k]) for k, v in expected.items())
    return expected == actual


def should_drop(source: str, detail_type: str, detail: dict[str, Any]) -> bool:
    return _take(lambda f: f["kind"] == "drop_events"
                 and (not f["source"] or f["source"] == source)
                 and (not f["detail_type"] or f["detail_type"] == detail_type)
                 and _subset(f["detail"], detail)) is not None


def lambda_error(function_name: str, payload: str) -> str | None:
    """The error document a `lambda_error` fault makes this invocation answer (the function is
    not run), or None.  `function` is a substring of the function's name; `input` a subset of
    the invocation's JSON payload (e.g. {"woken": true}: only RecheckBuild's poll)."""
    if not _faults:
        return None
    try:
        parsed: Any = json.loads(payload)
    except ValueError:
        parsed = None
    f = _take(lambda f: f["kind"] == "lambda_error" and f["function"] in function_name
              and _subset(f["input"], parsed))
    if f is None:
        return None
    return json.dumps({"errorType": f["error"], "errorMessage": f["message"]})


def service_operation(environ: dict[str, Any]) -> tuple[str | None, str | None]:
    target = environ.get("HTTP_X_AMZ_TARGET")
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", auth)
    service = m.group(1) if m else None
    op = None
    if target and "." in target:
        prefix, op = target.rsplit(".", 1)
        service = _TARGET_SERVICES.get(prefix, service)
    else:
        qs = environ.get("QUERY_STRING", "")
        mm = re.search(r"(?:^|&)Action=([A-Za-z]+)", qs)
        if mm:
            op = mm.group(1)
    if service == "states":
        service = "stepfunctions"
    if service == "s3" and op is None:
        op = _s3_operation(environ)
    return service, op


def _s3_operation(environ: dict[str, Any]) -> str | None:
    """The S3 REST operation a path-style request names (the ones the project uses)."""
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "/").strip("/")
    query = environ.get("QUERY_STRING", "")
    has_key = "/" in path
    if method == "PUT" and has_key:
        if "partNumber=" in query:
            return "UploadPart"
        return "CopyObject" if environ.get("HTTP_X_AMZ_COPY_SOURCE") else "PutObject"
    if method == "POST" and has_key:
        if "uploads" in query.split("&"):
            return "CreateMultipartUpload"
        if "uploadId=" in query:
            return "CompleteMultipartUpload"
    if method == "GET":
        return "GetObject" if has_key else "ListObjectsV2"
    if method == "DELETE" and has_key:
        return "AbortMultipartUpload" if "uploadId=" in query else "DeleteObject"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    return None


def check_request(environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes] | None:
    if not _faults:
        return None
    service, op = service_operation(environ)
    if not service or not op:
        return None
    body = b""
    if any(f.get("match") for f in listing()):
        # `match`: a substring of the request path or body (e.g. a table name, an object
        # key); re-wrap the stream.
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
    # The path too: an S3 object's key is in the path, not the body.
    text = environ.get("PATH_INFO", "") + "\n" + body.decode("utf-8", "replace")
    f = _take(lambda f: f["kind"] == "error" and f["service"] == service and f["operation"] == op
              and (not f.get("match") or f["match"] in text))
    if f is None:
        return None
    if service == "s3":
        # S3 speaks REST-XML.
        xml = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{f['error']}</Code>"
               f"<Message>{f['message']}</Message><RequestId>replica-fault</RequestId></Error>")
        return f["status"], [("Content-Type", "application/xml")], xml.encode()
    body = json.dumps({"__type": f["error"], "message": f["message"]}).encode()
    return f["status"], [("Content-Type", "application/x-amz-json-1.1"),
                         ("x-amzn-ErrorType", f["error"])], body
