"""In-process bus for `tickpipe run` without Kafka: one bounded queue, trades passed as objects."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence

from tickpipe.core.trade import Trade
from tickpipe.ports import BusMessage, RevokeHandler
from tickpipe.telemetry import metrics

DEFAULT_CAPACITY = 100_000
_DEPTH_EVERY_TRADES = 256  # the depth gauge is a sample: setting it costs a lock per trade


class MemoryBus:
    """Both TradeSink and TradeConsumer. `send` waits while the queue is full (backpressure),
    so nothing is lost between the ingestor and the processor of one process."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._queue: asyncio.Queue[BusMessage] = asyncio.Queue(capacity)
        self._offsets = itertools.count()
        self.dead_letters: list[BusMessage] = []

    async def send(self, trade: Trade) -> None:
        offset = next(self._offsets)
        await self._queue.put(BusMessage(trade, None, trade.symbol.encode(), b"", 0, offset))
        if not offset % _DEPTH_EVERY_TRADES:
            metrics.producer_queue_depth.set(self._queue.qsize())

    async def flush(self, timeout_s: float) -> int:
        return 0  # a trade in the queue is already in the processor's hands

    async def poll(self, max_messages: int, timeout_s: float) -> Sequence[BusMessage]:
        queue = self._queue
        if queue.empty():
            try:
                first = await asyncio.wait_for(queue.get(), timeout_s)
            except TimeoutError:
                return ()
        else:
            first = queue.get_nowait()
        messages = [first]
        while len(messages) < max_messages and not queue.empty():
            messages.append(queue.get_nowait())
        metrics.producer_queue_depth.set(queue.qsize())
        return messages

    async def commit(self, offsets: Mapping[int, int]) -> None:
        return None

    async def dead_letter(self, messages: Sequence[BusMessage]) -> None:
        self.dead_letters.extend(messages)

    def on_revoke(self, handler: RevokeHandler) -> None:
        return None  # one process owns the whole in-process bus; nothing is ever revoked

    async def serve_group(self) -> None:
        return None  # no group: one process owns the whole in-process bus

    def pending(self) -> int:
        return self._queue.qsize()

    async def close(self) -> None:
        return None
