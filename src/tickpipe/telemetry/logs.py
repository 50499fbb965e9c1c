"""Logging: one line per event, plain by default or JSON (`TICKPIPE_LOG_FORMAT=json`)."""

from __future__ import annotations

import logging
import sys
import threading
import time

import orjson

from tickpipe.telemetry.tracing import TraceIdFilter


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id = getattr(record, "trace_id", None)
        if trace_id:
            entry["trace_id"] = trace_id
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        trace_id = getattr(record, "trace_id", None)
        return f"{line} [trace {trace_id}]" if trace_id else line


def configure_logging(log_format: str = "plain", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PlainFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(TraceIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Per-request access lines would drown the pipeline's own events.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


class RateLimitedLog:
    """Logs the first event at once, then at most one line per `interval_s`, saying how many
    similar ones were skipped meanwhile. Thread-safe (delivery callbacks run on other threads)."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._next_s = 0.0
        self._skipped = 0
        self._lock = threading.Lock()

    def __call__(self, level: int, message: str, *args: object) -> None:
        with self._lock:
            now_s = time.monotonic()
            if now_s < self._next_s:
                self._skipped += 1
                return
            skipped, self._skipped = self._skipped, 0
            self._next_s = now_s + self._interval_s
        if skipped:
            message += " (%d similar skipped)"
            args = (*args, skipped)
        self._logger.log(level, message, *args)
