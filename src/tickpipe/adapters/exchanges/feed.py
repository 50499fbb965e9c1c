"""The one reconnect loop every exchange source shares. It knows no venue.

Per connection: connect -> send the venue's subscribe messages -> read frames (a silent
connection is dropped after the idle timeout) -> the venue's pure `parse_frame` -> unknown
symbols and duplicate trade ids dropped -> Trades out. Whatever ends a connection, the next one
starts after a capped, fully jittered exponential backoff; only a subscription the exchange
refuses ends the source, with `SubscriptionRejected`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import re
import time
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException
from websockets.frames import CloseCode
from websockets.uri import parse_uri

from tickpipe.adapters.exchanges.frames import EventKind, ParseResult, RejectReason
from tickpipe.backoff import backoff_delay_s
from tickpipe.core.dedupe import RecentIds, SequentialIds, TradeIdFilter
from tickpipe.core.trade import Trade
from tickpipe.telemetry import metrics
from tickpipe.telemetry.logs import fields

log = logging.getLogger(__name__)

Emit = Callable[[Trade], Awaitable[None]]


class SubscriptionRejected(Exception):
    """The exchange refused to stream these symbols (e.g. unknown to it). Retrying won't help."""

    def __init__(self, exchange: str, raw_symbols: Sequence[str], reason: str) -> None:
        self.exchange = exchange
        self.raw_symbols = tuple(raw_symbols)
        self.reason = reason
        names = ", ".join(self.raw_symbols) or "the requested symbols"
        super().__init__(f"{exchange} rejected the subscription to {names}: {reason}")


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    """One WebSocket connection: where to connect, what to send, which symbols it carries."""

    url: str
    subscribe_messages: tuple[str, ...]
    raw_symbols: tuple[str, ...]
    symbols: frozenset[str]  # normalized symbols whose trades may arrive on this connection


@dataclass(frozen=True, slots=True)
class Venue:
    """Everything the loop needs to know about an exchange, as data and pure functions."""

    name: str
    default_url: str
    # (raw symbols, url) -> connections; raises SubscriptionRejected for symbols it can't carry
    plan_connections: Callable[[Sequence[str], str], list[ConnectionPlan]]
    parse_frame: Callable[[str | bytes, int], ParseResult]
    sequential_ids: bool
    # True: the venue sends application heartbeats, so a connection silent for the idle
    # timeout is dead. False: WebSocket pings (timed out after half the idle timeout) are the
    # only sign of life, because a quiet market is not a dead connection.
    heartbeats: bool
    max_connection_age_s: float | None = None
    send_interval_s: float = 0.25  # spacing of our own messages (venue rate limits)


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """Tuning of the loop. The defaults suit the live venues; tests shrink the times."""

    idle_timeout_s: float = 30.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    healthy_after_s: float = 10.0  # a connection that stayed up this long resets the backoff
    open_timeout_s: float = 10.0
    close_timeout_s: float = 2.0
    max_frame_bytes: int = 1 << 20
    max_connection_age_s: float | None = None  # None: the venue's own limit, if any
    queue_max: int = 10_000
    log_interval_s: float = 10.0
    dedupe_window: int = 4_096


class RateLimitedLog:
    """Logs the first event at once, then at most one summary line per interval."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last_logged = -math.inf
        self._pending: Counter[str] = Counter()

    def __call__(self, what: str, key: str, detail: str) -> None:
        now = self._clock()
        self._pending[key] += 1
        if now - self._last_logged < self._interval_s:
            return
        counts = ", ".join(f"{k}: {n}" for k, n in sorted(self._pending.items()))
        self._logger.warning(
            "%s (%s); latest: %s", what, counts, detail, extra={"counts": dict(self._pending)}
        )
        self._pending.clear()
        self._last_logged = now


@dataclass(frozen=True, slots=True)
class _Ended:
    why: str
    healthy: bool
    immediate: bool = False  # reconnect at once (planned rotation), no backoff


def validate_url(url: str) -> str:
    """Raises ValueError for anything that is not a ws:// or wss:// URL."""
    try:
        parse_uri(url)
    except InvalidURI as exc:
        raise ValueError(f"invalid exchange URL {url!r}: {exc}") from None
    return url


def _named_symbols(raw_symbols: Sequence[str], detail: str) -> tuple[str, ...]:
    return tuple(
        raw
        for raw in raw_symbols
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(raw)}(?![A-Za-z0-9])", detail, re.IGNORECASE)
    )


class ExchangeFeed:
    """A TradeSource for one venue: yields validated, deduplicated trades until cancelled."""

    def __init__(
        self,
        venue: Venue,
        raw_symbols: Sequence[str],
        url: str | None = None,
        settings: FeedSettings | None = None,
    ) -> None:
        if not raw_symbols:
            raise ValueError(f"{venue.name} needs at least one symbol")
        self.venue = venue
        self.raw_symbols = tuple(raw_symbols)
        self.url = validate_url(url or venue.default_url)
        self.settings = settings or FeedSettings()
        self._rejections = RateLimitedLog(log, self.settings.log_interval_s)
        self._gaps = RateLimitedLog(log, self.settings.log_interval_s)
        self._planned = 0  # connections trades() keeps open
        self._open = 0  # of those, open now

    def down(self) -> str | None:
        """Why this venue is not fully connected now, or None when every connection is open."""
        if not self._planned:
            return "not started"
        if self._open < self._planned:
            return f"{self._planned - self._open} of {self._planned} connections down"
        return None

    def connection_plans(self) -> list[ConnectionPlan]:
        """The connections this feed opens; raises SubscriptionRejected for unusable symbols."""
        return self.venue.plan_connections(self.raw_symbols, self.url)

    async def trades(self) -> AsyncGenerator[Trade, None]:
        plans = self.connection_plans()
        self._planned = len(plans)
        ids: TradeIdFilter = (
            SequentialIds() if self.venue.sequential_ids else RecentIds(self.settings.dedupe_window)
        )
        queue: asyncio.Queue[Trade | Exception] = asyncio.Queue(self.settings.queue_max)
        workers = [
            asyncio.create_task(self._run(plan, ids, queue), name=f"{self.venue.name}-feed-{n}")
            for n, plan in enumerate(plans)
        ]
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self._planned = 0

    async def _run(
        self, plan: ConnectionPlan, ids: TradeIdFilter, queue: asyncio.Queue[Trade | Exception]
    ) -> None:
        try:
            await self._keep_connected(plan, ids, queue.put)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            await queue.put(exc)

    async def _keep_connected(self, plan: ConnectionPlan, ids: TradeIdFilter, emit: Emit) -> None:
        name, settings = self.venue.name, self.settings
        attempt = 0
        while True:
            metrics.exchange_reconnects.labels(name).inc()
            ended = await self._session(plan, ids, emit)
            if ended.immediate:
                attempt, delay_s = 0, 0.0
                log.info(
                    "%s: %s; reconnecting now",
                    name,
                    ended.why,
                    extra=fields(
                        "exchange_reconnecting", venue=name, reason=ended.why, delay_s=0.0
                    ),
                )
            else:
                if ended.healthy:
                    attempt = 0
                delay_s = backoff_delay_s(
                    attempt, settings.backoff_initial_s, settings.backoff_max_s
                )
                attempt += 1
                log.warning(
                    "%s: %s; reconnecting in %.2f s",
                    name,
                    ended.why,
                    delay_s,
                    extra=fields(
                        "exchange_reconnecting", venue=name, reason=ended.why, delay_s=delay_s
                    ),
                )
            await asyncio.sleep(delay_s)

    async def _session(self, plan: ConnectionPlan, ids: TradeIdFilter, emit: Emit) -> _Ended:
        venue, settings = self.venue, self.settings
        loop = asyncio.get_running_loop()
        ping_s = max(0.25, min(20.0, settings.idle_timeout_s / 2))
        try:
            ws = await connect(
                plan.url,
                max_size=settings.max_frame_bytes,
                open_timeout=settings.open_timeout_s,
                ping_interval=ping_s,
                ping_timeout=ping_s,
                close_timeout=settings.close_timeout_s,
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            return _Ended(f"could not connect to {urlsplit(plan.url).netloc}: {exc}", False)
        opened_s = loop.time()
        self._connected(+1)
        max_age_s = settings.max_connection_age_s or venue.max_connection_age_s
        retire_at_s = opened_s + max_age_s if max_age_s else math.inf
        confirmed = False  # the venue acknowledged us or sent a trade

        def ended(why: str, immediate: bool = False) -> _Ended:
            return _Ended(why, loop.time() - opened_s >= settings.healthy_after_s, immediate)

        log.info(
            "%s: connected to %s for %d symbols",
            venue.name,
            urlsplit(plan.url).netloc,
            len(plan.raw_symbols),
            extra=fields(
                "exchange_connected",
                venue=venue.name,
                host=urlsplit(plan.url).netloc,
                symbols=len(plan.raw_symbols),
            ),
        )
        try:
            for n, message in enumerate(plan.subscribe_messages):
                if n:
                    await asyncio.sleep(venue.send_interval_s)
                await ws.send(message)
            while True:
                now_s = loop.time()
                if now_s >= retire_at_s:
                    return ended(f"connection reached its maximum age of {max_age_s} s", True)
                wait_s = retire_at_s - now_s
                if venue.heartbeats:
                    wait_s = min(wait_s, settings.idle_timeout_s)
                try:
                    async with asyncio.timeout(None if math.isinf(wait_s) else wait_s):
                        frame = await ws.recv()
                except TimeoutError:
                    if loop.time() >= retire_at_s:
                        continue
                    return ended(f"no data or heartbeat for {settings.idle_timeout_s} s")
                result = self._parse(frame)
                for trade in result.trades:
                    if await self._accept(trade, plan, ids, emit):
                        confirmed = True
                for event in result.events:
                    if event.kind is EventKind.ACK:
                        confirmed = True
                    elif event.kind is EventKind.SHUTDOWN:
                        return ended(
                            f"the exchange is shutting the connection down ({event.detail})", True
                        )
                    elif event.kind is EventKind.ERROR:
                        named = event.raw_symbols or _named_symbols(plan.raw_symbols, event.detail)
                        if named or not confirmed:
                            # An error in answer to our subscription: permanent, not a reason
                            # to reconnect in a loop.
                            raise SubscriptionRejected(
                                venue.name, named or plan.raw_symbols, event.detail
                            )
                        return ended(f"the exchange reported an error: {event.detail}")
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == CloseCode.MESSAGE_TOO_BIG:
                self._reject(RejectReason.OVERSIZE, f"frame over {settings.max_frame_bytes} bytes")
            return ended(f"connection closed ({exc})")
        finally:
            self._connected(-1)
            await ws.close()

    def _connected(self, change: int) -> None:
        self._open += change
        metrics.exchange_connections.labels(self.venue.name).inc(change)
        metrics.venue_up.labels(self.venue.name).set(self.down() is None)

    def _parse(self, frame: str | bytes) -> ParseResult:
        ingest_time_us = time.time_ns() // 1000
        try:
            result = self.venue.parse_frame(frame, ingest_time_us)
        except Exception as exc:  # noqa: BLE001 - a parser bug drops the frame, not the feed
            self._reject(RejectReason.PARSER_ERROR, repr(exc)[:120])
            return ParseResult()
        for rejection in result.rejections:
            self._reject(rejection.reason, rejection.detail)
        return result

    async def _accept(
        self, trade: Trade, plan: ConnectionPlan, ids: TradeIdFilter, emit: Emit
    ) -> bool:
        name = self.venue.name
        if trade.symbol not in plan.symbols:
            self._reject(RejectReason.UNKNOWN_SYMBOL, f"a trade of {trade.symbol}, not subscribed")
            return False
        admission = ids.admit(trade.symbol, trade.trade_id)
        if not admission.new:
            metrics.duplicate_trades_dropped.labels(name).inc()
            return False
        if admission.missing:
            symbol = metrics.symbol_label(name, trade.symbol)
            metrics.trade_id_gaps.labels(name, symbol).inc(admission.missing)
            self._gaps(
                f"{name}: trade ids missing",
                trade.symbol,
                f"{admission.missing} ids missing before {trade.symbol} {trade.trade_id}",
            )
        await emit(trade)
        return True

    def _reject(self, reason: RejectReason, detail: str) -> None:
        metrics.frames_rejected.labels(self.venue.name, reason).inc()
        self._rejections(f"{self.venue.name}: frames dropped", reason, detail)


def exchange_source(
    venue: Venue,
    raw_symbols: Sequence[str],
    url: str | None,
    idle_timeout_s: float,
    *,
    settings: FeedSettings | None = None,
) -> ExchangeFeed:
    """Trades of `venue` for `raw_symbols` (its own notation); `url` None -> its public endpoint."""
    tuned = dataclasses.replace(settings or FeedSettings(), idle_timeout_s=idle_timeout_s)
    return ExchangeFeed(venue, raw_symbols, url, tuned)
