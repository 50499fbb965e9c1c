"""The only module that chooses adapters. Each back-end is imported lazily, when configured."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tickpipe.config import Settings
from tickpipe.ports import (
    TradeConsumer,
    TradeSink,
    TradeStore,
    UpdateFeed,
    UpdatePublisher,
)

if TYPE_CHECKING:
    from tickpipe.adapters.exchanges.venues import VenueSources


class MissingDependency(RuntimeError):
    """A required back-end is not configured or does not answer; the message is one line."""


class InvalidConfiguration(ValueError):
    """A setting's value is wrong (found as the adapters open); the message is one line."""


def open_source(settings: Settings) -> VenueSources:
    """Every venue of TICKPIPE_SOURCE, each with its own loop; the registry finds the modules."""
    from tickpipe.adapters.exchanges.registry import (
        SourceOptions,
        UnknownVenue,
        default_symbols,
        open_venue,
    )
    from tickpipe.adapters.exchanges.venues import VenueSources

    run_start_us = time.time_ns() // 1000
    try:
        symbols = settings.venue_symbols(default_symbols)
        sources = {
            venue: open_venue(
                venue,
                raw_symbols,
                SourceOptions(
                    url=settings.venue_url(venue),
                    idle_timeout_s=settings.exchange_idle_timeout_s,
                    sim_rate=settings.sim_rate,
                    sim_seed=settings.sim_seed,
                    run_start_us=run_start_us,
                ),
            )
            for venue, raw_symbols in symbols.items()
        }
    except (UnknownVenue, ValueError) as exc:
        raise InvalidConfiguration(f"TICKPIPE_SOURCE/TICKPIPE_SYMBOLS: {exc}") from None
    return VenueSources(sources, symbols)


async def migrate_store(database_url: str) -> list[str]:
    from tickpipe.adapters.store.errors import MigrationFailed, StoreUnavailable
    from tickpipe.adapters.store.migrate import migrate

    try:
        return await migrate(database_url)
    except (StoreUnavailable, MigrationFailed, ValueError) as exc:
        raise MissingDependency(str(exc)) from None


@contextlib.asynccontextmanager
async def open_store(
    database_url: str, *, query_timeout_s: float = 5.0
) -> AsyncIterator[TradeStore]:
    """The store; its reads (the gateway's) are cancelled after `query_timeout_s`."""
    store: TradeStore
    if database_url.startswith("sqlite:"):
        from tickpipe.adapters.store.sqlite import open_sqlite_store

        store = await open_sqlite_store(database_url, query_timeout_s=query_timeout_s)
    elif database_url.startswith(("postgresql:", "postgres:")):
        from tickpipe.adapters.store.errors import StoreUnavailable
        from tickpipe.adapters.store.postgres import open_postgres_store

        try:
            store = await open_postgres_store(database_url, query_timeout_s=query_timeout_s)
        except StoreUnavailable as exc:
            raise MissingDependency(str(exc)) from None
    else:
        from tickpipe.adapters.store.errors import describe_url

        raise MissingDependency(
            f"TICKPIPE_DATABASE_URL {describe_url(database_url)!r}: expected postgresql://..."
            " or sqlite:///path"
        )
    try:
        yield store
    finally:
        await store.close()


@dataclass(frozen=True, slots=True)
class KafkaClients:
    """What every Kafka client is opened with: the brokers, and the checked properties from
    TICKPIPE_KAFKA_CONFIG_FILE and the TICKPIPE_KAFKA_* shortcuts (SASL, TLS, tuning)."""

    bootstrap_servers: str
    properties: Mapping[str, str]


def require_kafka(settings: Settings, command: str) -> KafkaClients:
    from tickpipe.adapters.bus.kafka.cluster import check_properties
    from tickpipe.adapters.bus.kafka.properties import (
        InvalidKafkaProperties,
        merge_properties,
        parse_properties,
    )
    from tickpipe.config import read_value_file

    layers = []
    try:
        if settings.kafka_config_file:
            path = settings.kafka_config_file
            text = read_value_file("TICKPIPE_KAFKA_CONFIG_FILE", path)
            layers.append(parse_properties(text, path))
        shortcuts = settings.kafka_shortcuts()
        origins = {name: "TICKPIPE_" + _SHORTCUT_VARIABLES[name] for name in shortcuts}
        layers.append((shortcuts, origins))
        if settings.kafka_bootstrap_servers:
            bootstrap = {"bootstrap.servers": settings.kafka_bootstrap_servers}
            layers.append((bootstrap, {"bootstrap.servers": "TICKPIPE_KAFKA_BOOTSTRAP_SERVERS"}))
        properties = merge_properties(layers)
        check_properties(properties, settings.kafka_group)
    except (InvalidKafkaProperties, ValueError) as exc:
        raise MissingDependency(str(exc)) from None
    if not properties.bootstrap_servers:
        raise MissingDependency(
            f"tickpipe {command} needs Kafka: set TICKPIPE_KAFKA_BOOTSTRAP_SERVERS (host:port)"
            " or bootstrap.servers in TICKPIPE_KAFKA_CONFIG_FILE"
        )
    return KafkaClients(properties.bootstrap_servers, properties.client_config())


_SHORTCUT_VARIABLES = {
    "security.protocol": "KAFKA_SECURITY_PROTOCOL",
    "sasl.mechanism": "KAFKA_SASL_MECHANISM",
    "sasl.username": "KAFKA_SASL_USERNAME",
    "sasl.password": "KAFKA_SASL_PASSWORD",
    "ssl.ca.location": "KAFKA_SSL_CA_LOCATION",
}


def require_redis(settings: Settings, command: str) -> str:
    if not settings.redis_url:
        raise MissingDependency(
            f"tickpipe {command} needs Redis: set TICKPIPE_REDIS_URL (redis://host:port/0)"
        )
    return settings.redis_url


async def prepare_kafka(settings: Settings, command: str) -> KafkaClients:
    from tickpipe.adapters.bus.kafka import KafkaUnavailable, ensure_topics

    kafka = require_kafka(settings, command)
    try:
        await asyncio.to_thread(
            functools.partial(
                ensure_topics,
                kafka.bootstrap_servers,
                settings.kafka_topic,
                settings.kafka_partitions,
                properties=kafka.properties,
            )
        )
    except KafkaUnavailable as exc:
        raise MissingDependency(str(exc)) from None
    return kafka


def kafka_check(settings: Settings) -> Callable[[], Awaitable[None]]:
    """The /readyz check of a service that uses Kafka."""
    from tickpipe.adapters.bus.kafka import KafkaPing

    kafka = require_kafka(settings, "kafka check")
    return KafkaPing(kafka.bootstrap_servers, settings.kafka_topic, properties=kafka.properties)


@contextlib.asynccontextmanager
async def open_kafka_sink(settings: Settings, command: str) -> AsyncIterator[TradeSink]:
    from tickpipe.adapters.bus.kafka import KafkaSink

    kafka = await prepare_kafka(settings, command)
    sink = KafkaSink(
        kafka.bootstrap_servers,
        settings.kafka_topic,
        queue_max_messages=settings.kafka_queue_max,
        properties=kafka.properties,
    )
    try:
        yield sink
    finally:
        await sink.close()


@contextlib.asynccontextmanager
async def open_kafka_consumer(settings: Settings, command: str) -> AsyncIterator[TradeConsumer]:
    from tickpipe.adapters.bus.kafka import KafkaConsumer

    kafka = await prepare_kafka(settings, command)
    consumer = KafkaConsumer(
        kafka.bootstrap_servers,
        settings.kafka_topic,
        group=settings.kafka_group,
        prefetch_messages=settings.batch_max_trades,  # a batch per partition, no more
        properties=kafka.properties,
    )
    try:
        yield consumer
    finally:
        await consumer.close()


@dataclass(frozen=True, slots=True)
class Updates:
    publisher: UpdatePublisher
    feed: UpdateFeed


@contextlib.asynccontextmanager
async def open_updates(
    settings: Settings, command: str, *, embedded: bool
) -> AsyncIterator[Updates]:
    """Redis when TICKPIPE_REDIS_URL is set; the in-process pub/sub when `embedded` allows it."""
    if not settings.redis_url and embedded:
        from tickpipe.adapters.pubsub.memory import MemoryPubSub

        pubsub = MemoryPubSub(settings.sma_window)
        yield Updates(pubsub, pubsub)
        return
    from tickpipe.adapters.pubsub.redis import PubSubUnavailable, open_redis

    url = require_redis(settings, command)
    try:
        publisher, feed = await open_redis(
            url, settings.redis_channel, settings.redis_prefix, settings.sma_window
        )
    except PubSubUnavailable as exc:
        raise MissingDependency(str(exc)) from None
    try:
        yield Updates(publisher, feed)
    finally:
        await publisher.close()
        await feed.close()
