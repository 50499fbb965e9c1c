"""The bus ports (TradeSink + TradeConsumer), run against every adapter; then what only Kafka does:
consumer groups, committed offsets, dead letters, rebalances, a bounded producer queue."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import REGISTRY

from fixtures.kafka import KAFKA_TEST_PARTITIONS
from fixtures.trades import BASE_TIME_US, make_trade
from tickpipe.adapters.bus import kafka as kafka_bus
from tickpipe.adapters.bus import wire
from tickpipe.adapters.bus._generated import trade_pb2
from tickpipe.adapters.bus.kafka import (
    DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER,
    DLQ_REASON_HEADER,
    MISSING_KEY_ERROR,
    KafkaConsumer,
    KafkaSink,
    KafkaUnavailable,
    ensure_topics,
)
from tickpipe.adapters.bus.memory import MemoryBus
from tickpipe.core.offsets import offsets_after
from tickpipe.core.trade import Side, Trade
from tickpipe.ports import BusMessage, TradeConsumer, TradeSink

RECEIVE_TIMEOUT_S = 12.0
POLL_TIMEOUT_S = 0.2
UNREACHABLE_BOOTSTRAP = "127.0.0.1:1"  # port 1: refused at once
SIDES = (Side.BUY, Side.SELL, None)
# Exact decimals that a float round trip would change or a naive str() would respell.
PRICES = ("65000.10", "0.00000001", "1E-8", "12345678901234567890123456789.123456789")
QUANTITIES = ("0.00100000", "3", "1.5E+3", "0.1")
# Some minutes of a trickle of trades, one record batch each: what Tansu lists on every fetch.
LONG_PARTITION_BATCHES = 20_000
LONG_PARTITION_READ_S = 60.0  # 3 s here; a minute with the machine's two cores kept busy


@dataclass
class Bus:
    sink: TradeSink
    consumer: TradeConsumer


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.infra)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    if request.param == "memory":
        memory = MemoryBus()
        yield Bus(memory, memory)
        return
    # Only sync fixtures can be requested here, inside the running loop.
    kafka = new_kafka_env(
        request.getfixturevalue("kafka_bootstrap"), request.getfixturevalue("kafka_topic")
    )
    try:
        yield Bus(kafka.sink(), kafka.consumer())
    finally:
        await kafka.close()


@dataclass
class KafkaEnv:
    """One test's topic and consumer group; everything opened through it is closed afterwards."""

    bootstrap: str
    topic: str
    group: str
    _sinks: list[KafkaSink] = field(default_factory=list)
    _consumers: list[KafkaConsumer] = field(default_factory=list)

    def sink(self) -> KafkaSink:
        self._sinks.append(KafkaSink(self.bootstrap, self.topic))
        return self._sinks[-1]

    def consumer(self, *, commit_on_revoke: bool = False) -> KafkaConsumer:
        self._consumers.append(
            KafkaConsumer(
                self.bootstrap, self.topic, group=self.group, commit_on_revoke=commit_on_revoke
            )
        )
        return self._consumers[-1]

    def raw_consumer(self, group: str | None = None) -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": group or self.group,
                "enable.auto.commit": False,
                "log_level": 0,
            }
        )

    async def close(self) -> None:
        for consumer in self._consumers:
            await consumer.close()
        for sink in self._sinks:
            await sink.close()


def new_kafka_env(bootstrap: str, topic: str) -> KafkaEnv:
    return KafkaEnv(bootstrap, topic, group=f"{topic}-group")


@pytest.fixture
async def kafka(kafka_bootstrap: str, kafka_topic: str) -> AsyncIterator[KafkaEnv]:
    env = new_kafka_env(kafka_bootstrap, kafka_topic)
    yield env
    await env.close()


def varied_trades(symbols: Sequence[str], per_symbol: int) -> list[Trade]:
    """Interleaved streams with every side and awkward exact decimals."""
    return [
        make_trade(
            n,
            symbol=symbol,
            price=PRICES[n % len(PRICES)],
            quantity=QUANTITIES[n % len(QUANTITIES)],
            side=SIDES[n % len(SIDES)],
        )
        for n in range(1, per_symbol + 1)
        for symbol in symbols
    ]


async def send_all(sink: TradeSink, trades: Sequence[Trade]) -> None:
    for trade in trades:
        await sink.send(trade)
    assert await sink.flush(10.0) == 0


async def poll_until(
    consumer: TradeConsumer,
    count: int,
    *,
    max_messages: int = 1_000,
    timeout_s: float = RECEIVE_TIMEOUT_S,
) -> list[BusMessage]:
    """Polls until `count` messages arrived (a fresh Kafka consumer first joins its group)."""
    received: list[BusMessage] = []
    deadline_s = time.monotonic() + timeout_s
    while len(received) < count:
        assert time.monotonic() < deadline_s, f"got {len(received)} of {count} messages"
        batch = await consumer.poll(max_messages, POLL_TIMEOUT_S)
        assert len(batch) <= max_messages
        received.extend(batch)
    return received


def by_symbol(trades: Sequence[Trade]) -> dict[str, list[tuple[Trade, str, str]]]:
    """Per symbol, in order: the trade plus its exact decimal spelling (1E-8 is not 0.00000001)."""
    streams: dict[str, list[tuple[Trade, str, str]]] = defaultdict(list)
    for trade in trades:
        streams[trade.symbol].append((trade, str(trade.price), str(trade.quantity)))
    return dict(streams)


def position(message: BusMessage) -> tuple[int, int, str]:
    assert message.trade is not None
    return (message.partition, message.offset, message.trade.trade_id)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- the port, every adapter ---


async def test_trades_round_trip_exactly_and_in_order_per_symbol(bus: Bus) -> None:
    """Every field survives the bus exactly (decimals, side, times) and each symbol keeps order."""
    sent = varied_trades(["BTCUSDT", "ETHUSDT", "SOLUSDT"], per_symbol=20)
    await send_all(bus.sink, sent)
    received = await poll_until(bus.consumer, len(sent))
    assert all(m.error is None and m.key == m.trade.symbol.encode() for m in received if m.trade)
    trades = [m.trade for m in received if m.trade is not None]
    assert by_symbol(trades) == by_symbol(sent)
    assert {t.side for t in trades} == set(SIDES)


async def test_poll_returns_at_most_max_messages(bus: Bus) -> None:
    """`poll` never returns more than `max_messages`, and nothing is lost between polls."""
    sent = varied_trades(["BTCUSDT"], per_symbol=10)
    await send_all(bus.sink, sent)
    received = await poll_until(bus.consumer, len(sent), max_messages=3)
    assert [m.trade for m in received] == sent
    assert list(await bus.consumer.poll(3, POLL_TIMEOUT_S)) == []


async def test_poll_returns_empty_after_timeout(bus: Bus) -> None:
    """With nothing to read, `poll` returns an empty batch once `timeout_s` has passed."""
    started_s = time.monotonic()
    assert list(await bus.consumer.poll(10, 0.3)) == []
    assert 0.25 <= time.monotonic() - started_s < 2.0


# --- Kafka only ---


@pytest.mark.infra
async def test_new_consumer_resumes_after_committed_offsets(kafka: KafkaEnv) -> None:
    """At-least-once: a new group member starts after the commits and gets the uncommitted again."""
    sent = varied_trades(["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"], per_symbol=6)
    await send_all(kafka.sink(), sent)
    first = kafka.consumer()
    received = await poll_until(first, len(sent))
    partitions: dict[int, list[BusMessage]] = defaultdict(list)
    for message in received:
        partitions[message.partition].append(message)
    handled = [m for messages in partitions.values() for m in messages[: len(messages) // 2]]
    unhandled = [m for messages in partitions.values() for m in messages[len(messages) // 2 :]]
    await first.commit(offsets_after((m.partition, m.offset) for m in handled))
    await first.close()

    again = await poll_until(kafka.consumer(), len(unhandled))
    assert sorted(map(position, again)) == sorted(map(position, unhandled))


@pytest.mark.infra
async def test_poison_messages_come_back_with_their_error_and_go_to_the_dlq(
    kafka: KafkaEnv,
) -> None:
    """Garbage bytes, an invalid trade and a keyless message arrive as errors; the DLQ keeps them
    with their reason and source position."""
    invalid = trade_pb2.Trade(
        exchange="simulated",
        symbol="BTCUSDT",
        trade_id="1",
        price="-1",
        quantity="1",
        exchange_time_us=BASE_TIME_US,
        ingest_time_us=BASE_TIME_US,
    ).SerializeToString()
    good = make_trade(2)
    raw = Producer({"bootstrap.servers": kafka.bootstrap})
    for key, value in [
        (b"BTCUSDT", b"\xff\xffnot protobuf"),
        (b"BTCUSDT", invalid),
        (None, wire.encode_trade(good)),
        (b"BTCUSDT", wire.encode_trade(good)),
    ]:
        raw.produce(kafka.topic, value, key)
    assert raw.flush(10.0) == 0
    before = {
        r: metric("tickpipe_dlq_messages_total", reason=r) for r in ("undecodable", "invalid")
    }

    consumer = kafka.consumer()
    received = await poll_until(consumer, 4)
    assert [m.trade for m in received if m.trade] == [good]
    # The keyless message may land in another partition and come first: put it last.
    poison = sorted((m for m in received if m.trade is None), key=lambda m: m.key is None)
    errors = [m.error or "" for m in poison]
    assert errors[0].startswith("not a tickpipe.v1.Trade")
    assert errors[1].startswith("invalid trade: price")
    assert errors[2] == MISSING_KEY_ERROR

    await consumer.dead_letter(poison)
    dlq = kafka.raw_consumer(group=f"{kafka.group}-dlq-reader")
    dlq.assign([TopicPartition(f"{kafka.topic}.dlq", 0, OFFSET_BEGINNING)])
    try:
        dead: list[Message] = []
        deadline_s = time.monotonic() + RECEIVE_TIMEOUT_S
        while len(dead) < len(poison) and time.monotonic() < deadline_s:
            dead.extend(m for m in dlq.consume(10, 0.5) if m.error() is None)
    finally:
        dlq.close()
    assert [(m.key(), m.value()) for m in dead] == [(p.key, p.value) for p in poison]
    for message, source in zip(dead, poison, strict=True):
        headers = dict(message.headers() or [])
        assert headers[DLQ_REASON_HEADER] == (source.error or "").encode()
        assert headers[DLQ_PARTITION_HEADER] == str(source.partition).encode()
        assert headers[DLQ_OFFSET_HEADER] == str(source.offset).encode()
    for reason in before:
        assert metric("tickpipe_dlq_messages_total", reason=reason) == before[reason] + 1
    assert metric("tickpipe_dlq_messages_total", reason="missing_key") >= 1


async def poll_both_until_split(first: KafkaConsumer, second: KafkaConsumer) -> None:
    """Polls both members until the group has given each of them a share of the partitions."""
    deadline_s = time.monotonic() + RECEIVE_TIMEOUT_S
    while True:
        assert time.monotonic() < deadline_s, "the group never split its partitions"
        batches = await asyncio.gather(
            first.poll(100, POLL_TIMEOUT_S), second.poll(100, POLL_TIMEOUT_S)
        )
        assert not any(batches)
        shares = [await first.assignment(), await second.assignment()]
        if all(shares) and sum(map(len, shares)) == KAFKA_TEST_PARTITIONS:
            return


@pytest.mark.infra
async def test_two_consumers_in_one_group_split_partitions_and_see_every_message_once(
    kafka: KafkaEnv,
) -> None:
    """Two group members share the partitions; together they receive each message exactly once."""
    first, second = kafka.consumer(), kafka.consumer()
    await poll_both_until_split(first, second)
    sent = varied_trades([f"SYM{n}USDT" for n in range(12)], per_symbol=5)
    await send_all(kafka.sink(), sent)

    received: dict[int, list[BusMessage]] = {0: [], 1: []}
    deadline_s = time.monotonic() + RECEIVE_TIMEOUT_S
    while sum(map(len, received.values())) < len(sent):
        assert time.monotonic() < deadline_s
        batches = await asyncio.gather(
            first.poll(1_000, POLL_TIMEOUT_S), second.poll(1_000, POLL_TIMEOUT_S)
        )
        for member, batch in enumerate(batches):
            received[member].extend(batch)

    shares = [set(await first.assignment()), set(await second.assignment())]
    assert shares[0].isdisjoint(shares[1])
    assert shares[0] | shares[1] == set(range(KAFKA_TEST_PARTITIONS))
    for member, messages in received.items():
        assert {m.partition for m in messages} <= shares[member]
    trades = [m.trade for messages in received.values() for m in messages if m.trade]
    assert sorted((t.symbol, int(t.trade_id)) for t in trades) == sorted(
        (t.symbol, int(t.trade_id)) for t in sent
    )
    assert all(received.values()), "one member received nothing: no real split"


@pytest.mark.infra
async def test_revoke_handler_runs_during_a_rebalance_and_its_offsets_are_committed(
    kafka: KafkaEnv,
) -> None:
    """When a second member joins, the first one's revoke handler runs on the event loop and the
    offsets it returns are committed before the partitions go."""
    sent = varied_trades(["BTCUSDT", "ETHUSDT", "SOLUSDT"], per_symbol=4)
    await send_all(kafka.sink(), sent)
    first = kafka.consumer(commit_on_revoke=True)
    held: list[BusMessage] = []
    revoked = asyncio.Event()

    def on_revoke(partitions: Collection[int], lost: bool) -> dict[int, int]:
        assert not lost
        revoked.set()
        return offsets_after((m.partition, m.offset) for m in held if m.partition in partitions)

    first.on_revoke(on_revoke)
    held.extend(await poll_until(first, len(sent)))

    second = kafka.consumer()
    deadline_s = time.monotonic() + RECEIVE_TIMEOUT_S
    while not (revoked.is_set() and await second.assignment()):
        assert time.monotonic() < deadline_s, "no rebalance happened"
        batches = await asyncio.gather(
            first.poll(100, POLL_TIMEOUT_S), second.poll(100, POLL_TIMEOUT_S)
        )
        assert not any(batches), "messages committed on revoke were delivered again"

    expected = {m.partition: m.offset + 1 for m in sorted(held, key=lambda m: m.offset)}
    reader = kafka.raw_consumer()
    try:
        committed = reader.committed(
            [TopicPartition(kafka.topic, p) for p in expected], timeout=5.0
        )
    finally:
        reader.close()
    assert {tp.partition: tp.offset for tp in committed} == expected


@pytest.mark.infra
async def test_a_cancelled_poll_loses_no_messages(kafka: KafkaEnv) -> None:
    """A poll cancelled while it waits hands what it then took to the next poll."""
    consumer = kafka.consumer()
    deadline_s = time.monotonic() + RECEIVE_TIMEOUT_S
    while not await consumer.assignment():
        assert time.monotonic() < deadline_s, "never joined the group"
        assert list(await consumer.poll(10, POLL_TIMEOUT_S)) == []
    waiting = asyncio.create_task(consumer.poll(1_000, 5.0))
    await asyncio.sleep(0.1)
    waiting.cancel()
    sent = varied_trades(["BTCUSDT"], per_symbol=5)
    await send_all(kafka.sink(), sent)
    received = await poll_until(consumer, len(sent))
    assert [m.trade for m in received] == sent
    assert waiting.cancelled()


def produce_one_batch_each(kafka: KafkaEnv, trades: Sequence[Trade]) -> None:
    """Each trade in a record batch of its own, as a trickle of trades is produced."""
    producer = Producer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "linger.ms": 0,
            "batch.num.messages": 1,
            # Pipelined: idempotence allows 5 requests in flight, 40 s for these on a busy machine.
            "max.in.flight.requests.per.connection": 1_000,
            "log_level": 0,
        }
    )
    for trade in trades:
        producer.produce(kafka.topic, wire.encode_trade(trade), trade.symbol.encode())
    assert producer.flush(60.0) == 0


@pytest.mark.infra
async def test_a_partition_of_many_small_batches_is_read_to_its_end(kafka: KafkaEnv) -> None:
    """A partition of 20,000 one-trade batches is read to its end: Tansu lists all of a
    partition's batches within the fetch's wait or answers empty (at 10 ms it stayed unread)."""
    trades = varied_trades(["BTCUSDT"], per_symbol=LONG_PARTITION_BATCHES)
    await asyncio.to_thread(produce_one_batch_each, kafka, trades)
    received = await poll_until(
        kafka.consumer(), len(trades), max_messages=5_000, timeout_s=LONG_PARTITION_READ_S
    )
    assert sorted(m.offset for m in received) == list(range(len(trades)))
    assert {m.trade for m in received} == set(trades)


@pytest.mark.infra
async def test_traceparent_travels_in_its_header(
    kafka: KafkaEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The current span's W3C traceparent goes out as a header and comes back on the message."""
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    monkeypatch.setattr(kafka_bus.sink, "current_traceparent", lambda: traceparent)
    await send_all(kafka.sink(), [make_trade(1)])
    [message] = await poll_until(kafka.consumer(), 1)
    assert message.traceparent == traceparent


@pytest.mark.infra
def test_ensure_topics_tolerates_concurrent_and_repeated_creation(kafka_bootstrap: str) -> None:
    """Several processes creating the same topics at once all succeed; the topics are complete."""
    topic = f"test-concurrent-{time.monotonic_ns()}"
    errors: list[BaseException] = []

    def create() -> None:
        try:
            ensure_topics(kafka_bootstrap, topic, KAFKA_TEST_PARTITIONS)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ensure_topics(kafka_bootstrap, topic, KAFKA_TEST_PARTITIONS)
    assert errors == []
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=5.0).topics
    assert len(topics[topic].partitions) == KAFKA_TEST_PARTITIONS
    assert f"{topic}.dlq" in topics


def test_ensure_topics_says_in_one_line_when_kafka_is_down() -> None:
    """No broker: a one-line KafkaUnavailable naming the address, within the timeout."""
    started_s = time.monotonic()
    with pytest.raises(KafkaUnavailable, match=UNREACHABLE_BOOTSTRAP) as raised:
        ensure_topics(UNREACHABLE_BOOTSTRAP, "trades", 1, timeout_s=1.0)
    assert "\n" not in str(raised.value)
    assert time.monotonic() - started_s < 5.0


async def test_send_drops_and_counts_once_the_full_queue_blocks_too_long() -> None:
    """A full producer queue blocks `send` for `max_block_s`, then drops the trade (counted), and
    drops at once while it stays full."""
    sink = KafkaSink(
        UNREACHABLE_BOOTSTRAP,
        "trades",
        queue_max_messages=2,
        max_block_s=0.2,
        close_timeout_s=0.1,
    )
    dropped_before = metric("tickpipe_producer_dropped_total")
    purged_before = metric("tickpipe_producer_errors_total", reason="purge_queue")
    try:
        await sink.send(make_trade(1))
        await sink.send(make_trade(2))
        started_s = time.monotonic()
        await sink.send(make_trade(3))
        assert time.monotonic() - started_s >= 0.2
        assert metric("tickpipe_producer_dropped_total") == dropped_before + 1
        started_s = time.monotonic()
        await sink.send(make_trade(4))
        assert time.monotonic() - started_s < 0.1
        assert metric("tickpipe_producer_dropped_total") == dropped_before + 2
        assert await sink.flush(0.1) == 2
    finally:
        await sink.close()
    # What never reached the broker is counted as a delivery error, not lost silently.
    assert metric("tickpipe_producer_errors_total", reason="purge_queue") == purged_before + 2
