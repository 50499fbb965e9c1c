"""Topics, readiness and the settings every tickpipe Kafka client shares."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from tickpipe.adapters.bus.kafka import client_log
from tickpipe.adapters.bus.kafka.properties import InvalidKafkaProperties, KafkaProperties
from tickpipe.telemetry import metrics
from tickpipe.telemetry.logs import RateLimitedLog, fields

_log = logging.getLogger(__name__)
client_log.install()

TRACEPARENT_HEADER = "traceparent"
DLQ_REASON_HEADER = "tickpipe-dlq-reason"
DLQ_PARTITION_HEADER = "tickpipe-source-partition"
DLQ_OFFSET_HEADER = "tickpipe-source-offset"
DLQ_SUFFIX = ".dlq"
MISSING_KEY_ERROR = "missing key: expected the normalized symbol"

Headers = list[tuple[str, str | bytes | None]]

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


class KafkaUnavailable(RuntimeError):
    """The broker did not answer; the message is one line fit for the command line."""


def check_properties(properties: KafkaProperties, group: str) -> None:
    """Raises InvalidKafkaProperties, one line naming the property, for one librdkafka refuses
    (unknown name, bad value, missing CA file, unsupported SASL mechanism). Throwaway clients
    with no broker to reach: nothing goes on the wire."""
    config: dict[str, Any] = {**properties.client_config(), "log_level": 0}
    try:
        Producer(config)
        Consumer({**config, "group.id": group}).close()
    except KafkaException as exc:
        raise InvalidKafkaProperties(
            f"invalid Kafka client settings: {properties.explain(exc.args[0].str())}"
        ) from None


def ensure_topics(
    bootstrap_servers: str,
    topic: str,
    partitions: int,
    *,
    timeout_s: float = 10.0,
    properties: Mapping[str, str] | None = None,
) -> None:
    """Creates `topic` and `<topic>.dlq` unless they exist (another process may be creating them
    at the same time); raises KafkaUnavailable when the broker does not answer in `timeout_s`."""
    auth_failures = AuthFailures()
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "logger": _log,
        "error_cb": auth_failures.on_error,
        **(properties or {}),
    }
    admin = AdminClient(config)
    hint = "" if "security.protocol" in config else _NO_SECURITY_HINT
    existing = _list_topics(admin, auth_failures, bootstrap_servers, timeout_s, hint)
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
            _log.info(
                "created Kafka topic %s (%d partitions)",
                name,
                wanted[name],
                extra=fields("topic_created", topic=name, partitions=wanted[name]),
            )


AUTH_HINT = (
    "check TICKPIPE_KAFKA_SASL_USERNAME / TICKPIPE_KAFKA_SASL_PASSWORD / "
    "TICKPIPE_KAFKA_SECURITY_PROTOCOL or TICKPIPE_KAFKA_CONFIG_FILE"
)
AUTH_FAILURE_MEMORY_S = 30.0  # an authentication failure this recent explains a silent broker
_log_auth_failure = RateLimitedLog(_log, interval_s=30.0)  # one line for all clients at once


class AuthFailures:
    """An `error_cb` part: logs a refused authentication as one clear line (rate-limited across
    every client) and remembers it, so that a readiness check can say why Kafka is silent."""

    def __init__(self) -> None:
        self._last_s: float | None = None

    def on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._AUTHENTICATION:
            self._last_s = time.monotonic()
            # librdkafka's text names the broker and the mechanism, never the password.
            _log_auth_failure(
                logging.ERROR, "Kafka authentication failed (%s): %s", AUTH_HINT, error.str()
            )

    def recent(self) -> bool:
        return self._last_s is not None and time.monotonic() - self._last_s < AUTH_FAILURE_MEMORY_S


_NO_SECURITY_HINT = (
    " (a broker that requires SASL or TLS drops clients without it:"
    " see TICKPIPE_KAFKA_SECURITY_PROTOCOL)"
)


def _list_topics(
    admin: AdminClient,
    auth_failures: AuthFailures,
    bootstrap_servers: str,
    timeout_s: float,
    hint: str,
) -> dict[str, Any]:
    """The cluster's topics; in short slices, so that a refused login ends the wait at once."""
    deadline_s = time.monotonic() + timeout_s
    while True:
        try:
            slice_s = max(min(1.0, deadline_s - time.monotonic()), 0.1)
            topics: dict[str, Any] = admin.list_topics(timeout=slice_s).topics
            return topics
        except KafkaException as exc:
            admin.poll(0)  # serves the error callbacks: an authentication failure among them?
            if auth_failures.recent():
                raise KafkaUnavailable(
                    f"Kafka at {bootstrap_servers}: authentication failed ({AUTH_HINT})"
                ) from None
            if time.monotonic() >= deadline_s:
                raise KafkaUnavailable(
                    f"Kafka at {bootstrap_servers} did not answer within {timeout_s:g} s:"
                    f" {exc.args[0].str()}{hint}"
                ) from None


class Outages:
    """Counts one client's Kafka outages: one starts at librdkafka's "all brokers down" error
    (repeated at every failed reconnect, counted once) and ends at the first sign of a working
    broker: `up()`, or a statistics report with a broker UP where someone polls steadily."""

    def __init__(self) -> None:
        self._down = False
        self.auth_failures = AuthFailures()

    def on_error(self, error: KafkaError) -> None:
        self.auth_failures.on_error(error)
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

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        timeout_s: float = 1.5,
        *,
        properties: Mapping[str, str] | None = None,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._timeout_s = timeout_s
        self._auth_failures = AuthFailures()
        # Quiet: the services' own clients already log an outage (rate-limited).
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "log_level": 0,
            "error_cb": self._auth_failures.on_error,
            **(properties or {}),
        }
        self._admin = AdminClient(config)

    async def __call__(self) -> None:
        try:
            metadata = await asyncio.to_thread(
                self._admin.list_topics, self._topic, self._timeout_s
            )
        except KafkaException as exc:
            self._admin.poll(0)  # serves the error callbacks: an authentication failure?
            if self._auth_failures.recent():
                raise KafkaUnavailable("Kafka refused authentication") from None
            raise KafkaUnavailable(
                f"Kafka at {self._bootstrap_servers} does not answer: {exc.args[0].str()}"
            ) from None
        topic = metadata.topics.get(self._topic)
        error = "missing" if topic is None else topic.error
        if error is not None:
            raise KafkaUnavailable(f"Kafka topic {self._topic!r} is unavailable: {error}")
