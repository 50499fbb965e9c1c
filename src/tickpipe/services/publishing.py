"""Live updates off the storage path: the processor hands each stored batch to a bounded queue and
a task of its own publishes it, so a slow or unreachable pub/sub never holds up storage.

Live updates are at most once. A batch whose publish fails is dropped, not retried (part of it may
have gone out); the next attempt waits a capped backoff delay, and batches stored meanwhile wait
in the queue, the oldest dropped once it holds more than `max_trades`. Everything dropped is
counted in `tickpipe_updates_dropped_total`; the snapshots and the database keep the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence

from tickpipe.backoff import Backoff
from tickpipe.core.scoring import ScoredTrade
from tickpipe.ports import UpdatePublisher
from tickpipe.telemetry import metrics
from tickpipe.telemetry.logs import fields

log = logging.getLogger(__name__)

# Below a WebSocket client's queue (10,000 frames), so that one merged publish never overflows it.
QUEUE_MAX_TRADES = 5_000
CLOSE_TIMEOUT_S = 2.0


class QueuedPublisher:
    """UpdatePublisher that returns at once; `run()` publishes, queued batches merged into one."""

    def __init__(
        self,
        publisher: UpdatePublisher,
        *,
        max_trades: int = QUEUE_MAX_TRADES,
        backoff: Backoff | None = None,
    ) -> None:
        self._publisher = publisher
        self._max_trades = max_trades
        self._backoff = backoff or Backoff(initial_s=0.1, max_s=5.0)
        self._queue: deque[Sequence[ScoredTrade]] = deque()
        self._queued_trades = 0
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    async def publish(self, batch: Sequence[ScoredTrade]) -> None:
        if not batch:
            return
        self._queue.append(batch)
        self._queued_trades += len(batch)
        while self._queued_trades > self._max_trades and len(self._queue) > 1:
            oldest = self._queue.popleft()
            self._queued_trades -= len(oldest)
            self._drop(oldest)
        self._idle.clear()
        self._ready.set()

    async def run(self) -> None:
        failures = 0
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                batch = [scored for queued in self._queue for scored in queued]
                self._queue.clear()
                self._queued_trades = 0
                try:
                    await self._publisher.publish(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - counted and backed off, never fatal
                    self._drop(batch)
                    metrics.publish_retries.inc()
                    delay_s = self._backoff.delay_s(failures)
                    if not failures:
                        metrics.dependency_outages.labels("redis").inc()
                        log.warning(
                            "publishing live updates failed, backing off: %s",
                            exc,
                            extra=fields("publish_failing", dependency="redis", error=str(exc)),
                        )
                    failures += 1
                    await asyncio.sleep(delay_s)
                else:
                    if failures:
                        log.info(
                            "publishing live updates again after %d failures",
                            failures,
                            extra=fields(
                                "publish_recovered", dependency="redis", failures=failures
                            ),
                        )
                    failures = 0
            self._idle.set()

    async def drain(self, timeout_s: float) -> None:
        """Waits (up to `timeout_s`) until what was handed over is published or dropped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)

    async def close(self) -> None:
        """The wrapped publisher belongs to whoever opened it."""

    def _drop(self, batch: Sequence[ScoredTrade]) -> None:
        metrics.updates_dropped.inc(len(batch))


@contextlib.asynccontextmanager
async def queued_publisher(publisher: UpdatePublisher) -> AsyncIterator[QueuedPublisher]:
    """Publishes in the background while open; on exit, the last updates get CLOSE_TIMEOUT_S."""
    queued = QueuedPublisher(publisher)
    task = asyncio.create_task(queued.run(), name="publish-updates")
    try:
        yield queued
    finally:
        await queued.drain(CLOSE_TIMEOUT_S)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
