"""CloudWatch Logs subscription delivery (moto gap: it delivers synchronously, inside the
PutLogEvents call, and ignores the filter pattern).

Here a subscription filter delivers asynchronously (its own thread, like AWS), and only the
events its filter pattern selects: an empty pattern selects every event; term patterns follow
CloudWatch's rules for unstructured logs (every term must occur, case-sensitive; `?term`: any
of those; `-term`: none of those; quotes group words). JSON (`{...}`) and space-delimited
(`[...]`) patterns are not evaluated: every event is delivered. The payload is moto's
(`{"awslogs": {"data": base64(gzip(json))}}`, event ids as strings like AWS's), sent through the
Lambda bridge.
"""

from __future__ import annotations

import shlex
import threading
from typing import Any


def matches(pattern: str, message: str) -> bool:
    pattern = (pattern or "").strip()
    if not pattern or pattern in ('""', "''") or pattern[0] in "{[":
        return True
    try:
        terms = shlex.split(pattern)
    except ValueError:
        return True
    required = [t for t in terms if not t.startswith(("?", "-"))]
    optional = [t[1:] for t in terms if t.startswith("?")]
    excluded = [t[1:] for t in terms if t.startswith("-")]
    if any(t and t in message for t in excluded):
        return False
    if required and not all(t in message for t in required):
        return False
    if optional and not any(t in message for t in optional):
        return False
    return True


def patch_moto_logs() -> None:
    from moto.logs.models import LogStream

    original = LogStream._send_log_events

    def _send_log_events(self: Any, service: str, destination_arn: str, filter_name: str,
                         log_events: list[dict[str, Any]]) -> None:
        sub = self.log_group.subscription_filters.get(filter_name)
        pattern = getattr(sub, "filter_pattern", "") if sub else ""
        # AWS sends each event's id as a string (moto: an int).
        selected = [dict(e, id=str(e.get("id", ""))) for e in log_events
                    if matches(pattern, e.get("message", ""))]
        if not selected:
            return

        def deliver() -> None:
            try:
                original(self, service=service, destination_arn=destination_arn,
                         filter_name=filter_name, log_events=selected)
            except Exception:  # noqa: BLE001 - a failed delivery must not take the server down
                import logging
                logging.getLogger("replica.logs").exception("subscription delivery to %s failed", destination_arn)

        threading.Thread(target=deliver, daemon=True, name=f"logs-sub-{filter_name}").start()

    LogStream._send_log_events = _send_log_events
