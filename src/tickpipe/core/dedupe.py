"""Per-symbol trade-id filters: drop what a venue sends twice (replays after a reconnect).

Two kinds, chosen by the venue: `SequentialIds` where ids count up by one per symbol (Binance,
Kraken) — it also sees gaps; `RecentIds` where ids are opaque text (Coinbase). Both use bounded
memory per symbol.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Admission:
    new: bool
    missing: int = 0  # ids skipped just before this one (a gap), for sequential ids only


NEW = Admission(new=True)
SEEN = Admission(new=False)


class TradeIdFilter(Protocol):
    def admit(self, symbol: Hashable, trade_id: str) -> Admission: ...


class SequentialIds:
    """Drops ids at or below the highest seen; counts ids skipped above it."""

    def __init__(self, reset_after: int = 1_000_000) -> None:
        # An id this far below the highest one is not a replay but a venue that restarted its
        # sequence (testnets do); following it beats dropping every trade from then on.
        self._reset_after = reset_after
        self._last: dict[Hashable, int] = {}

    def admit(self, symbol: Hashable, trade_id: str) -> Admission:
        try:
            number = int(trade_id)
        except ValueError:
            return Admission(new=True)  # not sequential after all: nothing to compare
        last = self._last.get(symbol)
        if last is None or number < last - self._reset_after:
            self._last[symbol] = number
            return Admission(new=True)
        if number <= last:
            return Admission(new=False)
        self._last[symbol] = number
        return Admission(new=True, missing=number - last - 1)


class RecentIds:
    """Drops ids among the last `window` seen for the symbol."""

    def __init__(self, window: int = 4_096) -> None:
        self._window = window
        self._order: dict[Hashable, deque[str]] = {}
        self._seen: dict[Hashable, set[str]] = {}

    def admit(self, symbol: Hashable, trade_id: str) -> Admission:
        seen = self._seen.get(symbol)
        if seen is None:
            seen = self._seen[symbol] = set()
            self._order[symbol] = deque()
        elif trade_id in seen:
            return SEEN
        order = self._order[symbol]
        if len(order) >= self._window:
            seen.discard(order.popleft())
        order.append(trade_id)
        seen.add(trade_id)
        return NEW

    def forget(self, symbols: Iterable[Hashable]) -> None:
        """Drops what was seen of these symbols (a revoked or evicted stream)."""
        for symbol in symbols:
            self._seen.pop(symbol, None)
            self._order.pop(symbol, None)

    def __len__(self) -> int:
        return len(self._seen)
