"""EventBridge delivery to Lambda / Step Functions targets, and events the replica emits."""

from __future__ import annotations

import copy
import datetime
import json
import re
import uuid
from typing import Any

from .context import CTX, utcnow
from . import faults, lambda_bridge


def _iso_time(t: Any) -> str:
    if isinstance(t, (int, float)):
        return datetime.datetime.fromtimestamp(float(t), tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(t, datetime.datetime):
        return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(t)


def aws_shape(event: dict[str, Any]) -> dict[str, Any]:
    """The event as a target receives it (AWS field order, ISO time, no moto internals)."""
    return {
        "version": event.get("version", "0"),
        "id": event.get("id"),
        "detail-type": event.get("detail-type"),
        "source": event.get("source"),
        "account": event.get("account", CTX.account),
        "time": _iso_time(event.get("time")),
        "region": event.get("region", CTX.region),
        "resources": event.get("resources", []),
        "detail": event.get("detail", {}),
    }


# --------------------------------------------------------------------------- JSON paths

def json_path(doc: Any, path: str) -> tuple[bool, Any]:
    """Minimal JSONPath for EventBridge InputPath/InputPathsMap: $, $.a.b, $.a[0], $['a-b']."""
    if path in ("$", ""):
        return True, doc
    if not path.startswith("$"):
        return False, None
    tokens = re.findall(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]", path[1:])
    cur = doc
    for name, idx, q1, q2 in tokens:
        key = name or q1 or q2
        if idx:
            if not isinstance(cur, list) or int(idx) >= len(cur):
                return False, None
            cur = cur[int(idx)]
        else:
            if not isinstance(cur, dict) or key not in cur:
                return False, None
            cur = cur[key]
    return True, cur


def render_input_template(template: str, values: dict[str, Any]) -> str:
    """EventBridge InputTemplate: a placeholder inside a JSON string inserts the raw text,
    outside a string it inserts the JSON value (null when the path matched nothing)."""
    out = []
    i = 0
    in_string = False
    n = len(template)
    while i < n:
        c = template[i]
        if c == "\\" and in_string and i + 1 < n:
            out.append(template[i:i + 2])
            i += 2
            continue
        if c == '"':
            in_string = not in_string
            out.append(c)
            i += 1
            continue
        if c == "<":
            m = re.match(r"<([A-Za-z0-9_.\-]+)>", template[i:])
            if m and m.group(1) in values:
                v = values[m.group(1)]
                if in_string:
                    if v is None:
                        s = ""
                    elif isinstance(v, str):
                        s = json.dumps(v)[1:-1]
                    else:
                        s = json.dumps(json.dumps(v, separators=(",", ":")))[1:-1]
                else:
                    s = json.dumps(v)
                out.append(s)
                i += len(m.group(0))
                continue
        out.append(c)
        i += 1
    return "".join(out)


def target_input(target: dict[str, Any], event: dict[str, Any], rule_name: str = "", rule_arn: str = "") -> str:
    if target.get("Input") is not None:
        return target["Input"]
    if target.get("InputPath"):
        ok, v = json_path(event, target["InputPath"])
        return json.dumps(v if ok else None)
    it = target.get("InputTransformer")
    if it:
        values: dict[str, Any] = {}
        for k, p in (it.get("InputPathsMap") or {}).items():
            ok, v = json_path(event, p)
            values[k] = v if ok else None
        values.setdefault("aws.events.event.json", event)
        values.setdefault("aws.events.event", event)
        values.setdefault("aws.events.rule-name", rule_name)
        values.setdefault("aws.events.rule-arn", rule_arn)
        values.setdefault("aws.events.event.ingestion-time", event.get("time"))
        return render_input_template(it.get("InputTemplate", ""), values)
    return json.dumps(event)


# --------------------------------------------------------------------------- recording

def _record(event: dict[str, Any], origin: str) -> dict[str, Any]:
    with CTX.lock:
        rec = CTX.events_by_id.get(event["id"])
        if rec is None:
            rec = {"event": aws_shape(event), "origin": origin, "recorded_at": utcnow().isoformat(),
                   "dropped": False, "deliveries": []}
            CTX.events_by_id[event["id"]] = rec
            CTX.events.append(rec)
        return rec


def deliver(target: dict[str, Any], rule: Any, event: dict[str, Any]) -> None:
    """Deliver one matched event to a Lambda or Step Functions target (asynchronously)."""
    shaped = aws_shape(event)
    arn = target["Arn"]
    rec = _record(event, "put-events")
    delivery = {"rule": rule.name, "target": target.get("Id"), "arn": arn, "outcome": "pending"}
    with CTX.lock:
        rec["deliveries"].append(delivery)
    try:
        payload = target_input(target, shaped, rule.name, rule.arn)
    except Exception as exc:  # noqa: BLE001
        delivery["outcome"] = f"error: input transformation failed: {exc}"
        return
    delivery["input"] = payload
    if ":lambda:" in arn:
        fname = arn.split(":function:")[1].split(":")[0]

        def done(text: str, errored: bool) -> None:
            delivery["outcome"] = "error" if errored else "ok"
            if errored:
                delivery["error"] = text[:1000]

        lambda_bridge.invoke_async(fname, payload, done)
    elif ":states:" in arn:
        def start() -> None:
            try:
                json.loads(payload)
                resp = CTX.client("stepfunctions").start_execution(
                    stateMachineArn=arn, name=str(uuid.uuid4()), input=payload)
                delivery["outcome"] = "ok"
                delivery["execution_arn"] = resp["executionArn"]
            except Exception as exc:  # noqa: BLE001
                delivery["outcome"] = f"error: {exc}"

        CTX.pool.submit(start)
    else:
        delivery["outcome"] = "unsupported target"


def events_replacements(original: dict[str, Any]) -> dict[str, Any]:
    """EventBridge delivery to Lambda / Step Functions, and the record of put events (registered in patches.py)."""
    orig_send = original["send_to_targets"]
    orig_put_events = original["put_events"]

    def send_to_targets(self, original_event: dict[str, Any], transform_input: bool = True) -> None:
        if getattr(self, "state", "ENABLED") != "ENABLED":
            return
        if not self.event_pattern.matches_event(original_event):
            return
        ours = [t for t in self.targets if ":lambda:" in t["Arn"] or ":states:" in t["Arn"]]
        others = [t for t in self.targets if t not in ours]
        for t in ours:
            deliver(t, self, original_event)
        if others:
            shadow = copy.copy(self)
            shadow.targets = others
            ev = copy.deepcopy(original_event)
            if isinstance(ev.get("time"), str):
                ev["time"] = utcnow().timestamp()
            try:
                orig_send(shadow, ev, transform_input)
            except NotImplementedError:
                pass

    def put_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        entries = orig_put_events(self, events)
        for ev, entry in zip(events, entries):
            if "EventId" in entry:
                try:
                    detail = json.loads(ev.get("Detail") or "{}")
                except ValueError:
                    detail = {}
                _record({"id": entry["EventId"], "source": ev.get("Source"), "detail-type": ev.get("DetailType"),
                         "time": ev.get("Time") or utcnow().timestamp(), "resources": ev.get("Resources", []),
                         "detail": detail}, "put-events")
        return entries

    return {"send_to_targets": send_to_targets, "put_events": put_events}


def emit(source: str, detail_type: str, detail: dict[str, Any], resources: list[str] | None = None) -> str:
    """Emit an event the way an AWS service would (default bus), honouring drop faults."""
    from moto.events.models import events_backends

    event = {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type, "source": source,
        "account": CTX.account, "time": utcnow().timestamp(), "region": CTX.region,
        "resources": resources or [], "detail": detail, "ingestion-time": utcnow().timestamp(),
    }
    rec = _record(event, "replica")
    if faults.should_drop(source, detail_type, detail):
        rec["dropped"] = True
        return event["id"]

    def dispatch() -> None:
        backend = events_backends[CTX.account][CTX.region]
        try:
            bus = backend.describe_event_bus("default")
        except Exception:  # noqa: BLE001
            return
        for rule in list(bus.rules.values()):
            try:
                rule.send_to_targets(copy.deepcopy(event))
            except Exception as exc:  # noqa: BLE001
                with CTX.lock:
                    rec["deliveries"].append({"rule": rule.name, "outcome": f"error: {exc}"})

    CTX.pool.submit(dispatch)
    return event["id"]
