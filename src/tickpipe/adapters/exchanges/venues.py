"""Several venues as one TradeSource, each venue isolated from the others.

Every venue runs its own source (its own reconnect loop, backoff and counters) in its own task.
A venue that fails for good (a subscription it refuses, a bug) is logged, reported by `check`
and left stopped; the others go on. Only when every venue has stopped does `trades()` raise,
with the first failure, so a lone venue fails exactly as it did on its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

from tickpipe.core.trade import Trade
from tickpipe.ports import TradeSource
from tickpipe.telemetry import metrics
from tickpipe.telemetry.probes import DependencyFailing

log = logging.getLogger(__name__)

QUEUE_MAX_TRADES = 10_000


class VenueEnded(RuntimeError):
    """A venue's source returned, which a live source never does."""


@dataclass(frozen=True, slots=True)
class _Stopped:
    venue: str
    error: BaseException


class VenueSources:
    """The trades of every venue, interleaved as they arrive; `check` is the /readyz check."""

    def __init__(
        self,
        sources: Mapping[str, TradeSource],
        raw_symbols: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if not sources:
            raise ValueError("no venue to follow")
        self.sources = dict(sources)
        self.raw_symbols = {venue: tuple(s) for venue, s in (raw_symbols or {}).items()}
        self.stopped: dict[str, str] = {}  # venue -> why it stopped for good

    def describe(self) -> str:
        """`binance BTCUSDT,ETHUSDT; coinbase BTC-USD` for the start-up line."""
        return "; ".join(
            f"{venue} {','.join(self.raw_symbols.get(venue, ()))}".strip() for venue in self.sources
        )

    async def trades(self) -> AsyncIterator[Trade]:
        self.stopped.clear()
        if len(self.sources) == 1:
            # One venue needs no queue between tasks: its trades straight through.
            [(venue, source)] = self.sources.items()
            try:
                async for trade in source.trades():
                    yield trade
                error: Exception = VenueEnded(f"{venue}: the source ended")
            except Exception as exc:  # noqa: BLE001 - recorded for `check`, then raised
                error = exc
            self.stopped[venue] = str(error) or type(error).__name__
            metrics.venue_up.labels(venue).set(0)
            raise error
        queue: asyncio.Queue[Trade | _Stopped] = asyncio.Queue(QUEUE_MAX_TRADES)
        tasks = [
            asyncio.create_task(self._pump(venue, source, queue), name=f"venue-{venue}")
            for venue, source in self.sources.items()
        ]
        first_error: BaseException | None = None
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Trade):
                    yield item
                    continue
                first_error = first_error or item.error
                self.stopped[item.venue] = str(item.error) or type(item.error).__name__
                metrics.venue_up.labels(item.venue).set(0)
                if len(self.stopped) == len(self.sources):
                    raise first_error
                log.error(
                    "%s stopped, the other venues go on: %s", item.venue, self.stopped[item.venue]
                )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pump(
        self, venue: str, source: TradeSource, queue: asyncio.Queue[Trade | _Stopped]
    ) -> None:
        try:
            async for trade in source.trades():
                await queue.put(trade)
            error: Exception = VenueEnded(f"{venue}: the source ended")
        except Exception as exc:  # noqa: BLE001 - one venue's failure must not stop the others
            error = exc
        await queue.put(_Stopped(venue, error))

    async def check(self) -> None:
        """Raises DependencyFailing naming each venue that stopped or has a connection down."""
        failing = dict(self.stopped)
        for venue, source in self.sources.items():
            down = getattr(source, "down", None)
            reason = down() if callable(down) and venue not in failing else None
            if reason:
                failing[venue] = reason
        if failing:
            raise DependencyFailing(failing)
