"""OpenTelemetry tracing: off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set (or a test installs a
provider). While off, `enabled()` is False and the hot paths create no spans at all.

Spans: `ingest` per trade (its W3C context rides in the Kafka `traceparent` header),
`process batch` per store batch with a link to each trade's ingest span (capped), and its
children `store.write`, `bus.commit`, `publish`; the gateway's HTTP requests and broadcasts.
Sampling follows the standard `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` variables.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import context, trace
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:  # the SDK is imported only when tracing is turned on (start-up time)
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger(__name__)

MAX_LINKS_PER_BATCH = 128  # a 5,000-trade batch links a sample, not every trade
_propagator = TraceContextTextMapPropagator()
_enabled = False
_provider: TracerProvider | None = None
tracer: trace.Tracer = trace.get_tracer("tickpipe")


def enabled() -> bool:
    return _enabled


def setup_tracing(service_name: str, exporter: SpanExporter | None = None) -> bool:
    """Turns tracing on, exporting over OTLP when the standard variables name an endpoint, or to
    `exporter` (tests: synchronously); returns whether tracing is on."""
    global _enabled, _provider, tracer
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if exporter is None:
        if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            return False
        exporter = _otlp_exporter()
        if exporter is None:
            return False
        processor: SpanProcessor = BatchSpanProcessor(exporter)
    else:
        processor = SimpleSpanProcessor(exporter)
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    _provider = TracerProvider(resource=resource)  # sampler from OTEL_TRACES_SAMPLER*
    _provider.add_span_processor(processor)
    tracer = _provider.get_tracer("tickpipe")
    _enabled = True
    return True


def shutdown_tracing() -> None:
    """Exports what is pending and turns tracing off."""
    global _enabled, _provider
    _enabled = False
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def _otlp_exporter() -> SpanExporter | None:
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    try:
        if protocol.startswith("http"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[assignment]
                OTLPSpanExporter,
            )
    except ImportError:
        log.error(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is not installed: "
            "pip install 'tickpipe[otlp]'; tracing stays off"
        )
        return None
    return OTLPSpanExporter()


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the active span, for a Kafka header; None when there is none."""
    if not _enabled:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def links_from(traceparents: Iterable[str | None]) -> list[Link]:
    links = []
    for traceparent in traceparents:
        if traceparent is None:
            continue
        span_context = trace.get_current_span(
            _propagator.extract({"traceparent": traceparent})
        ).get_span_context()
        if span_context.is_valid:
            links.append(Link(span_context))
            if len(links) == MAX_LINKS_PER_BATCH:
                break
    return links


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    links: Iterable[str | None] = (),
    parent_traceparent: str | None = None,
    **attributes: str | int | float,
) -> Iterator[Span | None]:
    """A span when tracing is on (optionally child of a remote `traceparent`), else nothing."""
    if not _enabled:
        yield None
        return
    parent = (
        _propagator.extract({"traceparent": parent_traceparent}) if parent_traceparent else None
    )
    token = context.attach(parent) if parent is not None else None
    try:
        with tracer.start_as_current_span(
            name, kind=kind, links=links_from(links), attributes=attributes
        ) as current:
            yield current
    finally:
        if token is not None:
            context.detach(token)


class TraceIdFilter(logging.Filter):
    """Adds `trace_id` to every log record made while a span is active."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _enabled:
            span_context = trace.get_current_span().get_span_context()
            if span_context.is_valid:
                record.trace_id = format(span_context.trace_id, "032x")
        return True
