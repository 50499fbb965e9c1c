"""Broker ceilings with confluent-kafka: consume rate of a pre-filled topic, and the round trip
(produce -> consume) at a steady rate with tickpipe's own client settings."""

from __future__ import annotations

import struct
import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer

from benchmarks.harness import hist, infra, workload
from tickpipe.adapters.bus.kafka.consumer import (
    FETCH_MAX_BYTES,
    FETCH_WAIT_MAX_MS,
    SESSION_TIMEOUT_MS,
)

# tickpipe's KafkaSink and KafkaConsumer settings (src/tickpipe/adapters/bus/kafka/).
TICKPIPE_PRODUCER_CONFIG: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 2,
    "partitioner": "murmur2_random",
    "batch.num.messages": 10_000,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
}
TICKPIPE_CONSUMER_CONFIG: dict[str, Any] = {
    "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
    "fetch.queue.backoff.ms": 0,
    "queued.max.messages.kbytes": 16_384,
    "message.max.bytes": FETCH_MAX_BYTES,
    "fetch.max.bytes": FETCH_MAX_BYTES,
    "max.partition.fetch.bytes": FETCH_MAX_BYTES // 2,
}
EMIT_TICK_S = 0.01  # like the simulated market: what is due is sent in bursts 10 ms apart
MESSAGE_BYTES = 100  # about a tickpipe.v1.Trade
_SENT_NS = struct.Struct(">q")


def consume_rate(bootstrap: str, topic: str, count: int) -> float:
    """Messages/s of a bare confluent-kafka consumer reading `count` messages of `topic`,
    from its first message to its last (librdkafka defaults, `fetch.queue.backoff.ms=0`)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-ceiling-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "fetch.queue.backoff.ms": 0,
        }
    )
    consumer.subscribe([topic])
    taken, first_s, last_s = 0, 0.0, 0.0
    deadline_s = time.monotonic() + 120
    try:
        while taken < count and time.monotonic() < deadline_s:
            batch = consumer.consume(10_000, 1.0)
            if not batch:
                continue
            last_s = time.perf_counter()
            if not first_s:
                first_s = last_s
            taken += sum(1 for message in batch if message.error() is None)
    finally:
        consumer.close()
    if taken < count:
        raise RuntimeError(f"consumed {taken} of {count} messages of {topic}")
    return taken / (last_s - first_s)


def round_trip(
    bootstrap: str,
    topic: str,
    *,
    rate_per_s: float,
    duration_s: float,
    warmup_s: float = 2.0,
    producer_overrides: dict[str, Any] | None = None,
    consumer_overrides: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Produce -> consume latency percentiles (ms) at `rate_per_s`, tickpipe's client settings
    unless overridden; `topic` must exist and be empty."""
    histogram = hist.new_histogram()
    measure_from_ns = [2**62]  # set when the warm-up ends
    stop = threading.Event()
    assigned = threading.Event()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-rtt-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "latest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            **TICKPIPE_CONSUMER_CONFIG,
            **(consumer_overrides or {}),
        }
    )

    def on_assign(_consumer: Consumer, _partitions: list[Any]) -> None:
        assigned.set()

    consumer.subscribe([topic], on_assign=on_assign)

    def consume() -> None:
        while not stop.is_set():
            # consume(n, t) waits for n messages or t: wait for one, then take what is there.
            for message in consumer.consume(1000, 0) or consumer.consume(1, 0.05):
                value = message.value()
                if message.error() is not None or not value:
                    continue
                now_ns = time.time_ns()
                (sent_ns,) = _SENT_NS.unpack_from(value)
                if sent_ns >= measure_from_ns[0]:
                    hist.record_us(histogram, (now_ns - sent_ns) / 1000)

    thread = threading.Thread(target=consume, name="bench-rtt-consumer", daemon=True)
    thread.start()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            **TICKPIPE_PRODUCER_CONFIG,
            **(producer_overrides or {}),
        }
    )
    try:
        if not assigned.wait(30):
            raise RuntimeError("the round-trip consumer got no partitions within 30 s")
        time.sleep(1.0)  # the first fetches are in flight
        keys = [symbol.encode() for symbol in workload.SYMBOLS]
        padding = b"\0" * (MESSAGE_BYTES - _SENT_NS.size)
        started_s = time.monotonic()
        measure_from_ns[0] = time.time_ns() + int(warmup_s * 1e9)
        sent = 0
        while (elapsed_s := time.monotonic() - started_s) < warmup_s + duration_s:
            burst_s = time.monotonic()
            due = int(elapsed_s * rate_per_s) + 1 - sent
            for _ in range(due):
                value = _SENT_NS.pack(time.time_ns()) + padding
                producer.produce(topic, value, keys[sent % len(keys)])
                sent += 1
            producer.poll(0)
            # The next burst one tick after this one, as the simulated market wakes (waking at
            # each next message's due time instead sent one message per millisecond at 1,000/s,
            # which Tansu delivers 7-13 ms sooner at p50 than the market's bursts).
            wake_s = max(started_s + sent / rate_per_s, burst_s + EMIT_TICK_S)
            time.sleep(max(0.0, min(EMIT_TICK_S, wake_s - time.monotonic())))
        producer.flush(10)
        time.sleep(1.0)  # stragglers
    finally:
        stop.set()
        thread.join(5)
        consumer.close()
    return hist.percentiles_ms(histogram)


def round_trip_topic(bootstrap: str, run_id: str, label: str) -> str:
    topic = f"bench-{run_id}-rtt-{label}"
    infra.create_topics(bootstrap, [topic], 6)
    return topic


def group_join_s(bootstrap: str, topic: str) -> float:
    """Seconds from subscribing a bare consumer in a new group (tickpipe's session timeout) to
    its first assignment: the broker's share of any cold start. Tansu answers a new group's join
    after half the session timeout; Apache Kafka after `group.initial.rebalance.delay.ms`."""
    assigned = threading.Event()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-join-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": 2000,
        }
    )
    try:
        started_s = time.monotonic()
        consumer.subscribe([topic], on_assign=lambda _consumer, _partitions: assigned.set())
        while not assigned.is_set():
            consumer.poll(0.01)
            if time.monotonic() - started_s > 60:
                raise RuntimeError("a bare consumer got no partitions within 60 s")
        return time.monotonic() - started_s
    finally:
        consumer.close()
