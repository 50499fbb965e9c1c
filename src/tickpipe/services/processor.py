"""The processor. Order: score -> store.write -> consumer.commit -> publish.

One batch is in flight at a time: while batch N is written, committed and handed to the
publisher, batch N+1 is polled and scored; batch N+1 is written only after N is committed.

Offsets are committed only after the trades they cover are in the store (at-least-once from the
bus, exactly-once in the store thanks to its unique key). A stream's window is rebuilt from the
store the first time the stream is seen (start, restart, rebalance), so the SMA of every trade is
the one an uninterrupted run would have given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from opentelemetry.trace import SpanKind

from tickpipe.backoff import Backoff
from tickpipe.core.dedupe import RecentIds
from tickpipe.core.scoring import ScoredTrade, Scorer
from tickpipe.core.trade import Trade
from tickpipe.ports import BusMessage, TradeConsumer, TradeWriter, UpdatePublisher
from tickpipe.telemetry import metrics, tracing

log = logging.getLogger(__name__)
T = TypeVar("T")

IDLE_POLL_S = 0.1  # how long an idle poll waits, i.e. how quickly a stop is noticed
IN_FLIGHT_POLL_S = 0.002
STOPPING_ATTEMPT_S = 2.0  # once stopping, a failing dependency gets one attempt this long
RECENT_IDS_PER_STREAM = 4_096


class _GaveUp(Exception):
    """Stopping while a dependency fails: the batch stays uncommitted and will be redelivered."""


class Processor:
    def __init__(
        self,
        consumer: TradeConsumer,
        store: TradeWriter,
        publisher: UpdatePublisher,
        scorer: Scorer,
        *,
        max_batch_trades: int = 5_000,
        max_batch_age_s: float = 0.05,
        backoff: Backoff | None = None,
    ) -> None:
        self._consumer = consumer
        self._store = store
        self._publisher = publisher
        self._scorer = scorer
        self._max_batch_trades = max_batch_trades
        self._max_batch_age_s = max_batch_age_s
        self._backoff = backoff or Backoff()
        self._batch: list[ScoredTrade] = []
        self._messages: list[BusMessage] = []
        self._batch_started_s = 0.0
        self._recent = RecentIds(window=max(RECENT_IDS_PER_STREAM, scorer.window))
        self.failing: dict[str, str] = {}  # dependency -> why its last call failed (readiness)
        self._stop = asyncio.Event()
        self._in_flight: asyncio.Task[None] | None = None
        consumer.on_revoke(self._on_revoke)

    async def run(self, stop: asyncio.Event, *, drain: bool = False) -> None:
        """Processes until `stop` is set, then flushes (after draining the bus if `drain`).
        Once `stop` is set, retries end: a stop is never held up by an outage, what is not
        committed comes back from the bus. Except with `drain` (a bus that is not durable):
        retries go on until the caller gives up."""
        if not drain:
            self._stop = stop
        try:
            while not stop.is_set():
                await self._step(self._poll_timeout_s())
            if drain:
                while await self._step(0.0):
                    pass
            await self.flush()
            await self._settle()
        except _GaveUp as exc:
            self._log_gave_up(exc)

    def _poll_timeout_s(self) -> float:
        if not self._messages:
            timeout_s = IDLE_POLL_S
        else:
            timeout_s = max(0.0, self._max_batch_age_s - (time.monotonic() - self._batch_started_s))
        if self._in_flight is not None and not self._in_flight.done():
            # The bus may serve the in-flight batch's commit only between polls: keep them short.
            timeout_s = min(timeout_s, IN_FLIGHT_POLL_S)
        return timeout_s

    async def _step(self, timeout_s: float) -> int:
        """One poll; flushes when the batch is full, the bus ran dry, or the batch is too old."""
        wanted = self._max_batch_trades - len(self._messages)
        messages = await self._consumer.poll(wanted, timeout_s)
        if messages:
            if not self._messages:
                self._batch_started_s = time.monotonic()
            await self._take(messages)
        if self._messages and (
            len(self._messages) >= self._max_batch_trades
            or len(messages) < wanted
            or time.monotonic() - self._batch_started_s >= self._max_batch_age_s
        ):
            await self.flush()
        return len(messages)

    async def _take(self, messages: Sequence[BusMessage]) -> None:
        poison = [m for m in messages if m.trade is None]
        if poison:
            await self._retry("dead-letter", "kafka", lambda: self._consumer.dead_letter(poison))
            for message in poison:
                log.warning("moved a bus message to the DLQ: %s", message.error)
        scorer, batch, recent = self._scorer, self._batch, self._recent
        for message in messages:
            trade = message.trade
            if trade is None:
                continue
            if not recent.admit(trade.key, trade.trade_id).new:
                # A restarted ingestor replays what its venue re-sent (snapshots, replays):
                # scoring it twice would corrupt the window. The store would ignore it anyway.
                metrics.duplicate_trades_dropped.labels(trade.exchange).inc()
                continue
            if not scorer.has_window(trade.key):
                await self._rebuild_window(trade)
            batch.append(scorer.score(trade))
        self._messages.extend(messages)

    async def _rebuild_window(self, trade: Trade) -> None:
        """Seeds a stream's window with the prices stored before `trade` (restart, rebalance)."""
        await self._settle()  # the batch in flight may hold the stream's latest trades
        window = self._scorer.window
        prices = await self._retry(
            "window rebuild", "database", lambda: self._store.window_prices(trade, window - 1)
        )
        self._scorer.seed(trade.key, prices)

    async def flush(self) -> None:
        """Hands the batch on to be written, committed and published, once the batch in flight
        is done; returns without waiting for this one (see `_settle`)."""
        await self._settle()
        if not self._messages:
            return
        batch, messages = self._batch, self._messages
        self._batch, self._messages = [], []
        self._in_flight = asyncio.create_task(self._write(batch, messages), name="process-batch")

    async def _settle(self) -> None:
        """Waits for the batch in flight; its failure (a stop during an outage) surfaces here."""
        task, self._in_flight = self._in_flight, None
        if task is not None:
            await task

    async def _write(self, batch: list[ScoredTrade], messages: list[BusMessage]) -> None:
        with tracing.span(
            "process batch",
            kind=SpanKind.CONSUMER,
            links=(m.traceparent for m in messages),
            trades=len(batch),
        ):
            if batch:
                started_s = time.monotonic()
                with tracing.span("store.write", trades=len(batch)):
                    inserted = await self._retry(
                        "store write", "database", lambda: self._store.write(batch)
                    )
                metrics.trades_stored.inc(inserted)
                metrics.batch_size.observe(len(batch))
                metrics.flush_seconds.observe(time.monotonic() - started_s)
            with tracing.span("bus.commit", messages=len(messages)):
                await self._retry("commit", "kafka", lambda: self._consumer.commit(messages))
            if batch:
                with tracing.span("publish", trades=len(batch)):
                    await self._publish(batch)
                _count(batch)

    async def _publish(self, batch: Sequence[ScoredTrade]) -> None:
        # Live updates are best effort: storage must go on while the pub/sub is down.
        try:
            await self._publisher.publish(batch)
        except Exception as exc:  # noqa: BLE001 - any pub/sub failure is counted, not fatal
            metrics.publish_retries.inc()
            metrics.updates_dropped.inc(len(batch))
            log.warning("could not publish %d updates: %s", len(batch), exc)
            return
        now_s = time.time()
        for scored in _last_per_stream(batch):
            metrics.ingest_to_published_seconds.observe(
                max(0.0, now_s - scored.trade.ingest_time_us / 1e6)
            )
            metrics.exchange_to_processed_seconds.observe(
                max(0.0, now_s - scored.trade.exchange_time_us / 1e6)
            )

    async def _on_revoke(self) -> None:
        """Partitions are being taken away: hand them over with everything stored and committed."""
        try:
            await self.flush()
            await self._settle()
        except _GaveUp as exc:  # closing during an outage: the next owner gets them again
            self._log_gave_up(exc)
        self._scorer.forget_all()

    def _log_gave_up(self, exc: _GaveUp) -> None:
        log.warning(
            "stopping with a batch neither stored nor committed (it will be redelivered): %s", exc
        )

    @property
    def store_healthy(self) -> bool:
        return "database" not in self.failing

    async def _retry(
        self, what: str, dependency: str, attempt_call: Callable[[], Awaitable[T]]
    ) -> T:
        """Calls until it succeeds, with capped exponential backoff; `dependency` (database or
        kafka) names what is failing for /readyz and the metrics."""
        attempt = 0
        while True:
            stopping = self._stop.is_set()
            try:
                if stopping:
                    async with asyncio.timeout(STOPPING_ATTEMPT_S):
                        result = await attempt_call()
                else:
                    result = await attempt_call()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - an outage is retried, never fatal
                if dependency == "database" and dependency not in self.failing:
                    # Kafka outages are counted by its adapter, which sees them even when idle.
                    metrics.dependency_outages.labels(dependency).inc()
                self.failing[dependency] = f"{what} failing, retrying: {exc}"
                if stopping:
                    raise _GaveUp(f"{what} failed: {exc or type(exc).__name__}") from None
                retries = metrics.store_retries if dependency == "database" else metrics.bus_retries
                retries.inc()
                delay_s = self._backoff.delay_s(attempt)
                log.warning(
                    "%s failed (attempt %d), retrying in %.2fs: %s", what, attempt + 1, delay_s, exc
                )
                attempt += 1
                with contextlib.suppress(TimeoutError):  # a stop cuts the wait short
                    await asyncio.wait_for(self._stop.wait(), delay_s)
            else:
                if attempt:
                    log.info("%s succeeded after %d retries", what, attempt)
                self.failing.pop(dependency, None)
                return result


def _last_per_stream(batch: Sequence[ScoredTrade]) -> list[ScoredTrade]:
    return list({scored.trade.key: scored for scored in batch}.values())


def _count(batch: Sequence[ScoredTrade]) -> None:
    for (exchange, symbol), count in Counter(s.trade.key for s in batch).items():
        metrics.trades_processed.labels(exchange, symbol).inc(count)
