"""CodeBuild builds that really run: buildspec phases as local processes."""

from __future__ import annotations

import copy
import datetime
import os
import re
import threading
import time
import uuid
from typing import Any

import yaml

from .context import CTX, utcnow
from . import events, procs

PHASES = ["SUBMITTED", "QUEUED", "PROVISIONING", "DOWNLOAD_SOURCE", "INSTALL", "PRE_BUILD", "BUILD",
          "POST_BUILD", "UPLOAD_ARTIFACTS", "FINALIZING", "COMPLETED"]
SPEC_PHASES = {"INSTALL": "install", "PRE_BUILD": "pre_build", "BUILD": "build", "POST_BUILD": "post_build"}

_lock = threading.RLock()
BUILDS: dict[str, "Build"] = {}
ORDER: list[str] = []  # build ids, oldest first
TOKENS: dict[tuple[str, str], tuple[float, str]] = {}
_counters: dict[str, int] = {}


class InputError(Exception):
    pass


def _fmt_time(dt: datetime.datetime) -> str:
    return dt.strftime("%Y/%m/%d %H:%M:%S.") + f"{dt.microsecond // 1000:03d}"


def expand_vars(text: str, env: dict[str, str]) -> str:
    """`$NAME` / `${NAME}` from the build environment (unset → empty), as CodeBuild expands paths."""
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", lambda m: env.get(m.group(1) or m.group(2), ""), text)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A buildspec `files` glob as a regex over `/`-separated relative paths: `**` any number of
    directories, `*` / `?` within one path segment."""
    pattern = pattern.strip()
    while pattern.startswith("./"):
        pattern = pattern[2:]
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _files_under(root: str) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            full = os.path.join(dirpath, f)
            if os.path.isfile(full):
                found.append(os.path.relpath(full, root).replace(os.sep, "/"))
    return found


def artifact_prefix(artifacts: dict[str, Any], build_uuid: str) -> str:
    """The S3 key prefix of type-S3 artifacts: `<path>/<name>` (`<path>/<build uuid>/<name>` with
    namespaceType BUILD_ID), empty parts (and a name of `/`) skipped."""
    name = str(artifacts.get("name") or "").strip("/")
    parts = [str(artifacts.get("path") or "").strip("/")]
    if str(artifacts.get("namespaceType") or "NONE").upper() == "BUILD_ID":
        parts.append(build_uuid)
    parts.append(name)
    return "/".join(p for p in parts if p)


class Build:
    def __init__(self, project: dict[str, Any], params: dict[str, Any]):
        name = project["name"]
        self.uuid = str(uuid.uuid4())
        self.id = f"{name}:{self.uuid}"
        self.arn = f"arn:aws:codebuild:{CTX.region}:{CTX.account}:build/{self.id}"
        self.project = project
        self.lock = threading.RLock()
        self.proc: procs.Proc | None = None
        self.stop_requested = False
        self.timed_out = False
        with _lock:
            _counters[name] = _counters.get(name, 0) + 1
            number = _counters[name]
        source = copy.deepcopy(project.get("source") or {})
        if params.get("buildspecOverride"):
            source["buildspec"] = params["buildspecOverride"]
        env = copy.deepcopy(project.get("environment") or {})
        variables = list(env.get("environmentVariables") or [])
        for ov in params.get("environmentVariablesOverride") or []:
            variables = [v for v in variables if v["name"] != ov["name"]] + [
                {"name": ov["name"], "value": ov.get("value", ""), "type": ov.get("type", "PLAINTEXT")}]
        env["environmentVariables"] = variables
        timeout = params.get("timeoutInMinutesOverride") or project.get("timeoutInMinutes") or 60
        logs_cfg = (project.get("logsConfig") or {}).get("cloudWatchLogs") or {}
        self.log_group = logs_cfg.get("groupName") or f"/aws/codebuild/{name}"
        self.log_stream = f"{logs_cfg['streamName']}/{self.uuid}" if logs_cfg.get("streamName") else self.uuid
        now = utcnow()
        self.record: dict[str, Any] = {
            "id": self.id, "arn": self.arn, "buildNumber": number, "startTime": now,
            "currentPhase": "QUEUED", "buildStatus": "IN_PROGRESS",
            "sourceVersion": params.get("sourceVersion") or project.get("sourceVersion") or "refs/heads/main",
            "projectName": name,
            "phases": [{"phaseType": "SUBMITTED", "phaseStatus": "SUCCEEDED", "startTime": now, "endTime": now,
                        "durationInSeconds": 0}],
            "source": source, "secondarySources": [], "secondarySourceVersions": [],
            "artifacts": {"location": ""}, "secondaryArtifacts": [], "cache": {"type": "NO_CACHE"},
            "environment": env, "serviceRole": project.get("serviceRole"),
            "logs": {"groupName": self.log_group, "streamName": self.log_stream,
                     "deepLink": procs.log_deep_link(self.log_group, self.log_stream),
                     "cloudWatchLogsArn": f"arn:aws:logs:{CTX.region}:{CTX.account}:log-group:{self.log_group}"
                                          f":log-stream:{self.log_stream}",
                     "cloudWatchLogs": {"status": "ENABLED", "groupName": self.log_group,
                                        "streamName": logs_cfg.get("streamName", "")},
                     "s3Logs": {"status": "DISABLED", "encryptionDisabled": False}},
            "timeoutInMinutes": int(timeout), "queuedTimeoutInMinutes": project.get("queuedTimeoutInMinutes") or 480,
            "buildComplete": False, "initiator": params.get("initiator") or "batchless-replica",
            "encryptionKey": f"arn:aws:kms:{CTX.region}:{CTX.account}:alias/aws/s3",
        }
        self.workdir = os.path.join(CTX.state_dir, "builds", self.uuid)
        # artifactsOverride replaces the project's artifacts; only type S3 (packaging NONE) is uploaded
        self.artifacts: dict[str, Any] = copy.deepcopy(
            params.get("artifactsOverride") or project.get("artifacts") or {"type": "NO_ARTIFACTS"})
        self.record["artifacts"] = self._artifacts_record()
        self.spec: dict[str, Any] | None = None  # the parsed buildspec, once past DOWNLOAD_SOURCE
        self.env: dict[str, str] = {}

    def _artifacts_record(self) -> dict[str, Any]:
        art = self.artifacts
        if str(art.get("type") or "").upper() != "S3" or not art.get("location"):
            return {"location": ""}
        prefix = artifact_prefix(art, self.uuid)
        rec: dict[str, Any] = {"location": f"arn:aws:s3:::{art['location']}" + (f"/{prefix}" if prefix else "")}
        for k in ("encryptionDisabled", "overrideArtifactName", "artifactIdentifier"):
            if k in art:
                rec[k] = art[k]
        return rec

    # ------------------------------------------------------------------ view
    def describe(self) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.record)

    def _log(self, line: str) -> None:
        procs.put_log_line(self.log_group, self.log_stream, line)

    def _clog(self, msg: str) -> None:
        self._log(f"[Container] {_fmt_time(utcnow())} {msg}")

    def _phase_start(self, ptype: str) -> dict[str, Any]:
        with self.lock:
            phase = {"phaseType": ptype, "startTime": utcnow()}
            self.record["phases"].append(phase)
            self.record["currentPhase"] = ptype
        if ptype in SPEC_PHASES:
            self._clog(f"Entering phase {ptype}")
        return phase

    def _phase_end(self, phase: dict[str, Any], status: str, message: str | None = None,
                   code: str | None = None) -> None:
        with self.lock:
            end = utcnow()
            phase["endTime"] = end
            phase["durationInSeconds"] = int((end - phase["startTime"]).total_seconds())
            phase["phaseStatus"] = status
            if message is not None:
                phase["contexts"] = [{"statusCode": code or ("COMMAND_EXECUTION_ERROR" if status == "FAILED" else ""),
                                      "message": message}]
            elif phase["phaseType"] not in ("SUBMITTED", "COMPLETED"):
                phase["contexts"] = [{"statusCode": "", "message": ""}]
        if phase["phaseType"] in SPEC_PHASES:
            self._clog(f"Phase complete: {phase['phaseType']} State: {status}")
            if message:
                self._clog(f"Phase context status code: {code or 'COMMAND_EXECUTION_ERROR'} Message: {message}")

    # ------------------------------------------------------------------ run
    def start(self) -> None:
        procs.ensure_stream(self.log_group, self.log_stream)
        events.emit("aws.codebuild", "CodeBuild Build State Change", self.event_detail(), [self.arn])
        threading.Thread(target=self._run, name=f"build-{self.uuid}", daemon=True).start()
        threading.Thread(target=self._watchdog, daemon=True).start()

    def _watchdog(self) -> None:
        deadline = time.monotonic() + CTX.scaled(self.record["timeoutInMinutes"] * 60)
        while time.monotonic() < deadline:
            if self.record["buildComplete"]:
                return
            time.sleep(0.2)
        with self.lock:
            if self.record["buildComplete"]:
                return
            self.timed_out = True
            p = self.proc
        if p:
            p.kill()

    def stop(self) -> None:
        with self.lock:
            if self.record["buildComplete"]:
                return
            self.stop_requested = True
            self.record["buildStatus"] = "STOPPED"  # what AWS reports as soon as StopBuild returns
            p = self.proc
        if p:
            p.kill()

    def _interrupted(self) -> str | None:
        if self.stop_requested:
            return "STOPPED"
        if self.timed_out:
            return "TIMED_OUT"
        return None

    def _run_command(self, cmd: str, env: dict[str, str], shell: str) -> int:
        self._clog(f"Running command {cmd}")
        with self.lock:
            if self._interrupted():
                return -1
            self.proc = procs.Proc([shell, "-c", cmd], self.workdir, env, self._log, f"build {self.id}")
        rc = self.proc.wait()
        with self.lock:
            self.proc = None
        return rc

    def _run(self) -> None:
        status = "SUCCEEDED"
        try:
            status = self._run_inner()
        except Exception as exc:  # noqa: BLE001
            self._clog(f"replica: internal error: {exc!r}")
            status = "FAULT"
        finally:
            self._finish(status)

    def _run_inner(self) -> str:
        for ptype in ("QUEUED", "PROVISIONING"):
            ph = self._phase_start(ptype)
            if ptype == "PROVISIONING":
                try:
                    env = self._resolve_env()
                except procs.ResolveError as exc:
                    self._phase_end(ph, "FAILED", str(exc), "CLIENT_ERROR")
                    return "FAILED"
            self._phase_end(ph, "SUCCEEDED")
        ph = self._phase_start("DOWNLOAD_SOURCE")
        version = self.record["sourceVersion"]
        sha = procs.resolve_commit(version)
        if sha is None:
            self._phase_end(ph, "FAILED", f"CLIENT_ERROR: repository not found or reference not found "
                                          f"for primary source and source version {version}", "CLIENT_ERROR")
            return "FAILED"
        try:
            procs.checkout(sha, self.workdir, int((self.record["source"] or {}).get("gitCloneDepth") or 0))
        except RuntimeError as exc:
            self._phase_end(ph, "FAILED", str(exc), "CLIENT_ERROR")
            return "FAILED"
        with self.lock:
            self.record["resolvedSourceVersion"] = sha
        env["CODEBUILD_RESOLVED_SOURCE_VERSION"] = sha
        self._phase_end(ph, "SUCCEEDED")

        spec_text = (self.record["source"] or {}).get("buildspec") or ""
        try:
            if spec_text and "\n" not in spec_text.strip() and os.path.exists(os.path.join(self.workdir, spec_text)):
                with open(os.path.join(self.workdir, spec_text), encoding="utf-8") as fh:
                    spec_text = fh.read()
            elif not spec_text and os.path.exists(os.path.join(self.workdir, "buildspec.yml")):
                with open(os.path.join(self.workdir, "buildspec.yml"), encoding="utf-8") as fh:
                    spec_text = fh.read()
            spec = yaml.safe_load(spec_text) if spec_text else None
            if not isinstance(spec, dict):
                raise ValueError("buildspec is empty or not a mapping")
        except (ValueError, yaml.YAMLError) as exc:
            ph = self._phase_start("INSTALL")
            self._phase_end(ph, "FAILED", f"YAML_FILE_ERROR: {exc}", "YAML_FILE_ERROR")
            return "FAILED"
        self.spec, self.env = spec, env
        spec_env = spec.get("env") or {}
        shell = spec_env.get("shell") or "bash"
        shell = {"bash": "bash", "/bin/sh": "sh", "sh": "sh"}.get(shell, shell)
        try:
            for k, v in (spec_env.get("variables") or {}).items():
                if str(k) not in self._override_names:
                    env[str(k)] = str(v)
            for k, v in (spec_env.get("parameter-store") or {}).items():
                env[str(k)] = procs.resolve_parameter(str(v))
            for k, v in (spec_env.get("secrets-manager") or {}).items():
                env[str(k)] = procs.resolve_secret(str(v))
        except procs.ResolveError as exc:
            ph = self._phase_start("INSTALL")
            self._phase_end(ph, "FAILED", str(exc), "CLIENT_ERROR")
            return "FAILED"

        phases = spec.get("phases") or {}
        build_failed = False
        skip_to_end = False
        for ptype in ("INSTALL", "PRE_BUILD", "BUILD", "POST_BUILD"):
            if skip_to_end:
                continue
            pspec = phases.get(SPEC_PHASES[ptype]) or {}
            ph = self._phase_start(ptype)
            pstatus, message = self._run_phase(pspec, env, shell)
            if pstatus == "INTERRUPTED":
                why = self._interrupted() or "STOPPED"
                self._phase_end(ph, why, "Build was stopped" if why == "STOPPED" else "Build timed out",
                                "BUILD_STOPPED" if why == "STOPPED" else "BUILD_TIMED_OUT")
                return why
            self._phase_end(ph, pstatus, message)
            if pstatus == "FAILED":
                build_failed = True
                env["CODEBUILD_BUILD_SUCCEEDING"] = "0"
                if str(pspec.get("on-failure", "ABORT")).upper() == "CONTINUE":
                    continue
                if ptype in ("INSTALL", "PRE_BUILD"):
                    skip_to_end = True
        return "FAILED" if build_failed else "SUCCEEDED"

    _override_names: set[str] = set()

    def _run_phase(self, pspec: dict[str, Any], env: dict[str, str], shell: str) -> tuple[str, str | None]:
        status, message = "SUCCEEDED", None
        for cmd in pspec.get("commands") or []:
            rc = self._run_command(str(cmd), env, shell)
            if self._interrupted():
                return "INTERRUPTED", None
            if rc != 0:
                status = "FAILED"
                message = f"Error while executing command: {cmd}. Reason: exit status {rc}"
                self._clog(f"Command did not exit successfully {cmd} exit status {rc}")
                break
        for cmd in pspec.get("finally") or []:
            rc = self._run_command(str(cmd), env, shell)
            if self._interrupted():
                return "INTERRUPTED", None
            if rc != 0 and status == "SUCCEEDED":
                status = "FAILED"
                message = f"Error while executing command: {cmd}. Reason: exit status {rc}"
        return status, message

    def _resolve_env(self) -> dict[str, str]:
        env = procs.base_env()
        env.update({
            "CODEBUILD_BUILD_ID": self.id, "CODEBUILD_BUILD_ARN": self.arn,
            "CODEBUILD_BUILD_NUMBER": str(self.record["buildNumber"]),
            "CODEBUILD_SOURCE_VERSION": self.record["sourceVersion"],
            "CODEBUILD_SRC_DIR": self.workdir, "CODEBUILD_INITIATOR": self.record["initiator"],
            "CODEBUILD_BUILD_IMAGE": (self.record["environment"] or {}).get("image", ""),
            "CODEBUILD_LOG_PATH": self.log_stream, "CODEBUILD_PROJECT_NAME": self.project["name"],
            "CODEBUILD_START_TIME": str(int(self.record["startTime"].timestamp() * 1000)),
            "CODEBUILD_BUILD_SUCCEEDING": "1", "CODEBUILD_CI": "true",
        })
        names = set()
        for v in self.record["environment"].get("environmentVariables") or []:
            t = v.get("type", "PLAINTEXT")
            if t == "SECRETS_MANAGER":
                env[v["name"]] = procs.resolve_secret(v["value"])
            elif t == "PARAMETER_STORE":
                env[v["name"]] = procs.resolve_parameter(v["value"])
            else:
                env[v["name"]] = str(v.get("value", ""))
            names.add(v["name"])
        self._override_names = names
        return env

    def _finish(self, status: str) -> None:
        if self.stop_requested:
            status = "STOPPED"
        elif self.timed_out and status != "SUCCEEDED":
            status = "TIMED_OUT"
        for ptype in ("UPLOAD_ARTIFACTS", "FINALIZING"):
            ph = self._phase_start(ptype)
            if ptype == "UPLOAD_ARTIFACTS" and self.spec is not None and status not in ("STOPPED", "TIMED_OUT"):
                # attempted for every build that got past DOWNLOAD_SOURCE, failed ones included
                error = self._upload_artifacts()
                self._phase_end(ph, "FAILED" if error else "SUCCEEDED", error, "CLIENT_ERROR" if error else None)
                self._clog(f"Phase complete: UPLOAD_ARTIFACTS State: {'FAILED' if error else 'SUCCEEDED'}")
                self._clog(f"Phase context status code: {'CLIENT_ERROR' if error else ''} Message: {error or ''}")
                if error and status == "SUCCEEDED":
                    status = "FAILED"
                continue
            self._phase_end(ph, "SUCCEEDED")
        with self.lock:
            now = utcnow()
            self.record["phases"].append({"phaseType": "COMPLETED", "startTime": now})
            self.record["currentPhase"] = "COMPLETED"
            self.record["buildStatus"] = status
            self.record["endTime"] = now
            self.record["buildComplete"] = True
        self._clog(f"Build {status}")
        events.emit("aws.codebuild", "CodeBuild Build State Change", self.event_detail(), [self.arn])

    def _upload_artifacts(self) -> str | None:
        """UPLOAD_ARTIFACTS for type S3, packaging NONE: every file the buildspec's `artifacts.files`
        globs select under `base-directory` goes to `<location>/<path>/<name>/<relative path>`.
        Returns the CLIENT_ERROR message, or None."""
        section = (self.spec or {}).get("artifacts")
        art = self.artifacts
        if not isinstance(section, dict) or str(art.get("type") or "").upper() != "S3" or not art.get("location"):
            return None
        patterns = [str(f) for f in section.get("files") or []]
        if not patterns:
            return None
        packaging = str(art.get("packaging") or "NONE").upper()
        if packaging != "NONE":
            self._clog(f"replica: artifacts packaging {packaging} is not imitated; nothing uploaded")
            return None
        base = expand_vars(str(section.get("base-directory") or "."), self.env)
        self._clog(f"Expanding base directory path: {base}")
        self._clog("Assembling file list")
        self._clog(f"Expanding {base}")
        root = base if os.path.isabs(base) else os.path.join(self.workdir, base)
        if not os.path.isdir(root):
            self._clog(f"Skipping invalid file path {base}")
            return f"no matching base directory path found for {base}"
        self._clog(f"Expanding file paths for base directory {base}")
        self._clog("Assembling file list")
        candidates = _files_under(root)
        matched: list[str] = []
        for pattern in patterns:
            self._clog(f"Expanding {pattern}")
            rx = glob_regex(pattern)
            hits = [f for f in candidates if rx.match(f)]
            if not hits:
                self._clog(f"Skipping invalid file path {pattern}")
            matched += [f for f in hits if f not in matched]
        if not matched:
            return "no matching artifact paths found"
        self._clog(f"Found {len(matched)} file(s)")
        discard = str(section.get("discard-paths", "no")).lower() in ("yes", "true")
        prefix = artifact_prefix(art, self.uuid)
        s3 = CTX.client("s3")
        for rel in matched:
            key = "/".join(p for p in (prefix, os.path.basename(rel) if discard else rel) if p)
            try:
                with open(os.path.join(root, rel), "rb") as fh:
                    s3.put_object(Bucket=art["location"], Key=key, Body=fh.read())
            except Exception as exc:  # noqa: BLE001 - reported as the phase's CLIENT_ERROR
                return f"Error uploading artifacts: {exc}"
        return None

    # ------------------------------------------------------------------ event
    def event_detail(self) -> dict[str, Any]:
        b = self.describe()

        def t(dt: Any) -> str | None:
            return dt.strftime("%b %-d, %Y %-I:%M:%S %p") if isinstance(dt, datetime.datetime) else dt

        phases = []
        for p in b["phases"]:
            phases.append({"phase-context": [f"{c.get('statusCode', '')}: {c.get('message', '')}"
                                             for c in p.get("contexts", []) if c.get("message")],
                           "start-time": t(p.get("startTime")), "end-time": t(p.get("endTime")),
                           "duration-in-seconds": p.get("durationInSeconds"),
                           "phase-type": p["phaseType"], "phase-status": p.get("phaseStatus")})
        exit_phase = next((p for p in b["phases"] if p.get("phaseStatus") in ("FAILED", "FAULT", "TIMED_OUT", "STOPPED")), None)
        info: dict[str, Any] = {
            "cache": {"type": "NO_CACHE"},
            "timeout-in-minutes": b["timeoutInMinutes"], "build-complete": b["buildComplete"],
            "initiator": b["initiator"], "build-start-time": t(b["startTime"]),
            "source": b["source"], "source-version": b["sourceVersion"],
            "resolved-source-version": b.get("resolvedSourceVersion"),
            "artifact": {"location": b["artifacts"].get("location", "")},
            "environment": {"image": b["environment"].get("image"), "privileged-mode": False,
                            "compute-type": b["environment"].get("computeType"),
                            "type": b["environment"].get("type"),
                            "environment-variables": [{"name": v["name"], "type": v.get("type", "PLAINTEXT"),
                                                       "value": v.get("value", "")}
                                                      for v in b["environment"].get("environmentVariables", [])]},
            "logs": {"group-name": self.log_group, "stream-name": self.log_stream,
                     "deep-link": b["logs"]["deepLink"]},
            "phases": phases, "queued-timeout-in-minutes": b["queuedTimeoutInMinutes"],
        }
        if exit_phase is not None:
            ctx = (exit_phase.get("contexts") or [{}])[0]
            info["exit-info"] = {"phase": exit_phase["phaseType"], "status": exit_phase["phaseStatus"],
                                 "message": ctx.get("message", ""), "status-code": ctx.get("statusCode", "")}
        return {
            "build-status": b["buildStatus"], "project-name": b["projectName"], "build-id": self.arn,
            "additional-information": info, "current-phase": b["currentPhase"],
            "current-phase-context": "[]", "version": "1",
        }


# --------------------------------------------------------------------------- API handlers


def _find(build_id: str) -> Build | None:
    with _lock:
        if build_id in BUILDS:
            return BUILDS[build_id]
        for b in BUILDS.values():
            if b.arn == build_id:
                return b
    return None


def codebuild_replacements(original: dict[str, Any]) -> dict[str, Any]:
    """CodeBuild's request handlers that run builds for real (registered in patches.py)."""
    from moto.codebuild.exceptions import InvalidInputException, ResourceNotFoundException
    from moto.core.responses import ActionResult

    def _project(self, name: str) -> dict[str, Any]:
        projects = self.codebuild_backend.batch_get_projects([name])
        if not projects:
            raise ResourceNotFoundException(
                f"Project cannot be found: arn:aws:codebuild:{self.region}:{self.current_account}:project/{name}")
        return projects[0]

    def start_build(self):  # type: ignore[no-untyped-def]
        name = self._get_param("projectName")
        project = _project(self, name)
        token = self._get_param("idempotencyToken")
        if token:
            with _lock:
                hit = TOKENS.get((project["name"], token))
                if hit and time.time() - hit[0] < 300 and hit[1] in BUILDS:
                    return ActionResult({"build": BUILDS[hit[1]].describe()})
        params = {k: self._get_param(k) for k in (
            "sourceVersion", "buildspecOverride", "environmentVariablesOverride", "timeoutInMinutesOverride",
            "artifactsOverride")}
        art = params["artifactsOverride"]
        if art:
            if art.get("type") not in ("CODEPIPELINE", "S3", "NO_ARTIFACTS"):
                raise InvalidInputException("Invalid type provided: Artifact type")
            if art["type"] == "S3" and not art.get("location"):
                raise InvalidInputException("Invalid artifactsOverride: location is required for type S3")
        for ov in params.get("environmentVariablesOverride") or []:
            if ov.get("type", "PLAINTEXT") not in ("PLAINTEXT", "SECRETS_MANAGER", "PARAMETER_STORE"):
                raise InvalidInputException(f"Invalid environment variable type: {ov.get('type')}")
        build = Build(project, params)
        with _lock:
            BUILDS[build.id] = build
            ORDER.append(build.id)
            if token:
                TOKENS[(project["name"], token)] = (time.time(), build.id)
        build.start()
        return ActionResult({"build": build.describe()})

    def batch_get_builds(self):  # type: ignore[no-untyped-def]
        found, missing = [], []
        for bid in self._get_param("ids") or []:
            b = _find(bid)
            if b is None:
                if ":" not in bid:
                    raise InvalidInputException("Invalid build ID provided")
                missing.append(bid)
            else:
                found.append(b.describe())
        return ActionResult({"builds": found, "buildsNotFound": missing})

    def stop_build(self):  # type: ignore[no-untyped-def]
        bid = self._get_param("id")
        b = _find(bid)
        if b is None:
            if ":" not in (bid or ""):
                raise InvalidInputException("Invalid build ID provided")
            raise ResourceNotFoundException(f"Build {bid} does not exist")
        b.stop()
        return ActionResult({"build": b.describe()})

    def list_builds(self):  # type: ignore[no-untyped-def]
        with _lock:
            ids = list(reversed(ORDER))
        if self._get_param("sortOrder") == "ASCENDING":
            ids.reverse()
        return ActionResult({"ids": ids})

    def list_builds_for_project(self):  # type: ignore[no-untyped-def]
        name = self._get_param("projectName")
        _project(self, name)
        with _lock:
            ids = [i for i in reversed(ORDER) if BUILDS[i].project["name"] == name]
        if self._get_param("sortOrder") == "ASCENDING":
            ids.reverse()
        return ActionResult({"ids": ids})

    return {"start_build": start_build, "batch_get_builds": batch_get_builds, "stop_build": stop_build,
            "list_builds": list_builds, "list_builds_for_project": list_builds_for_project}


def stop_all() -> None:
    with _lock:
        builds = list(BUILDS.values())
    for b in builds:
        b.stop()
