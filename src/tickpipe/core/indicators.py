"""Indicators beyond the SMA, each O(1) per trade: EMA and VWAP over the last N trades.

The SMA (rolling.py) drives the signal; these are extra readings of the same window length.
"""

from __future__ import annotations

import math
from collections import deque
from decimal import Context, Decimal

from tickpipe.core.trade import MAX_DECIMAL_DIGITS

# Sums of price x quantity over a window: see candles.py for why 200 digits are exact.
_EXACT = Context(prec=200)
# Wide enough for any validated price, so the VWAP stays within the window's prices (candles.py).
_RESULT = Context(prec=MAX_DECIMAL_DIGITS)


class Ema:
    """Exponential moving average with alpha = 2 / (window + 1); `None` until `window` prices
    were seen, then seeded with their mean (the usual TA convention) and updated recursively:
    ema = alpha * price + (1 - alpha) * ema. Float: an error is damped by (1 - alpha) each
    step, so it cannot build up however long the stream runs. The EMA is a weighted mean of
    the prices seen, so it is kept within their range: float rounding alone would put the EMA
    of a constant price an ulp beside it."""

    __slots__ = ("_alpha", "_count", "_high", "_keep", "_low", "_seed_sum", "_value", "window")

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self._alpha = 2.0 / (window + 1)
        self._keep = 1.0 - self._alpha
        self._count = 0
        self._seed_sum = 0.0
        self._low = math.inf
        self._high = -math.inf
        self._value: float | None = None

    def push(self, price: Decimal) -> float | None:
        """Adds a price; returns the new EMA."""
        value = float(price)
        if value < self._low:
            self._low = value
        if value > self._high:
            self._high = value
        if self._value is not None:
            # Not `ema += alpha * (price - ema)`: after a jump from 65000 to 0.00001 that
            # difference cancels catastrophically; this form errs only relative to its terms.
            ema = self._alpha * value + self._keep * self._value
        else:
            self._count += 1
            self._seed_sum += value
            if self._count < self.window:
                return None
            ema = self._seed_sum / self.window
        self._value = self._low if ema < self._low else self._high if ema > self._high else ema
        return self._value

    @property
    def value(self) -> float | None:
        return self._value


class RollingVwap:
    """Volume-weighted average price of the last `window` trades: sum(p x q) / sum(q), from
    exact decimal running sums (add the new trade, subtract the evicted one: no drift).
    `None` until the window is full."""

    __slots__ = ("_notional", "_trades", "_volume", "window")

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self._trades: deque[tuple[Decimal, Decimal]] = deque(maxlen=window)
        self._notional = Decimal(0)
        self._volume = Decimal(0)

    def push(self, price: Decimal, quantity: Decimal) -> Decimal | None:
        """Adds a trade, evicting the oldest once full; returns the new VWAP."""
        trades = self._trades
        if len(trades) == self.window:
            old_notional, old_quantity = trades[0]
            self._notional = _EXACT.subtract(self._notional, old_notional)
            self._volume = _EXACT.subtract(self._volume, old_quantity)
        notional = _EXACT.multiply(price, quantity)
        trades.append((notional, quantity))
        self._notional = _EXACT.add(self._notional, notional)
        self._volume = _EXACT.add(self._volume, quantity)
        return self.value

    @property
    def value(self) -> Decimal | None:
        if len(self._trades) < self.window:
            return None
        return _RESULT.divide(self._notional, self._volume)

    def __len__(self) -> int:
        return len(self._trades)
