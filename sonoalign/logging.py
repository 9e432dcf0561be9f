"""Structured logs: one JSON object per line, each carrying the id of the request (or Celery task) that
wrote it, so a support question ("my save failed at 10:02") finds every line of that request.

What goes in: time, level, logger, message, request id, and for each request its method, path (without
the query string), status, duration and the user's numeric id. What stays out: report text, patient ids,
usernames, query strings and bodies — messages log ids and counts, and this module adds nothing else.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

from django.core.signals import request_finished
from django.dispatch import receiver

_request_id: ContextVar[str] = ContextVar("request_id", default="")
# A request id from the proxy in front is kept when it looks like one (so one id spans both logs);
# anything else is replaced rather than copied into our logs.
_INCOMING_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
access_log = logging.getLogger("sonoalign.request")


def request_id() -> str:
    """The id of the request or task being handled here, or "" outside both."""
    current = _request_id.get()
    if current:
        return current
    try:
        from celery import current_task
    except ImportError:  # pragma: no cover — celery is a dependency; this keeps the module standalone
        return ""
    task = current_task
    return f"task-{task.request.id}" if task and getattr(task.request, "id", None) else ""


class RequestIdMiddleware:
    """Gives each request an id (``X-Request-ID`` in and out) and writes one access line per request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        rid = incoming if _INCOMING_ID.match(incoming) else uuid.uuid4().hex
        # Kept until the response is finished (not only until this returns): Django logs 4xx/5xx
        # responses after the middleware chain, and those lines need the id most.
        _request_id.set(rid)
        request.request_id = rid
        started = time.monotonic()
        response = self.get_response(request)
        response["X-Request-ID"] = rid
        user = getattr(request, "user", None)
        access_log.info(
            "%s %s %s", request.method, request.path, response.status_code,
            extra={"http": {"method": request.method, "path": request.path, "status": response.status_code,
                            "duration_ms": round((time.monotonic() - started) * 1000, 1),
                            "user_id": user.pk if user is not None and user.is_authenticated else None}},
        )
        return response


@receiver(request_finished)
def _request_id_clear(sender, **kwargs) -> None:
    _request_id.set("")


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` to every record (for both the JSON and the text format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id() or None,
        }
        http = getattr(record, "http", None)
        if http:
            entry["http"] = http
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
