"""moto Lambda → cargo-lambda emulator bridge, and Lambda function URLs."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any
from urllib.parse import quote

import requests

from . import faults
from .context import CTX, utcnow

_session = requests.Session()
_adapter = requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=32)
_session.mount("http://", _adapter)

INVOKE_TIMEOUT = 900


def looks_like_error(body: Any) -> bool:
    return isinstance(body, dict) and "errorType" in body and "errorMessage" in body \
        and set(body) <= {"errorType", "errorMessage", "stackTrace", "trace", "cause"}


def interpret_response(status: int, headers: dict[str, str], text: str) -> tuple[str, bool]:
    """Map the emulator's HTTP answer to (payload, errored).

    cargo lambda watch answers a function error (the runtime's /invocation/<id>/error)
    with HTTP 500 and the error document {"errorType", "errorMessage"} as body; an init
    error comes back with 200 and the same document.  AWS reports both as a function
    error whose payload is that document, so Step Functions uses errorType as the error name.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    errored = status >= 300 or "x-amz-function-error" in lower
    parsed: Any = None
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    if not errored and looks_like_error(parsed):
        errored = True
    if errored and not looks_like_error(parsed):
        # e.g. the emulator itself failed (unknown binary, build error): make it a
        # well-formed Lambda error document so callers see something routable.
        text = json.dumps({"errorType": "Lambda.ServiceException" if status >= 500 else "Lambda.Unknown",
                           "errorMessage": f"emulator answered HTTP {status}: {text[:2000]}"})
    return text, errored


def invoke_binary(binary: str, payload: str, function_name: str | None = None) -> tuple[str, bool, str]:
    url = f"http://127.0.0.1:{CTX.lambda_port}/2015-03-31/functions/{quote(binary)}/invocations"
    started = utcnow()
    t0 = time.monotonic()
    record: dict[str, Any] = {"function": function_name or binary, "binary": binary,
                              "started": started.isoformat(), "request_id": str(uuid.uuid4())}
    injected = faults.lambda_error(function_name or binary, payload)
    if injected is not None:  # a `lambda_error` fault: answered without running the function
        text, errored = injected, True
        record["status"] = None
        record["injected"] = True
    else:
        text, errored, record["status"] = _invoke(url, payload, binary)
    record["duration_ms"] = round((time.monotonic() - t0) * 1000, 1)
    record["errored"] = errored
    if errored:
        record["error"] = text[:2000]
    with CTX.lock:
        CTX.invocations.append(record)
    return text, errored, ""


def _invoke(url: str, payload: str, binary: str) -> tuple[str, bool, int | None]:
    """The function's answer (text, errored, HTTP status)."""
    try:
        resp = _post_watching_crashes(url, payload, binary)
    except requests.RequestException as exc:
        return json.dumps({"errorType": "Lambda.EmulatorUnavailable", "errorMessage": str(exc)}), True, None
    if isinstance(resp, str):  # the function process kept dying before answering
        return resp, True, None
    text, errored = interpret_response(resp.status_code, dict(resp.headers), resp.text)
    return text, errored, resp.status_code


_post_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="lambda-invoke")


def _post_watching_crashes(url: str, payload: str, binary: str) -> "requests.Response | str":
    """POST to the emulator; meanwhile watch cargo-lambda.log.  When a function process dies
    before answering (init failure: missing env var, panic in main), cargo lambda restarts it
    forever and the invoke never returns; AWS answers Runtime.ExitError.  Do the same."""
    log_path = os.path.join(CTX.state_dir, "cargo-lambda.log") if CTX.state_dir else ""
    start = os.path.getsize(log_path) if log_path and os.path.exists(log_path) else 0
    fut = _post_pool.submit(_session.post, url, data=payload.encode("utf-8"),
                            headers={"Content-Type": "application/json"}, timeout=INVOKE_TIMEOUT)
    deadline = time.monotonic() + INVOKE_TIMEOUT
    while time.monotonic() < deadline:
        try:
            return fut.result(timeout=1.0)
        except FuturesTimeout:
            pass
        if not log_path:
            continue
        try:
            with open(log_path, "rb") as fh:
                fh.seek(start)
                chunk = fh.read().decode("utf-8", "replace")
        except OSError:
            continue
        lines = chunk.splitlines()
        ran_ours = any(f"target/debug/{binary}`" in ln or f"target/release/{binary}`" in ln for ln in lines)
        exits = [i for i, ln in enumerate(lines) if "ERROR command exited code=" in ln]
        if ran_ours and len(exits) >= 2:
            errs = [ln.strip() for ln in lines[: exits[-1]] if ln.strip().startswith(("Error", "thread '", "error"))]
            msg = errs[-1] if errs else lines[exits[-1]].strip()
            return json.dumps({"errorType": "Runtime.ExitError",
                               "errorMessage": f"RequestId: replica Error: Runtime exited with error: {msg}"})
    return fut.result(timeout=0)


def function_binary(function_name: str) -> str:
    info = CTX.functions_by_name.get(function_name)
    if info:
        return info["binary"]
    return function_name


def invoke_function(function_name: str, payload: Any) -> tuple[str, bool]:
    if not isinstance(payload, str):
        payload = json.dumps(payload)
    text, errored, _ = invoke_binary(function_binary(function_name), payload, function_name)
    return text, errored


def invoke_async(function_name: str, payload: Any, on_done=None) -> None:
    def run() -> None:
        try:
            text, errored = invoke_function(function_name, payload)
            if on_done:
                on_done(text, errored)
        except Exception as exc:  # noqa: BLE001
            if on_done:
                on_done(str(exc), True)

    CTX.pool.submit(run)


def lambda_replacements(original: dict[str, Any]) -> dict[str, Any]:
    """The Lambda bridge's replacements (registered in patches.py)."""

    def _invoke_lambda(self, event: Any = None) -> tuple[str, bool, str]:
        if event is None:
            event = {}
        payload = event if isinstance(event, str) else json.dumps(event)
        return invoke_binary(function_binary(self.function_name), payload, self.function_name)

    # moto runs an async (Event) invoke synchronously; keep AWS's shape: accept at once.
    def invoke_async_handler(self):  # type: ignore[no-untyped-def]
        from urllib.parse import unquote
        function_index = -3 if self.path.endswith("/") else -2
        name = unquote(self.path.rsplit("/", 3)[function_index])
        fn = self.backend.get_function(name, None)
        body = self.body
        invoke_async(fn.function_name, body.decode() if isinstance(body, bytes) else (body or "{}"))
        return 202, {"status": 202}, ""

    # keep amz_crc32 wrapping semantics from the original for sync calls
    orig_invoke = original["invoke"]

    def invoke_handler(self):  # type: ignore[no-untyped-def]
        if self.headers.get("X-Amz-Invocation-Type") == "Event":
            from urllib.parse import unquote
            name = unquote(self.path.rsplit("/", 2)[-2])
            fn = self.backend.get_function(name, self._get_param("qualifier"))
            body = self.body
            invoke_async(fn.function_name, body.decode() if isinstance(body, bytes) else (body or "{}"))
            return 202, {"status": 202, "content-type": "application/json"}, ""
        return orig_invoke(self)

    return {"_invoke_lambda": _invoke_lambda, "invoke_async": invoke_async_handler, "invoke": invoke_handler}


# --------------------------------------------------------------------------- function URLs

_TEXT_TYPES = ("text/", "application/json", "application/x-www-form-urlencoded", "application/xml",
               "application/javascript")


def url_event(environ: dict[str, Any], raw_path: str, body: bytes, function_name: str) -> dict[str, Any]:
    headers: dict[str, str] = {}
    for k, v in environ.items():
        if k.startswith("HTTP_"):
            headers[k[5:].replace("_", "-").lower()] = v
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    if environ.get("CONTENT_LENGTH"):
        headers["content-length"] = environ["CONTENT_LENGTH"]
    cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
    qs = environ.get("QUERY_STRING", "")
    qparams: dict[str, str] = {}
    if qs:
        from urllib.parse import parse_qsl
        for k, v in parse_qsl(qs, keep_blank_values=True):
            qparams[k] = f"{qparams[k]},{v}" if k in qparams else v
    ctype = headers.get("content-type", "")
    is_text = any(ctype.startswith(t) for t in _TEXT_TYPES) or ctype == ""
    try:
        body_text = body.decode("utf-8") if is_text else None
    except UnicodeDecodeError:
        body_text = None
    now = utcnow()
    host = headers.get("host", "127.0.0.1")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": qs,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": function_name,
            "domainName": host,
            "domainPrefix": host.split(".")[0],
            "http": {
                "method": environ.get("REQUEST_METHOD", "GET"),
                "path": raw_path,
                "protocol": environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "sourceIp": environ.get("REMOTE_ADDR", "127.0.0.1"),
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if qparams:
        event["queryStringParameters"] = qparams
    if body:
        if body_text is not None:
            event["body"] = body_text
        else:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


def url_response(text: str, errored: bool) -> tuple[int, list[tuple[str, str]], bytes]:
    if errored:
        return 502, [("Content-Type", "application/json")], b'{"Message":"Internal Server Error"}'
    try:
        result = json.loads(text)
    except ValueError:
        return 200, [("Content-Type", "application/json")], text.encode()
    if isinstance(result, dict) and "statusCode" in result:
        headers = [(k, str(v)) for k, v in (result.get("headers") or {}).items()]
        for c in result.get("cookies") or []:
            headers.append(("Set-Cookie", c))
        body = result.get("body") or ""
        data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", "application/json"))
        return int(result["statusCode"]), headers, data
    return 200, [("Content-Type", "application/json")], json.dumps(result).encode()
