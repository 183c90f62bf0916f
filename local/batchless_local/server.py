"""`replica.py serve`: the foreground replica process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import requests

from . import ACCOUNT, REGION, REPO_ROOT, cfn
from .context import CTX
from .services import free_port


def write_json_atomic(path: str, data: Any) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, default=str)
        fh.write("\n")
    os.replace(tmp, path)


def apply_patches() -> None:
    from . import patches

    patches.apply()


def wait_port(port: int, deadline: float, proc: subprocess.Popen | None = None) -> bool:
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def serve(name: str, template: str, environment: str, time_scale: float, params: dict[str, str],
          lambda_emulator: bool = True, lambda_port: int | None = None, app_dir: str | None = None) -> int:
    state_dir = os.path.join(REPO_ROOT, ".local", name)
    os.makedirs(state_dir, exist_ok=True)
    stack_path = os.path.join(state_dir, "stack.json")
    if os.path.exists(stack_path):
        os.remove(stack_path)
    print(f"replica {name}: planning from {template}", flush=True)
    try:
        plan = cfn.build_plan(template, environment, params)  # pure: fail before starting anything
    except cfn.PlanError as exc:
        print(f"replica {name}: PLAN ERROR: {exc}", flush=True)
        return 2

    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION})
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        os.environ.pop(k, None)

    CTX.name, CTX.state_dir, CTX.time_scale, CTX.environment = name, state_dir, time_scale, environment
    from .patches import PatchTargetMissing

    try:
        apply_patches()
    except PatchTargetMissing as exc:  # before anything listens: `up` shows this in its log tail
        print(f"replica {name}: PATCH ERROR: {exc}", flush=True)
        return 2
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    from .api import ReplicaApp
    from .slack import FakeSlack

    app = ReplicaApp(DomainDispatcherApplication(create_backend_app))
    httpd = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    CTX.moto_port = httpd.server_port
    os.environ["MOTO_PORT"] = str(CTX.moto_port)  # before the stepfunctions engine makes clients
    CTX.endpoint = f"http://127.0.0.1:{CTX.moto_port}"
    threading.Thread(target=httpd.serve_forever, daemon=True, name="moto").start()
    print(f"replica {name}: moto on {CTX.endpoint}", flush=True)
    r = requests.post(f"{CTX.endpoint}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}},
                      timeout=10)
    r.raise_for_status()

    slack = FakeSlack()
    CTX.slack_port = slack.start()
    slack_url = f"http://127.0.0.1:{CTX.slack_port}"
    print(f"replica {name}: fake Slack on {slack_url}", flush=True)

    from . import provision

    try:
        app_repo = provision.make_app_repo(state_dir, app_dir)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"replica {name}: APP ERROR: cannot make the app's repository from {app_dir}: {exc}", flush=True)
        httpd.shutdown()
        return 2
    CTX.app_repo = app_repo["path"]

    # the functions' one environment (cargo lambda watch shares it between all functions)
    lambda_env = {
        **plan["lambda_environment"],
        "AWS_ENDPOINT_URL": CTX.endpoint, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "BATCHLESS_REPLICA": "1",
        "SLACK_API_BASE_URL": f"{slack_url}/api",
    }

    prov = provision.Provisioner(plan["stack_name"], lambda_env)
    try:
        plan = cfn.build_plan(template, environment, params, on_resource=prov, endpoint=CTX.endpoint)
    except Exception as exc:  # noqa: BLE001
        print(f"replica {name}: PROVISIONING ERROR: {type(exc).__name__}: {exc}", flush=True)
        httpd.shutdown()
        return 2
    # real ARNs (e.g. secrets) may differ from the predicted ones: re-read the environment
    lambda_env.update(plan["lambda_environment"])
    lambda_env["SLACK_API_BASE_URL"] = f"{slack_url}/api"
    signing = provision.find_signing_secret(plan, prov) or "replica-signing-secret"
    slack.signing_secret = signing

    # the app's own PostgreSQL, Redis, database and Sidekiq worker (services.py)
    from . import services

    print(f"replica {name}: starting PostgreSQL, Redis and the app ({app_repo['source']})", flush=True)
    try:
        app_services = services.start_for_stack(state_dir, prov.resources, CTX.app_repo)
    except services.ServiceError as exc:
        print(f"replica {name}: APP ERROR: {exc}", flush=True)
        httpd.shutdown()
        return 2
    CTX.services = app_services
    print(f"replica {name}: app ready: {json.dumps(app_services.info.get('app'))}", flush=True)

    env_file = os.path.join(state_dir, "lambda.env")
    with open(env_file, "w") as fh:
        for k, v in sorted(lambda_env.items()):
            fh.write(f"{k}={v}\n")

    cargo_lambda = None
    CTX.lambda_port = lambda_port or free_port()
    if lambda_port:
        print(f"replica {name}: using the Lambda emulator already listening on 127.0.0.1:{lambda_port}", flush=True)
    elif lambda_emulator:
        exe = os.path.join(REPO_ROOT, ".venv", "bin", "cargo-lambda")
        if not os.path.exists(exe):
            exe = "cargo-lambda"
        argv = [exe, "lambda", "watch", "--ignore-changes", "--invoke-address", "127.0.0.1",
                "--invoke-port", str(CTX.lambda_port), "--concurrency", "4", "--env-file", env_file]
        log = open(os.path.join(state_dir, "cargo-lambda.log"), "ab")
        env = {**os.environ, **lambda_env}
        env.pop("MOTO_PORT", None)
        cargo_lambda = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        print(f"replica {name}: cargo lambda watch on 127.0.0.1:{CTX.lambda_port} (pid {cargo_lambda.pid})",
              flush=True)
        if not wait_port(CTX.lambda_port, time.monotonic() + 120, cargo_lambda):
            print(f"replica {name}: cargo lambda watch did not start (see cargo-lambda.log)", flush=True)
            app_services.stop()
            httpd.shutdown()
            if cargo_lambda.poll() is None:
                cargo_lambda.terminate()
            return 2

    function_urls = {lid: f"{CTX.endpoint}/_replica/url/{lid}/" for lid in CTX.function_urls}
    stack = {
        "name": name, "pid": os.getpid(), "endpoint": CTX.endpoint, "region": REGION, "account": ACCOUNT,
        "lambda_port": CTX.lambda_port, "slack_url": slack_url, "replica_url": f"{CTX.endpoint}/_replica",
        "moto_port": CTX.moto_port, "slack_port": CTX.slack_port,
        "time_scale": time_scale, "environment": environment, "stack_name": plan["stack_name"],
        "template": os.path.relpath(plan["template"], REPO_ROOT),
        "resources": prov.resources, "state_machines": prov.state_machines,
        "functions": {lid: {"name": f["name"], "binary": f["binary"], "arn": f["arn"]} for lid, f in prov.functions.items()},
        "tables": prov.tables, "buckets": prov.buckets, "function_urls": function_urls,
        "app_repo": app_repo, "slack_signing_secret": signing, "services": app_services.info,
        "lambda_environment": lambda_env,
        "skipped": {r["logical_id"]: r.get("reason") for r in plan["resources"] if r.get("action") == "skipped"},
        "state_dir": state_dir, "log": os.path.join(state_dir, "replica.log"),
    }
    CTX.stack = stack
    write_json_atomic(os.path.join(state_dir, "stack.json"), stack)
    print(f"replica {name}: READY ({len(prov.resources)} resources)", flush=True)

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.is_set():
        if cargo_lambda is not None and cargo_lambda.poll() is not None:
            print(f"replica {name}: cargo lambda watch exited ({cargo_lambda.returncode}); stopping", flush=True)
            break
        stop.wait(1.0)

    print(f"replica {name}: stopping", flush=True)
    from . import codebuild, ecs

    codebuild.stop_all()
    ecs.stop_all()
    app_services.stop()
    CTX.kill_children(signal.SIGTERM)
    if cargo_lambda is not None and cargo_lambda.poll() is None:
        cargo_lambda.terminate()
        try:
            cargo_lambda.wait(10)
        except subprocess.TimeoutExpired:
            cargo_lambda.kill()
    time.sleep(0.3)
    CTX.kill_children(signal.SIGKILL)
    try:
        os.remove(os.path.join(state_dir, "stack.json"))
    except FileNotFoundError:
        pass
    httpd.shutdown()
    print(f"replica {name}: stopped", flush=True)
    sys.stdout.flush()
    return 0
