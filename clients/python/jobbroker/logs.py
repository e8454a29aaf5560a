"""Log output of jobbroker processes (the broker, ``jobbroker serve``, ``jobbroker work``):
readable lines or JSON lines, on stderr, through the standard ``logging`` module.

Structured fields travel in ``extra=``: every line about a job carries ``queue`` and ``job_id``
(build them with :func:`job_fields`). Payloads (job data, results, progress values) are never
logged, in either format.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

FORMATS = ("console", "json")
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Attributes every LogRecord has: anything else on a record came in through `extra=`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
}


def job_fields(queue: str, job_id: str, **more: Any) -> dict[str, Any]:
    """The ``extra=`` of a log line about one job."""
    return {"queue": queue, "job_id": job_id, **more}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a record carries (what ``extra=`` gave it)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC, ISO 8601), level, logger, message, the
    record's fields, and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record_fields(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        fields = record_fields(record)
        if fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return text


def check(format: str, level: str) -> tuple[logging.Formatter, int]:
    """The formatter and level named; ValueError naming the option when one is unknown."""
    if format not in FORMATS:
        raise ValueError(f"--log-format must be one of {', '.join(FORMATS)}, not {format!r}")
    if level.lower() not in LEVELS:
        raise ValueError(f"--log-level must be one of {', '.join(LEVELS)}, not {level!r}")
    formatter = JsonFormatter() if format == "json" else ConsoleFormatter()
    return formatter, LEVELS[level.lower()]


def configure(format: str = "console", level: str = "info") -> None:
    """Send every log record of the process to stderr in ``format`` (console or json), from
    ``level`` up; replaces the root logger's handlers. ValueError on an unknown name."""
    formatter, number = check(format, level)
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(number)
