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


def exec_in_task(state_dir: str, task: str, argv: list[str]) -> int:
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
    for k in ("TERM", "COLUMNS", "LINES"):
        if k in os.environ:
            env[k] = os.environ[k]
    os.chdir(info["cwd"])
    os.execvpe(argv[0], argv, env)
    return 127  # not reached
