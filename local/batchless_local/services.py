"""The services a stack owns for the app: its own PostgreSQL cluster and redis-server (in the state
dir, on free loopback ports), the app's database (schema + seeds), and the app's Sidekiq worker.

Started by `serve` after provisioning (the app secret's placeholder URLs are replaced by the local
ones, keeping the template's user, password and database name), stopped with the stack. Every
process runs in its own process group registered in CTX.children, so `down` kills leftovers even
if the server died hard.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from .context import CTX

# What the replica tells the app, as the template's placeholder secret would on AWS.
DEFAULT_DB = {"user": "app", "password": "change-me", "database": "app"}
DEFAULT_REDIS_PASSWORD = "change-me"
PG_VERSIONS = ("17", "16", "15", "14", "13")


class ServiceError(Exception):
    """A service or the app could not start: the message names the command and its output."""


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pg_bin(name: str) -> str:
    for v in PG_VERSIONS:
        p = f"/usr/lib/postgresql/{v}/bin/{name}"
        if os.path.exists(p):
            return p
    found = shutil.which(name)
    if found:
        return found
    raise ServiceError(f"{name} not found: install PostgreSQL (`make setup-apt`, or apt-get install postgresql)")


def _need(cmd: str, package: str) -> str:
    found = shutil.which(cmd)
    if not found:
        raise ServiceError(f"{cmd} not found: install {package} (`make setup-apt`)")
    return found


def _tail(text: str, n: int = 25) -> str:
    lines = text.rstrip().splitlines()[-n:]
    return "\n".join("    | " + line for line in lines)


def _wait(pred: Any, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        if proc is not None and proc.poll() is not None:
            return bool(pred())
        time.sleep(0.1)
    return False


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


def parse_app_secret(doc: dict[str, Any]) -> dict[str, str]:
    """User, password and database of the placeholder DATABASE_URL; Redis password of REDIS_URL."""
    out = dict(DEFAULT_DB)
    out["redis_password"] = DEFAULT_REDIS_PASSWORD
    db = urlsplit(str(doc.get("DATABASE_URL") or ""))
    if db.scheme.startswith("postgres"):
        if db.username:
            out["user"] = unquote(db.username)
        if db.password:
            out["password"] = unquote(db.password)
        if db.path.strip("/"):
            out["database"] = db.path.strip("/")
    rd = urlsplit(str(doc.get("REDIS_URL") or ""))
    if rd.scheme.startswith("redis") and rd.password:
        out["redis_password"] = unquote(rd.password)
    return out


class Service:
    """One long-running process in its own process group."""

    def __init__(self, what: str, argv: list[str], cwd: str, env: dict[str, str], log_path: str):
        self.what = what
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        self.pgid = self.p.pid
        CTX.add_child(self.pgid, what)

    def alive(self) -> bool:
        return self.p.poll() is None

    def log_text(self) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pgid, signal.SIGKILL)  # stragglers (postgres backends, sidekiq threads' children)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        CTX.remove_child(self.pgid)
        self.log.close()


class AppServices:
    def __init__(self, state_dir: str):
        self.state_dir = state_dir
        self.services: list[Service] = []
        self.info: dict[str, Any] = {}
        self.env: dict[str, str] = {}  # what builds and tasks get from the app secret
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- PostgreSQL
    def start_postgres(self, creds: dict[str, str]) -> dict[str, Any]:
        base = os.path.join(self.state_dir, "pg")
        if os.path.exists(base):
            shutil.rmtree(base)
        data = os.path.join(base, "data")
        os.makedirs(base)
        # PostgreSQL refuses to run as root: run it as the `postgres` user when we are root.
        prefix: list[str] = []
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise ServiceError("running as root and there is no `postgres` user to run PostgreSQL as "
                                   "(apt-get install postgresql creates it)") from exc
            os.chown(base, pw.pw_uid, pw.pw_gid)
            prefix = [_need("setpriv", "util-linux"), f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                      "--init-groups", "--"]
        pwfile = os.path.join(base, "superuser.pw")
        with open(pwfile, "w") as fh:
            fh.write(creds["password"] + "\n")
        if prefix:
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        cmd = [*prefix, pg_bin("initdb"), "-D", data, "-U", "postgres", "--auth-local=trust",
               "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=base)
        os.remove(pwfile)
        if res.returncode != 0:
            raise ServiceError(f"`{' '.join(cmd[len(prefix):])}` failed ({res.returncode}):\n"
                               f"{_tail(res.stdout + res.stderr)}")
        port = free_port()
        argv = [*prefix, pg_bin("postgres"), "-D", data, "-p", str(port), "-k", base,
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=100", "-c", "log_min_messages=warning"]
        svc = Service("postgres", argv, base, {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"},
                      os.path.join(self.state_dir, "postgres.log"))
        self.services.append(svc)
        sock = os.path.join(base, f".s.PGSQL.{port}")
        if not _wait(lambda: os.path.exists(sock) and _port_open(port), 60, svc.p) or not svc.alive():
            raise ServiceError(f"PostgreSQL did not start on 127.0.0.1:{port}:\n{_tail(svc.log_text())}")
        user, password, database = creds["user"], creds["password"], creds["database"]
        psql = pg_bin("psql")

        def accepting() -> bool:
            # the socket appears before recovery ends ("the database system is starting up")
            return subprocess.run([psql, "-h", base, "-p", str(port), "-U", "postgres", "-d", "postgres", "-Atqc",
                                   "SELECT 1"], capture_output=True, text=True).returncode == 0

        if not _wait(accepting, 60, svc.p):
            raise ServiceError(f"PostgreSQL on 127.0.0.1:{port} does not accept connections:\n{_tail(svc.log_text())}")
        sql = (f"CREATE ROLE {_ident(user)} LOGIN CREATEDB PASSWORD {_literal(password)};"
               if user != "postgres" else f"ALTER ROLE postgres PASSWORD {_literal(password)};")
        res = subprocess.run([psql, "-h", base, "-p", str(port), "-U", "postgres", "-d", "postgres", "-v",
                              "ON_ERROR_STOP=1", "-qc", sql], capture_output=True, text=True)
        if res.returncode != 0:
            raise ServiceError(f"creating the PostgreSQL role {user} failed:\n{_tail(res.stdout + res.stderr)}")
        url = f"postgres://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}/{database}"
        info = {"port": port, "host": "127.0.0.1", "socket_dir": base, "data_dir": data, "user": user,
                "database": database, "url": url, "pid": svc.p.pid, "log": svc.log_path,
                # psql "$(jq -r .services.postgres.admin_url stack.json)": superuser over the socket
                "admin_url": f"postgresql:///{database}?host={quote(base, safe='')}&port={port}&user=postgres"}
        self.info["postgres"] = info
        return info

    # ---------------------------------------------------------------- Redis
    def start_redis(self, password: str) -> dict[str, Any]:
        d = os.path.join(self.state_dir, "redis")
        if os.path.exists(d):
            shutil.rmtree(d)
        os.makedirs(d)
        port = free_port()
        sock = os.path.join(d, "redis.sock")
        argv = [_need("redis-server", "redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                "--unixsocket", sock, "--unixsocketperm", "700", "--dir", d, "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--requirepass", password, "--loglevel", "warning"]
        svc = Service("redis-server", argv, d, {"PATH": os.environ.get("PATH", "")},
                      os.path.join(self.state_dir, "redis.log"))
        self.services.append(svc)
        if not _wait(lambda: _port_open(port), 30, svc.p) or not svc.alive():
            raise ServiceError(f"redis-server did not start on 127.0.0.1:{port}:\n{_tail(svc.log_text())}")
        info = {"port": port, "host": "127.0.0.1", "socket": sock, "password": password,
                "url": f"redis://:{quote(password, safe='')}@127.0.0.1:{port}/0",
                "pid": svc.p.pid, "log": svc.log_path}
        self.info["redis"] = info
        return info

    # ---------------------------------------------------------------- the app
    def app_env(self, extra: dict[str, str]) -> dict[str, str]:
        from . import procs

        env = procs.base_env()
        env.update({"RAILS_ENV": "production", "RAILS_LOG_TO_STDOUT": "1"})
        env.update(extra)
        return env

    def run_app(self, what: str, argv: list[str], cwd: str, env: dict[str, str], timeout: float = 300) -> float:
        """Run one app command to completion; ServiceError naming the command and its output."""
        t0 = time.monotonic()
        try:
            res = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        except FileNotFoundError as exc:
            raise ServiceError(f"{what}: `{' '.join(argv)}` cannot run in {cwd}: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            raise ServiceError(f"{what}: `{' '.join(argv)}` did not finish in {timeout:.0f}s") from exc
        log = os.path.join(self.state_dir, "app-setup.log")
        with open(log, "a") as fh:
            fh.write(f"$ {' '.join(argv)}  (exit {res.returncode})\n{res.stdout}{res.stderr}\n")
        if res.returncode != 0:
            raise ServiceError(f"the app cannot boot: `{' '.join(argv)}` (in {cwd}) exited {res.returncode}:\n"
                               f"{_tail(res.stdout + res.stderr)}")
        return time.monotonic() - t0

    def prepare_app(self, checkout: str, env: dict[str, str]) -> dict[str, Any]:
        """Gems resolvable (Bundler, locally), the database created with schema + seeds."""
        bundle = _need("bundle", "Ruby's Bundler (apt-get install ruby)")
        timings: dict[str, Any] = {}
        if os.path.exists(os.path.join(checkout, "Gemfile")):
            try:
                timings["bundle_check_s"] = round(self.run_app("bundle", [bundle, "check"], checkout, env, 120), 2)
            except ServiceError:
                timings["bundle_install_s"] = round(
                    self.run_app("bundle", [bundle, "install", "--local", "--quiet"], checkout, env, 300), 2)
        rails = os.path.join(checkout, "bin", "rails")
        if not os.path.exists(rails):
            raise ServiceError(f"the app has no bin/rails ({checkout}): is it a Rails app?")
        prep_env = {**env, "DISABLE_DATABASE_ENVIRONMENT_CHECK": "1"}
        timings["db_prepare_s"] = round(self.run_app("db:prepare", [rails, "db:prepare"], checkout, prep_env), 2)
        # one more boot, measured alone: what every build and task pays
        timings["boot_s"] = round(self.run_app("boot", [rails, "runner", "nil"], checkout, env), 2)
        return timings

    def start_worker(self, checkout: str, env: dict[str, str]) -> dict[str, Any] | None:
        lock = os.path.join(checkout, "Gemfile.lock")
        gems = ""
        for f in (lock, os.path.join(checkout, "Gemfile")):
            try:
                with open(f) as fh:
                    gems += fh.read()
            except OSError:
                pass
        if "sidekiq" not in gems:
            self.info["worker"] = {"skipped": "the app's Gemfile has no sidekiq"}
            return None
        argv = [_need("bundle", "Ruby's Bundler"), "exec", "sidekiq", "-e", env.get("RAILS_ENV", "production"),
                "-t", "3"]
        if os.path.exists(os.path.join(checkout, "config", "sidekiq.yml")):
            argv += ["-C", "config/sidekiq.yml"]
        svc = Service("sidekiq", argv, checkout, env, os.path.join(self.state_dir, "worker.log"))
        self.services.append(svc)
        redis = self.info.get("redis") or {}

        def registered() -> bool:
            # the worker is up once its heartbeat is in Redis (Sidekiq's `processes` set)
            if not redis:
                return "Booted" in svc.log_text() or "Starting processing" in svc.log_text()
            res = subprocess.run(["redis-cli", "-p", str(redis["port"]), "-a", redis["password"], "--no-auth-warning",
                                  "scard", "processes"], capture_output=True, text=True)
            return res.returncode == 0 and res.stdout.strip() not in ("", "0")

        if not _wait(registered, 120, svc.p) or not svc.alive():
            raise ServiceError(f"the app's Sidekiq worker did not start: `{' '.join(argv)}` (in {checkout}):\n"
                               f"{_tail(svc.log_text())}")
        info = {"pid": svc.p.pid, "command": " ".join(argv), "dir": checkout, "log": svc.log_path}
        self.info["worker"] = info
        return info

    def stop(self) -> None:
        with self._lock:
            services, self.services = self.services[::-1], []
        for svc in services:  # worker first, then redis, then postgres
            # postgres: SIGINT is its fast shutdown; sidekiq and redis stop on SIGTERM
            svc.stop(signal.SIGINT if svc.what == "postgres" else signal.SIGTERM)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def find_app_secret(resources: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The provisioned secret whose JSON has DATABASE_URL (the app secret), with its value."""
    sm = CTX.client("secretsmanager")
    for lid, r in resources.items():
        if r.get("type") != "AWS::SecretsManager::Secret":
            continue
        arn = r.get("arn") or r.get("physical_id")
        try:
            doc = json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])
        except Exception:  # noqa: BLE001 - not JSON, or not readable: not the app secret
            continue
        if isinstance(doc, dict) and "DATABASE_URL" in doc:
            return arn, doc
    return None


def start_for_stack(state_dir: str, resources: dict[str, Any], app_repo: str) -> AppServices:
    """Everything the app needs, in order; on any failure what was started is stopped again."""
    from . import procs

    svc = AppServices(state_dir)
    try:
        found = find_app_secret(resources)
        creds = parse_app_secret(found[1] if found else {})
        t0 = time.monotonic()
        pg = svc.start_postgres(creds)
        rd = svc.start_redis(creds["redis_password"])
        secret_env = {"DATABASE_URL": pg["url"], "REDIS_URL": rd["url"]}
        if found:
            arn, doc = found
            doc.update(secret_env)
            CTX.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=json.dumps(doc))
            svc.info["app_secret"] = {"arn": arn, "keys": sorted(doc)}
            secret_env["SECRET_KEY_BASE"] = str(doc.get("SECRET_KEY_BASE") or "replica-secret-key-base")
        else:
            svc.info["app_secret"] = None
            secret_env["SECRET_KEY_BASE"] = "replica-secret-key-base"
        svc.info["services_s"] = round(time.monotonic() - t0, 2)
        svc.env = secret_env
        env = svc.app_env(secret_env)
        checkout = os.path.join(state_dir, "worker")
        if os.path.exists(checkout):
            shutil.rmtree(checkout)
        procs.checkout(procs.git(["rev-parse", "main"], cwd=app_repo), checkout)
        svc.info["app"] = svc.prepare_app(checkout, env)
        svc.start_worker(checkout, env)
    except BaseException:
        svc.stop()
        raise
    return svc
