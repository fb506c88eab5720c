"""Logging for mstlsd: human-readable lines by default, JSON lines on request.

Every daemon log call goes through :func:`event`, which carries structured
fields (``conn``, ``peer``, ``transport``, ``service``, ``stream``, ``code``...)
next to the message.  The human format appends them as ``key=value``; the JSON
format writes one object per line with ``time``, ``level``, ``event``,
``message`` and the fields, for log shippers.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import IO, Any

__all__ = ["LOGGER_NAME", "HumanFormatter", "JsonFormatter", "configure", "event", "logger"]

LOGGER_NAME = "mstlsd"
_FIELDS = "mstlsd_fields"
_EVENT = "mstlsd_event"

logger = logging.getLogger(LOGGER_NAME)


def event(level: int, name: str, message: str, **fields: Any) -> None:
    """Log ``message`` as event ``name`` with structured ``fields`` (None values dropped)."""
    if logger.isEnabledFor(level):
        clean = {k: v for k, v in fields.items() if v is not None}
        logger.log(level, message, extra={_EVENT: name, _FIELDS: clean})


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


class HumanFormatter(logging.Formatter):
    """``2025-01-01T12:00:00.000Z INFO message key=value ...``"""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, _FIELDS, {})
        extra = " ".join(f"{k}={_text(v)}" for k, v in fields.items())
        line = f"{_timestamp(record)} {record.levelname} {record.getMessage()}"
        if extra:
            line += " " + extra
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "event": getattr(record, _EVENT, "log"),
            "message": record.getMessage(),
        }
        for key, value in getattr(record, _FIELDS, {}).items():
            out[key] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure(fmt: str, level: str, stream: IO[str] | None = None) -> None:
    """Send the daemon's logs to ``stream`` (stderr) in ``fmt`` ("human" or "json")."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
