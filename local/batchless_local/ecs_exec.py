"""What ECS Exec needs from a replica task: the task metadata endpoint (v4) the container sees, and
an `exec` into a running task (`replica.py exec`): the command runs in the task's checkout with the
task's environment, and what the console hook writes to the container's main process's stdout
(`/proc/<pid>/fd/1`, as on Fargate `/proc/1/fd/1`) reaches the task's awslogs stream.
"""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .context import CTX

_server: ThreadingHTTPServer | None = None
_lock = threading.Lock()


def _task(task_id: str) -> Any:
    from . import ecs

    with ecs._lock:
        for arn, t in ecs.TASKS.items():
            if t.id == task_id:
                return t
    return None


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *a: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        # /v4/<task-id>[/task]
        body: Any = None
        if len(parts) >= 2 and parts[0] == "v4":
            t = _task(parts[1])
            if t is not None:
                rec = t.describe()
                cname = rec["containers"][0]["name"] if rec.get("containers") else "app"
                container = {"DockerId": f"{t.id}-{cname}", "Name": cname, "DockerName": cname,
                             "Image": rec["containers"][0].get("image", "") if rec.get("containers") else "",
                             "Labels": {"com.amazonaws.ecs.cluster": rec["clusterArn"],
                                        "com.amazonaws.ecs.task-arn": t.arn,
                                        "com.amazonaws.ecs.container-name": cname},
                             "DesiredStatus": rec.get("desiredStatus"), "KnownStatus": rec.get("lastStatus")}
                if len(parts) == 2:
                    body = container
                elif parts[2] == "task":
                    body = {"Cluster": rec["clusterArn"], "TaskARN": t.arn,
                            "Family": rec["taskDefinitionArn"].split("/")[-1].split(":")[0],
                            "Revision": rec["taskDefinitionArn"].split(":")[-1],
                            "DesiredStatus": rec.get("desiredStatus"), "KnownStatus": rec.get("lastStatus"),
                            "LaunchType": rec.get("launchType"), "AvailabilityZone": rec.get("availabilityZone"),
                            "Containers": [container]}
        data = json.dumps(body if body is not None else {"error": "unknown task"}).encode()
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def metadata_base() -> str:
    """The metadata server's base URL (started on first use)."""
    global _server
    with _lock:
        if _server is None:
            _server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
            _server.daemon_threads = True
            threading.Thread(target=_server.serve_forever, daemon=True, name="ecs-metadata").start()
        return f"http://127.0.0.1:{_server.server_address[1]}/v4"


def write_exec_info(task: Any, env: dict[str, str], pid: int) -> None:
    """tasks/<id>/exec.json: what `replica.py exec` needs (mode 600: it holds the task's secrets)."""
    path = os.path.join(os.path.dirname(task.workdir), f"{task.id}.exec.json")
    rec = task.describe()
    info = {"task_arn": task.arn, "task_id": task.id, "cluster": rec["clusterArn"],
            "container": rec["containers"][0]["name"] if rec.get("containers") else "app",
            "cwd": task.workdir, "env": env, "pid": pid}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh)


def exec_info_path(state_dir: str, task: str) -> str:
    task_id = task.rstrip("/").split("/")[-1]
    return os.path.join(state_dir, "tasks", f"{task_id}.exec.json")


def exec_in_task(state_dir: str, task: str, argv: list[str], typed: list[str] | None = None) -> int:
    """Replace this process with `argv` inside the task (ECS Exec's `execute-command --command`)."""
    path = exec_info_path(state_dir, task)
    try:
        with open(path) as fh:
            info = json.load(fh)
    except OSError:
        print(f"exec: no running task {task} in this stack (no {path})", flush=True)
        return 2
    pid = int(info["pid"])
    if not os.path.exists(f"/proc/{pid}"):
        print(f"exec: task {task} is not running", flush=True)
        return 2
    env = dict(info["env"])
    env.setdefault("BATCHLESS_CONSOLE_LOG", f"/proc/{pid}/fd/1")
    env["TERM"] = os.environ.get("TERM") or "xterm"
    for k in ("COLUMNS", "LINES"):
        if k in os.environ:
            env[k] = os.environ[k]
    os.chdir(info["cwd"])
    if typed is not None:
        # as ECS Exec with a terminal: the command in a pseudo-terminal, these lines typed at its prompts
        status, transcript = drive_in_pty(argv, typed, env)
        print(transcript, flush=True)
        return status
    os.execvpe(argv[0], argv, env)
    return 127  # not reached


def drive_in_pty(argv: list[str], lines: list[str], env: dict[str, str] | None = None,
                 prompt_timeout: float = 120.0) -> tuple[int, str]:
    """Run argv in a pseudo-terminal as an operator's terminal would: answer the cursor-position
    queries (ESC[6n) Reline sends, wait for a prompt (output ending in `> `) before typing each
    line, and return (exit status, transcript). After the last line, waits for the exit."""
    import pty
    import re
    import select
    import time

    pid, fd = pty.fork()
    if pid == 0:  # child
        try:
            os.execvpe(argv[0], argv, env or os.environ)
        finally:
            os._exit(127)
    out = bytearray()
    ansi = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")

    def pump(until: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    return until()
                if not chunk:
                    return until()
                if b"\x1b[6n" in chunk:
                    os.write(fd, b"\x1b[1;1R")  # a terminal answers where its cursor is
                out.extend(chunk)
            if until():
                return True
        return until()

    mark = 0

    def prompt() -> bool:
        tail = ansi.sub(b"", bytes(out[mark:])).rstrip(b" ")
        return tail.endswith(b">") or tail.endswith(b"*") or tail.endswith(b"?")

    for line in lines:
        if not pump(prompt, prompt_timeout):
            break
        mark = len(out)
        os.write(fd, line.encode() + b"\r")
        pump(lambda: len(out) > mark, 5)  # the echo
    status = None
    deadline = time.monotonic() + prompt_timeout
    while time.monotonic() < deadline:
        pump(lambda: False, 0.2)
        wpid, st = os.waitpid(pid, os.WNOHANG)
        if wpid:
            status = os.waitstatus_to_exitcode(st)
            break
    if status is None:
        os.kill(pid, 9)
        _, st = os.waitpid(pid, 0)
        status = os.waitstatus_to_exitcode(st)
    try:
        while True:
            r, _, _ = select.select([fd], [], [], 0.05)
            if not r:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out.extend(chunk)
    except OSError:
        pass
    os.close(fd)
    return status, out.decode("utf-8", "replace")
