"""The services a stack owns for the app (services.py): its own PostgreSQL and redis-server on free
ports with their sockets in the state dir, the app secret carrying their URLs, the app's database
loaded, the Sidekiq worker running, all stopped by `down`; a user's app that cannot boot fails
`up` with the command and its output, and leaves nothing running."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid

import pytest

from conftest import FIXTURE_TEMPLATE, REPLICA, REPO, StubEmulator, _down, _up, poll


def _open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _psql(url: str, sql: str) -> str:
    return subprocess.run(["psql", url, "-AtqX", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def own_stack():
    """A stack of this module's own (fixture template, stub emulator): `down` is part of the test."""
    stub = StubEmulator()
    name = f"pytest-{os.getpid()}-svc"
    info = _up(name, "--template", FIXTURE_TEMPLATE, "--time-scale", "60", "--lambda-port", str(stub.port))
    try:
        yield name, info
    finally:
        _down(name)
        stub.close()


def test_postgres_and_redis_run_on_free_ports_with_sockets_in_the_state_dir(own_stack):
    name, info = own_stack
    svc = info["services"]
    state_dir = info["state_dir"]
    pg, rd = svc["postgres"], svc["redis"]
    assert pg["port"] != rd["port"] and pg["port"] not in (5432, info["moto_port"])
    assert rd["port"] != 6379
    assert _open(pg["port"]) and _open(rd["port"])
    assert pg["socket_dir"].startswith(state_dir) and os.path.exists(os.path.join(pg["socket_dir"], f".s.PGSQL.{pg['port']}"))
    assert pg["data_dir"].startswith(state_dir) and os.path.exists(os.path.join(pg["data_dir"], "PG_VERSION"))
    assert rd["socket"].startswith(state_dir) and os.path.exists(rd["socket"])
    # the app's database: schema and seeds loaded, through the URL builds and tasks get
    assert _psql(pg["url"], "SELECT count(*) FROM users") == "12"
    assert _psql(pg["url"], "SELECT count(*) FROM schema_migrations") != "0"
    # redis needs the password from the URL
    out = subprocess.run(["redis-cli", "-p", str(rd["port"]), "ping"], capture_output=True, text=True).stdout
    assert "NOAUTH" in out
    cli = ["redis-cli", "-p", str(rd["port"]), "-a", rd["password"], "--no-auth-warning"]
    assert rd["url"] == f"redis://:{rd['password']}@127.0.0.1:{rd['port']}/0"
    assert subprocess.run([*cli, "ping"], capture_output=True, text=True).stdout.strip() == "PONG"
    # the worker is registered in Redis (Sidekiq's heartbeat)
    assert svc["worker"]["pid"] and _alive(svc["worker"]["pid"])
    assert subprocess.run([*cli, "scard", "processes"], capture_output=True, text=True).stdout.strip() == "1"


def test_the_app_secret_carries_the_stacks_urls(stack):
    """On the session stack (infra/template.yaml): the AppSecret placeholder now points at the
    stack's PostgreSQL and Redis, keeping the template's user, password and database."""
    svc = stack.info.get("services") or {}
    if not svc.get("app_secret"):
        pytest.skip("this template has no app secret with DATABASE_URL")
    doc = json.loads(stack.client("secretsmanager").get_secret_value(SecretId=svc["app_secret"]["arn"])["SecretString"])
    assert doc["DATABASE_URL"] == svc["postgres"]["url"]
    assert doc["REDIS_URL"] == svc["redis"]["url"]
    assert doc["DATABASE_URL"].startswith("postgres://app:change-me@127.0.0.1:")
    assert "SECRET_KEY_BASE" in doc
    assert _psql(doc["DATABASE_URL"], "SELECT current_user") == "app"


def test_a_job_task_gets_the_urls_and_changes_rows(stack):
    """A task of the job task definition runs `bin/rails runner` against the stack's database."""
    if "JobTaskDefinition" not in stack.info["resources"]:
        pytest.skip("no job task definition in this template")
    ecs = stack.client("ecs")
    cluster = stack.info["resources"]["JobsCluster"]["physical_id"]
    marker = uuid.uuid4().hex[:10]
    task = ecs.run_task(cluster=cluster, taskDefinition=stack.info["resources"]["JobTaskDefinition"]["physical_id"],
                        launchType="FARGATE", overrides={"containerOverrides": [{"name": "app", "command": [
                            "sh", "-c", f"bin/rails runner 'TaskRun.create!(name: \"selftest\", arguments: \"{marker}\", source: ENV.fetch(\"REDIS_URL\")[0, 8])'"]}]})["tasks"][0]
    d = poll(lambda: (lambda t: t if t["lastStatus"] == "STOPPED" else None)(
        ecs.describe_tasks(cluster=cluster, tasks=[task["taskArn"]])["tasks"][0]), 120, what="the task")
    assert d["containers"][0]["exitCode"] == 0, d
    url = stack.info["services"]["postgres"]["url"]
    assert _psql(url, f"SELECT source FROM task_runs WHERE arguments = '{marker}'") == "redis://"


def test_down_stops_postgres_redis_and_the_worker(own_stack):
    name, info = own_stack
    svc = info["services"]
    pids = [svc["postgres"]["pid"], svc["redis"]["pid"], svc["worker"]["pid"]]
    assert all(_alive(p) for p in pids)
    _down(name)
    assert not any(_alive(p) for p in pids), [p for p in pids if _alive(p)]
    assert not _open(svc["postgres"]["port"]) and not _open(svc["redis"]["port"])
    assert not os.path.exists(os.path.join(info["state_dir"], "stack.json"))


def test_an_app_that_cannot_boot_fails_up_naming_the_command_and_leaves_nothing_running(tmp_path):
    app = tmp_path / "broken-app"
    (app / "bin").mkdir(parents=True)
    (app / "Gemfile").write_text('source "https://rubygems.org"\ngem "rails", "~> 6.1.0"\ngem "no_such_gem_here", "9.9"\n')
    (app / "bin" / "rails").write_text("#!/bin/sh\nexit 1\n")
    os.chmod(app / "bin" / "rails", 0o755)
    name = f"pytest-{os.getpid()}-broken"
    stub = StubEmulator()
    try:
        res = subprocess.run([sys.executable, REPLICA, "up", "--name", name, "--template", FIXTURE_TEMPLATE,
                              "--lambda-port", str(stub.port), "--app", str(app)], cwd=REPO,
                             capture_output=True, text=True, timeout=240)
        assert res.returncode != 0
        err = res.stdout + res.stderr
        assert "APP ERROR" in err and "bundle install --local" in err and "no_such_gem_here" in err, err
        state_dir = os.path.join(REPO, ".local", name)
        children = os.path.join(state_dir, "children")
        left = open(children).read().strip() if os.path.exists(children) else ""
        assert left == "", f"processes left running: {left}"
        log = open(os.path.join(state_dir, "postgres.log")).read()
        assert "database system is shut down" in log or "shutting down" in log, log[-2000:]
    finally:
        _down(name)
        stub.close()
