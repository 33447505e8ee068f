"""Log formats: the plain text line, or one JSON object per line for journald and log shippers.

JSON lines always carry ts (UTC ISO 8601, milliseconds), level, logger and msg; cycle (the cycle
time in epoch ms, from `CYCLE`), symbol and client_order_id when known: a log call passes them
as `extra={"symbol": ..., "client_order_id": ...}`, and the engine sets `CYCLE` while a cycle
runs. A traceback goes into `exc`. Secrets are scrubbed before formatting by the handler's
RedactingFilter, so they never reach either format.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CYCLE: ContextVar[int | None] = ContextVar("vigil_cycle", default=None)
_EXTRA_FIELDS = ("symbol", "client_order_id")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        cycle = getattr(record, "cycle", None)
        if cycle is None:
            cycle = CYCLE.get()
        if cycle is not None:
            out["cycle"] = cycle
        for name in _EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False, default=str)


def formatter(name: str) -> logging.Formatter:
    """The formatter for `--log-format NAME`."""
    if name == "json":
        return JsonFormatter()
    if name == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"unknown log format {name!r}: use one of {', '.join(FORMATS)}")


def json_logging() -> bool:
    """True when the root logger writes JSON lines: then nothing else may print to stderr
    (a plain line would break the one-object-per-line contract)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)
