"""Worker logs: human by default, one JSON object per line with HERALD_LOG_FORMAT=json.

A batch loop names its stage and batch number in `BATCH` once per batch (a context variable:
each loop runs in a task of its own), so every line logged while a batch is handled carries
them without being passed around; a log call may add `extra={"shard": n}`. Both formats mask
URL credentials (`scheme://user:secret@host`), and the last warnings are kept for
`herald status`.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

import orjson

BATCH: contextvars.ContextVar[tuple[str, int] | None] = contextvars.ContextVar(
    "herald_batch", default=None
)
_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@", re.IGNORECASE)
RECENT_LINES = 10


def redact(text: str) -> str:
    return _CREDENTIALS.sub(r"\1***@", text)


class Redact(logging.Filter):
    """Masks credentials in the rendered message (arguments included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "role", "stage"?, "batch"?, "shard"?, "message", "error"?}."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "role": self.role,
        }
        batch = BATCH.get()
        if batch is not None:
            doc["stage"], doc["batch"] = batch
        shard = getattr(record, "shard", None)
        if shard is not None:
            doc["shard"] = shard
        doc["message"] = redact(record.getMessage())
        if record.exc_info:
            doc["error"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(doc).decode()


class RecentErrors(logging.Handler):
    """The last warnings and errors of this process, for its /status page."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque[tuple[float, str, str]] = deque(maxlen=RECENT_LINES)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((time.time(), record.levelname.lower(), redact(record.getMessage())))


RECENT = RecentErrors()  # one per process, as the root logger it listens to


def install(root: logging.Logger, log_format: str, role: str) -> None:
    """Herald's formats on the handlers Faust configured (called once it has)."""
    for handler in root.handlers:
        handler.addFilter(Redact())
        if log_format == "json":
            handler.setFormatter(JsonFormatter(role))
    root.addHandler(RECENT)
