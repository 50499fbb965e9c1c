"""In-process pub/sub for `tickpipe run` without Redis: bounded queues, one per subscriber."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import orjson

from tickpipe.adapters.pubsub.frames import BatchFrames, latest_snapshots, pick_snapshot
from tickpipe.core.scoring import ScoredTrade
from tickpipe.ports import Frame, JsonObject
from tickpipe.telemetry import metrics

SUBSCRIBER_QUEUE_BATCHES = 1_000


class MemoryPubSub:
    """Both UpdatePublisher and UpdateFeed. A subscriber that falls behind loses the oldest
    batches (counted), like a Redis subscriber would; the processor never waits for it."""

    def __init__(self, window: int) -> None:
        self._window = window
        self._subscribers: set[asyncio.Queue[BatchFrames]] = set()
        self._snapshots: dict[str, bytes] = {}

    async def publish(self, batch: Sequence[ScoredTrade]) -> None:
        if not batch:
            return
        message = BatchFrames(batch)  # serialized only if a subscriber reads a frame
        self._snapshots.update(latest_snapshots(batch, self._window))
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
                metrics.updates_dropped.inc()
            queue.put_nowait(message)

    async def frames(self) -> AsyncIterator[Sequence[Frame]]:
        queue: asyncio.Queue[BatchFrames] = asyncio.Queue(SUBSCRIBER_QUEUE_BATCHES)
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    async def snapshot(self, symbol: str, exchange: str | None = None) -> JsonObject | None:
        return pick_snapshot(await self.snapshots(), symbol, exchange)

    async def snapshots(self) -> list[JsonObject]:
        return [orjson.loads(data) for data in self._snapshots.values()]

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
