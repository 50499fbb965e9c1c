"""The ingestor: trade source -> bus. Stops on `stop`, then flushes what the bus still holds."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from opentelemetry.trace import SpanKind
from prometheus_client import Counter

from tickpipe.ports import TradeSink, TradeSource
from tickpipe.telemetry import metrics, tracing
from tickpipe.telemetry.logs import fields

log = logging.getLogger(__name__)

FLUSH_ON_STOP_S = 5.0


async def run_ingestor(source: TradeSource, sink: TradeSink, stop: asyncio.Event) -> None:
    """Forwards every trade of `source` to `sink` until `stop` is set or the source fails."""
    accepted = [0]  # trades handed to the sink, for the summary line at stop
    forwarding = asyncio.create_task(_forward(source, sink, accepted), name="ingest")
    stopping = asyncio.create_task(stop.wait(), name="ingest-stop")
    try:
        await asyncio.wait({forwarding, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not forwarding.done():
            forwarding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarding
        undelivered = await sink.flush(FLUSH_ON_STOP_S)
        if undelivered:
            log.error(
                "%d trades were not delivered to the bus before stopping",
                undelivered,
                extra=fields("trades_undelivered", trades=undelivered),
            )
        # The exact total, so that accepted = stored + dropped can be checked after a run.
        log.info(
            "ingestor stopped: %d trades accepted from the source",
            accepted[0],
            extra=fields("ingestor_stopped", trades=accepted[0]),
        )
    if not forwarding.cancelled():
        forwarding.result()  # a failed source (e.g. a rejected subscription) propagates


async def _forward(source: TradeSource, sink: TradeSink, accepted: list[int]) -> None:
    counters: dict[tuple[str, str], Counter] = {}
    async for trade in source.trades():
        if tracing.enabled():
            with tracing.span(
                "ingest",
                kind=SpanKind.PRODUCER,
                exchange=trade.exchange,
                symbol=trade.symbol,
                trade_id=trade.trade_id,
            ):
                await sink.send(trade)  # the sink sends this span's context with the trade
        else:
            await sink.send(trade)
        accepted[0] += 1
        counter = counters.get(trade.key)
        if counter is None:
            counter = counters[trade.key] = metrics.trades_ingested.labels(
                trade.exchange, metrics.symbol_label(*trade.key)
            )
        counter.inc()
