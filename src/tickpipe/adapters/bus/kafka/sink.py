"""KafkaSink: the ingestor's idempotent producer, keyed by symbol."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping

from confluent_kafka import (
    KafkaError,
    Message,
    Producer,
)

from tickpipe.adapters.bus import wire
from tickpipe.adapters.bus.kafka.cluster import (
    DEFAULT_QUEUE_MAX,
    RECONNECT_CONFIG,
    TRACEPARENT_HEADER,
    Headers,
    Outages,
)
from tickpipe.core.trade import Trade
from tickpipe.telemetry import metrics
from tickpipe.telemetry.logs import RateLimitedLog, fields
from tickpipe.telemetry.tracing import current_traceparent

_log = logging.getLogger(__name__)

_FULL_QUEUE_RETRY_S = 0.005
_DELIVERY_POLL_S = 0.1


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
        properties: Mapping[str, str] | None = None,
    ) -> None:
        self._topic = topic
        self._encode = wire.trade_encoder()
        self._max_block_s = max_block_s
        self._close_timeout_s = close_timeout_s
        self._outages = Outages()
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
                # SASL/TLS and tuning from TICKPIPE_KAFKA_CONFIG_FILE and the shortcuts; the
                # properties above that the guarantees rest on cannot be among them.
                **(properties or {}),
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
        key = trade.symbol.encode()
        value = self._encode(trade)
        try:
            if traceparent:
                headers: Headers = [(TRACEPARENT_HEADER, traceparent.encode())]
                self._producer.produce(self._topic, value, key, headers=headers)
            else:
                # Positional and without `headers=None`: half the cost of the call.
                self._producer.produce(self._topic, value, key)
        except BufferError:
            await self._send_when_room(trade, value, key, traceparent)
        else:
            self._shedding = False

    async def _send_when_room(
        self, trade: Trade, value: bytes, key: bytes, traceparent: str | None
    ) -> None:
        """The local queue is full: retries for up to `max_block_s`, then drops the trade."""
        headers: Headers | None = (
            [(TRACEPARENT_HEADER, traceparent.encode())] if traceparent else None
        )
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
            _log.error(
                "closing the Kafka producer with %d trades undelivered",
                remaining,
                extra=fields("trades_undelivered", trades=remaining),
            )
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
        if error.code() == KafkaError._AUTHENTICATION:
            return  # logged by Outages, with what to check
        self._log_client_error(logging.WARNING, "Kafka producer: %s", error)
