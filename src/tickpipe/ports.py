"""The few interfaces the services talk to. Adapters implement them; `wiring.py` picks which.

source -> TradeSink ~~bus~~ TradeConsumer -> Scorer -> TradeStore.write -> commit -> UpdatePublisher
                                                             TradeReader + UpdateFeed -> gateway
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

from tickpipe.core.candles import Candle
from tickpipe.core.scoring import ScoredTrade, SignalChange
from tickpipe.core.trade import MAX_CLOCK_SKEW_US, MAX_TIME_US, Trade

JsonObject = dict[str, Any]


class TradeSource(Protocol):
    """An exchange feed (or the simulated market): yields validated trades until cancelled."""

    def trades(self) -> AsyncIterator[Trade]: ...


class TradeSink(Protocol):
    """The bus, seen from the ingestor."""

    async def send(self, trade: Trade) -> None:
        """Queues one trade; waits (backpressure) while the sink's bounded queue is full."""

    async def flush(self, timeout_s: float) -> int:
        """Waits for queued trades to be delivered; returns how many are still undelivered."""

    async def close(self) -> None: ...


class BusMessage(NamedTuple):
    """One message taken from the bus: a decoded trade, or the reason it could not be decoded.
    A named tuple, not a frozen dataclass: one is made per consumed message, and a tuple is made
    in a third of the time (a frozen dataclass sets each field through object.__setattr__)."""

    trade: Trade | None
    error: str | None
    key: bytes | None
    value: bytes
    partition: int
    offset: int
    traceparent: str | None = None


RevokeHandler = Callable[[Collection[int], bool], dict[int, int]]


class TradeConsumer(Protocol):
    """The bus, seen from the processor. Never commits on its own."""

    async def poll(self, max_messages: int, timeout_s: float) -> Sequence[BusMessage]:
        """Waits up to `timeout_s` for the first message, then returns what is already there.
        A `commit` made meanwhile may wait for the poll to return: keep polls short then.
        Within a partition, messages come in offset order."""

    async def commit(self, offsets: Mapping[int, int]) -> None:
        """Stores, per partition, the offset to resume from (one past the last message done),
        for the partitions this consumer still holds."""

    async def dead_letter(self, messages: Sequence[BusMessage]) -> None:
        """Moves undecodable or invalid messages aside with their reason (`<topic>.dlq`)."""

    def on_revoke(self, handler: RevokeHandler) -> None:
        """`handler(partitions, lost)` runs on the event loop, between two awaits of its owner,
        before these partitions are taken away (`lost`: they may belong to another member
        already). It must not block. It returns the offsets still to commit for them, which
        the bus may commit before letting them go (never when lost)."""

    async def serve_group(self) -> None:
        """Lets the bus run its group protocol (rebalances: `on_revoke` may be called) without
        handing out messages; called while the processor waits on a slow store."""

    async def close(self) -> None: ...


class TradeWriter(Protocol):
    async def write(self, batch: Sequence[ScoredTrade]) -> int:
        """Stores the batch idempotently on (exchange, symbol, trade_id, time) in one transaction;
        returns how many rows were new. Order of the batch is kept (it is the processing order)."""

    async def window_prices(self, trade: Trade, count: int) -> list[Decimal]:
        """The prices of the `count` trades stored before `trade` in its (exchange, symbol)
        stream, oldest first, in processing order; used to rebuild a window after a restart."""


@dataclass(frozen=True, slots=True, order=True)
class HistoryKey:
    """A stored trade's place in history order: exchange time, then store row id (processing
    order). Pages of history are cut at keys (keyset paging), never at offsets."""

    time_us: int
    row_id: int


# After every storable trade: exchange times end a day past 2100 (core/trade.py).
END_OF_HISTORY = HistoryKey(MAX_TIME_US + MAX_CLOCK_SKEW_US + 1, 2**63 - 1)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    trades: list[ScoredTrade]
    next_key: HistoryKey | None  # where the next (older) page starts; None when this is the last


class QueryTimeout(Exception):
    """A read took longer than the store's query timeout and was cancelled (the gateway: 503)."""


class RangeTooWide(ValueError):
    """A read would scan more raw rows than allowed: `max_span_us` of time at most."""

    def __init__(self, max_span_us: int) -> None:
        hours = max_span_us / 3_600_000_000
        super().__init__(f"candles from raw trades span at most {hours:g} hours per request")
        self.max_span_us = max_span_us


class TradeReader(Protocol):
    """Reads never hold up writes; a read that runs too long raises QueryTimeout."""

    async def history(
        self, symbol: str, *, limit: int, exchange: str | None = None
    ) -> list[ScoredTrade]:
        """The last `limit` stored trades of the symbol, newest first."""

    async def history_page(
        self,
        symbol: str,
        *,
        limit: int,
        before: HistoryKey,
        start_us: int = 0,
        exchange: str | None = None,
    ) -> HistoryPage:
        """Up to `limit` trades with key < `before` and exchange time >= `start_us`, newest
        first (time, then row id, descending)."""

    async def candles(
        self,
        symbol: str,
        *,
        interval_us: int,
        from_us: int,
        to_us: int,
        exchange: str | None = None,
        max_scan_span_us: int | None = None,
    ) -> list[Candle]:
        """The candles of the bucket-aligned range [from_us, to_us), oldest first; buckets
        without trades are left out (see core/candles.py for the rules). RangeTooWide when the
        candles would come from raw trades over more than `max_scan_span_us`."""

    async def signal_changes(
        self,
        symbol: str,
        *,
        start_us: int,
        end_us: int,
        limit: int,
        exchange: str | None = None,
    ) -> list[SignalChange]:
        """The trades in [start_us, end_us] whose BUY/SELL differs from the previous BUY/SELL
        of their (exchange, symbol) stream (looked up before `start_us` if need be), in
        (time, row id) order; the newest `limit`, newest first."""

    async def latest(self, symbol: str, exchange: str | None = None) -> ScoredTrade | None: ...

    async def symbols(self) -> list[ScoredTrade]:
        """The latest stored trade of every (exchange, symbol)."""


class TradeStore(TradeWriter, TradeReader, Protocol):
    async def ping(self) -> None:
        """Raises when the database does not answer."""

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class InvalidLine:
    """A line of a recording that holds no valid trade, and why."""

    path: str
    line_number: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line_number}: {self.reason}"


class UnreadableRecording(Exception):
    """A recording that cannot be read on (corrupt archive, a zip bomb); one line naming it."""


class TradeRecording(Protocol):
    """A file of recorded trades (`tickpipe replay`), read once, in file order. Iterating may
    raise UnreadableRecording."""

    size_bytes: int
    bytes_read: int  # so far: for a progress bar

    def __iter__(self) -> Iterator[Trade | InvalidLine]: ...


class UpdatePublisher(Protocol):
    """Live updates and latest snapshots, seen from the processor."""

    async def publish(self, batch: Sequence[ScoredTrade]) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Frame:
    """One live update, serialized once as the WebSocket text frame every client receives."""

    symbol: str
    data: bytes


class UpdateFeed(Protocol):
    """Live updates and latest snapshots, seen from the gateway."""

    def frames(self) -> AsyncIterator[Sequence[Frame]]:
        """Batches of frames in publish order; re-subscribes by itself after an outage."""

    async def snapshot(self, symbol: str, exchange: str | None = None) -> JsonObject | None:
        """The latest snapshot (contract fields); the newest over exchanges if none is named."""

    async def snapshots(self) -> list[JsonObject]: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
