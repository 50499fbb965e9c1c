"""Logging: one line per event, plain by default or JSON (`TICKPIPE_LOG_FORMAT=json`).

A JSON line carries `time`, `level`, `service`, `logger`, `event` (a stable name, or the message
when the call names none), `message` (the sentence) and the event's fields: what the call passed
with `extra=fields("exchange_connected", venue=..., symbols=...)`, and `trace_id` inside a span.
A plain line is the sentence alone, for a terminal. A worker of `tickpipe process --workers N`
names itself on every line: `worker` in JSON, `[worker i]` in a plain line."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Mapping

import orjson

from tickpipe.telemetry.tracing import TraceIdFilter

# What every LogRecord has; anything else on a record came from `extra=` (or the trace filter).
_RECORD_ATTRIBUTES = frozenset(
    set(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
    | {"message", "asctime", "color_message"}
)


_OWN_KEYS = frozenset({"time", "level", "service", "logger", "message"})


def fields(event: str, **values: object) -> dict[str, object]:
    """The `extra=` of a log call: the event's stable name and its structured fields
    (venue, symbol, dependency, counts, durations with their unit in the name)."""
    return {"event": event, **values}


def event_fields(record: logging.LogRecord) -> dict[str, object]:
    """The structured fields a log call attached to its record."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str = "tickpipe", worker: int | None = None) -> None:
        super().__init__()
        self.service = service
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "event": message,
        }
        if self.worker is not None:
            entry["worker"] = self.worker
        for key, value in event_fields(record).items():
            # A field never hides the line's own keys, nor a worker's index (run_service's
            # `worker_cancelled` has a `worker` field too, its task; the sentence names that).
            if key not in _OWN_KEYS and not (key == "worker" and self.worker is not None):
                entry[key] = value
        entry["logger"] = record.name
        entry["message"] = message
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        trace_id = getattr(record, "trace_id", None)
        return f"{line} [trace {trace_id}]" if trace_id else line


def configure_logging(
    log_format: str = "plain",
    level: str = "INFO",
    service: str = "tickpipe",
    worker: int | None = None,
) -> None:
    """Root logging to stderr. `worker`: the index of a `--workers` child, named on each line
    (the children share one stderr); None in every other process."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(service, worker))
    else:
        tag = "" if worker is None else f"[worker {worker}] "
        handler.setFormatter(
            PlainFormatter(f"%(asctime)s %(levelname)-7s {tag}%(name)s: %(message)s")
        )
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

    def __call__(
        self,
        level: int,
        message: str,
        *args: object,
        extra: Mapping[str, object] | None = None,
    ) -> None:
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
        self._logger.log(level, message, *args, extra={**(extra or {}), "skipped": skipped})
