"""CodePipeline job results and action executions, which moto does not serve.

`PutJobSuccessResult` and `PutJobFailureResult` are recorded per job id (GET
/_replica/codepipeline/jobs), and a job that already has a final result rejects another one with
`InvalidJobStateException`, as AWS does. A success with a `continuationToken` is not final (the
action stays in progress).

A pipeline run is what the tests say CodePipeline started (POST /_replica/codepipeline/executions
`{pipelineName, provider: Lambda | StepFunctions, configuration}`): one pipeline execution with one
`Invoke` action execution, `InProgress`, whose `resolvedConfiguration` has
`#{codepipeline.PipelineExecutionId}` replaced; a Lambda action's job id ends it (its final job
result: `Succeeded` / `Failed`). `ListActionExecutions` (`pipelineName`, `filter.pipelineExecutionId`)
answers from them: `PipelineNotFoundException` for a pipeline no run was started of."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from .context import utcnow

_lock = threading.Lock()
JOBS: dict[str, list[dict[str, Any]]] = {}
# action execution id -> {pipelineName, pipelineExecutionId, jobId, detail (ActionExecutionDetail)}
ACTIONS: dict[str, dict[str, Any]] = {}

TARGET_PREFIX = "CodePipeline_20150709."


def _final(result: dict[str, Any]) -> bool:
    return result["kind"] == "failure" or not result["request"].get("continuationToken")


def start_run(request: dict[str, Any]) -> dict[str, Any]:
    """A pipeline execution with one Invoke action in progress (the replica's stand-in for
    CodePipeline reaching the Migrate stage); its ids and the action's resolved configuration."""
    name, provider = request["pipelineName"], request["provider"]
    if provider not in ("Lambda", "StepFunctions"):
        raise ValueError(f"provider must be Lambda or StepFunctions, not {provider!r}")
    configuration = {k: str(v) for k, v in request["configuration"].items()}
    execution_id, action_id, job_id = (str(uuid.uuid4()) for _ in range(3))
    resolved = {k: v.replace("#{codepipeline.PipelineExecutionId}", execution_id)
                for k, v in configuration.items()}
    now = utcnow().timestamp()
    detail = {
        "pipelineExecutionId": execution_id, "actionExecutionId": action_id, "pipelineVersion": 1,
        "stageName": "Migrate", "actionName": "DbMigrate", "startTime": now, "lastUpdateTime": now,
        "status": "InProgress",
        "input": {"actionTypeId": {"category": "Invoke", "owner": "AWS", "provider": provider, "version": "1"},
                  "configuration": configuration, "resolvedConfiguration": resolved,
                  "region": "us-east-1", "inputArtifacts": []},
        "output": {"outputArtifacts": [], "executionResult": {}, "outputVariables": {}},
    }
    with _lock:
        ACTIONS[action_id] = {"pipelineName": name, "pipelineExecutionId": execution_id, "jobId": job_id,
                              "detail": detail}
    return {"pipelineName": name, "pipelineExecutionId": execution_id, "actionExecutionId": action_id,
            "jobId": job_id, "resolvedConfiguration": resolved}


def _end_action(job_id: str, result: dict[str, Any]) -> None:
    """A job's final result ends its action (called under `_lock`)."""
    for a in ACTIONS.values():
        if a["jobId"] == job_id:
            a["detail"]["status"] = "Succeeded" if result["kind"] == "success" else "Failed"
            a["detail"]["lastUpdateTime"] = utcnow().timestamp()


def list_action_executions(request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    name = request.get("pipelineName")
    if not name:
        return 400, {"__type": "ValidationException", "message": "pipelineName is required"}
    wanted = (request.get("filter") or {}).get("pipelineExecutionId")
    with _lock:
        mine = [a for a in ACTIONS.values() if a["pipelineName"] == name]
        if not mine:
            return 400, {"__type": "PipelineNotFoundException",
                         "message": f"Account '123456789012' does not have a pipeline with name '{name}'"}
        if wanted and not any(a["pipelineExecutionId"] == wanted for a in mine):
            return 400, {"__type": "PipelineExecutionNotFoundException",
                         "message": f"Pipeline execution '{wanted}' not found in pipeline '{name}'"}
        details = [json.loads(json.dumps(a["detail"])) for a in mine
                   if not wanted or a["pipelineExecutionId"] == wanted]
    details.sort(key=lambda d: d["startTime"], reverse=True)
    return 200, {"actionExecutionDetails": details}


def handle(operation: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = json.loads(body or b"{}")
    if operation == "ListActionExecutions":
        return list_action_executions(request)
    job_id = request.get("jobId")
    if not job_id:
        return 400, {"__type": "ValidationException", "message": "jobId is required"}
    kind = {"PutJobSuccessResult": "success", "PutJobFailureResult": "failure"}[operation]
    with _lock:
        results = JOBS.setdefault(job_id, [])
        if results and _final(results[-1]):
            return 400, {"__type": "InvalidJobStateException",
                         "message": f"job {job_id} already has a final result ({results[-1]['kind']})"}
        results.append({"kind": kind, "request": request, "time": utcnow().isoformat()})
        if _final(results[-1]):
            _end_action(job_id, results[-1])
    return 200, {}


def listing() -> dict[str, list[dict[str, Any]]]:
    with _lock:
        return json.loads(json.dumps(JOBS))


def wsgi_intercept(environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes] | None:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if not target.startswith(TARGET_PREFIX):
        return None
    operation = target[len(TARGET_PREFIX):]
    if operation not in ("PutJobSuccessResult", "PutJobFailureResult", "ListActionExecutions"):
        return None
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    status, payload = handle(operation, body)
    data = json.dumps(payload).encode()
    return status, [("Content-Type", "application/x-amz-json-1.1")], data
