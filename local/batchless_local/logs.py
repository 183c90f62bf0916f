"""CloudWatch Logs subscription delivery (moto gap: it delivers synchronously, inside the
PutLogEvents call, and ignores the filter pattern), and GetLogEvents pages of at most 1 MB.

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


# GetLogEvents returns "up to 1 MB (up to 10,000 log events)"; an event's size is its UTF-8
# message plus 26 bytes (the PutLogEvents accounting). moto returns 10,000 events whatever their size.
PAGE_BYTES = 1_048_576
EVENT_OVERHEAD = 26


def cap_page(events: list[dict[str, Any]], next_token: str | None, start_from_head: Any,
             forward: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """Cut a forward page at 1 MB and point its forward token at the last event kept."""
    if next_token is None and not start_from_head or next_token and not next_token.startswith("f/"):
        return events, forward  # backward paging: left as moto does it
    size = 0
    for i, e in enumerate(events):
        size += len(e.get("message", "").encode()) + EVENT_OVERHEAD
        if size > PAGE_BYTES and i > 0:
            start = int(next_token[2:]) + 1 if next_token else 0
            return events[:i], f"f/{start + i - 1:056d}"
    return events, forward


def logs_replacements(original: dict[str, Any]) -> dict[str, Any]:
    """GetLogEvents pages and subscription delivery (registered in patches.py)."""
    original_get = original["get_log_events"]

    def get_log_events(self: Any, start_time: Any, end_time: Any, limit: Any, next_token: str | None,
                       start_from_head: Any) -> tuple[list[dict[str, Any]], str | None, str | None]:
        events, backward, forward = original_get(self, start_time, end_time, limit, next_token, start_from_head)
        events, forward = cap_page(events, next_token, start_from_head, forward)
        return events, backward, forward

    original_send = original["_send_log_events"]

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
                original_send(self, service=service, destination_arn=destination_arn,
                              filter_name=filter_name, log_events=selected)
            except Exception:  # noqa: BLE001 - a failed delivery must not take the server down
                import logging
                logging.getLogger("replica.logs").exception("subscription delivery to %s failed", destination_arn)

        threading.Thread(target=deliver, daemon=True, name=f"logs-sub-{filter_name}").start()

    return {"get_log_events": get_log_events, "_send_log_events": _send_log_events}
