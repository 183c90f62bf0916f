"""A fake Slack Web API that records calls, and signs Events API / interactivity requests."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

METHODS = {"chat.postMessage", "chat.update", "chat.postEphemeral", "chat.getPermalink",
           "conversations.replies", "users.info", "chat.delete", "reactions.add", "auth.test"}


def sign(secret: str, timestamp: str, body: str) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class FakeSlack:
    def __init__(self, signing_secret: str = "") -> None:
        self.lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []
        self.signing_secret = signing_secret
        # Injected failures: method -> [error, remaining]
        self.failures: dict[str, list[Any]] = {}
        self._last_ts = 0.0
        self.server = None
        self.port = 0

    def _next_ts(self) -> str:
        with self.lock:
            now = max(time.time(), self._last_ts + 0.000001)
            self._last_ts = now
            return f"{now:.6f}"

    def __call__(self, environ: dict, start_response: Any) -> Any:
        req = Request(environ)
        return self.handle(req)(environ, start_response)

    def _json(self, obj: Any, status: int = 200) -> Response:
        return Response(json.dumps(obj), status=status, content_type="application/json; charset=utf-8")

    def handle(self, req: Request) -> Response:
        path = req.path
        if path.startswith("/_fake/"):
            return self._fake(req, path[len("/_fake/"):])
        if path.startswith("/api/"):
            return self._api(req, path[len("/api/"):])
        return self._json({"ok": False, "error": "unknown_method"}, 404)

    def _api(self, req: Request, method: str) -> Response:
        raw = req.get_data(as_text=True)
        ctype = req.headers.get("Content-Type", "")
        args: dict[str, Any] = dict(req.args)
        if "json" in ctype and raw:
            try:
                args.update(json.loads(raw))
            except ValueError:
                return self._json({"ok": False, "error": "invalid_json"})
        elif raw:
            args.update(dict(parse_qsl(raw, keep_blank_values=True)))
        auth = req.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else args.pop("token", "")
        record = {"method": method, "args": args, "token": token, "content_type": ctype,
                  "received_at": time.time()}
        if method not in METHODS:
            record["response"] = {"ok": False, "error": "unknown_method"}
        elif not token:
            record["response"] = {"ok": False, "error": "not_authed"}
        elif (injected := self._take_failure(method)) is not None:
            record["response"] = {"ok": False, "error": injected}
        else:
            record["response"] = self._answer(method, args)
        with self.lock:
            self.calls.append(record)
        return self._json(record["response"])

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel")
        if method in ("chat.postMessage", "chat.postEphemeral"):
            if not channel:
                return {"ok": False, "error": "channel_not_found"}
            if not args.get("text") and not args.get("blocks") and not args.get("attachments"):
                return {"ok": False, "error": "no_text"}
            ts = self._next_ts()
            if method == "chat.postEphemeral":
                return {"ok": True, "message_ts": ts}
            msg = {"type": "message", "text": args.get("text", ""), "ts": ts, "user": "UREPLICABOT",
                   "bot_id": "BREPLICA"}
            if args.get("thread_ts"):
                msg["thread_ts"] = args["thread_ts"]
            return {"ok": True, "channel": channel, "ts": ts, "message": msg}
        if method == "chat.update":
            return {"ok": True, "channel": channel, "ts": args.get("ts"), "text": args.get("text", "")}
        if method == "chat.delete":
            return {"ok": True, "channel": channel, "ts": args.get("ts")}
        if method == "chat.getPermalink":
            ts = str(args.get("message_ts", "")).replace(".", "")
            return {"ok": True, "channel": channel,
                    "permalink": f"https://replica.slack.com/archives/{channel}/p{ts}"}
        if method == "conversations.replies":
            thread = str(args.get("ts", ""))
            msgs = []
            with self.lock:
                calls = list(self.calls)
            for c in calls:
                r = c.get("response") or {}
                if c["method"] != "chat.postMessage" or not r.get("ok"):
                    continue
                if c["args"].get("channel") != channel:
                    continue
                if r["ts"] == thread or str(c["args"].get("thread_ts", "")) == thread:
                    m = dict(r["message"])
                    if c["args"].get("as_user_id"):
                        m["user"] = c["args"]["as_user_id"]
                    msgs.append(m)
            return {"ok": True, "messages": msgs, "has_more": False}
        if method == "users.info":
            user = args.get("user", "")
            return {"ok": True, "user": {"id": user, "name": user.lower(), "real_name": f"User {user}",
                                         "is_bot": False, "profile": {"email": f"{user.lower()}@example.com"}}}
        if method == "auth.test":
            return {"ok": True, "user_id": "UREPLICABOT", "team_id": "TREPLICA", "bot_id": "BREPLICA"}
        return {"ok": True}

    def _take_failure(self, method: str) -> str | None:
        with self.lock:
            f = self.failures.get(method)
            if f and f[1] > 0:
                f[1] -= 1
                return f[0]
        return None

    # ------------------------------------------------------------------ fake controls
    def messages(self, channel: str | None = None, thread_ts: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            calls = list(self.calls)
        out = []
        for c in calls:
            a = c["args"]
            if channel and a.get("channel") != channel:
                continue
            if thread_ts and str(a.get("thread_ts", "")) != thread_ts and (c.get("response") or {}).get("ts") != thread_ts:
                continue
            out.append({"method": c["method"], "channel": a.get("channel"), "text": a.get("text"),
                        "thread_ts": a.get("thread_ts"), "blocks": a.get("blocks"), "ts": (c.get("response") or {}).get("ts"),
                        "ok": (c.get("response") or {}).get("ok"), "error": (c.get("response") or {}).get("error"),
                        "token": c["token"], "args": a, "received_at": c["received_at"]})
        return out

    def _fake(self, req: Request, what: str) -> Response:
        if what == "messages" and req.method == "GET":
            return self._json({"messages": self.messages(req.args.get("channel"), req.args.get("thread_ts"))})
        if what == "messages" and req.method == "DELETE":
            with self.lock:
                self.calls.clear()
            return self._json({"ok": True})
        if what == "send" and req.method == "POST":
            spec = req.get_json(force=True)
            body = spec.get("body", "")
            if not isinstance(body, str):
                body = json.dumps(body)
            ts = str(spec.get("timestamp") or int(time.time()))
            secret = spec.get("signing_secret") or self.signing_secret
            headers = {"Content-Type": spec.get("content_type") or "application/json",
                       "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sign(secret, ts, body)}
            if spec.get("retry_num") is not None:
                headers["X-Slack-Retry-Num"] = str(spec["retry_num"])
                headers["X-Slack-Retry-Reason"] = spec.get("retry_reason", "http_timeout")
            headers.update(spec.get("headers") or {})
            try:
                r = requests.post(spec["url"], data=body.encode(), headers=headers, timeout=float(spec.get("timeout", 60)))
                return self._json({"status": r.status_code, "body": r.text, "headers": dict(r.headers),
                                   "signature": headers["X-Slack-Signature"], "timestamp": ts})
            except requests.RequestException as exc:
                return self._json({"status": None, "error": str(exc)}, 502)
        if what == "fail" and req.method == "POST":
            spec = req.get_json(force=True)
            with self.lock:
                self.failures[spec["method"]] = [spec.get("error", "internal_error"), int(spec.get("count", 1))]
            return self._json({"ok": True, "failures": self.failures})
        if what == "fail" and req.method == "DELETE":
            with self.lock:
                self.failures.clear()
            return self._json({"ok": True})
        if what == "health":
            return self._json({"ok": True})
        return self._json({"ok": False, "error": "unknown fake endpoint"}, 404)

    def start(self) -> int:
        self.server = make_server("127.0.0.1", 0, self, threaded=True)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True, name="fake-slack").start()
        return self.port


_ = uuid
