"""The update port (UpdatePublisher + UpdateFeed), run against every adapter."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from fixtures.trades import make_trade
from tickpipe.adapters.pubsub.frames import decode_updates, encode_updates
from tickpipe.adapters.pubsub.memory import MemoryPubSub
from tickpipe.adapters.pubsub.redis import PubSubUnavailable, RedisFeed, new_client, open_redis
from tickpipe.core.scoring import ScoredTrade, Scorer
from tickpipe.ports import Frame, UpdateFeed, UpdatePublisher

WINDOW = 3
RECEIVE_TIMEOUT_S = 5.0
UNREACHABLE_URL = "redis://127.0.0.1:1/0"  # port 1: refused at once
PROBE_SYMBOL = "PROBEUSDT"  # published until it arrives, to know a subscription is live
STREAM_FIELDS = {"exchange", "symbol", "trade_id", "price", "sma", "signal", "timestamp"}
SNAPSHOT_FIELDS = STREAM_FIELDS | {"window"}
FRAME_FIELDS = STREAM_FIELDS | {"type", "quantity"}


@dataclass
class PubSub:
    publisher: UpdatePublisher
    feed: UpdateFeed
    client_name: str = ""  # Redis only: connections are `<client_name>-publisher` / `-feed`
    url: str = ""


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.infra)])
async def pubsub(request: pytest.FixtureRequest) -> AsyncIterator[PubSub]:
    if request.param == "memory":
        bus = MemoryPubSub(WINDOW)
        yield PubSub(bus, bus)
        return
    async with open_test_redis(request) as pair:
        yield pair


@pytest.fixture
async def redis_pubsub(request: pytest.FixtureRequest) -> AsyncIterator[PubSub]:
    async with open_test_redis(request) as pair:
        yield pair


@contextlib.asynccontextmanager
async def open_test_redis(request: pytest.FixtureRequest) -> AsyncIterator[PubSub]:
    url: str = request.getfixturevalue("redis_url")
    channel, prefix = request.getfixturevalue("redis_names")
    client_name = f"tickpipe-test-{uuid.uuid4().hex[:12]}"
    publisher, feed = await open_redis(url, channel, prefix, WINDOW, client_name=client_name)
    try:
        yield PubSub(publisher, feed, client_name, url)
    finally:
        await publisher.close()
        await feed.close()


def scored_stream(
    count: int, *, exchange: str = "simulated", symbol: str = "BTCUSDT", first: int = 1
) -> list[ScoredTrade]:
    """`count` consecutive trades of one stream, scored, with prices moving up and down."""
    scorer = Scorer(WINDOW)
    prices = ("65000.10", "65010.5", "64990", "65020.25")
    return [
        scorer.score(make_trade(n, exchange=exchange, symbol=symbol, price=prices[n % len(prices)]))
        for n in range(first, first + count)
    ]


class Listener:
    """Iterates a feed in a background task, so the test can publish while it listens."""

    def __init__(self, feed: UpdateFeed) -> None:
        self._frames = feed.frames()
        self._probe_seen = asyncio.Event()
        self.batches: asyncio.Queue[list[Frame]] = asyncio.Queue()
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        async for batch in self._frames:
            if any(frame.symbol == PROBE_SYMBOL for frame in batch):
                self._probe_seen.set()
            if frames := [frame for frame in batch if frame.symbol != PROBE_SYMBOL]:
                self.batches.put_nowait(frames)

    async def wait_live(self, publisher: UpdatePublisher) -> None:
        """Publishes probes until one arrives: from then on every publish reaches this feed."""
        self._probe_seen.clear()
        probe = scored_stream(1, symbol=PROBE_SYMBOL)
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            while not self._probe_seen.is_set():
                await publisher.publish(probe)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._probe_seen.wait(), 0.05)

    async def take(self, count: int) -> list[Frame]:
        """The next `count` frames (probes left out)."""
        frames: list[Frame] = []
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            while len(frames) < count:
                frames.extend(await self.batches.get())
        return frames

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._frames.aclose()  # type: ignore[attr-defined]  # an async generator everywhere


@contextlib.asynccontextmanager
async def listening(pair: PubSub) -> AsyncIterator[Listener]:
    listener = Listener(pair.feed)
    try:
        await listener.wait_live(pair.publisher)
        yield listener
    finally:
        await listener.close()


def assert_frame_matches(frame: Frame, scored: ScoredTrade) -> None:
    trade = scored.trade
    data = orjson.loads(frame.data)
    assert frame.symbol == trade.symbol
    assert data.keys() >= FRAME_FIELDS
    assert data["type"] == "trade"
    assert (data["exchange"], data["symbol"], data["trade_id"]) == (*trade.key, trade.trade_id)
    assert type(data["price"]) is float
    assert data["price"] == float(trade.price)
    assert type(data["quantity"]) is float
    assert data["quantity"] == float(trade.quantity)
    if scored.sma is None:
        assert data["sma"] is None
    else:
        assert type(data["sma"]) is float
        assert data["sma"] == pytest.approx(float(scored.sma), rel=1e-12)
    assert data["signal"] == scored.signal.value
    assert data["timestamp"] == trade.exchange_time_us // 1000


async def test_published_batch_arrives_as_frames_in_order(pubsub: PubSub) -> None:
    """A batch arrives as one message whose frames keep publish order and the contract's JSON."""
    batch = scored_stream(5) + scored_stream(3, exchange="binance", symbol="ETHUSDT")
    async with listening(pubsub) as listener:
        await pubsub.publisher.publish(batch)
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            frames = await listener.batches.get()
    assert len(frames) == len(batch)
    for frame, scored in zip(frames, batch, strict=True):
        assert_frame_matches(frame, scored)
    assert any(orjson.loads(f.data)["sma"] is None for f in frames)
    assert any(orjson.loads(f.data)["sma"] is not None for f in frames)


async def test_consecutive_batches_arrive_in_publish_order(pubsub: PubSub) -> None:
    """Several batches (an empty one among them) arrive in the order they were published."""
    stream = scored_stream(9)
    async with listening(pubsub) as listener:
        for start in range(0, 9, 3):
            await pubsub.publisher.publish(stream[start : start + 3])
            await pubsub.publisher.publish([])
        frames = await listener.take(9)
    assert [orjson.loads(f.data)["trade_id"] for f in frames] == [s.trade.trade_id for s in stream]


async def test_every_subscriber_receives_every_batch(pubsub: PubSub) -> None:
    """Two frames() iterators each receive the whole batch."""
    batch = scored_stream(4)
    async with listening(pubsub) as first, listening(pubsub) as second:
        await pubsub.publisher.publish(batch)
        for listener in (first, second):
            frames = await listener.take(len(batch))
            assert frames == decode_updates(encode_updates(batch))


async def test_snapshots_keep_last_trade_per_stream(pubsub: PubSub) -> None:
    """snapshots() holds one record per (exchange, symbol): the last trade published."""
    btc = scored_stream(6)
    eth = scored_stream(2, symbol="ETHUSDT")
    await pubsub.publisher.publish(btc[:4] + eth)
    await pubsub.publisher.publish(btc[4:])

    snapshots = {(s["exchange"], s["symbol"]): s for s in await pubsub.feed.snapshots()}
    assert snapshots.keys() == {("simulated", "BTCUSDT"), ("simulated", "ETHUSDT")}
    last = btc[-1]
    btc_snapshot = snapshots["simulated", "BTCUSDT"]
    assert btc_snapshot.keys() == SNAPSHOT_FIELDS
    assert btc_snapshot["trade_id"] == last.trade.trade_id
    assert btc_snapshot["price"] == float(last.trade.price)
    assert last.sma is not None
    assert btc_snapshot["sma"] == pytest.approx(float(last.sma), rel=1e-12)
    assert btc_snapshot["window"] == WINDOW
    assert btc_snapshot["signal"] == last.signal.value
    assert btc_snapshot["timestamp"] == last.trade.exchange_time_us // 1000
    assert snapshots["simulated", "ETHUSDT"]["trade_id"] == eth[-1].trade.trade_id


async def test_snapshot_picks_newest_exchange_or_the_named_one(pubsub: PubSub) -> None:
    """snapshot() without an exchange is the newest over exchanges; with one, that exchange's."""
    older = scored_stream(3, exchange="coinbase")  # trade times 1..3 ms
    newer = scored_stream(2, exchange="binance", first=10)  # trade times 10..11 ms
    await pubsub.publisher.publish(newer + older)

    newest = await pubsub.feed.snapshot("BTCUSDT")
    assert newest is not None
    assert (newest["exchange"], newest["trade_id"]) == ("binance", "11")
    on_coinbase = await pubsub.feed.snapshot("BTCUSDT", exchange="coinbase")
    assert on_coinbase is not None
    assert (on_coinbase["exchange"], on_coinbase["trade_id"]) == ("coinbase", "3")


async def test_unknown_snapshot_is_none(pubsub: PubSub) -> None:
    """An unknown symbol, or a known one on an exchange that never traded it, has no snapshot."""
    assert await pubsub.feed.snapshots() == []
    assert await pubsub.feed.snapshot("BTCUSDT") is None
    await pubsub.publisher.publish(scored_stream(1))
    assert await pubsub.feed.snapshot("ETHUSDT") is None
    assert await pubsub.feed.snapshot("BTCUSDT", exchange="kraken") is None


async def test_ping_answers(pubsub: PubSub) -> None:
    """ping() returns while the pub/sub answers."""
    await pubsub.feed.ping()


# Redis only: outages of its connections.


async def kill_connections(url: str, name: str, kind: str) -> int:
    """Kills this test's own connections (by client name), never anyone else's."""
    admin = Redis.from_url(url)
    try:
        ids = [c["id"] for c in await admin.client_list(_type=kind) if c.get("name") == name]
        for client_id in ids:
            await admin.client_kill_filter(_id=client_id)
    finally:
        await admin.aclose()
    return len(ids)


def resubscribes() -> float:
    return REGISTRY.get_sample_value("tickpipe_feed_resubscribes_total") or 0.0


@pytest.mark.infra
async def test_feed_resubscribes_after_its_connection_is_killed(redis_pubsub: PubSub) -> None:
    """The feed notices its killed connection, counts it, re-subscribes and gets later batches."""
    pair = redis_pubsub
    before = resubscribes()
    async with listening(pair) as listener:
        killed = await kill_connections(pair.url, f"{pair.client_name}-feed", "pubsub")
        assert killed == 1
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            while resubscribes() == before:
                await asyncio.sleep(0.01)
        await listener.wait_live(pair.publisher)
        batch = scored_stream(2)
        await pair.publisher.publish(batch)
        frames = await listener.take(len(batch))
    for frame, scored in zip(frames, batch, strict=True):
        assert_frame_matches(frame, scored)


@pytest.mark.infra
async def test_publish_works_again_after_its_connection_is_killed(redis_pubsub: PubSub) -> None:
    """After its connection is killed, the publisher reconnects on the next call (at worst the
    first call raises, for the processor to retry)."""
    pair = redis_pubsub
    await pair.publisher.publish(scored_stream(1))
    killed = await kill_connections(pair.url, f"{pair.client_name}-publisher", "normal")
    assert killed == 1

    later = scored_stream(2, first=5)
    with contextlib.suppress(RedisConnectionError):
        await pair.publisher.publish(later)
    await pair.publisher.publish(later)
    snapshot = await pair.feed.snapshot("BTCUSDT", exchange="simulated")
    assert snapshot is not None
    assert snapshot["trade_id"] == "6"


async def test_open_redis_fails_fast_with_one_clear_line() -> None:
    """An unreachable Redis raises PubSubUnavailable naming it, without the password."""
    url = UNREACHABLE_URL.replace("//", "//user:s3cret@")
    with pytest.raises(PubSubUnavailable) as caught:
        async with asyncio.timeout(10):
            await open_redis(url, "updates", "tickpipe-test:", WINDOW)
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert "s3cret" not in message
    assert "\n" not in message


async def test_feed_keeps_retrying_while_redis_is_unreachable() -> None:
    """frames() never raises on an outage: it counts each attempt and backs off, until closed."""
    feed = RedisFeed(new_client(UNREACHABLE_URL, "tickpipe-test"), "updates", "tickpipe-test:")
    before = resubscribes()
    frames = feed.frames()
    iterating = asyncio.ensure_future(anext(frames))
    try:
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            while resubscribes() < before + 3:
                await asyncio.sleep(0.01)
        assert not iterating.done()
    finally:
        iterating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await iterating
        await frames.aclose()  # type: ignore[attr-defined]  # an async generator
        await feed.close()
