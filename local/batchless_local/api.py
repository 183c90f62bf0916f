"""The replica's own HTTP API under /_replica on the moto port, and the WSGI wrapper."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

from werkzeug.wrappers import Request, Response

from .context import CTX, utcnow
from . import codebuild, codepipeline, ecs, faults, iam_auth, lambda_bridge


def _json(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj, default=str), status=status, content_type="application/json")


def fire_schedule(spec: dict[str, Any]) -> dict[str, Any]:
    from moto.scheduler.models import scheduler_backends

    name = spec.get("schedule")
    if not name:
        raise ValueError("'schedule' is required")
    group = spec.get("group") or "default"
    at = spec.get("at") or utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
    deliveries = int(spec.get("deliveries", 1))
    backend = scheduler_backends[CTX.account][CTX.region]
    sched = backend.get_schedule(group, name)
    target = sched.target
    template = target.get("Input")
    results: list[dict[str, Any]] = [{} for _ in range(deliveries)]

    def render(attempt: int) -> tuple[str, str]:
        exec_id = str(uuid.uuid4())
        if template is None:
            return exec_id, "{}"
        text = (template.replace("<aws.scheduler.scheduled-time>", at)
                .replace("<aws.scheduler.execution-id>", exec_id)
                .replace("<aws.scheduler.schedule-arn>", sched.arn)
                .replace("<aws.scheduler.attempt-number>", str(attempt)))
        return exec_id, text

    def one(i: int) -> None:
        exec_id, payload = render(1)
        res: dict[str, Any] = {"execution_id": exec_id, "input": payload}
        arn = target["Arn"]
        try:
            if ":states:" in arn:
                out = CTX.client("stepfunctions").start_execution(
                    stateMachineArn=arn, name=exec_id, input=payload)
                res["execution_arn"] = out["executionArn"]
            elif ":lambda:" in arn:
                fname = arn.split(":function:")[1].split(":")[0]
                lambda_bridge.invoke_async(fname, payload)
                res["invoked"] = fname
            else:
                res["error"] = f"unsupported scheduler target {arn}"
        except Exception as exc:  # noqa: BLE001
            res["error"] = str(exc)
        results[i] = res

    threads = [threading.Thread(target=one, args=(i,)) for i in range(deliveries)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"schedule": name, "schedule_arn": sched.arn, "scheduled_time": at,
            "expression": sched.schedule_expression, "timezone": sched.schedule_expression_timezone,
            "deliveries": results}


def replica_api(req: Request) -> Response:
    path = req.path[len("/_replica"):].strip("/")
    parts = path.split("/") if path else []
    try:
        if not parts or parts == ["health"]:
            return _json({"ok": True, "name": CTX.name, "ready": bool(CTX.stack)})
        if parts == ["stack"]:
            return _json(CTX.stack)
        if parts == ["faults"]:
            if req.method == "GET":
                return _json({"faults": faults.listing()})
            if req.method == "DELETE":
                faults.clear()
                return _json({"faults": []})
            if req.method == "POST":
                return _json({"fault": faults.add(req.get_json(force=True))}, 201)
        if parts == ["events"]:
            if req.method == "DELETE":
                with CTX.lock:
                    CTX.events.clear()
                    CTX.events_by_id.clear()
                return _json({"events": []})
            with CTX.lock:
                evs = json.loads(json.dumps(CTX.events, default=str))
            src = req.args.get("source")
            dt = req.args.get("detail_type")
            if src:
                evs = [e for e in evs if e["event"]["source"] == src]
            if dt:
                evs = [e for e in evs if e["event"]["detail-type"] == dt]
            return _json({"events": evs})
        if parts == ["invocations"]:
            if req.method == "DELETE":
                with CTX.lock:
                    CTX.invocations.clear()
                return _json({"invocations": []})
            with CTX.lock:
                inv = list(CTX.invocations)
            fn = req.args.get("function")
            if fn:
                inv = [i for i in inv if i["function"] == fn or i["binary"] == fn]
            return _json({"invocations": inv})
        if parts == ["scheduler", "fire"] and req.method == "POST":
            return _json(fire_schedule(req.get_json(force=True)))
        if parts == ["codepipeline", "jobs"]:
            return _json({"jobs": codepipeline.listing()})
        if parts == ["codepipeline", "executions"] and req.method == "POST":
            return _json(codepipeline.start_run(req.get_json(force=True)))
        if parts == ["builds"]:
            with codebuild._lock:
                builds = [codebuild.BUILDS[i].describe() for i in codebuild.ORDER]
            return _json({"builds": builds})
        if parts == ["tasks"]:
            with ecs._lock:
                tasks = [ecs.TASKS[a].describe() for a in ecs.ORDER]
            return _json({"tasks": tasks})
        if parts and parts[0] == "url" and len(parts) >= 2:
            return function_url(req, parts[1], "/" + "/".join(parts[2:]))
        return _json({"error": f"no such replica endpoint {req.path}"}, 404)
    except (ValueError, KeyError) as exc:
        return _json({"error": str(exc)}, 400)
    except Exception as exc:  # noqa: BLE001
        return _json({"error": f"{type(exc).__name__}: {exc}"}, 500)


def function_url(req: Request, logical_id: str, raw_path: str) -> Response:
    fname = CTX.function_urls.get(logical_id)
    if not fname:
        return _json({"Message": f"no function URL for {logical_id}"}, 404)
    if req.path.endswith("/") and not raw_path.endswith("/"):
        raw_path += "/"
    body = req.get_data()
    authorizer = None
    if CTX.function_url_auth.get(logical_id) == "AWS_IAM":
        try:
            authorizer = iam_auth.verify(req.environ, body)
        except iam_auth.Forbidden as exc:
            print(f"replica: function URL {logical_id}: 403 ({exc})", flush=True)
            return _json({"Message": "Forbidden"}, 403)
    event = lambda_bridge.url_event(req.environ, raw_path, body, fname)
    if authorizer is not None:
        event["requestContext"]["authorizer"] = authorizer
        event["requestContext"]["accountId"] = authorizer["iam"]["accountId"]
    text, errored = lambda_bridge.invoke_function(fname, json.dumps(event))
    status, headers, data = lambda_bridge.url_response(text, errored)
    resp = Response(data, status=status)
    resp.headers.clear()
    for k, v in headers:
        resp.headers.add(k, v)
    return resp


class ReplicaApp:
    """Wraps moto's WSGI app: /_replica routes, fault injection, everything else to moto."""

    def __init__(self, moto_app: Any) -> None:
        self.moto_app = moto_app

    def __call__(self, environ: dict, start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_replica"):
            return replica_api(Request(environ))(environ, start_response)
        hit = faults.check_request(environ)
        if hit is not None:
            return _answer(start_response, hit, "Bad Request" if hit[0] == 400 else "Error")
        hit = codepipeline.wsgi_intercept(environ)
        if hit is not None:
            return _answer(start_response, hit, "OK" if hit[0] == 200 else "Bad Request")
        return self.moto_app(environ, start_response)


def _answer(start_response: Any, hit: tuple, reason: str) -> list:
    """Answer a request that never reaches moto: `hit` is (status, headers, body)."""
    status, headers, body = hit
    start_response(f"{status} {reason}", headers + [("Content-Length", str(len(body)))])
    return [body]
