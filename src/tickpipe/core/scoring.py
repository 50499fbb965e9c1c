"""Scoring: each trade gets the SMA of its (exchange, symbol) window and a signal."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from tickpipe.core.rolling import RollingMean
from tickpipe.core.signal import Signal, signal_from_comparison
from tickpipe.core.trade import Trade


@dataclass(frozen=True, slots=True)
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


class Scorer:
    """Per-(exchange, symbol) rolling windows. Memory: one window of `window` prices per stream."""

    __slots__ = ("_windows", "window")

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"SMA window must be >= 1, got {window}")
        self.window = window
        self._windows: dict[tuple[str, str], RollingMean] = {}

    def has_window(self, key: tuple[str, str]) -> bool:
        return key in self._windows

    def seed(self, key: tuple[str, str], prices: Iterable[Decimal]) -> None:
        """Starts a stream's window from its stored history (oldest first), e.g. after a restart."""
        self._windows[key] = RollingMean(self.window, list(prices))

    def forget_all(self) -> None:
        """Drops every window (after a rebalance they are rebuilt from the store on demand)."""
        self._windows.clear()

    def score(self, trade: Trade) -> ScoredTrade:
        window = self._windows.get(trade.key)
        if window is None:
            window = self._windows[trade.key] = RollingMean(self.window)
        sma = window.push(trade.price)
        return ScoredTrade(trade, sma, signal_from_comparison(window.compare(trade.price)))
