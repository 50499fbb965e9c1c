"""The sliding-window mean, O(1) per value and exact.

Prices are exact decimals, so the window keeps an exact decimal running sum: adding the new
price and subtracting the evicted one never accumulates rounding error, however long the stream
runs. Only the final division rounds (to `_CONTEXT.prec` significant digits).
"""

from __future__ import annotations

from collections import deque
from decimal import Context, Decimal

# Validated prices span at most 38 digits between 10^37 and 10^-38 (core/trade.py), so a sum of
# up to 10^6 of them, or one of them times the window, needs at most 82 digits: exact at 100.
_CONTEXT = Context(prec=100)


class RollingMean:
    """Mean of the last `window` values; `None` until the window is full."""

    __slots__ = ("_sum", "_values", "window")

    def __init__(self, window: int, history: tuple[Decimal, ...] | list[Decimal] = ()) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self._values: deque[Decimal] = deque(maxlen=window)
        self._sum = Decimal(0)
        for value in history[-window:]:
            self.push(value)

    def push(self, value: Decimal) -> Decimal | None:
        """Adds a value, evicting the oldest once full; returns the new mean."""
        values = self._values
        if len(values) == self.window:
            self._sum = _CONTEXT.subtract(self._sum, values[0])
        values.append(value)
        self._sum = _CONTEXT.add(self._sum, value)
        return self.mean

    def push_compare(self, value: Decimal) -> tuple[Decimal | None, int | None]:
        """`push` then `compare` of the same value, in one call (the scorer's hot path)."""
        values = self._values
        window = self.window
        total = self._sum
        if len(values) == window:
            total = _CONTEXT.subtract(total, values[0])
        values.append(value)
        total = self._sum = _CONTEXT.add(total, value)
        if len(values) < window:
            return None, None
        scaled = _CONTEXT.multiply(value, window)
        return _CONTEXT.divide(total, window), (scaled > total) - (scaled < total)

    @property
    def mean(self) -> Decimal | None:
        if len(self._values) < self.window:
            return None
        return _CONTEXT.divide(self._sum, self.window)

    def compare(self, value: Decimal) -> int | None:
        """Sign of (value - mean) computed exactly (no division); None until full."""
        if len(self._values) < self.window:
            return None
        scaled = _CONTEXT.multiply(value, self.window)
        return (scaled > self._sum) - (scaled < self._sum)

    def __len__(self) -> int:
        return len(self._values)
