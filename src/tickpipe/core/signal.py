"""The signal rule: BUY above the SMA, SELL below, HOLD at it or while the SMA is unknown."""

from __future__ import annotations

from enum import StrEnum


class Signal(StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"


def signal_from_comparison(price_vs_sma: int | None) -> Signal:
    """`price_vs_sma` is the sign of (price - SMA), or None while the SMA is unknown."""
    if price_vs_sma is None or price_vs_sma == 0:
        return Signal.HOLD
    return Signal.BUY if price_vs_sma > 0 else Signal.SELL
