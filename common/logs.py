"""Structured logging: one JSON object per line, so a request id can be grepped across router and workers."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Line breaks that json.dumps(ensure_ascii=False) leaves raw (it escapes only U+0000-U+001F): NEL and the Unicode
# line and paragraph separators. Line-based readers (Python's splitlines, some log shippers) split on them, so a
# client's text carrying one would break its request's log line in two.
_RAW_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class JSONFormatter(logging.Formatter):
    """Formats a record as one JSON line; `extra={"fields": {...}}` adds structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False).translate(_RAW_LINE_BREAKS)


def configure_logging(level: str = "info", json_lines: bool = True) -> None:
    """Route our loggers and uvicorn's through one handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # httpx logs every request at INFO: the operator's /stats reads and readiness polls would bury the request log.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Our own per-request line replaces uvicorn's access log.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("uvicorn.error").addFilter(_drop_expected_abort)


def _drop_expected_abort(record: logging.LogRecord) -> bool:
    """A stream we cut on purpose (`tts_common.streaming.StreamAborted`) is logged by us with its request id;
    uvicorn's unattributed line about it would only add noise."""
    return record.getMessage() != "ASGI callable returned without completing response."


def log_fields(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, msg, extra={"fields": fields})


def refused_start(logger: logging.Logger, command: str, what: str, exc: Exception) -> int:
    """A server that cannot start for a bad file or setting: one log line, the reason on stderr, exit status 2."""
    log_fields(logger, what, logging.ERROR, error=str(exc))
    print(f"tts-cluster {command}: {exc}", file=sys.stderr)
    return 2
