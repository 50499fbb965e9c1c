"""librdkafka's own log lines: repeated FAIL lines are rate-limited with a count, SASL failures
are left to the one clear authentication line, and every other line passes."""

from __future__ import annotations

import logging
import time

from tickpipe.adapters.bus.kafka.client_log import RepeatedFailureFilter


def librdkafka_record(facility: str, text: str) -> logging.LogRecord:
    """A record as confluent-kafka makes it: ("%s [%s] %s", facility, client, text)."""
    args = (facility, "rdkafka#producer-1", text)
    return logging.LogRecord("k", logging.WARNING, __file__, 1, "%s [%s] %s", args, None)


def test_repeated_fail_lines_pass_once_per_interval_with_the_count_skipped() -> None:
    """100 reconnect failures in a burst: the first passes, the next one after the interval
    says how many were skipped."""
    log_filter = RepeatedFailureFilter(interval_s=0.05)
    passed = [
        log_filter.filter(librdkafka_record("FAIL", "Disconnected: connection reset by peer"))
        for _ in range(100)
    ]
    assert passed[0]
    assert passed.count(True) < 100
    time.sleep(0.06)
    later = librdkafka_record("FAIL", "Disconnected: connection reset by peer")
    assert log_filter.filter(later)
    assert later.getMessage().endswith(f"({100 - passed.count(True)} similar skipped)")


def test_sasl_failures_are_dropped_and_other_lines_kept() -> None:
    """SASL authentication FAIL lines are dropped; other facilities and plain records pass."""
    log_filter = RepeatedFailureFilter()
    sasl = "SASL authentication error: SASL SCRAM authentication failed: unknown-user"
    assert not log_filter.filter(librdkafka_record("FAIL", sasl))
    assert log_filter.filter(librdkafka_record("CONFWARN", "linger.ms is a producer property"))
    plain = logging.LogRecord("k", logging.INFO, __file__, 1, "assigned %s", ([0, 1],), None)
    assert log_filter.filter(plain)
