"""The processor against the embedded adapters (in-process bus, SQLite, in-process pub/sub):
ordering, batching, restarts, outages and poison messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from fixtures.trades import make_trade
from tickpipe.adapters.bus.memory import MemoryBus
from tickpipe.adapters.pubsub.memory import MemoryPubSub
from tickpipe.adapters.store.migrate import migrate
from tickpipe.adapters.store.sqlite import SqliteStore, open_sqlite_store
from tickpipe.backoff import Backoff
from tickpipe.core.rolling import RollingMean
from tickpipe.core.scoring import ScoredTrade, Scorer
from tickpipe.core.trade import Trade
from tickpipe.ports import BusMessage
from tickpipe.services.processor import Processor

WINDOW = 4
FAST_RETRY = Backoff(initial_s=0.001, max_s=0.01)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    url = f"sqlite:///{tmp_path}/p.db"
    await migrate(url)
    store = await open_sqlite_store(url)
    yield store
    await store.close()


def stream(count: int, symbol: str = "BTCUSDT", start: int = 1) -> list[Trade]:
    """A deterministic zig-zag price stream with trade ids start..start+count-1."""
    return [
        make_trade(n, symbol=symbol, price=Decimal(100 + (n * 7) % 11) + Decimal("0.01") * n)
        for n in range(start, start + count)
    ]


def reference_sma(trades: Sequence[Trade]) -> list[Decimal | None]:
    window = RollingMean(WINDOW)
    return [window.push(t.price) for t in trades]


async def run_until_idle(processor: Processor, bus: MemoryBus) -> None:
    stop = asyncio.Event()
    stop.set()
    await processor.run(stop, drain=True)
    assert bus.pending() == 0


async def feed(bus: MemoryBus, trades: Sequence[Trade]) -> None:
    for trade in trades:
        await bus.send(trade)


class RecordingPubSub(MemoryPubSub):
    def __init__(self) -> None:
        super().__init__(WINDOW)
        self.published: list[ScoredTrade] = []

    async def publish(self, batch: Sequence[ScoredTrade]) -> None:
        self.published.extend(batch)
        await super().publish(batch)


async def test_every_trade_is_stored_once_with_the_reference_sma(store: SqliteStore) -> None:
    """All trades are stored, in order, each with the SMA of a fresh mean over its window."""
    bus, pubsub = MemoryBus(), RecordingPubSub()
    trades = stream(50) + stream(30, symbol="ETHUSDT")
    await feed(bus, trades)
    processor = Processor(bus, store, pubsub, Scorer(WINDOW), max_batch_trades=7)
    await run_until_idle(processor, bus)
    stored = list(reversed(await store.history("BTCUSDT", limit=1000)))
    assert [s.trade for s in stored] == trades[:50]
    expected = reference_sma(trades[:50])
    assert [s.sma for s in stored] == [
        None if e is None else Decimal(repr(float(e))) for e in expected
    ]
    assert [p.trade for p in pubsub.published] == trades


async def test_a_restart_rebuilds_windows_from_the_store(store: SqliteStore) -> None:
    """A new processor (fresh windows) continues with exactly the SMA of an uninterrupted run."""
    trades = stream(40)
    first_bus = MemoryBus()
    await feed(first_bus, trades[:17])
    await run_until_idle(Processor(first_bus, store, RecordingPubSub(), Scorer(WINDOW)), first_bus)
    second_bus, pubsub = MemoryBus(), RecordingPubSub()
    await feed(second_bus, trades[17:])
    await run_until_idle(Processor(second_bus, store, pubsub, Scorer(WINDOW)), second_bus)
    assert [p.sma for p in pubsub.published] == reference_sma(trades)[17:]


async def test_redelivered_trades_get_their_original_sma_and_are_not_stored_twice(
    store: SqliteStore,
) -> None:
    """After a crash between store and commit, the redelivered trades are scored as before."""
    trades = stream(30)
    bus = MemoryBus()
    await feed(bus, trades[:20])
    await run_until_idle(Processor(bus, store, RecordingPubSub(), Scorer(WINDOW)), bus)
    replay_bus, pubsub = MemoryBus(), RecordingPubSub()
    await feed(replay_bus, trades[12:])  # 12..19 again (uncommitted), then new ones
    await run_until_idle(Processor(replay_bus, store, pubsub, Scorer(WINDOW)), replay_bus)
    assert [p.sma for p in pubsub.published] == reference_sma(trades)[12:]
    stored = await store.history("BTCUSDT", limit=1000)
    assert len(stored) == 30


class FlakyStore:
    """Wraps the real store; its first `failures` writes raise, as a dead database would."""

    def __init__(self, store: SqliteStore, failures: int) -> None:
        self._store, self.failures, self.attempts = store, failures, 0

    async def write(self, batch: Sequence[ScoredTrade]) -> int:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError("database is down")
        return await self._store.write(batch)

    async def window_prices(self, trade: Trade, count: int) -> list[Decimal]:
        return await self._store.window_prices(trade, count)


async def test_store_outage_is_retried_and_loses_nothing(store: SqliteStore) -> None:
    """Failing writes are retried with backoff; the processor reports unhealthy meanwhile."""
    flaky = FlakyStore(store, failures=3)
    bus, pubsub = MemoryBus(), RecordingPubSub()
    await feed(bus, stream(10))
    processor = Processor(bus, flaky, pubsub, Scorer(WINDOW), backoff=FAST_RETRY)
    await run_until_idle(processor, bus)
    assert flaky.attempts == 4
    assert processor.store_healthy
    assert len(await store.history("BTCUSDT", limit=100)) == 10


class FailingPubSub(RecordingPubSub):
    async def publish(self, batch: Sequence[ScoredTrade]) -> None:
        raise ConnectionError("redis is down")


async def test_a_pubsub_outage_does_not_stop_storage(store: SqliteStore) -> None:
    """Publishing failures are counted and skipped; every trade is still stored."""
    bus = MemoryBus()
    await feed(bus, stream(25))
    await run_until_idle(Processor(bus, store, FailingPubSub(), Scorer(WINDOW)), bus)
    assert len(await store.history("BTCUSDT", limit=100)) == 25


class ScriptedConsumer:
    """A bus that hands out prepared messages and records commits and dead letters."""

    def __init__(self, messages: list[BusMessage]) -> None:
        self.messages = messages
        self.committed: dict[int, int] = {}
        self.dead: list[BusMessage] = []
        self.events: list[str] = []

    async def poll(self, max_messages: int, timeout_s: float) -> Sequence[BusMessage]:
        taken, self.messages = self.messages[:max_messages], self.messages[max_messages:]
        return taken

    async def commit(self, offsets: Mapping[int, int]) -> None:
        self.events.append("commit")
        self.committed.update(offsets)

    async def dead_letter(self, messages: Sequence[BusMessage]) -> None:
        self.dead.extend(messages)

    def on_revoke(self, callback: object) -> None:
        return None

    async def serve_group(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_poison_messages_go_to_the_dlq_and_are_committed_past(store: SqliteStore) -> None:
    """Undecodable messages are dead-lettered, committed, and do not stop the others."""
    good = stream(3)
    messages = [
        BusMessage(good[0], None, b"BTCUSDT", b"", 0, 0),
        BusMessage(None, "not a tickpipe.v1.Trade", b"BTCUSDT", b"\xff", 0, 1),
        BusMessage(good[1], None, b"BTCUSDT", b"", 0, 2),
        BusMessage(None, "invalid trade: price -1 is not positive", None, b"x", 0, 3),
        BusMessage(good[2], None, b"BTCUSDT", b"", 0, 4),
    ]
    consumer = ScriptedConsumer(messages)
    processor = Processor(consumer, store, RecordingPubSub(), Scorer(WINDOW))
    stop = asyncio.Event()
    stop.set()
    await processor.run(stop, drain=True)
    assert [m.offset for m in consumer.dead] == [1, 3]
    assert consumer.committed == {0: 5}
    assert len(await store.history("BTCUSDT", limit=10)) == 3


class OrderCheckingStore(FlakyStore):
    def __init__(self, store: SqliteStore, consumer: ScriptedConsumer) -> None:
        super().__init__(store, failures=0)
        self.consumer = consumer

    async def write(self, batch: Sequence[ScoredTrade]) -> int:
        self.consumer.events.append("write")
        return await super().write(batch)


async def test_offsets_are_committed_only_after_the_store_write(store: SqliteStore) -> None:
    """The order in each flush is write, then commit."""
    consumer = ScriptedConsumer(
        [BusMessage(t, None, b"BTCUSDT", b"", 0, i) for i, t in enumerate(stream(12))]
    )
    checking = OrderCheckingStore(store, consumer)
    processor = Processor(consumer, checking, RecordingPubSub(), Scorer(WINDOW), max_batch_trades=5)
    stop = asyncio.Event()
    stop.set()
    await processor.run(stop, drain=True)
    assert consumer.events == ["write", "commit"] * 3


async def test_a_replayed_trade_is_not_scored_twice(store: SqliteStore) -> None:
    """Trades a restarted ingestor sends again are dropped before they reach the window."""
    trades = stream(12)
    bus, pubsub = MemoryBus(), RecordingPubSub()
    await feed(bus, trades[:8] + trades[4:8] + trades[8:])
    await run_until_idle(Processor(bus, store, pubsub, Scorer(WINDOW)), bus)
    assert [p.trade for p in pubsub.published] == trades
    assert [p.sma for p in pubsub.published] == reference_sma(trades)
