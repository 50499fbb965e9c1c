"""The processor. Order: score -> store.write -> consumer.commit -> publish.

One batch is in flight at a time: while batch N is written, committed and handed to the
publisher, batch N+1 is polled and scored; batch N+1 is written only after N is settled.

What may be committed is decided by one pure object, the `OffsetLedger` (core/offsets.py): per
partition, only up to the last message below which everything is stored (or dead-lettered).
A batch that fails, is given up at a stop, or is cancelled holds every later commit back.
Revoked or lost partitions are discarded, not flushed: their pending trades, their windows and
their dedupe ids go, and whoever owns them next reads them again (the store is idempotent).
A stream's window is rebuilt from the store the first time the stream is seen (start, restart,
rebalance, eviction), so the SMA of every trade is the one an uninterrupted run would have given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Sequence
from decimal import Decimal
from functools import partial
from operator import attrgetter
from typing import TypeVar

from opentelemetry.trace import SpanKind

from tickpipe.backoff import Backoff
from tickpipe.core.dedupe import RecentIds
from tickpipe.core.offsets import LedgerBatch, OffsetLedger, Offsets
from tickpipe.core.scoring import ScoredTrade, Scorer, StreamKey
from tickpipe.core.trade import Trade
from tickpipe.ports import BusMessage, TradeConsumer, TradeWriter, UpdatePublisher
from tickpipe.telemetry import metrics, tracing
from tickpipe.telemetry.logs import RateLimitedLog, fields

log = logging.getLogger(__name__)
T = TypeVar("T")

IDLE_POLL_S = 0.1  # how long an idle poll waits, i.e. how quickly a stop is noticed
IN_FLIGHT_POLL_S = 0.002
STOP_BUDGET_S = 4.0  # once stopping, what is in flight gets this long in all (SIGTERM grace: 10 s)
SERVE_GROUP_S = 0.5  # while the store is slow, the bus's group protocol is served this often
CANCEL_WAIT_S = 0.5  # how long a cancelled, hanging write may take to unwind
RECENT_IDS_PER_STREAM = 4_096


class _GaveUp(Exception):
    """Stopping while a dependency fails: the batch stays uncommitted and will be redelivered."""


class _Abandoned(Exception):
    """The batch's partitions were all revoked: the next owner reads them again."""


class _Pending:
    """The batch being gathered: its messages (poison and duplicates included) and the trades
    scored from them, each with its partition."""

    __slots__ = ("messages", "partitions", "scored", "started_s")

    def __init__(self) -> None:
        self.messages: list[BusMessage] = []
        self.scored: list[ScoredTrade] = []
        self.partitions: list[int] = []
        self.started_s = 0.0

    def drop(self, partitions: Collection[int]) -> None:
        self.messages = [m for m in self.messages if m.partition not in partitions]
        pairs = zip(self.scored, self.partitions, strict=True)
        kept = [(s, p) for s, p in pairs if p not in partitions]
        self.scored = [s for s, _ in kept]
        self.partitions = [p for _, p in kept]

    def spans(self) -> dict[int, tuple[int, int]]:
        """Per partition, the first and last offset taken (delivery order is offset order)."""
        firsts: dict[int, int] = {}
        lasts: dict[int, int] = {}
        for message in self.messages:
            partition = message.partition
            if partition not in firsts:
                firsts[partition] = message.offset
            lasts[partition] = message.offset
        return {partition: (first, lasts[partition]) for partition, first in firsts.items()}


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
        stop_budget_s: float = STOP_BUDGET_S,
    ) -> None:
        self._consumer = consumer
        self._store = store
        self._publisher = publisher
        self._scorer = scorer
        self._max_batch_trades = max_batch_trades
        self._max_batch_age_s = max_batch_age_s
        self._backoff = backoff or Backoff()
        self._stop_budget_s = stop_budget_s
        self._pending = _Pending()
        self._ledger = OffsetLedger()
        self._recent = RecentIds(window=max(RECENT_IDS_PER_STREAM, scorer.window))
        self._stream_partitions: dict[StreamKey, int] = {}
        self._epoch = 0  # revocations so far
        self._revoked_at: dict[int, int] = {}  # partition -> epoch of its last revocation
        self.failing: dict[str, str] = {}  # dependency -> why its last call failed (readiness)
        self._stop = asyncio.Event()
        self._stop_deadline_s: float | None = None
        self._in_flight: asyncio.Task[None] | None = None
        self._in_flight_batch: LedgerBatch | None = None
        self._detached: set[asyncio.Task[None]] = set()  # batches in flight when revoked
        self._attempts: set[asyncio.Timeout] = set()  # dependency calls under way
        self._log_retry = {"database": RateLimitedLog(log), "kafka": RateLimitedLog(log)}
        consumer.on_revoke(self._on_revoke)

    async def run(self, stop: asyncio.Event, *, drain: bool = False) -> None:
        """Processes until `stop` is set, then stores and commits what it holds, within
        `stop_budget_s`: a stop is never held up by an outage, and what is not committed comes
        back from the bus. Except with `drain` (a bus that is not durable): the bus is emptied
        first and retries go on until the caller gives up."""
        if not drain:
            self._stop = stop
        bounding = asyncio.create_task(self._bound_attempts_on_stop(), name="stop-budget")
        try:
            while not stop.is_set():
                await self._step(self._poll_timeout_s())
            if drain:
                while await self._step(0.0):
                    pass
            await self.flush()
            await self._settle()
        except _GaveUp as exc:
            log.warning(
                "stopping with trades neither stored nor committed (they will be redelivered): %s",
                exc,
            )
        finally:
            bounding.cancel()

    def _poll_timeout_s(self) -> float:
        pending = self._pending
        if not pending.messages:
            timeout_s = IDLE_POLL_S
        else:
            timeout_s = max(0.0, self._max_batch_age_s - (time.monotonic() - pending.started_s))
        if self._in_flight is not None and not self._in_flight.done():
            # The bus may serve the in-flight batch's commit only between polls: keep them short.
            timeout_s = min(timeout_s, IN_FLIGHT_POLL_S)
        return timeout_s

    async def _step(self, timeout_s: float) -> int:
        """One poll; flushes when the batch is full, the bus ran dry, or the batch is too old."""
        wanted = self._max_batch_trades - len(self._pending.messages)
        messages = await self._consumer.poll(wanted, timeout_s)
        if messages:
            await self._take(messages)
        pending = self._pending
        if pending.messages and (
            len(pending.messages) >= self._max_batch_trades
            or len(messages) < wanted
            or time.monotonic() - pending.started_s >= self._max_batch_age_s
        ):
            await self.flush()
        return len(messages)

    async def _take(self, messages: Sequence[BusMessage]) -> None:
        """Dead-letters the poison, rebuilds the windows of new streams, then scores the rest.
        Partitions revoked during those waits drop out: their messages come back to their next
        owner."""
        epoch = self._epoch
        poison = [m for m in messages if m.trade is None]
        if poison:
            await self._retry("dead-letter", "kafka", lambda: self._consumer.dead_letter(poison))
            for message in poison:
                log.warning("moved a bus message to the DLQ: %s", message.error)
        await self._rebuild_windows(messages, epoch)
        if self._epoch != epoch:
            messages = [m for m in messages if self._revoked_at.get(m.partition, -1) <= epoch]
            if not messages:
                return
        # From here to the end no await: a revocation cannot come in between.
        pending, scorer, recent = self._pending, self._scorer, self._recent
        stream_partitions = self._stream_partitions
        if not pending.messages:
            pending.started_s = time.monotonic()
        add_scored, add_partition = pending.scored.append, pending.partitions.append
        score, admit = scorer.score, recent.admit
        for message in messages:
            trade = message.trade
            if trade is None:
                continue
            key = (trade.exchange, trade.symbol)
            if not admit(key, trade.trade_id).new:
                # A restarted ingestor replays what its venue re-sent (snapshots, replays):
                # scoring it twice would corrupt the window. The store would ignore it anyway.
                metrics.duplicate_trades_dropped.labels(trade.exchange).inc()
                continue
            add_scored(score(trade))
            add_partition(message.partition)
            stream_partitions[key] = message.partition
        pending.messages.extend(messages)

    async def _rebuild_windows(self, messages: Sequence[BusMessage], epoch: int) -> None:
        """Seeds the windows of streams without one with the prices stored before their first
        trade here (restart, rebalance, eviction). Everything taken before is stored first, so
        the store has each stream's latest trades."""
        firsts: dict[StreamKey, tuple[Trade, int]] = {}
        for message in messages:
            trade = message.trade
            if trade is not None and trade.key not in firsts:
                firsts[trade.key] = (trade, message.partition)
        if all(self._scorer.has_window(key) for key in firsts):
            return
        await self.flush()
        await self._settle()
        # Only now: the flush may have evicted streams of this poll too.
        new = [first for key, first in firsts.items() if not self._scorer.has_window(key)]
        window = self._scorer.window
        seeds: list[tuple[StreamKey, int, list[Decimal]]] = []
        for trade, partition in new:
            prices = await self._retry(
                "window rebuild", "database", partial(self._store.window_prices, trade, window - 1)
            )
            seeds.append((trade.key, partition, prices))
        for key, partition, prices in seeds:
            if self._revoked_at.get(partition, -1) <= epoch:
                self._scorer.seed(key, prices)

    async def flush(self) -> None:
        """Hands the batch on to be written, committed and published, once the batch in flight
        is settled; returns without waiting for this one (see `_settle`)."""
        await self._settle()
        pending = self._pending
        if not pending.messages:
            return
        self._pending = _Pending()
        batch = self._ledger.add_batch(pending.spans())
        self._evict()
        self._in_flight = asyncio.create_task(
            self._write(batch, pending.scored, pending.messages), name="process-batch"
        )
        self._in_flight_batch = batch
        # Lets the write start now, while the next batch is polled and scored: a bus whose poll
        # returns without suspending (the in-process one, with trades waiting) would otherwise
        # hold it back until that next batch is scored, and nothing would overlap.
        await asyncio.sleep(0)

    def _evict(self) -> None:
        """Keeps per-stream state bounded: the least recently scored streams beyond the
        scorer's limit lose their window and dedupe ids (rebuilt from the store if they return)."""
        evicted = self._scorer.evict()
        if evicted:
            self._recent.forget(evicted)
            for key in evicted:
                self._stream_partitions.pop(key, None)

    async def _settle(self) -> None:
        """Waits for the batch in flight; its failure (a stop during an outage) surfaces here.
        Once stopping, it gets what is left of the stop budget, then it is cancelled: it was
        never committed, so it is redelivered."""
        task, self._in_flight = self._in_flight, None
        batch, self._in_flight_batch = self._in_flight_batch, None
        if task is None:
            return
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            while not task.done() and not stopping.done():
                await asyncio.wait(
                    {task, stopping}, timeout=SERVE_GROUP_S, return_when=asyncio.FIRST_COMPLETED
                )
                if task.done() or stopping.done():
                    break
                # A slow or hung store must not hold the group up: rebalances go on meanwhile.
                await self._consumer.serve_group()
                if batch is not None and not self._ledger.owns(batch):
                    # Revoked while in flight: already forgotten, it can move no commit. It is
                    # left to end by itself (cancelling a call on a hung connection leaks it
                    # from the pool); the processor goes on with its new assignment.
                    self._detached.add(task)
                    task.add_done_callback(self._forget_detached)
                    log.info("left the batch in flight behind: its partitions were revoked")
                    return
        finally:
            stopping.cancel()
        if not task.done():
            await asyncio.wait({task}, timeout=max(0.0, self._deadline_s() - time.monotonic()))
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=CANCEL_WAIT_S)
            raise _GaveUp(f"the batch in flight did not finish within {self._stop_budget_s}s")
        task.result()

    def _forget_detached(self, task: asyncio.Task[None]) -> None:
        self._detached.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("a batch left behind ended: %s", task.exception())

    def _deadline_s(self) -> float:
        if self._stop_deadline_s is None:
            self._stop_deadline_s = time.monotonic() + self._stop_budget_s
        return self._stop_deadline_s

    def _attempt_deadline(self) -> float | None:
        """The event-loop time by which a dependency call must end: none until stopping."""
        if not self._stop.is_set():
            return None
        remaining_s = max(0.0, self._deadline_s() - time.monotonic())
        return asyncio.get_running_loop().time() + remaining_s

    async def _bound_attempts_on_stop(self) -> None:
        """A call already waiting on a hung dependency when the stop comes gets the budget too."""
        await self._stop.wait()
        deadline = self._attempt_deadline()
        for scope in list(self._attempts):
            scope.reschedule(deadline)

    async def _write(
        self, batch: LedgerBatch, scored: list[ScoredTrade], messages: list[BusMessage]
    ) -> None:
        with tracing.span(
            "process batch",
            kind=SpanKind.CONSUMER,
            links=(m.traceparent for m in messages),
            trades=len(scored),
        ):
            try:
                await self._store_and_commit(batch, scored)
            except _Abandoned:
                log.info(
                    "dropped a batch of %d trades: its partitions were revoked, their next "
                    "owner reads them again",
                    len(scored),
                )
                return
            if scored:
                with tracing.span("publish", trades=len(scored)):
                    await self._publish(scored)
                _count(scored)

    async def _store_and_commit(self, batch: LedgerBatch, scored: list[ScoredTrade]) -> None:
        if scored:
            started_s = time.monotonic()
            with tracing.span("store.write", trades=len(scored)):
                inserted = await self._retry(
                    "store write", "database", lambda: self._store.write(scored), batch
                )
            metrics.trades_stored.inc(inserted)
            metrics.batch_size.observe(len(scored))
            metrics.flush_seconds.observe(time.monotonic() - started_s)
        self._ledger.done(batch)
        offsets = self._ledger.committable()
        if offsets:
            with tracing.span("bus.commit", partitions=len(offsets)):
                await self._retry("commit", "kafka", lambda: self._consumer.commit(offsets), batch)
            self._ledger.committed(offsets)

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

    def _on_revoke(self, partitions: Collection[int], lost: bool) -> Offsets:
        """The bus takes these partitions away (`lost`: they may belong to another member
        already). Runs on the event loop between two awaits of the processor. Drops their
        pending trades, windows and dedupe ids; returns what may still be committed for them."""
        revoked = frozenset(partitions)
        self._epoch += 1
        for partition in revoked:
            self._revoked_at[partition] = self._epoch
        self._pending.drop(revoked)
        streams = [key for key, p in self._stream_partitions.items() if p in revoked]
        self._scorer.forget(streams)
        self._recent.forget(streams)
        for key in streams:
            del self._stream_partitions[key]
        if lost:
            self._ledger.lose(revoked)
            return {}
        return self._ledger.revoke(revoked)

    @property
    def store_healthy(self) -> bool:
        return "database" not in self.failing

    async def _retry(
        self,
        what: str,
        dependency: str,
        attempt_call: Callable[[], Awaitable[T]],
        batch: LedgerBatch | None = None,
    ) -> T:
        """Calls until it succeeds, with capped exponential backoff; `dependency` (database or
        kafka) names what is failing for /readyz and the metrics. Stops retrying once stopping
        (within the stop budget) or once `batch` lost all its partitions."""
        attempt = 0
        while True:
            if attempt and batch is not None and not self._ledger.owns(batch):
                raise _Abandoned
            try:
                # Unbounded until a stop; then bounded by what is left of the stop budget.
                async with asyncio.timeout_at(self._attempt_deadline()) as scope:
                    self._attempts.add(scope)
                    try:
                        result = await attempt_call()
                    finally:
                        self._attempts.discard(scope)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - an outage is retried, never fatal
                reason = str(exc) or type(exc).__name__
                if dependency == "database" and dependency not in self.failing:
                    # Kafka outages are counted by its adapter, which sees them even when idle.
                    metrics.dependency_outages.labels(dependency).inc()
                self.failing[dependency] = f"{what} failing, retrying: {reason}"
                if self._stop.is_set():
                    raise _GaveUp(f"{what} failed: {reason}") from None
                retries = metrics.store_retries if dependency == "database" else metrics.bus_retries
                retries.inc()
                delay_s = self._backoff.delay_s(attempt)
                self._log_retry[dependency](
                    logging.WARNING,
                    "%s failed (attempt %d), retrying in %.2fs: %s",
                    what,
                    attempt + 1,
                    delay_s,
                    reason,
                    extra=fields(
                        "retry",
                        dependency=dependency,
                        operation=what,
                        attempt=attempt + 1,
                        delay_s=round(delay_s, 3),
                        error=reason,
                    ),
                )
                attempt += 1
                with contextlib.suppress(TimeoutError):  # a stop cuts the wait short
                    await asyncio.wait_for(self._stop.wait(), delay_s)
            else:
                if attempt:
                    log.info("%s succeeded after %d retries", what, attempt)
                self.failing.pop(dependency, None)
                return result


_stream_of = attrgetter("trade.exchange", "trade.symbol")  # per trade without a Python call


def _last_per_stream(batch: Sequence[ScoredTrade]) -> list[ScoredTrade]:
    return list(dict(zip(map(_stream_of, batch), batch, strict=True)).values())


def _count(batch: Sequence[ScoredTrade]) -> None:
    for (exchange, symbol), count in Counter(map(_stream_of, batch)).items():
        metrics.trades_processed.labels(exchange, metrics.symbol_label(exchange, symbol)).inc(count)
