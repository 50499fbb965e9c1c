"""Redis pub/sub: live updates on one channel, the latest snapshot of each stream in one hash.

    PUBLISH <channel> <frames.encode_updates(batch)>      one message per batch, not per trade
    HSET <prefix>snapshots exchange:symbol <snapshot JSON>

Pub/sub delivers at most once: updates published while the gateway is re-subscribing are lost,
the snapshots hash (and the database) carry the state across such a gap.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import cast
from urllib.parse import urlsplit, urlunsplit

import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from tickpipe.adapters.pubsub.frames import (
    decode_updates,
    encode_updates,
    latest_snapshots,
    pick_snapshot,
)
from tickpipe.core.scoring import ScoredTrade
from tickpipe.ports import Frame, JsonObject
from tickpipe.telemetry import metrics
from tickpipe.telemetry.logs import fields

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 3.0
SOCKET_TIMEOUT_S = 5.0
# The feed pings its idle pub/sub connection this often, so a silently dead one is noticed.
HEALTH_CHECK_INTERVAL_S = 10
# How long one read of the pub/sub connection waits; also bounds how late a health check runs.
LISTEN_POLL_S = 1.0
RESUBSCRIBE_MIN_DELAY_S = 0.1
RESUBSCRIBE_MAX_DELAY_S = 5.0


class PubSubUnavailable(RuntimeError):
    """Redis did not answer when the service started."""


def new_client(url: str, client_name: str, health_check_interval_s: int = 0) -> Redis:
    """A client with this module's timeouts; it connects lazily, on its first command."""
    # No retries inside redis-py: the processor retries publishes with its own backoff and
    # metrics, and the feed's re-subscribe loop below is the single reconnect policy. A
    # connection the server closed fails one call and is replaced on the next.
    return Redis.from_url(
        url,
        client_name=client_name,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_keepalive=True,
        health_check_interval=health_check_interval_s,
        retry=Retry(NoBackoff(), retries=0),
    )


class RedisPublisher:
    """UpdatePublisher: one round trip per batch, whatever its size."""

    def __init__(self, client: Redis, channel: str, prefix: str, window: int) -> None:
        self._client = client
        self._channel = channel
        self._snapshots_key = f"{prefix}snapshots"
        self._window = window

    async def publish(self, batch: Sequence[ScoredTrade]) -> None:
        """Raises redis.exceptions.ConnectionError/TimeoutError; the caller retries."""
        if not batch:
            return
        # redis-py types `mapping` with invariant keys, so a dict[str, bytes] must be widened.
        snapshots = cast("Mapping[FieldT, EncodableT]", latest_snapshots(batch, self._window))
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.publish(self._channel, encode_updates(batch))
            pipe.hset(self._snapshots_key, mapping=snapshots)
            await pipe.execute()

    async def ping(self) -> None:
        await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()


class RedisFeed:
    """UpdateFeed: every `frames()` iterator holds its own subscription and keeps it alive."""

    def __init__(self, client: Redis, channel: str, prefix: str) -> None:
        self._client = client
        self._channel = channel
        self._snapshots_key = f"{prefix}snapshots"

    async def frames(self) -> AsyncIterator[Sequence[Frame]]:
        """Batches of frames in publish order, until the consumer stops iterating."""
        delay_s = RESUBSCRIBE_MIN_DELAY_S
        subscribed = True  # the service started with Redis answering
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                subscribed = True
                while True:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=LISTEN_POLL_S
                    )
                    if message is not None and message["type"] == "message":
                        delay_s = RESUBSCRIBE_MIN_DELAY_S
                        yield decode_updates(message["data"])
            except (RedisError, OSError) as exc:
                metrics.feed_resubscribes.inc()
                if subscribed:  # the first failure of an outage, not each retry during it
                    metrics.dependency_outages.labels("redis").inc()
                    subscribed = False
                log.warning(
                    "update feed lost channel %r (%s: %s); re-subscribing in about %.1f s",
                    self._channel,
                    type(exc).__name__,
                    exc,
                    delay_s,
                    extra=fields(
                        "feed_resubscribing", dependency="redis", error=str(exc), delay_s=delay_s
                    ),
                )
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py
            # Jitter keeps many gateways from re-subscribing in lockstep after a Redis restart.
            await asyncio.sleep(delay_s * random.uniform(0.5, 1.0))
            delay_s = min(delay_s * 2, RESUBSCRIBE_MAX_DELAY_S)

    async def snapshot(self, symbol: str, exchange: str | None = None) -> JsonObject | None:
        if exchange is None:
            return pick_snapshot(await self.snapshots(), symbol, None)
        data = await self._client.hget(self._snapshots_key, f"{exchange}:{symbol}")
        return None if data is None else dict(orjson.loads(data))

    async def snapshots(self) -> list[JsonObject]:
        stored = await self._client.hgetall(self._snapshots_key)
        return [orjson.loads(data) for data in stored.values()]

    async def ping(self) -> None:
        await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()


async def open_redis(
    url: str, channel: str, prefix: str, window: int, client_name: str = "tickpipe"
) -> tuple[RedisPublisher, RedisFeed]:
    """Both sides over their own connections (named `<client_name>-publisher` / `-feed` in
    CLIENT LIST). Raises PubSubUnavailable if Redis does not answer within CONNECT_TIMEOUT_S."""
    publisher_client = new_client(url, f"{client_name}-publisher")
    feed_client = new_client(url, f"{client_name}-feed", HEALTH_CHECK_INTERVAL_S)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await publisher_client.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        await publisher_client.aclose()
        await feed_client.aclose()
        reason = str(exc) or type(exc).__name__
        raise PubSubUnavailable(f"Redis at {redact_url(url)} does not answer: {reason}") from None
    return (
        RedisPublisher(publisher_client, channel, prefix, window),
        RedisFeed(feed_client, channel, prefix),
    )


def redact_url(url: str) -> str:
    """The URL without its password, fit for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))
