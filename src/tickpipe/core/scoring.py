"""Scoring: each trade gets the SMA of its (exchange, symbol) window and a signal."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from decimal import Decimal

from tickpipe.core.records import record
from tickpipe.core.rolling import RollingMean
from tickpipe.core.signal import Signal, signal_from_comparison
from tickpipe.core.trade import Trade


@record
class ScoredTrade:
    trade: Trade
    sma: Decimal | None
    signal: Signal


@dataclass(frozen=True, slots=True)
class SignalChange:
    """A stored trade whose BUY/SELL signal differs from the previous BUY/SELL of its stream
    (HOLDs in between do not count)."""

    scored: ScoredTrade
    previous: Signal


StreamKey = tuple[str, str]  # (exchange, symbol)
# signal_from_comparison for every possible comparison, looked up instead of called.
_SIGNALS = {c: signal_from_comparison(c) for c in (None, -1, 0, 1)}


class Scorer:
    """Per-(exchange, symbol) rolling windows, least recently used first. Memory: one window of
    `window` prices per stream, for at most about `max_streams` streams (see `evict`)."""

    __slots__ = ("_windows", "max_streams", "window")

    def __init__(self, window: int, max_streams: int = 10_000) -> None:
        if window < 1:
            raise ValueError(f"SMA window must be >= 1, got {window}")
        if max_streams < 1:
            raise ValueError(f"max_streams must be >= 1, got {max_streams}")
        self.window = window
        self.max_streams = max_streams
        self._windows: OrderedDict[StreamKey, RollingMean] = OrderedDict()

    def has_window(self, key: tuple[str, str]) -> bool:
        return key in self._windows

    def seed(self, key: tuple[str, str], prices: Iterable[Decimal]) -> None:
        """Starts a stream's window from its stored history (oldest first), e.g. after a restart."""
        self._windows[key] = RollingMean(self.window, list(prices))

    def forget(self, keys: Collection[StreamKey]) -> None:
        """Drops these streams' windows (rebuilt from the store when next needed)."""
        for key in keys:
            self._windows.pop(key, None)

    def forget_all(self) -> None:
        self._windows.clear()

    def evict(self) -> list[StreamKey]:
        """Drops the least recently scored windows beyond `max_streams`; returns their keys."""
        evicted = []
        while len(self._windows) > self.max_streams:
            key, _ = self._windows.popitem(last=False)
            evicted.append(key)
        return evicted

    def __len__(self) -> int:
        return len(self._windows)

    def score(self, trade: Trade) -> ScoredTrade:
        windows = self._windows
        key = (trade.exchange, trade.symbol)
        window = windows.get(key)
        if window is None:
            window = windows[key] = RollingMean(self.window)
        else:
            windows.move_to_end(key)
        sma, comparison = window.push_compare(trade.price)
        return ScoredTrade(trade, sma, _SIGNALS[comparison])
