"""A local Lambda Runtime API for benchmarks: start a function's native `bootstrap` as Lambda
would (the Runtime API in `AWS_LAMBDA_RUNTIME_API`, the function's environment), hand it one
event and measure

- init: process start (just before fork/exec) → its first `GET /runtime/invocation/next`
  (the runtime and the function's clients are built);
- handled: process start → the event's `POST .../response` or `.../error` (the handler ran);
- peak RSS: the process's VmHWM (/proc/<pid>/status) while it waits for its next event.

The process is then killed while it waits for its second event (as Lambda freezes and later
drops an execution environment). Standard library only; each invocation gets its own server
(a thread of this process, on its own port).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"


@dataclass
class Result:
    init_ms: float | None
    handled_ms: float | None
    peak_rss_kb: int
    outcome: str  # "ok", the errorType of a function error, "init error: ...", or "timeout"
    body: str
    rss_by_mapping: dict[str, int] | None = None  # kB resident per mapping kind, see _rss_by_mapping
    cpu_ms: float | None = None  # user + system CPU time of the whole process (start to kill)
    minor_faults: int | None = None  # page faults served without I/O (file pages in cache, zeroed anon)
    t0: float | None = None  # time.perf_counter() just before the process was started


class _Invocation:
    def __init__(self, event: bytes, function_arn: str) -> None:
        self.event = event
        self.function_arn = function_arn
        self.request_id = str(uuid.uuid4())
        self.served = False
        self.t_next: float | None = None
        self.t_done: float | None = None
        self.outcome = "timeout"
        self.body = ""
        self.done = threading.Event()
        self.stop = threading.Event()


def _server(inv: _Invocation) -> ThreadingHTTPServer:
    """A Runtime API for one invocation, on its own port: a dying process's late
    `GET /invocation/next` must never be served the next process's event."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are separate writes

        def log_message(self, *args: object) -> None:
            pass

        def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            if self.path != f"{PREFIX}/invocation/next":
                self._reply(404)
                return
            if inv.served:
                # the second event never comes: hold the request until the process is stopped
                inv.stop.wait(60)
                self.close_connection = True
                return
            inv.served = True
            inv.t_next = time.perf_counter()
            deadline = int(time.time() * 1000) + 900_000
            self._reply(200, inv.event, {
                "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                "Lambda-Runtime-Deadline-Ms": str(deadline),
                "Lambda-Runtime-Invoked-Function-Arn": inv.function_arn,
                "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
            })

        def do_POST(self) -> None:  # noqa: N802
            t = time.perf_counter()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            if self.path == f"{PREFIX}/init/error":
                inv.outcome = "init error: " + _error_type(body)
            elif self.path == f"{PREFIX}/invocation/{inv.request_id}/response":
                inv.outcome = "ok"
            elif self.path == f"{PREFIX}/invocation/{inv.request_id}/error":
                inv.outcome = _error_type(body)
            else:
                self._reply(404)
                return
            inv.t_done, inv.body = t, body
            self._reply(202, b'{"status":"OK"}')
            inv.done.set()

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            pass  # the process was killed with a request open: expected

    httpd = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def invoke(binary: str, function_name: str, env: dict[str, str], event: object,
           timeout: float = 120.0, log_path: str | None = None, wrapper: list[str] | None = None) -> Result:
    """Start `binary` as Lambda would, hand it `event`, measure, stop it. `wrapper` (e.g.
    `["strace", "-f", "-c", "-o", FILE]`) is put before the binary to look into a start-up; its
    timings then include the wrapper's own cost, and peak RSS is the wrapper's."""
    arn = f"arn:aws:lambda:{env.get('AWS_REGION', 'us-east-1')}:123456789012:function:{function_name}"
    inv = _Invocation(json.dumps(event).encode(), arn)
    httpd = _server(inv)
    proc_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **env,
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{httpd.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
    }
    log = open(log_path or os.devnull, "ab")
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen([*(wrapper or []), binary], env=proc_env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
        usage, peak_kb = None, None
        # wait for the answer, or for the process to die first (wait4 without blocking)
        while not inv.done.wait(0.05) and time.perf_counter() - t0 < timeout:
            pid, _, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                usage = ru
                if inv.outcome == "timeout":
                    inv.outcome = "exited without answering"
                break
        rss_map = None
        if usage is None:
            peak_kb = _vm_hwm_kb(proc.pid)
            rss_map = _rss_by_mapping(proc.pid, binary)
            if wrapper:
                # let the wrapper (strace -c, perf stat) write its summary: SIGINT, then SIGKILL
                os.kill(proc.pid, signal.SIGINT)
                for _ in range(40):
                    pid, _, ru = os.wait4(proc.pid, os.WNOHANG)
                    if pid:
                        usage = ru
                        break
                    time.sleep(0.05)
            if usage is None:
                os.kill(proc.pid, signal.SIGKILL)
                _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = -9  # reaped here; keeps Popen from waiting again
    finally:
        inv.stop.set()
        log.close()
        httpd.shutdown()
        httpd.server_close()
    ms = lambda t: None if t is None else (t - t0) * 1000.0  # noqa: E731
    cpu = (usage.ru_utime + usage.ru_stime) * 1000.0 if usage else None
    return Result(ms(inv.t_next), ms(inv.t_done), peak_kb or usage.ru_maxrss, inv.outcome, inv.body, rss_map,
                  cpu, usage.ru_minflt if usage else None, t0)


def _rss_by_mapping(pid: int, binary: str) -> dict[str, int] | None:
    """Where the resident memory is while the process waits for its second event, in kB, from
    /proc/<pid>/smaps: the binary's clean file pages (`binary file pages`: code and read-only
    data the kernel mapped from the page cache, fault-around included), its pages written at
    load or run time (`binary relocated/written`: the anonymous copies in the binary's mappings,
    i.e. .data.rel.ro / .got after the dynamic linker's relocations, .data, .bss), `heap+anon`
    ([heap] plus anonymous mappings: malloc arenas, thread stacks), and `libs` (shared libraries,
    vdso...)."""
    out = {"binary file pages": 0, "binary relocated/written": 0, "heap+anon": 0, "libs": 0}
    real = os.path.realpath(binary)
    try:
        with open(f"/proc/{pid}/smaps") as fh:
            kind = None
            for line in fh:
                head = line.split()
                if not head:
                    continue
                if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                    perms, path = head[1], (head[5] if len(head) > 5 else "")
                    if path and os.path.realpath(path) == real:
                        kind = "binary"
                    elif path and path.startswith("/"):
                        kind = "libs"
                    elif path in ("", "[heap]") or path.startswith("[stack") or path.startswith("[anon"):
                        kind = "heap+anon"
                    else:
                        kind = "libs"
                elif head[0] == "Rss:" and kind == "binary":
                    out["binary file pages"] += int(head[1])
                elif head[0] == "Anonymous:" and kind == "binary":
                    out["binary file pages"] -= int(head[1])
                    out["binary relocated/written"] += int(head[1])
                elif head[0] == "Rss:" and kind:
                    out[kind] += int(head[1])
    except OSError:
        return None
    return out


def _vm_hwm_kb(pid: int) -> int | None:
    """The process's own peak RSS (VmHWM). wait4's ru_maxrss is not used while the process
    lives: Linux starts a child's ru_maxrss at its parent's RSS at fork (the Python harness's
    ~23 MiB), which would hide every function smaller than that."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _error_type(body: str) -> str:
    try:
        return json.loads(body).get("errorType") or "error"
    except ValueError:
        return "error"


def prepare_event(template: str, signing_secret: str) -> object:
    """A benchmark event (bench/events/<function>.json) made ready for one run:
    - every `{{RUN}}` → a fresh 8-digit token (ids that must be new per run);
    - a CloudWatch Logs subscription payload kept as JSON (`awslogs.data` an object) is
      gzip+base64-encoded as Lambda delivers it;
    - a Slack request (`{{SLACK_TIMESTAMP}}`/`{{SLACK_SIGNATURE}}` headers) is signed now with the
      stack's signing secret, as Slack signs each request."""
    event = json.loads(template.replace("{{RUN}}", f"{random.randrange(10**8):08d}"))
    data = event.get("awslogs", {}).get("data") if isinstance(event, dict) else None
    if isinstance(data, dict):
        event["awslogs"]["data"] = base64.b64encode(gzip.compress(json.dumps(data).encode())).decode()
    headers = event.get("headers", {}) if isinstance(event, dict) else {}
    if headers.get("x-slack-signature") == "{{SLACK_SIGNATURE}}":
        body = event.get("body") or ""
        raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
        ts = str(int(time.time()))
        mac = hmac.new(signing_secret.encode(), b"v0:" + ts.encode() + b":" + raw, hashlib.sha256)
        headers["x-slack-request-timestamp"] = ts
        headers["x-slack-signature"] = "v0=" + mac.hexdigest()
    return event


def stack_info(stack: str) -> dict:
    """A running local stack's stack.json (`batchless local up --name STACK`): its functions'
    environment is `lambda_environment`."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, ".local", stack, "stack.json")) as fh:
        return json.load(fh)


def median(values: list[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
