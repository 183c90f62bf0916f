"""Shared helpers for the build and task runners: logs, secrets, processes, the app repo."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Any, Callable

from .context import CTX

_logs_lock = threading.Lock()


def ensure_stream(group: str, stream: str) -> None:
    from moto.logs.models import logs_backends

    backend = logs_backends[CTX.account][CTX.region]
    with _logs_lock:
        backend.ensure_log_group(group)
        grp = backend.groups[group]
        if stream not in grp.streams:
            backend.create_log_stream(group, stream)


def put_log_line(group: str, stream: str, message: str) -> None:
    from moto.logs.models import logs_backends

    backend = logs_backends[CTX.account][CTX.region]
    with _logs_lock:
        try:
            backend.put_log_events(group, stream, [{"timestamp": int(time.time() * 1000), "message": message}])
        except Exception:  # noqa: BLE001 - never let logging kill a build
            pass


def log_deep_link(group: str, stream: str) -> str:
    def enc(s: str) -> str:
        from urllib.parse import quote
        return quote(quote(s, safe=""), safe="").replace("%", "$")
    return (f"https://console.aws.amazon.com/cloudwatch/home?region={CTX.region}"
            f"#logsV2:log-groups/log-group/{enc(group)}/log-events/{enc(stream)}")


class ResolveError(Exception):
    pass


def resolve_secret(ref: str) -> str:
    """Secrets Manager reference: CodeBuild `secret-id:json-key:stage:version` or ECS
    `arn:...:secret:name-XXXXXX:json-key:stage:version`."""
    import json

    sm = CTX.client("secretsmanager")
    if ref.startswith("arn:"):
        parts = ref.split(":")
        secret_id = ":".join(parts[:7])
        rest = parts[7:]
    else:
        parts = ref.split(":")
        secret_id, rest = parts[0], parts[1:]
    json_key = rest[0] if rest else ""
    stage = rest[1] if len(rest) > 1 else ""
    version = rest[2] if len(rest) > 2 else ""
    kwargs: dict[str, Any] = {"SecretId": secret_id}
    if stage:
        kwargs["VersionStage"] = stage
    if version:
        kwargs["VersionId"] = version
    try:
        value = sm.get_secret_value(**kwargs)["SecretString"]
    except Exception as exc:  # noqa: BLE001
        raise ResolveError(f"Secrets Manager error: cannot get secret {secret_id}: {exc}") from exc
    if json_key:
        try:
            doc = json.loads(value)
            return str(doc[json_key])
        except (ValueError, KeyError, TypeError) as exc:
            raise ResolveError(f"Secrets Manager error: secret {secret_id} has no JSON key {json_key}") from exc
    return value


def resolve_parameter(ref: str) -> str:
    ssm = CTX.client("ssm")
    name = ref
    if ref.startswith("arn:"):
        name = "/" + ref.split(":parameter/", 1)[1]
        if not ref.split(":parameter/", 1)[1].startswith("/") and ref.split(":parameter/", 1)[1].count("/") == 0:
            name = ref.split(":parameter/", 1)[1]
    try:
        return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except Exception as exc:  # noqa: BLE001
        raise ResolveError(f"Parameter Store error: cannot get parameter {name}: {exc}") from exc


def base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER", "CARGO_HOME", "RUSTUP_HOME")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update({
        "AWS_ENDPOINT_URL": CTX.endpoint, "AWS_REGION": CTX.region, "AWS_DEFAULT_REGION": CTX.region,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "BATCHLESS_REPLICA": "1",
    })
    return env


def git(args: list[str], cwd: str | None = None, check: bool = True) -> str:
    res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    if check and res.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout.strip()


def resolve_commit(version: str | None) -> str | None:
    """Resolve a source version (sha, branch, refs/heads/x, tag) in the app repo; None if unknown."""
    v = (version or "main").strip()
    candidates = [v]
    if v.startswith("refs/heads/"):
        candidates.append(v[len("refs/heads/"):])
    for c in candidates:
        res = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{c}^{{commit}}"],
                             cwd=CTX.app_repo, capture_output=True, text=True)
        if res.returncode == 0:
            return res.stdout.strip()
    return None


def checkout(sha: str, dest: str, depth: int = 0) -> None:
    """Check out `sha` into `dest` with `origin` the app repository, as CodeBuild does: the whole
    history (`depth` 0), or a shallow clone of that commit (the project's `gitCloneDepth`), in
    which nothing but the commit's own `depth` commits is known until the build fetches more."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if depth <= 0:
        git(["clone", "--quiet", "--no-checkout", CTX.app_repo, dest])
    else:
        git(["init", "--quiet", dest])
        git(["remote", "add", "origin", "file://" + os.path.abspath(CTX.app_repo)], cwd=dest)
        git(["fetch", "--quiet", "--no-tags", f"--depth={depth}", "origin", sha], cwd=dest)
    git(["checkout", "--quiet", "--detach", sha], cwd=dest)


class Proc:
    """A child process in its own process group, output streamed line by line."""

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str], on_line: Callable[[str], None], what: str):
        self.p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        self.pgid = self.p.pid
        CTX.add_child(self.pgid, what)
        self.signalled: int | None = None
        self._reader = threading.Thread(target=self._read, args=(on_line,), daemon=True)
        self._reader.start()

    def _read(self, on_line: Callable[[str], None]) -> None:
        assert self.p.stdout is not None
        for raw in iter(self.p.stdout.readline, b""):
            on_line(raw.decode("utf-8", "replace").rstrip("\n"))
        self.p.stdout.close()

    def kill(self, sig: int = signal.SIGTERM, grace: float = 3.0) -> None:
        self.signalled = sig
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            return

        def hard() -> None:
            time.sleep(grace)
            if self.p.poll() is None:
                try:
                    os.killpg(self.pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        threading.Thread(target=hard, daemon=True).start()

    def wait(self) -> int:
        rc = self.p.wait()
        self._reader.join(timeout=5)
        # the whole group ends with the leader: take stragglers down too
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        CTX.remove_child(self.pgid)
        return rc
