"""librdkafka's own log lines, which reach Python logging through each client's `logger`.

A broker that keeps refusing us makes librdkafka log one FAIL line per reconnect, several a
second. Authentication failures are dropped here (AuthFailures logs one clear line with what to
check); any other FAIL line passes at most once per interval, with a count of those skipped.
"""

from __future__ import annotations

import logging
import threading
import time

_KAFKA_LOGGERS = ("cluster", "sink", "consumer")  # the modules that hand `_log` to librdkafka


class RepeatedFailureFilter(logging.Filter):
    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._next_s = 0.0
        self._skipped = 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        # confluent-kafka logs ("%s [%s] %s", facility, client name, text).
        args = record.args
        if not (isinstance(args, tuple) and len(args) == 3 and args[0] == "FAIL"):
            return True
        text = str(args[2])
        if "SASL" in text and ("authentication" in text or "handshake failed" in text):
            return False
        with self._lock:
            now_s = time.monotonic()
            if now_s < self._next_s:
                self._skipped += 1
                return False
            self._next_s = now_s + self._interval_s
            skipped, self._skipped = self._skipped, 0
        if skipped:
            record.msg = f"{record.msg} (%d similar skipped)"
            record.args = (*args, skipped)
        return True


def install() -> None:
    """Puts one shared filter on the Kafka adapter loggers (idempotent)."""
    shared = RepeatedFailureFilter()
    for name in _KAFKA_LOGGERS:
        logger = logging.getLogger(f"tickpipe.adapters.bus.kafka.{name}")
        if not any(isinstance(f, RepeatedFailureFilter) for f in logger.filters):
            logger.addFilter(shared)
