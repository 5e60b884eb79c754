"""Operator logs: one JSON object per line when KEPU_LOG_FORMAT=json, with the request id.

The request id comes from the web request (``X-Request-ID`` or generated, see review.app) and
travels with every task the request enqueued (outbox row → task header → worker), so the web's
access line and the worker's lines of that task carry the same ``request_id``.

Plain text stays the default (the embedded ``kepu run``): nothing is configured then.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from review.audit import current_request_id

#: The signed-in user of the current request (set by the web layer, read by the filter).
current_user_id: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "current_user_id", default=None
)

#: Fields a record may carry (``extra=``) that are copied into the JSON object.
EXTRA_FIELDS = (
    "method",
    "path",
    "status",
    "duration_ms",
    "remote_addr",
    "task",
    "task_id",
    "version_id",
    "item_id",
)

#: Marks the handlers this module installed, so configuring twice replaces instead of adding.
_OURS = "_kepu_handler"


class ContextFilter(logging.Filter):
    """Stamps every record with the current request id and user id (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id.get()
        if getattr(record, "user_id", None) is None:
            record.user_id = current_user_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, user_id and extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or current_request_id.get(),
            "user_id": getattr(record, "user_id", None),
        }
        for field in EXTRA_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.processName not in (None, "MainProcess"):
            entry["process"] = record.processName
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class GunicornAccessJsonFormatter(JsonFormatter):
    """gunicorn's access line as JSON: its atoms (``record.args``) become fields."""

    def format(self, record: logging.LogRecord) -> str:
        atoms = record.args if isinstance(record.args, dict) else {}

        def atom(key: str) -> Any:
            try:
                value = atoms[key]  # gunicorn's SafeAtoms answers "-" for a missing header
            except KeyError:
                return None
            return None if value in ("-", "", None) else value

        record.method = atom("m")
        record.path = atom("U")
        status = atom("s")
        record.status = int(status) if str(status).isdigit() else status
        duration = atom("D")  # microseconds
        record.duration_ms = round(int(duration) / 1000, 3) if str(duration).isdigit() else None
        record.remote_addr = atom("h")
        record.request_id = atom("{x-request-id}o")
        record.msg, record.args = str(atom("r") or ""), None
        return super().format(record)


def json_enabled(fmt: object) -> bool:
    """True when the configured format asks for JSON lines."""
    return str(fmt or "").strip().lower() == "json"


def make_handler(stream: Any = None, filename: str | None = None) -> logging.Handler:
    """A handler writing JSON lines (to a file when given, else stderr), with the context filter."""
    handler: logging.Handler = (
        logging.FileHandler(filename, encoding="utf-8")
        if filename
        else logging.StreamHandler(stream or sys.stderr)
    )
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    setattr(handler, _OURS, True)
    return handler


def configure_json(level: int | str = logging.INFO, logfile: str | None = None) -> None:
    """Send every logger's records through one JSON handler on the root logger.

    Handlers installed earlier by this function are replaced; other handlers are left alone.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _OURS, False):
            root.removeHandler(handler)
            handler.close()
    root.addHandler(make_handler(filename=logfile))
    root.setLevel(level)
