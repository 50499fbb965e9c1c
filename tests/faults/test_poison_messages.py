"""Scenario 5: poison messages in the topic (not Protobuf, invalid values, no key), produced with a
raw Kafka producer between valid trades, against a running `tickpipe process`."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from faults.harness import (
    audit,
    memory_mb,
    metric,
    migrate,
    pipeline_env,
    report,
    stored_rows,
    wait_for_count,
)
from fixtures.procs import free_port, tickpipe_process
from fixtures.trades import make_trade
from tickpipe.adapters.bus import wire
from tickpipe.adapters.bus._generated import trade_pb2
from tickpipe.adapters.bus.kafka import DLQ_REASON_HEADER

pytestmark = [pytest.mark.infra, pytest.mark.slow]

VALID_PER_ROUND = 50
NOW_US = time.time_ns() // 1000


def _invalid_trade(**fields: object) -> bytes:
    """A well-formed tickpipe.v1.Trade whose values break the domain rules."""
    values: dict[str, object] = {
        "exchange": "simulated",
        "symbol": "BTCUSDT",
        "trade_id": "x-1",
        "price": "100.5",
        "quantity": "1",
        "side": trade_pb2.SIDE_BUY,
        "exchange_time_us": NOW_US,
        "ingest_time_us": NOW_US,
    }
    values.update(fields)
    return trade_pb2.Trade(**values).SerializeToString()  # type: ignore[arg-type]


# (key, value, expected reason label)
POISON: list[tuple[bytes | None, bytes, str]] = [
    (b"BTCUSDT", b"\xff\xfe\x00 not protobuf at all", "undecodable"),
    (b"BTCUSDT", b"", "invalid"),  # empty: decodes to all defaults, which are invalid
    (b"BTCUSDT", _invalid_trade(price="-1"), "invalid"),
    (b"BTCUSDT", _invalid_trade(quantity="NaN"), "invalid"),
    (b"BTCUSDT", _invalid_trade(symbol="btc-usdt"), "invalid"),
    (b"BTCUSDT", _invalid_trade(exchange="NASDAQ"), "invalid"),  # not a venue name
    (b"BTCUSDT", _invalid_trade(exchange_time_us=5), "invalid"),
    (None, wire.encode_trade(make_trade(10_000, price="1")), "missing_key"),
]


def _produce_round(producer: Producer, topic: str, first_id: int) -> None:
    """VALID_PER_ROUND valid trades with every poison message spread between them."""
    step = VALID_PER_ROUND // len(POISON)
    for n in range(VALID_PER_ROUND):
        trade = make_trade(first_id + n, price=f"{100 + (n * 7) % 13}.{n % 10}")
        producer.produce(topic, wire.encode_trade(trade), b"BTCUSDT")
        if n % step == 0 and n // step < len(POISON):
            key, value, _ = POISON[n // step]
            producer.produce(topic, value, key)
    assert producer.flush(10) == 0


def _dead_letters(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, str]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"dlq-reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    # Assigned, not subscribed: no group join to wait for.
    consumer.assign([TopicPartition(f"{topic}.dlq", 0, OFFSET_BEGINNING)])
    found: list[tuple[bytes, str]] = []
    deadline_s = time.monotonic() + 20
    try:
        while len(found) < expected and time.monotonic() < deadline_s:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            headers = dict(message.headers() or [])
            found.append((message.value() or b"", bytes(headers[DLQ_REASON_HEADER]).decode()))
    finally:
        consumer.close()
    return found


def test_poison_goes_to_the_dlq_with_its_reason_and_valid_trades_flow_on(
    empty_postgres_url: str,
    kafka_bootstrap: str,
    kafka_topic: str,
    redis_url: str,
    redis_names: tuple[str, str],
    tmp_path: Path,
) -> None:
    """Each poison message lands in `<topic>.dlq` with its reason and is counted; none stops the
    processor, and every valid trade around them is stored once with the right SMA."""
    started_s = time.monotonic()
    port = free_port()
    env = pipeline_env(
        empty_postgres_url,
        kafka_bootstrap,
        kafka_topic,
        redis_url,
        redis_names,
        TICKPIPE_METRICS_PORT=str(port),
    )
    migrate(env)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 0})
    with tickpipe_process(["process"], env, tmp_path / "process.log") as process:
        process.wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=30)
        _produce_round(producer, kafka_topic, 1)
        _produce_round(producer, kafka_topic, 1 + VALID_PER_ROUND)
        wait_for_count(empty_postgres_url, 2 * VALID_PER_ROUND, timeout_s=30)
        dead = _dead_letters(kafka_bootstrap, kafka_topic, 2 * len(POISON))
        counted = {
            reason: metric(port, "tickpipe_dlq_messages_total", reason=reason)
            for reason in ("undecodable", "invalid", "missing_key", "other")
        }
        peak = memory_mb(process.process.pid)
        assert process.process.poll() is None, "the processor is still running"
        assert process.terminate() == 0, process.log()

    result = audit(stored_rows(empty_postgres_url), seeded=False)
    expected_labels = [label for _, _, label in POISON] * 2
    report(
        "poison",
        valid_sent=2 * VALID_PER_ROUND,
        poison_sent=len(expected_labels),
        dead_lettered=len(dead),
        **result.numbers(),
        **{f"dlq_{reason}": int(count) for reason, count in counted.items()},
        vmhwm_mb=peak["VmHWM"],
        duration_s=time.monotonic() - started_s,
    )
    assert result.stored == 2 * VALID_PER_ROUND
    assert result.duplicates == result.missing == result.sma_mismatches == 0
    assert sorted(value for value, _ in dead) == sorted(v for _, v, _ in POISON * 2)
    assert all(reason for _, reason in dead), "every dead letter says why"
    reasons = dict(dead)
    assert reasons[POISON[0][1]].startswith("not a tickpipe.v1.Trade")
    assert "price" in reasons[POISON[2][1]]
    for label in ("undecodable", "invalid", "missing_key"):
        assert counted[label] == expected_labels.count(label), label
