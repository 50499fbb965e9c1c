"""Log lines: plain by default, JSON on request, with the trace id while a span is active."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tickpipe.telemetry import tracing
from tickpipe.telemetry.logs import (
    JsonFormatter,
    PlainFormatter,
    RateLimitedLog,
    configure_logging,
    fields,
)
from tickpipe.telemetry.tracing import TraceIdFilter

TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"  # a plain line's asctime


def record(message: str) -> logging.LogRecord:
    made = logging.LogRecord("tickpipe.test", logging.INFO, __file__, 1, message, (), None)
    TraceIdFilter().filter(made)
    return made


@pytest.fixture
def tracing_on() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.setup_tracing("tickpipe-test", exporter)
    yield exporter
    tracing.shutdown_tracing()


def test_json_lines_are_one_object_per_event() -> None:
    """A JSON log line parses and carries time, level, logger and message."""
    line = JsonFormatter().format(record("stored 5 trades"))
    entry = orjson.loads(line)
    assert entry["message"] == "stored 5 trades"
    assert entry["level"] == "info"
    assert entry["logger"] == "tickpipe.test"
    assert entry["time"].endswith("Z")
    assert "\n" not in line
    assert "trace_id" not in entry


def test_json_lines_carry_service_event_and_the_fields_of_the_event() -> None:
    """A call with `extra=fields(...)` gives a JSON object with the service, the event's stable
    name, the sentence, and each field as its own key with its type kept."""
    made = logging.LogRecord(
        "tickpipe.feed",
        logging.WARNING,
        __file__,
        1,
        "%s: reconnecting in %.2f s",
        ("binance", 1.5),
        None,
    )
    for key, value in fields("exchange_reconnecting", venue="binance", delay_s=1.5).items():
        setattr(made, key, value)
    entry = orjson.loads(JsonFormatter("tickpipe-ingest").format(made))
    assert entry["service"] == "tickpipe-ingest"
    assert entry["event"] == "exchange_reconnecting"
    assert entry["message"] == "binance: reconnecting in 1.50 s"
    assert (entry["venue"], entry["delay_s"], entry["level"]) == ("binance", 1.5, "warning")
    plain = PlainFormatter("%(levelname)s %(message)s").format(made)
    assert plain == "WARNING binance: reconnecting in 1.50 s"


def test_a_call_without_fields_uses_its_sentence_as_the_event() -> None:
    """Libraries' lines (no `extra=`) still have an event: their message."""
    entry = orjson.loads(JsonFormatter().format(record("stored 5 trades")))
    assert entry["event"] == entry["message"] == "stored 5 trades"
    assert entry["service"] == "tickpipe"


def test_json_logging_of_a_real_call_has_the_fields(capsys: pytest.CaptureFixture[str]) -> None:
    """configure_logging("json") + a service's log call: one parsable line with its fields,
    values that JSON cannot hold (a tuple, an exception) written as text."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("json", "INFO", "tickpipe-process")
    try:
        logging.getLogger("tickpipe.test").info(
            "not ready: %s",
            "database",
            extra=fields(
                "dependency_not_ready",
                dependency="database",
                error=ConnectionError("refused"),
                symbols=("A", "B"),
            ),
        )
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    (line,) = capsys.readouterr().err.splitlines()
    entry = orjson.loads(line)
    assert entry["event"] == "dependency_not_ready"
    assert entry["dependency"] == "database"
    assert entry["error"] == "refused"
    assert entry["symbols"] == ["A", "B"]
    assert entry["service"] == "tickpipe-process"


def _configured_line(
    capsys: pytest.CaptureFixture[str], log_format: str, worker: int | None
) -> str:
    """The one line that configure_logging(log_format, worker=worker) writes for an info call
    whose own `worker` field names a task."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging(log_format, "INFO", "tickpipe-process", worker)
    try:
        logging.getLogger("tickpipe.test").info(
            "stored %d trades", 5, extra=fields("stored", trades=5, worker="processor")
        )
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    (line,) = capsys.readouterr().err.splitlines()
    return line


def test_a_workers_lines_name_the_worker_in_both_formats(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Worker 2 of `--workers N`: a plain line says `[worker 2]` before the logger, a JSON line
    has `"worker": 2`, which the call's own `worker` field does not hide."""
    plain = _configured_line(capsys, "plain", 2)
    assert re.fullmatch(f"{TIME} INFO    \\[worker 2\\] tickpipe.test: stored 5 trades", plain)
    entry = orjson.loads(_configured_line(capsys, "json", 2))
    assert entry["worker"] == 2
    assert (entry["event"], entry["trades"], entry["service"]) == ("stored", 5, "tickpipe-process")


def test_a_process_that_is_no_worker_logs_as_before(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a worker index (every command but a `--workers` child) lines have no tag and a
    JSON line's `worker` is only the call's own field."""
    plain = _configured_line(capsys, "plain", None)
    assert re.fullmatch(f"{TIME} INFO    tickpipe.test: stored 5 trades", plain)
    assert orjson.loads(_configured_line(capsys, "json", None))["worker"] == "processor"


def test_trace_id_is_in_each_line_while_a_span_is_active(
    tracing_on: InMemorySpanExporter,
) -> None:
    """Inside a span, both formats name the span's trace id."""
    with tracing.span("process batch") as span:
        assert span is not None
        trace_id = format(span.get_span_context().trace_id, "032x")
        inside = record("inside")
    assert orjson.loads(JsonFormatter().format(inside))["trace_id"] == trace_id
    assert PlainFormatter("%(message)s").format(inside) == f"inside [trace {trace_id}]"
    assert "trace" not in PlainFormatter("%(message)s").format(record("outside"))


def test_rate_limited_log_says_how_many_it_skipped(caplog: pytest.LogCaptureFixture) -> None:
    """Within the interval only the first line is logged; the next one counts the skipped."""
    limited = RateLimitedLog(logging.getLogger("tickpipe.test"), interval_s=3600)
    with caplog.at_level(logging.WARNING):
        for n in range(5):
            limited(logging.WARNING, "bad frame %d", n)
        limited._next_s = 0.0  # the interval has passed
        limited(logging.WARNING, "bad frame %d", 5)
    assert [r.getMessage() for r in caplog.records] == [
        "bad frame 0",
        "bad frame 5 (4 similar skipped)",
    ]


def test_rate_limited_lines_keep_their_fields_and_say_how_many_were_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A rate-limited line carries the call's structured fields plus `skipped` into JSON."""
    limited = RateLimitedLog(logging.getLogger("tickpipe.test"), interval_s=3600)
    with caplog.at_level(logging.WARNING):
        limited(logging.WARNING, "retry %d", 1, extra=fields("retry", dependency="database"))
        limited(logging.WARNING, "retry %d", 2, extra=fields("retry", dependency="database"))
        limited._next_s = 0.0  # the interval has passed
        limited(logging.WARNING, "retry %d", 3, extra=fields("retry", attempt=3))
    entries = [orjson.loads(JsonFormatter().format(r)) for r in caplog.records]
    assert [(e["event"], e.get("dependency"), e.get("attempt"), e["skipped"]) for e in entries] == [
        ("retry", "database", None, 0),
        ("retry", None, 3, 1),
    ]


def test_otlp_endpoint_turns_tracing_on_with_the_requested_protocol(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An OTLP endpoint turns tracing on, over HTTP or gRPC as OTEL_EXPORTER_OTLP_PROTOCOL says."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    exporter = tracing._otlp_exporter()
    assert type(exporter).__module__.startswith("opentelemetry.exporter.otlp.proto.http")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    exporter = tracing._otlp_exporter()
    assert type(exporter).__module__.startswith("opentelemetry.exporter.otlp.proto.grpc")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    assert not tracing.setup_tracing("tickpipe-test")
