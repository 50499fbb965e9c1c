"""KafkaConsumer: the processor's consumer group member; offsets move only through commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, cast

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from tickpipe.adapters.bus import wire
from tickpipe.adapters.bus.kafka.cluster import (
    DEFAULT_GROUP,
    DEFAULT_PREFETCH_MESSAGES,
    DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER,
    DLQ_REASON_HEADER,
    DLQ_SUFFIX,
    MISSING_KEY_ERROR,
    RECONNECT_CONFIG,
    TRACEPARENT_HEADER,
    Headers,
    Outages,
)
from tickpipe.core.trade import Trade
from tickpipe.ports import BusMessage, RevokeHandler
from tickpipe.telemetry import metrics
from tickpipe.telemetry.logs import RateLimitedLog

_log = logging.getLogger(__name__)

_LAG_REFRESH_S = 1.0
# Kafka answers a fetch once any byte is there, so this only bounds an idle one; Tansu must list
# all of a partition's batches within it or it answers empty (at 10 ms long partitions went unread).
FETCH_WAIT_MAX_MS = 100
FETCH_MAX_BYTES = 128 * 1024
# Apache Kafka's smallest by default (group.min.session.timeout.ms): a dead member is noticed
# within 6 s. Tansu answers a new group's first join after half of it.
SESSION_TIMEOUT_MS = 6000
_SERVE_MAX_MESSAGES = 500
_PARTITIONS_MOVED = frozenset(
    {
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError._ASSIGNMENT_LOST,
    }
)


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

    All consumer calls run on one thread. A rebalance (inside a poll, or `close`) posts the
    revoked partitions to the `on_revoke` handler on the event loop and waits for its answer (the
    offsets still to commit for them: the handler does no I/O, so it answers at once); with
    `commit_on_revoke` it commits them before the partitions go. A commit only covers partitions
    still assigned.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        group: str = DEFAULT_GROUP,
        revoke_timeout_s: float = 5.0,
        dlq_timeout_s: float = 10.0,
        prefetch_messages: int = DEFAULT_PREFETCH_MESSAGES,
        properties: Mapping[str, str] | None = None,
        commit_on_revoke: bool = False,
    ) -> None:
        self._topic = topic
        self._bootstrap_servers = bootstrap_servers
        # SASL/TLS and tuning for both clients; never the offset settings (properties.py).
        self._properties = dict(properties or {})
        self._revoke_timeout_s = revoke_timeout_s
        # Committing what is stored while partitions are revoked saves their next owner some
        # redelivery, nothing more. Off by default: with Tansu, a commit sent in the middle of a
        # rebalance left the whole group unassigned (tests/faults/test_rebalance_in_database_hang).
        self._commit_on_revoke = commit_on_revoke
        self._dlq_timeout_s = dlq_timeout_s
        self._outages = Outages()
        self._log_consumer_error = RateLimitedLog(_log)
        self._log_dead_letter = RateLimitedLog(_log)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._revoke_handler: RevokeHandler | None = None
        self._lock = threading.Lock()
        self._assigned: set[int] = set()  # on the consumer thread only
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
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": 2000,
            "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
            "fetch.queue.backoff.ms": 1,  # 0 makes librdkafka's fetcher spin on a full queue
            # Prefetch is bounded, in bytes and in messages per partition, so that a store
            # outage holds little in memory: librdkafka stops fetching, the backlog stays in Kafka.
            "queued.max.messages.kbytes": 16_384,
            "queued.min.messages": prefetch_messages,
            # ... and so is one fetch, which the prefetch bound does not cut: Tansu answers the
            # first partition of a fetch with up to fetch.max.bytes (librdkafka: >= this one).
            "message.max.bytes": FETCH_MAX_BYTES,  # a consumer's own requests are small
            "fetch.max.bytes": FETCH_MAX_BYTES,
            "max.partition.fetch.bytes": FETCH_MAX_BYTES // 2,
            "error_cb": self._on_client_error,
            "logger": _log,
            **RECONNECT_CONFIG,
            **self._properties,
        }
        # A message.max.bytes in the properties (meant for producers) must not stop the consumer.
        config["fetch.max.bytes"] = max(
            int(config["fetch.max.bytes"]), int(config["message.max.bytes"])
        )
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

    async def commit(self, offsets: Mapping[int, int]) -> None:
        if offsets:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, self._commit_now, dict(offsets)
            )

    async def serve_group(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        if self._pending_poll is None:
            self._leftover += await loop.run_in_executor(self._executor, self._serve_group)

    async def dead_letter(self, messages: Sequence[BusMessage]) -> None:
        if messages:
            # Not on the consumer thread: the revoke callback may dead-letter during a rebalance.
            await asyncio.to_thread(self._dead_letter_now, list(messages))

    def on_revoke(self, handler: RevokeHandler) -> None:
        self._revoke_handler = handler

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

    def _serve_group(self) -> list[BusMessage]:
        """One turn of the group protocol with every assigned partition paused: a rebalance runs
        its callbacks, and no message is handed out (librdkafka drops what it had prefetched of a
        paused partition and fetches again from the position on resume). What a partition
        assigned during this very call delivers is kept for the next poll."""
        consumer = self._consumer
        paused = consumer.assignment()
        if paused:
            consumer.pause(paused)
        try:
            raw = consumer.consume(_SERVE_MAX_MESSAGES, 0.05)
        finally:
            # Exactly what was paused, assigned or not by now: librdkafka keeps a partition's
            # pause across a revocation, and a partition assigned back paused is never read.
            if paused:
                with contextlib.suppress(KafkaException):
                    consumer.resume(paused)
        return [self._to_bus_message(message) for message in raw if message.error() is None]

    @staticmethod
    def _to_bus_message(message: Message) -> BusMessage:
        key = message.key()
        value = message.value() or b""
        traceparent = None
        # A consumed message's headers are always a list of pairs.
        for name, header in cast(Headers, message.headers() or []):
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

    def _commit_now(self, offsets: dict[int, int], *, wait: bool = True) -> None:
        # A partition taken away meanwhile is its new owner's to commit.
        partitions = [
            TopicPartition(self._topic, p, offset)
            for p, offset in offsets.items()
            if p in self._assigned
        ]
        if not partitions:
            return
        if not wait:
            self._consumer.commit(offsets=partitions, asynchronous=True)
            return
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
        self._assigned.update(p.partition for p in partitions)
        with contextlib.suppress(KafkaException):  # a partition is never handed over paused
            consumer.resume(partitions)
        self._outages.up()
        _log.info("assigned partitions %s of %s", [p.partition for p in partitions], self._topic)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        _log.info("partitions %s of %s revoked", [p.partition for p in partitions], self._topic)
        self._hand_over([p.partition for p in partitions], lost=False)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost partitions may already belong to another consumer: committing them would fail.
        _log.warning("partitions %s of %s lost", [p.partition for p in partitions], self._topic)
        self._hand_over([p.partition for p in partitions], lost=True)

    def _hand_over(self, partitions: list[int], *, lost: bool) -> None:
        """Tells the handler on the event loop, commits what it says is done, then lets go."""
        self._revocations += 1
        offsets: dict[int, int] = {}
        handler, loop = self._revoke_handler, self._loop
        if handler is not None and loop is not None and not loop.is_closed():
            answer: Future[dict[int, int]] = Future()

            def on_loop() -> None:
                # Batches of a cancelled poll may hold messages of these partitions: they come
                # back from the committed offsets instead.
                self._leftover = [m for m in self._leftover if m.partition not in partitions]
                try:
                    answer.set_result(handler(partitions, lost))
                except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                    answer.set_exception(exc)

            try:
                loop.call_soon_threadsafe(on_loop)
                offsets = answer.result(timeout=self._revoke_timeout_s)
            except TimeoutError:
                # Committing nothing is always safe: the next owner reads them again.
                _log.warning(
                    "the processor did not answer a revocation within %.0fs; nothing committed "
                    "for partitions %s (they will be redelivered)",
                    self._revoke_timeout_s,
                    partitions,
                )
            except Exception:  # noqa: BLE001 - a failing handler must not break the rebalance
                _log.exception("revoke handler failed; partitions %s are redelivered", partitions)
        if offsets and not lost and self._commit_on_revoke:
            try:
                # Not waited for: a broker that holds commits back during a rebalance would stall
                # the whole group here. Should it not land, the next owner reads them again.
                self._commit_now(offsets, wait=False)
            except KafkaException as exc:
                _log.warning("commit on revoke failed (its messages are redelivered): %s", exc)
        self._assigned.difference_update(partitions)

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
                        **self._properties,
                    }
                )
            producer = self._dlq_producer
        failures: list[KafkaError] = []

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(error)

        for message in messages:
            reason = message.error or "unknown"
            headers: Headers = [
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
