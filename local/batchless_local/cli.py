"""Command line: up / down / status / serve / plan."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from . import DEFAULT_TEMPLATE, REPO_ROOT, STATE_ROOT

NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _state_dir(name: str) -> str:
    if not name or set(name) - NAME_OK:
        raise SystemExit(f"invalid stack name {name!r} (letters, digits, - _ . only)")
    return os.path.join(STATE_ROOT, name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _read_pid(state_dir: str) -> int | None:
    try:
        with open(os.path.join(state_dir, "pid")) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def _read_stack(state_dir: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(state_dir, "stack.json")) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _params(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--param expects K=V, got {item!r}")
        k, v = item.split("=", 1)
        out[k] = v
    return out


def _template(path: str | None) -> str:
    if not path:
        return DEFAULT_TEMPLATE
    return path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)


def cmd_up(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args.name)
    os.makedirs(state_dir, exist_ok=True)
    pid = _read_pid(state_dir)
    if pid and _alive(pid):
        print(f"replica {args.name} is already running (pid {pid}); `replica.py down --name {args.name}` first",
              file=sys.stderr)
        return 1
    template = _template(args.template)
    if not os.path.exists(template):
        print(f"template not found: {template}", file=sys.stderr)
        return 1
    for f in ("stack.json", "pid"):
        try:
            os.remove(os.path.join(state_dir, f))
        except FileNotFoundError:
            pass
    argv = [sys.executable, os.path.join(REPO_ROOT, "local", "replica.py"), "serve", "--name", args.name,
            "--template", template, "--env", args.env, "--time-scale", str(args.time_scale)]
    for p in args.param or []:
        argv += ["--param", p]
    if args.no_lambda:
        argv.append("--no-lambda")
    if args.lambda_port:
        argv += ["--lambda-port", str(args.lambda_port)]
    if args.app:
        app = os.path.abspath(args.app)
        if not os.path.isdir(app):
            print(f"--app {args.app}: no such directory", file=sys.stderr)
            return 1
        argv += ["--app", app]
    log_path = os.path.join(state_dir, "replica.log")
    log = open(log_path, "ab")
    seen = log.tell()
    log.write(f"\n===== up {time.strftime('%Y-%m-%dT%H:%M:%S')} =====\n".encode())
    log.flush()
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    with open(os.path.join(state_dir, "pid"), "w") as fh:
        fh.write(str(proc.pid))
    print(f"replica {args.name}: starting (pid {proc.pid}, log {os.path.relpath(log_path, REPO_ROOT)})", flush=True)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        stack = _read_stack(state_dir)
        if stack and stack.get("pid") == proc.pid:
            print(f"replica {args.name}: ready")
            print(f"  endpoint     {stack['endpoint']}")
            print(f"  replica api  {stack['replica_url']}")
            print(f"  fake slack   {stack['slack_url']}")
            print(f"  lambda port  {stack['lambda_port']}")
            print(f"  resources    {len(stack['resources'])} ({len(stack['functions'])} functions, "
                  f"{len(stack['state_machines'])} state machines)")
            services = stack.get("services") or {}
            if services.get("postgres"):
                print(f"  app          {stack['app_repo'].get('source')} (boot {services.get('app', {}).get('boot_s')} s)")
                print(f"  postgres     127.0.0.1:{services['postgres']['port']} (socket dir {services['postgres']['socket_dir']})")
                print(f"  redis        127.0.0.1:{services['redis']['port']}")
                print(f"  worker       {(services.get('worker') or {}).get('command') or (services.get('worker') or {}).get('skipped')}")
            print(f"  stack.json   {os.path.relpath(os.path.join(state_dir, 'stack.json'), REPO_ROOT)}")
            return 0
        if proc.poll() is not None:
            print(f"replica {args.name}: FAILED to start (exit {proc.returncode}); log tail:", file=sys.stderr)
            _tail(log_path, sys.stderr, 30)
            return 1
        seen = _progress(log_path, seen)
        time.sleep(0.2)
    print(f"replica {args.name}: not ready after {args.timeout:.0f}s; stopping it. Log tail:", file=sys.stderr)
    _tail(log_path, sys.stderr, 30)
    _stop(state_dir, proc.pid)
    return 1


def _progress(log_path: str, seen: int) -> int:
    try:
        with open(log_path, "rb") as fh:
            fh.seek(seen)
            data = fh.read()
    except OSError:
        return seen
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith("replica ") or line.startswith("provisioning "):
            print(f"  .. {line}", flush=True)
    return seen + len(data)


def _tail(path: str, out: Any, n: int) -> None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.readlines()[-n:]
    except OSError:
        return
    for line in lines:
        out.write("  | " + line)


def _stop(state_dir: str, pid: int, timeout: float = 30.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)  # stragglers in the group (cargo lambda's function processes)
        except ProcessLookupError:
            pass
    # builds and tasks run in their own process groups; the server kills them, but not if it died hard
    try:
        with open(os.path.join(state_dir, "children")) as fh:
            for line in fh:
                try:
                    os.killpg(int(line.split()[0]), signal.SIGKILL)
                except (ProcessLookupError, ValueError, PermissionError):
                    pass
        os.remove(os.path.join(state_dir, "children"))
    except OSError:
        pass
    for f in ("stack.json", "pid"):
        try:
            os.remove(os.path.join(state_dir, f))
        except FileNotFoundError:
            pass


def cmd_down(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args.name)
    pid = _read_pid(state_dir)
    if not pid:
        stack = _read_stack(state_dir)
        pid = stack.get("pid") if stack else None
    if not pid:
        print(f"replica {args.name}: not running")
        return 0
    running = _alive(pid)
    _stop(state_dir, pid)
    print(f"replica {args.name}: {'stopped' if running else 'was not running (cleaned up)'}")
    return 0


def _status_one(name: str) -> tuple[bool, dict[str, Any]]:
    state_dir = os.path.join(STATE_ROOT, name)
    pid = _read_pid(state_dir)
    stack = _read_stack(state_dir)
    running = bool(pid and _alive(pid))
    info: dict[str, Any] = {"name": name, "running": running, "pid": pid}
    if running and stack and stack.get("pid") == pid:
        info.update(ready=True, endpoint=stack["endpoint"], slack_url=stack["slack_url"],
                    lambda_port=stack["lambda_port"], resources=len(stack["resources"]),
                    functions=len(stack["functions"]), state_machines=len(stack["state_machines"]),
                    time_scale=stack.get("time_scale"))
    elif running:
        info["ready"] = False
    return running, info


def cmd_status(args: argparse.Namespace) -> int:
    if args.name:
        names = [args.name]
    else:
        names = sorted(d for d in os.listdir(STATE_ROOT) if os.path.isdir(os.path.join(STATE_ROOT, d))) \
            if os.path.isdir(STATE_ROOT) else []
    any_running = False
    for n in names:
        running, info = _status_one(n)
        any_running |= running
        if args.json:
            print(json.dumps(info))
        elif running and info.get("ready"):
            print(f"{n}: running pid {info['pid']} endpoint {info['endpoint']} slack {info['slack_url']} "
                  f"lambda :{info['lambda_port']} resources {info['resources']} "
                  f"(functions {info['functions']}, state machines {info['state_machines']})")
        elif running:
            print(f"{n}: starting (pid {info['pid']})")
        else:
            print(f"{n}: not running")
    if not names:
        print("no replica stacks")
    return 0 if any_running else 3


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    _state_dir(args.name)
    return serve(args.name, _template(args.template), args.env, args.time_scale, _params(args.param),
                 lambda_emulator=not args.no_lambda, lambda_port=args.lambda_port, app_dir=args.app)


def cmd_exec(args: argparse.Namespace) -> int:
    from .ecs_exec import exec_in_task

    argv = [a for a in args.command if a != "--"] if args.command[:1] == ["--"] else args.command
    if not argv:
        print("exec: a command is needed, e.g. -- bin/rails console", file=sys.stderr)
        return 2
    typed = None
    if args.type is not None:
        with (sys.stdin if args.type == "-" else open(args.type)) as fh:
            typed = [line.rstrip("\n") for line in fh]
    return exec_in_task(_state_dir(args.name), args.task, argv, typed)


def cmd_plan(args: argparse.Namespace) -> int:
    from .cfn import PlanError, build_plan

    try:
        plan = build_plan(_template(args.template), args.env, _params(args.param))
    except PlanError as exc:
        print(f"plan error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(plan, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="replica.py", description="batchless local AWS replica")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p: argparse.ArgumentParser, name_required: bool = True) -> None:
        p.add_argument("--name", required=name_required)

    def stack_opts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--template", default=None, help="default infra/template.yaml")
        p.add_argument("--env", default="staging")
        p.add_argument("--param", action="append", help="K=V template parameter override")

    up = sub.add_parser("up", help="start a stack detached and wait until ready")
    common(up)
    stack_opts(up)
    up.add_argument("--time-scale", type=float, default=1.0)
    up.add_argument("--timeout", type=float, default=300.0)
    up.add_argument("--no-lambda", action="store_true", help="do not start cargo lambda watch")
    up.add_argument("--lambda-port", type=int, default=None,
                    help="use a Lambda emulator (cargo lambda watch or a test stub) already on this port")
    up.add_argument("--app", default=None, metavar="DIR",
                    help="the Rails app to run (a git repository or a directory); default local/sample-app")
    up.set_defaults(fn=cmd_up)

    down = sub.add_parser("down", help="stop a stack")
    common(down)
    down.set_defaults(fn=cmd_down)

    st = sub.add_parser("status", help="state of one or all stacks")
    common(st, name_required=False)
    st.add_argument("--json", action="store_true")
    st.set_defaults(fn=cmd_status)

    sv = sub.add_parser("serve", help="run a stack in the foreground")
    common(sv)
    stack_opts(sv)
    sv.add_argument("--time-scale", type=float, default=1.0)
    sv.add_argument("--no-lambda", action="store_true")
    sv.add_argument("--lambda-port", type=int, default=None)
    sv.add_argument("--app", default=None, metavar="DIR")
    sv.set_defaults(fn=cmd_serve)

    ex = sub.add_parser("exec", help="run a command inside a running ECS task of the stack (as ECS Exec)")
    common(ex)
    ex.add_argument("--task", required=True, help="task id or ARN")
    ex.add_argument("--type", default=None, metavar="FILE|-",
                    help="run the command in a pseudo-terminal and type these lines at its prompts; print the transcript")
    ex.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...], e.g. -- bin/rails console")
    ex.set_defaults(fn=cmd_exec)

    pl = sub.add_parser("plan", help="print the provisioning plan (pure)")
    stack_opts(pl)
    pl.set_defaults(fn=cmd_plan)

    args = ap.parse_args(argv)
    return args.fn(args)
