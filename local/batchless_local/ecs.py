"""ECS RunTask that really runs the container command as a local process."""

from __future__ import annotations

import copy
import os
import signal
import threading
import time
import uuid
from typing import Any

from .context import CTX, utcnow
from . import events, procs

_lock = threading.RLock()
TASKS: dict[str, "Task"] = {}  # task arn -> task
ORDER: list[str] = []
TOKENS: dict[str, tuple[float, list[str]]] = {}


def _argv(command: list[str]) -> list[str]:
    if len(command) >= 3 and os.path.basename(command[0]) in ("sh", "bash") and command[1] in ("-c", "-lc", "-ec"):
        return ["bash", "-c", " ".join(command[2:])]
    if len(command) == 1 and " " in command[0]:
        return ["bash", "-c", command[0]]
    return list(command)


class Task:
    def __init__(self, cluster_arn: str, td: Any, params: dict[str, Any]):
        self.id = uuid.uuid4().hex
        cluster_name = cluster_arn.split("/")[-1]
        self.arn = f"arn:aws:ecs:{CTX.region}:{CTX.account}:task/{cluster_name}/{self.id}"
        self.lock = threading.RLock()
        self.proc: procs.Proc | None = None
        self.stop_reason: str | None = None
        self.timed_out = False
        self.td = td
        self.params = params
        overrides = params.get("overrides") or {}
        by_name = {o.get("name"): o for o in overrides.get("containerOverrides") or []}
        self.containers = []
        for cdef in td.container_definitions:
            ov = by_name.get(cdef["name"], {})
            self.containers.append({"def": cdef, "override": ov})
        now = utcnow()
        family = td.arn.split("/")[-1].split(":")[0]
        self.record: dict[str, Any] = {
            "taskArn": self.arn, "clusterArn": cluster_arn, "taskDefinitionArn": td.arn,
            "lastStatus": "PROVISIONING", "desiredStatus": "RUNNING", "createdAt": now,
            "group": params.get("group") or f"family:{family}", "launchType": params.get("launchType") or "FARGATE",
            "startedBy": params.get("startedBy") or None, "overrides": {"containerOverrides": list(by_name.values()),
                                                                        "inferenceAcceleratorOverrides": []},
            "tags": params.get("tags") or [], "version": 1, "cpu": getattr(td, "cpu", None),
            "memory": getattr(td, "memory", None), "platformVersion": "1.4.0", "connectivity": "CONNECTED",
            "attachments": [], "availabilityZone": f"{CTX.region}a",
            "containers": [{
                "containerArn": f"arn:aws:ecs:{CTX.region}:{CTX.account}:container/{cluster_name}/{self.id}/{uuid.uuid4()}",
                "taskArn": self.arn, "name": c["def"]["name"], "image": c["def"].get("image", ""),
                "lastStatus": "PENDING", "networkInterfaces": [], "healthStatus": "UNKNOWN",
            } for c in self.containers],
        }
        if self.record["startedBy"] is None:
            del self.record["startedBy"]
        self.workdir = os.path.join(CTX.state_dir, "tasks", self.id)

    def describe(self) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.record)

    def event_detail(self) -> dict[str, Any]:
        d = self.describe()
        # every timestamp (createdAt, startedAt, connectivityAt, stoppedAt, ...) as EventBridge writes it
        for k, v in d.items():
            if hasattr(v, "strftime"):
                d[k] = v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"
        d["updatedAt"] = utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return d

    def _set(self, **kw: Any) -> None:
        with self.lock:
            self.record.update(kw)
            self.record["version"] += 1

    # -------------------------------------------------------------- run
    def start(self) -> None:
        threading.Thread(target=self._run, name=f"task-{self.id}", daemon=True).start()

    def _env_for(self, c: dict[str, Any]) -> dict[str, str]:
        env = procs.base_env()
        from . import ecs_exec

        env.update({"ECS_CONTAINER_METADATA_URI_V4": f"{ecs_exec.metadata_base()}/{self.id}",
                    "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE"})
        for e in c["def"].get("environment") or []:
            env[e["name"]] = str(e.get("value", ""))
        for s in c["def"].get("secrets") or []:
            ref = s["valueFrom"]
            if ":secretsmanager:" in ref or (not ref.startswith("arn:") and ":" in ref and not ref.startswith("/")):
                env[s["name"]] = procs.resolve_secret(ref.rstrip(":") if ref.endswith("::") else ref)
            else:
                env[s["name"]] = procs.resolve_parameter(ref)
        for e in c["override"].get("environment") or []:
            env[e["name"]] = str(e.get("value", ""))
        return env

    def _run(self) -> None:
        c = self.containers[0]  # the essential container; sidecars are not run locally
        cname = c["def"]["name"]
        opts = ((c["def"].get("logConfiguration") or {}).get("options") or {})
        group = opts.get("awslogs-group")
        stream = f"{opts.get('awslogs-stream-prefix')}/{cname}/{self.id}" if opts.get("awslogs-stream-prefix") else None
        if group and stream:
            procs.ensure_stream(group, stream)

        def log(line: str) -> None:
            if group and stream:
                procs.put_log_line(group, stream, line)

        try:
            env = self._env_for(c)
            sha = procs.resolve_commit("main")
            if sha is None:
                raise RuntimeError("app repository has no main branch")
            procs.checkout(sha, self.workdir)
            command = c["override"].get("command") or c["def"].get("command") or []
            if not command:
                command = c["def"].get("entryPoint") or ["true"]
            argv = _argv([str(x) for x in command])
        except Exception as exc:  # noqa: BLE001
            self._stopped(None, "TaskFailedToStart", f"CannotPullContainerError: {exc}"
                          if "repository" in str(exc) else f"ResourceInitializationError: {exc}")
            return
        with self.lock:
            if self.stop_reason:
                stop_reason = self.stop_reason
            else:
                stop_reason = None
                now = utcnow()
                self.record.update(lastStatus="PENDING", pullStartedAt=now, pullStoppedAt=now)
                try:
                    self.proc = procs.Proc(argv, self.workdir, env, log, f"task {self.arn}")
                    from . import ecs_exec

                    ecs_exec.write_exec_info(self, env, self.proc.p.pid)  # for `replica.py exec`
                except OSError as exc:
                    self.proc = None
                    stop_reason = f"CannotStartContainerError: {exc}"
        if stop_reason:
            self._stopped(None, "TaskFailedToStart" if not self.stop_reason else "UserInitiated", stop_reason)
            return
        self._set(lastStatus="RUNNING", startedAt=utcnow(), connectivityAt=utcnow())
        with self.lock:
            self.record["containers"][0]["lastStatus"] = "RUNNING"
            self.record["containers"][0]["runtimeId"] = f"{self.id}-{cname}"
        events.emit("aws.ecs", "ECS Task State Change", self.event_detail(), [self.arn])
        rc = self.proc.wait()
        if rc < 0:
            rc = 128 - rc  # killed by signal N → exit code 128+N, as docker reports it
        with self.lock:
            reason = self.stop_reason
        if reason:
            self._stopped(rc, "UserInitiated", reason)
        else:
            self._stopped(rc, "EssentialContainerExited", "Essential container in task exited")

    def _stopped(self, exit_code: int | None, stop_code: str, reason: str) -> None:
        now = utcnow()
        with self.lock:
            self.record.update(lastStatus="STOPPED", desiredStatus="STOPPED", stopCode=stop_code,
                               stoppedReason=reason, stoppingAt=self.record.get("stoppingAt", now),
                               stoppedAt=now, executionStoppedAt=now)
            self.record["version"] += 1
            for i, cont in enumerate(self.record["containers"]):
                cont["lastStatus"] = "STOPPED"
                if i == 0 and exit_code is not None:
                    cont["exitCode"] = exit_code
                elif i == 0:
                    cont["reason"] = reason
        events.emit("aws.ecs", "ECS Task State Change", self.event_detail(), [self.arn])

    def stop(self, reason: str) -> None:
        with self.lock:
            if self.record["lastStatus"] == "STOPPED":
                return
            self.stop_reason = reason or "Task stopped by user"
            self.record["desiredStatus"] = "STOPPED"
            self.record["stoppingAt"] = utcnow()
            p = self.proc
        if p:
            p.kill(signal.SIGTERM, grace=CTX.scaled(30) if CTX.time_scale > 1 else 30)


def _find(ident: str) -> Task | None:
    with _lock:
        if ident in TASKS:
            return TASKS[ident]
        for t in TASKS.values():
            if t.id == ident or t.arn.endswith("/" + ident):
                return t
    return None


def ecs_replacements(original: dict[str, Any]) -> dict[str, Any]:
    """ECS's request handlers that run tasks for real (registered in patches.py)."""
    from moto.core.responses import ActionResult
    from moto.ecs.exceptions import InvalidParameterException

    def run_task(self):  # type: ignore[no-untyped-def]
        cluster = self.ecs_backend._get_cluster(self._get_param("cluster", "default"))
        td = self.ecs_backend.describe_task_definition(self._get_param("taskDefinition"))
        token = self._get_param("clientToken")
        if token:
            with _lock:
                hit = TOKENS.get(token)
                if hit and time.time() - hit[0] < 86400:
                    return ActionResult({"tasks": [TASKS[a].describe() for a in hit[1]], "failures": []})
        count = self._get_int_param("count", 1)
        params = {k: self._get_param(k) for k in ("overrides", "startedBy", "tags", "launchType", "group",
                                                  "networkConfiguration")}
        names = {c["name"] for c in td.container_definitions}
        for ov in ((params.get("overrides") or {}).get("containerOverrides") or []):
            if ov.get("name") not in names:
                raise InvalidParameterException(f"Override for container named {ov.get('name')} is not a container "
                                                f"in the TaskDefinition.")
        tasks = []
        for _ in range(count):
            t = Task(cluster.arn, td, params)
            with _lock:
                TASKS[t.arn] = t
                ORDER.append(t.arn)
            tasks.append(t)
        if token:
            with _lock:
                TOKENS[token] = (time.time(), [t.arn for t in tasks])
        for t in tasks:
            t.start()
        described = [t.describe() for t in tasks]
        # CloudTrail records the call (the audit sweep reads RunTask records, issue 15).
        from . import cloudtrail
        cloudtrail.record_run_task(
            {"cluster": self._get_param("cluster", "default"), "taskDefinition": self._get_param("taskDefinition"),
             "count": count, "startedBy": params.get("startedBy"), "launchType": params.get("launchType"),
             "group": params.get("group"), "overrides": params.get("overrides")},
            described, self.get_access_key(), self.current_account, self.region,
            self.headers.get("User-Agent", ""), cloudtrail.signing_key_of(self.headers))
        return ActionResult({"tasks": described, "failures": []})

    def describe_tasks(self):  # type: ignore[no-untyped-def]
        found, failures = [], []
        for ident in self._get_param("tasks", []) or []:
            t = _find(ident)
            if t is None:
                failures.append({"arn": ident, "reason": "MISSING"})
            else:
                d = t.describe()
                if "TAGS" not in (self._get_param("include", []) or []):
                    d.pop("tags", None)
                found.append(d)
        return ActionResult({"tasks": found, "failures": failures})

    def list_tasks(self):  # type: ignore[no-untyped-def]
        cluster = self.ecs_backend._get_cluster(self._get_param("cluster", "default"))
        family = self._get_param("family")
        started_by = self._get_param("startedBy")
        desired = self._get_param("desiredStatus") or "RUNNING"
        out = []
        with _lock:
            tasks = [TASKS[a] for a in ORDER]
        for t in tasks:
            d = t.describe()
            if d["clusterArn"] != cluster.arn:
                continue
            if family and d["taskDefinitionArn"].split("/")[-1].split(":")[0] != family:
                continue
            if started_by and d.get("startedBy") != started_by:
                continue
            if d["desiredStatus"] != desired:
                continue
            out.append(t.arn)
        return ActionResult({"taskArns": out})

    def stop_task(self):  # type: ignore[no-untyped-def]
        t = _find(self._get_param("task"))
        if t is None:
            raise InvalidParameterException("The referenced task was not found.")
        t.stop(self._get_param("reason") or "Task stopped by user")
        return ActionResult({"task": t.describe()})

    return {"run_task": run_task, "describe_tasks": describe_tasks, "list_tasks": list_tasks, "stop_task": stop_task}


def ecs_exec_replacements(original: dict[str, Any]) -> dict[str, Any]:
    """ECS ExecuteCommand, which moto does not have (registered in patches.py)."""
    from moto.core.responses import ActionResult
    from moto.ecs.exceptions import InvalidParameterException

    def execute_command(self):  # type: ignore[no-untyped-def]
        """ECS ExecuteCommand (moto has none): checks what AWS checks (a running task of the cluster, the
        container, `interactive`), records the CloudTrail event the audit sweep reads (issue 15) and answers
        with a session. There is no Session Manager: the session goes nowhere (`replica.py exec` runs the
        command)."""
        cluster = self.ecs_backend._get_cluster(self._get_param("cluster", "default"))
        t = _find(self._get_param("task") or "")
        if t is None or t.describe()["clusterArn"] != cluster.arn:
            raise InvalidParameterException("The specified task was not found.")
        d = t.describe()
        if d["lastStatus"] != "RUNNING":
            raise InvalidParameterException("The execute command failed because the task is not running.")
        if self._get_param("interactive") is not True:
            raise InvalidParameterException("Interactive is the only mode supported currently.")
        containers = d.get("containers") or []
        wanted = self._get_param("container")
        chosen = next((c for c in containers if c.get("name") == wanted), None) if wanted else \
            (containers[0] if len(containers) == 1 else None)
        if chosen is None:
            raise InvalidParameterException("The specified container was not found." if wanted else
                                            "A container name is required when the task has several containers.")
        session_id = f"ecs-execute-command-{uuid.uuid4().hex[:17]}"
        answer = {"clusterArn": cluster.arn, "containerArn": chosen.get("containerArn"),
                  "containerName": chosen.get("name"), "interactive": True, "taskArn": t.arn,
                  "session": {"sessionId": session_id,
                              "streamUrl": f"wss://ssmmessages.{self.region}.amazonaws.com/v1/data-channel/"
                                           f"{session_id}?role=publish_subscribe",
                              "tokenValue": uuid.uuid4().hex}}
        from . import cloudtrail
        cloudtrail.record_execute_command(
            {"cluster": self._get_param("cluster", "default"), "container": chosen.get("name"),
             "command": self._get_param("command"), "interactive": True, "task": self._get_param("task")},
            {k: v for k, v in answer.items() if k != "session"} | {"session": {"sessionId": session_id}},
            d["taskDefinitionArn"], self.get_access_key(), self.current_account, self.region,
            self.headers.get("User-Agent", ""), cloudtrail.signing_key_of(self.headers))
        return ActionResult(answer)

    return {"execute_command": execute_command}


def stop_all() -> None:
    with _lock:
        tasks = list(TASKS.values())
    for t in tasks:
        if t.proc:
            t.proc.kill(signal.SIGKILL)

