"""The Kafka bus (confluent-kafka): `KafkaSink` for the ingestor, `KafkaConsumer` for the processor.

At-least-once: the consumer never commits on its own. The processor writes a batch to the store,
then commits its offsets; a crash in between redelivers the batch and the idempotent store drops
the duplicates. Undecodable messages go to `<topic>.dlq`, and are committed like the others.

librdkafka calls block, so none runs on the event loop for long: the producer's `produce()` only
enqueues (a thread serves its delivery reports), and every consumer call runs on one dedicated
thread, where the rebalance callbacks run too.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import orjson
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from tickpipe.adapters.bus import wire
from tickpipe.core.trade import Trade
from tickpipe.ports import BusMessage
from tickpipe.telemetry import metrics
from tickpipe.telemetry.logs import RateLimitedLog
from tickpipe.telemetry.tracing import current_traceparent

_log = logging.getLogger(__name__)

TRACEPARENT_HEADER = "traceparent"
DLQ_REASON_HEADER = "tickpipe-dlq-reason"
DLQ_PARTITION_HEADER = "tickpipe-source-partition"
DLQ_OFFSET_HEADER = "tickpipe-source-offset"
DLQ_SUFFIX = ".dlq"
MISSING_KEY_ERROR = "missing key: expected the normalized symbol"

_Headers = list[tuple[str, str | bytes | None]]

DEFAULT_GROUP = "tickpipe-processor"  # = Settings.kafka_group
DEFAULT_QUEUE_MAX = 100_000  # = Settings.kafka_queue_max
DEFAULT_PREFETCH_MESSAGES = 5_000  # per partition; = Settings.batch_max_trades
# Kafka's own default retention, set explicitly: some Kafka-protocol brokers (Tansu) report
# only the configs a topic was created with.
RETENTION_MS = 7 * 24 * 3600 * 1000
# librdkafka backs off up to 10 s between reconnects by default: a broker back after an outage
# would wait that long for us, with the producer's queue full and shedding trades meanwhile.
RECONNECT_CONFIG = {"reconnect.backoff.ms": 100, "reconnect.backoff.max.ms": 1_000}
DLQ_PARTITIONS = 1  # a trickle of bad messages; one partition keeps them in arrival order

_FULL_QUEUE_RETRY_S = 0.005
_DELIVERY_POLL_S = 0.1
_LAG_REFRESH_S = 1.0
_PARTITIONS_MOVED = frozenset(
    {
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError._ASSIGNMENT_LOST,
    }
)


class KafkaUnavailable(RuntimeError):
    """The broker did not answer; the message is one line fit for the command line."""


def ensure_topics(
    bootstrap_servers: str, topic: str, partitions: int, *, timeout_s: float = 10.0
) -> None:
    """Creates `topic` and `<topic>.dlq` unless they exist (another process may be creating them
    at the same time); raises KafkaUnavailable when the broker does not answer in `timeout_s`."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, "logger": _log}
    admin = AdminClient(config)
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"Kafka at {bootstrap_servers} did not answer within {timeout_s:g} s: {exc.args[0]}"
        ) from None
    wanted = {topic: partitions, topic + DLQ_SUFFIX: DLQ_PARTITIONS}
    if topic in existing and len(existing[topic].partitions) != partitions:
        _log.warning(
            "Kafka topic %s has %d partitions, not %d: left as it is",
            topic,
            len(existing[topic].partitions),
            partitions,
        )
    missing = [
        # replication_factor -1: the broker's default.replication.factor
        NewTopic(name, count, replication_factor=-1, config={"retention.ms": str(RETENTION_MS)})
        for name, count in wanted.items()
        if name not in existing
    ]
    if not missing:
        return
    futures = admin.create_topics(missing, request_timeout=timeout_s)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaUnavailable(
                    f"cannot create Kafka topic {name!r}: {exc.args[0]}"
                ) from None
        except TimeoutError:
            raise KafkaUnavailable(
                f"Kafka at {bootstrap_servers} did not create topic {name!r} within {timeout_s:g} s"
            ) from None
        else:
            _log.info("created Kafka topic %s (%d partitions)", name, wanted[name])


class KafkaSink:
    """TradeSink: an idempotent producer keyed by symbol, so each symbol's trades stay in order.

    The local queue is bounded (`queue_max_messages` trades). When it is full, `send` waits up to
    `max_block_s` for room and then drops the trade, counted and logged; until room appears again,
    further trades are dropped without waiting. A broker outage must not stall the exchange feed,
    one `max_block_s` per trade, until the exchange gives up on us.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        queue_max_messages: int = DEFAULT_QUEUE_MAX,
        max_block_s: float = 5.0,
        close_timeout_s: float = 10.0,
    ) -> None:
        self._topic = topic
        self._max_block_s = max_block_s
        self._close_timeout_s = close_timeout_s
        self._outages = _Outages()
        self._log_drop = RateLimitedLog(_log)
        self._log_delivery_failure = RateLimitedLog(_log)
        self._log_client_error = RateLimitedLog(_log)
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap_servers,
                "client.id": "tickpipe-ingestor",
                "enable.idempotence": True,
                "acks": "all",
                # A few ms of batching buys large batches at little latency.
                "linger.ms": 2,
                # Java clients' partitioner: a symbol lands in the same partition whichever
                # client produced it.
                "partitioner": "murmur2_random",
                "batch.num.messages": 10_000,
                "batch.size": 1_000_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": queue_max_messages,
                # Successes need no Python callback; failures are counted in _on_delivery.
                "delivery.report.only.error": True,
                "on_delivery": self._on_delivery,
                "error_cb": self._on_client_error,
                "logger": _log,
                **RECONNECT_CONFIG,
                **self._outages.stats_config(),  # polled every 0.1 s by its reporter thread
            }
        )
        self._shedding = False  # the queue stayed full for max_block_s and has had no room since
        self._dropped = 0  # logged as one exact total at close: the rate-limited lines skip some
        self._closed = False
        self._stopping = threading.Event()
        self._reporter = threading.Thread(
            target=self._serve_delivery_reports, name="tickpipe-kafka-producer", daemon=True
        )
        self._reporter.start()

    async def send(self, trade: Trade) -> None:
        traceparent = current_traceparent()
        headers: _Headers | None = (
            [(TRACEPARENT_HEADER, traceparent.encode())] if traceparent else None
        )
        key = trade.symbol.encode()
        value = wire.encode_trade(trade)
        deadline_s = time.monotonic() + self._max_block_s
        while True:
            try:
                self._producer.produce(self._topic, value, key, headers=headers)
            except BufferError:
                if self._shedding or time.monotonic() >= deadline_s:
                    self._shedding = True
                    self._dropped += 1
                    metrics.producer_dropped.inc()
                    self._log_drop(
                        logging.ERROR,
                        "Kafka producer queue full (%g s or more): dropped trade %s/%s/%s",
                        self._max_block_s,
                        trade.exchange,
                        trade.symbol,
                        trade.trade_id,
                    )
                    return
                await asyncio.sleep(_FULL_QUEUE_RETRY_S)
            else:
                self._shedding = False
                return

    async def flush(self, timeout_s: float) -> int:
        return await asyncio.to_thread(self._producer.flush, timeout_s)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        remaining = await asyncio.to_thread(self._producer.flush, self._close_timeout_s)
        self._stopping.set()
        await asyncio.to_thread(self._reporter.join)
        if remaining:
            _log.error("closing the Kafka producer with %d trades undelivered", remaining)
            # Purged messages get failed delivery reports, so they are counted as errors.
            self._producer.purge()
            self._producer.flush(0)
        metrics.producer_queue_depth.set(0)
        if self._dropped:
            _log.error(
                "%d trades dropped in total because the Kafka producer queue was full",
                self._dropped,
            )

    def _serve_delivery_reports(self) -> None:
        producer = self._producer
        while not self._stopping.is_set():
            producer.poll(_DELIVERY_POLL_S)
            metrics.producer_queue_depth.set(len(producer))

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            return
        # A bounded label from librdkafka's error codes: _MSG_TIMED_OUT -> msg_timed_out.
        metrics.producer_errors.labels(reason=error.name().strip("_").lower()).inc()
        self._log_delivery_failure(logging.ERROR, "Kafka delivery failed: %s", error)

    def _on_client_error(self, error: KafkaError) -> None:
        self._outages.on_error(error)
        self._log_client_error(logging.WARNING, "Kafka producer: %s", error)


class _Outages:
    """Counts one client's Kafka outages: one starts at librdkafka's "all brokers down" error
    (repeated at every failed reconnect, counted once) and ends at the first sign of a working
    broker: `up()`, or a statistics report with a broker UP where someone polls steadily."""

    def __init__(self) -> None:
        self._down = False

    def on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN and not self._down:
            self._down = True
            metrics.dependency_outages.labels("kafka").inc()

    def up(self) -> None:
        self._down = False

    def stats_config(self) -> dict[str, Any]:
        # Only for a client polled steadily: unserved reports pile up in librdkafka's queue.
        return {"statistics.interval.ms": 1_000, "stats_cb": self._on_stats}

    def _on_stats(self, stats_json: str) -> None:
        if self._down:
            brokers = orjson.loads(stats_json).get("brokers", {}).values()
            if any(broker.get("state") == "UP" for broker in brokers):
                self._down = False


class KafkaPing:
    """Readiness check: the broker answers a metadata request for the topic. A client of its own,
    so that a busy producer or consumer thread never delays the answer."""

    def __init__(self, bootstrap_servers: str, topic: str, timeout_s: float = 1.5) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._timeout_s = timeout_s
        # Quiet: the services' own clients already log an outage (rate-limited).
        self._admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0})

    async def __call__(self) -> None:
        try:
            metadata = await asyncio.to_thread(
                self._admin.list_topics, self._topic, self._timeout_s
            )
        except KafkaException as exc:
            raise KafkaUnavailable(
                f"Kafka at {self._bootstrap_servers} does not answer: {exc.args[0].str()}"
            ) from None
        topic = metadata.topics.get(self._topic)
        error = "missing" if topic is None else topic.error
        if error is not None:
            raise KafkaUnavailable(f"Kafka topic {self._topic!r} is unavailable: {error}")


def _next_offsets(messages: Iterable[BusMessage]) -> dict[int, int]:
    """Per partition, the offset to commit: one past the last message handled."""
    offsets: dict[int, int] = {}
    for message in messages:
        if message.offset >= offsets.get(message.partition, 0):
            offsets[message.partition] = message.offset + 1
    return offsets


def _dlq_reason_label(error: str) -> str:
    if error.startswith("not a tickpipe.v1.Trade"):
        return "undecodable"
    if error.startswith("invalid trade"):
        return "invalid"
    if error == MISSING_KEY_ERROR:
        return "missing_key"
    return "other"


class KafkaConsumer:
    """TradeConsumer over a consumer group; offsets move only through `commit`.

    All consumer calls run on one thread. A rebalance runs the `on_revoke` callback on the event
    loop and waits for it; a `commit` made meanwhile is recorded and committed by the rebalance
    itself before the partitions go, since the consumer thread is busy inside it.
    Do not `poll` from the callback.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        group: str = DEFAULT_GROUP,
        revoke_timeout_s: float = 30.0,
        dlq_timeout_s: float = 10.0,
        prefetch_messages: int = DEFAULT_PREFETCH_MESSAGES,
    ) -> None:
        self._topic = topic
        self._bootstrap_servers = bootstrap_servers
        self._revoke_timeout_s = revoke_timeout_s
        self._dlq_timeout_s = dlq_timeout_s
        self._outages = _Outages()
        self._log_consumer_error = RateLimitedLog(_log)
        self._log_dead_letter = RateLimitedLog(_log)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._revoke_callback: Callable[[], Awaitable[None]] | None = None
        self._lock = threading.Lock()
        self._in_rebalance = False
        self._deferred_offsets: dict[int, int] = {}
        self._pending_poll: asyncio.Future[list[BusMessage]] | None = None
        self._leftover: list[BusMessage] = []
        self._lag_refresh_s = 0.0
        self._revocations = 0  # rebalances seen, to spot one in the middle of a poll
        self._dlq_producer: Producer | None = None
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tickpipe-kafka")
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "client.id": "tickpipe-processor",
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 2000,
            # Latency over fetch efficiency: the broker answers within 10 ms even with little
            # data, and the next fetch starts at once.
            "fetch.wait.max.ms": 10,
            "fetch.queue.backoff.ms": 0,
            # Prefetch is bounded, in bytes and in messages per partition, so that a store
            # outage holds little in memory: librdkafka stops fetching, the backlog stays in Kafka.
            "queued.max.messages.kbytes": 16_384,
            "queued.min.messages": prefetch_messages,
            "error_cb": self._on_client_error,
            "logger": _log,
            **RECONNECT_CONFIG,
        }
        try:
            self._consumer: Consumer = self._executor.submit(self._open, config).result()
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    def _open(self, config: dict[str, Any]) -> Consumer:
        consumer = Consumer(config)
        consumer.subscribe(
            [self._topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        return consumer

    async def poll(self, max_messages: int, timeout_s: float) -> Sequence[BusMessage]:
        loop = self._loop = asyncio.get_running_loop()
        if self._leftover:
            messages = self._leftover[:max_messages]
            del self._leftover[:max_messages]
            return messages
        # A poll cancelled mid-way keeps its batch for the next call: dropping it would let a
        # later commit skip over messages that were never handled.
        future = self._pending_poll
        if future is None:
            future = loop.run_in_executor(self._executor, self._consume, max_messages, timeout_s)
            self._pending_poll = future
        try:
            messages = await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.cancelled():
                self._pending_poll = None
            raise
        except BaseException:
            self._pending_poll = None
            raise
        self._pending_poll = None
        if len(messages) > max_messages:  # a batch left by a cancelled, larger poll
            self._leftover = messages[max_messages:]
            del messages[max_messages:]
        return messages

    async def commit(self, messages: Sequence[BusMessage]) -> None:
        offsets = _next_offsets(messages)
        if not offsets:
            return
        with self._lock:
            if self._in_rebalance:
                for partition, offset in offsets.items():
                    if offset > self._deferred_offsets.get(partition, 0):
                        self._deferred_offsets[partition] = offset
                return
        await asyncio.get_running_loop().run_in_executor(self._executor, self._commit_now, offsets)

    async def dead_letter(self, messages: Sequence[BusMessage]) -> None:
        if messages:
            # Not on the consumer thread: the revoke callback may dead-letter during a rebalance.
            await asyncio.to_thread(self._dead_letter_now, list(messages))

    def on_revoke(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._revoke_callback = callback

    async def assignment(self) -> list[int]:
        """The partitions this consumer holds now (for tests and diagnostics)."""
        partitions = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._consumer.assignment
        )
        return sorted(p.partition for p in partitions)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop = asyncio.get_running_loop()
        try:
            # Leaves the group; the revoke callback runs one last time from inside close().
            await self._loop.run_in_executor(self._executor, self._consumer.close)
            if self._dlq_producer is not None:
                await asyncio.to_thread(self._dlq_producer.flush, self._dlq_timeout_s)
        finally:
            self._executor.shutdown(wait=False)
            metrics.consumer_lag.set(0)

    # --- on the consumer thread ---

    def _consume(self, max_messages: int, timeout_s: float) -> list[BusMessage]:
        consumer = self._consumer
        # consume(n, t) waits until n messages or t: wait for one, then take what is there.
        raw = consumer.consume(max_messages, 0)
        if not raw:
            raw = consumer.consume(1, timeout_s)
            if raw and max_messages > 1:
                revocations = self._revocations
                more = consumer.consume(max_messages - 1, 0)
                # What was taken before a revoke may now belong to another consumer: it comes
                # back from the committed offsets instead.
                raw = more if self._revocations != revocations else raw + more
        now_s = time.monotonic()
        if now_s >= self._lag_refresh_s:
            self._lag_refresh_s = now_s + _LAG_REFRESH_S
            self._refresh_lag()
        messages = []
        for message in raw:
            error = message.error()
            if error is None:
                messages.append(self._to_bus_message(message))
            elif error.code() != KafkaError._PARTITION_EOF:
                self._log_consumer_error(logging.WARNING, "Kafka consumer: %s", error)
        if messages:
            self._outages.up()
        return messages

    @staticmethod
    def _to_bus_message(message: Message) -> BusMessage:
        key = message.key()
        value = message.value() or b""
        traceparent = None
        # A consumed message's headers are always a list of pairs.
        for name, header in cast(_Headers, message.headers() or []):
            if name == TRACEPARENT_HEADER and header:
                traceparent = (
                    header.decode(errors="replace") if isinstance(header, bytes) else header
                )
        trade: Trade | None = None
        error: str | None = None
        try:
            trade = wire.decode_trade(value)
        except wire.WireError as exc:
            error = str(exc)
        if trade is not None and not key:
            trade, error = None, MISSING_KEY_ERROR
        partition, offset = message.partition(), message.offset()
        # Set on every consumed message; None only on producer-side messages.
        assert partition is not None
        assert offset is not None
        return BusMessage(trade, error, key, value, partition, offset, traceparent)

    def _commit_now(self, offsets: dict[int, int]) -> None:
        partitions = [TopicPartition(self._topic, p, offset) for p, offset in offsets.items()]
        try:
            results = self._consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() not in _PARTITIONS_MOVED:
                raise
            # Whoever owns these partitions now gets the messages again; the store is idempotent.
            _log.warning("commit skipped, partitions moved to another consumer: %s", error)
            return
        failed = [result for result in results if result.error is not None]
        if failed:
            raise KafkaException(failed[0].error)
        self._outages.up()

    def _refresh_lag(self) -> None:
        consumer = self._consumer
        assigned = consumer.assignment()
        lag = 0
        for position in consumer.position(assigned) if assigned else ():
            _low, high = consumer.get_watermark_offsets(position, cached=True)
            if position.offset >= 0 and high >= 0:
                lag += max(high - position.offset, 0)
        metrics.consumer_lag.set(lag)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._outages.up()
        _log.info("assigned partitions %s of %s", [p.partition for p in partitions], self._topic)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        _log.info("partitions %s of %s revoked", [p.partition for p in partitions], self._topic)
        self._run_revoke_callback(commit=True)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost partitions may already belong to another consumer: committing them would fail.
        _log.warning("partitions %s of %s lost", [p.partition for p in partitions], self._topic)
        self._run_revoke_callback(commit=False)

    def _run_revoke_callback(self, *, commit: bool) -> None:
        self._revocations += 1
        callback, loop = self._revoke_callback, self._loop
        if callback is None or loop is None or loop.is_closed():
            return

        async def run() -> None:
            await callback()

        with self._lock:
            self._in_rebalance = True
        try:
            future = asyncio.run_coroutine_threadsafe(run(), loop)
            try:
                future.result(timeout=self._revoke_timeout_s)
            except TimeoutError:
                future.cancel()
                raise
        except Exception:  # noqa: BLE001 - a failing callback must not break the rebalance
            _log.exception("revoke callback failed; its uncommitted messages will be redelivered")
        finally:
            with self._lock:
                self._in_rebalance = False
                offsets, self._deferred_offsets = self._deferred_offsets, {}
        if commit and offsets:
            try:
                self._commit_now(offsets)
            except KafkaException:
                _log.exception("commit on revoke failed; those messages will be redelivered")

    def _on_client_error(self, error: KafkaError) -> None:
        self._outages.on_error(error)
        self._log_consumer_error(logging.WARNING, "Kafka consumer: %s", error)

    # --- dead letters (a thread of their own) ---

    def _dead_letter_now(self, messages: list[BusMessage]) -> None:
        with self._lock:
            if self._dlq_producer is None:
                self._dlq_producer = Producer(
                    {
                        "bootstrap.servers": self._bootstrap_servers,
                        "client.id": "tickpipe-dlq",
                        "enable.idempotence": True,
                        "acks": "all",
                        "logger": _log,
                    }
                )
            producer = self._dlq_producer
        failures: list[KafkaError] = []

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(error)

        for message in messages:
            reason = message.error or "unknown"
            headers: _Headers = [
                (DLQ_REASON_HEADER, reason.encode()),
                (DLQ_PARTITION_HEADER, str(message.partition).encode()),
                (DLQ_OFFSET_HEADER, str(message.offset).encode()),
            ]
            if message.traceparent:
                headers.append((TRACEPARENT_HEADER, message.traceparent.encode()))
            producer.produce(
                self._topic + DLQ_SUFFIX,
                message.value,
                message.key,
                headers=headers,
                on_delivery=on_delivery,
            )
        remaining = producer.flush(self._dlq_timeout_s)
        if remaining or failures:
            # Raising keeps these offsets uncommitted, so the messages come back.
            detail = failures[0] if failures else "timed out"
            raise RuntimeError(
                f"dead-lettering to {self._topic}{DLQ_SUFFIX} failed for "
                f"{remaining + len(failures)} of {len(messages)} messages: {detail}"
            )
        for message in messages:
            reason = message.error or "unknown"
            metrics.dlq_messages.labels(reason=_dlq_reason_label(reason)).inc()
            self._log_dead_letter(
                logging.WARNING,
                "dead-lettered partition %d offset %d: %s",
                message.partition,
                message.offset,
                reason,
            )
