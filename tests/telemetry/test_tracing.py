"""Tracing: one trade's trace crosses ingest -> Kafka -> process, and costs nothing when off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fixtures.trades import make_trade
from tickpipe.adapters.bus.kafka import KafkaConsumer, KafkaSink
from tickpipe.adapters.pubsub.memory import MemoryPubSub
from tickpipe.adapters.store.migrate import migrate
from tickpipe.adapters.store.sqlite import open_sqlite_store
from tickpipe.core.scoring import Scorer
from tickpipe.core.trade import Trade
from tickpipe.services.ingestor import run_ingestor
from tickpipe.services.processor import Processor
from tickpipe.telemetry import tracing


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.setup_tracing("tickpipe-test", exporter)
    yield exporter
    tracing.shutdown_tracing()


class ListSource:
    def __init__(self, trades: list[Trade]) -> None:
        self._trades = trades

    async def trades(self) -> AsyncIterator[Trade]:
        for trade in self._trades:
            yield trade


@pytest.mark.infra
async def test_a_trades_trace_crosses_ingest_kafka_process(
    spans: InMemorySpanExporter, kafka_bootstrap: str, kafka_topic: str, tmp_path: Path
) -> None:
    """The processor's batch span links to the ingest span of every trade it stored."""
    trades = [make_trade(n) for n in range(1, 6)]
    sink = KafkaSink(kafka_bootstrap, kafka_topic)
    await run_ingestor(ListSource(trades), sink, asyncio.Event())
    await sink.close()

    url = f"sqlite:///{tmp_path}/t.db"
    await migrate(url)
    store = await open_sqlite_store(url)
    consumer = KafkaConsumer(kafka_bootstrap, kafka_topic, group=f"g-{kafka_topic}")
    processor = Processor(consumer, store, MemoryPubSub(20), Scorer(20))
    stop = asyncio.Event()
    running = asyncio.create_task(processor.run(stop))
    async with asyncio.timeout(30):
        while len(await store.history("BTCUSDT", limit=10)) < len(trades):
            await asyncio.sleep(0.1)
    stop.set()
    await running
    await consumer.close()
    await store.close()

    finished = spans.get_finished_spans()
    ingest = [s for s in finished if s.name == "ingest"]
    assert len(ingest) == len(trades)
    ingest_contexts = {(s.context.trace_id, s.context.span_id) for s in ingest}
    batches = [s for s in finished if s.name == "process batch"]
    linked = {(link.context.trace_id, link.context.span_id) for b in batches for link in b.links}
    assert ingest_contexts <= linked
    writes = [s for s in finished if s.name == "store.write"]
    batch_ids = {b.context.span_id for b in batches}
    assert writes
    assert all(w.parent is not None and w.parent.span_id in batch_ids for w in writes)


def test_tracing_is_off_by_default_and_adds_no_header() -> None:
    """Without an OTLP endpoint nothing is set up and no traceparent is produced."""
    assert not tracing.enabled()
    with tracing.span("ingest") as span:
        assert span is None
        assert tracing.current_traceparent() is None
