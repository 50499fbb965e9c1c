"""The processor's live-update hand-off (services/publishing.py) against pub/subs that hang or
fail: storage never waits, the queue stays bounded, and every update not published is counted."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from prometheus_client import REGISTRY

from fixtures.trades import make_trade
from fixtures.waiting import wait_until_async
from tickpipe.backoff import Backoff
from tickpipe.core.scoring import ScoredTrade
from tickpipe.core.signal import Signal
from tickpipe.services.publishing import QueuedPublisher, queued_publisher


def batch(first: int, count: int) -> list[ScoredTrade]:
    return [ScoredTrade(make_trade(n), None, Signal.HOLD) for n in range(first, first + count)]


def dropped_total() -> float:
    return REGISTRY.get_sample_value("tickpipe_updates_dropped_total") or 0.0


class Recording:
    def __init__(self) -> None:
        self.published: list[str] = []
        self.attempts = 0
        self.failures = 0
        self.failing = False
        self.hanging = asyncio.Event()
        self.hanging.set()

    async def publish(self, trades: Sequence[ScoredTrade]) -> None:
        self.attempts += 1
        await self.hanging.wait()
        if self.failing:
            self.failures += 1
            raise ConnectionError("redis is down")
        self.published.extend(s.trade.trade_id for s in trades)

    async def close(self) -> None:
        pass


async def test_a_hanging_pubsub_never_holds_up_the_caller_and_the_queue_stays_bounded() -> None:
    """publish() returns at once while the pub/sub hangs; beyond the bound the oldest updates
    are dropped and counted; once it answers, the newest ones go out in order."""
    target = Recording()
    target.hanging.clear()
    queued = QueuedPublisher(target, max_trades=100)
    task = asyncio.create_task(queued.run())
    before = dropped_total()
    await queued.publish(batch(1, 10))  # taken by the task, which then hangs on it
    await wait_until_async(lambda: target.attempts == 1, 2.0, "the first batch handed over")
    async with asyncio.timeout(0.5):
        for first in range(11, 311, 30):
            await queued.publish(batch(first, 30))
    target.hanging.set()
    await queued.drain(2.0)
    task.cancel()
    assert target.published[:10] == [str(n) for n in range(1, 11)]
    assert target.published[10:] == [str(n) for n in range(221, 311)]
    assert dropped_total() - before == 210


async def test_failed_publishes_are_dropped_counted_and_backed_off() -> None:
    """A failing pub/sub costs the updates of the failed attempts (at most once), not more;
    the first update after it answers again goes out."""
    target = Recording()
    target.failing = True
    queued = QueuedPublisher(target, backoff=Backoff(initial_s=0.05, max_s=0.05))
    task = asyncio.create_task(queued.run())
    before = dropped_total()
    await queued.publish(batch(1, 5))
    await wait_until_async(lambda: target.failures == 1, 2.0, "failed once, now backing off")
    await queued.publish(batch(6, 5))
    target.failing = False
    await queued.drain(2.0)
    task.cancel()
    assert target.published == [str(n) for n in range(6, 11)]
    assert dropped_total() - before == 5


async def test_closing_publishes_what_is_still_queued() -> None:
    """The last batch handed over before a stop is published before the pub/sub closes."""
    target = Recording()
    async with queued_publisher(target) as queued:
        await queued.publish(batch(1, 3))
    assert target.published == ["1", "2", "3"]
