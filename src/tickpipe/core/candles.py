"""Candles (OHLCV bars): interval rules, the window of a query, and the exact aggregation.

Buckets are aligned on the Unix epoch in UTC (every interval divides a day, so this is also
TimescaleDB's default alignment). Within a bucket, trades are ordered by exchange time, then by
processing order: open is the first, close the last. Sums are exact decimals; only VWAP divides.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Context, Decimal
from enum import StrEnum

from tickpipe.core.trade import MAX_DECIMAL_DIGITS


class CandleInterval(StrEnum):
    S1 = "1s"
    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    H1 = "1h"
    D1 = "1d"

    @property
    def length_us(self) -> int:
        return _LENGTH_US[self]


_LENGTH_US = {
    CandleInterval.S1: 1_000_000,
    CandleInterval.M1: 60_000_000,
    CandleInterval.M5: 300_000_000,
    CandleInterval.M15: 900_000_000,
    CandleInterval.H1: 3_600_000_000,
    CandleInterval.D1: 86_400_000_000,
}

# Products of two validated amounts (38 digits each, 10^-38 .. 10^37) span at most 152 digits;
# a sum of up to 10^8 of them stays exact at 200.
_EXACT = Context(prec=200)
# The quotient is rounded once. Correct rounding is monotone and every price is exact at
# MAX_DECIMAL_DIGITS significant digits, so low <= vwap <= high survives it (at 34 digits a
# 35-digit single-trade price rounded below itself), and one price alone is its own VWAP.
_VWAP = Context(prec=MAX_DECIMAL_DIGITS)


@dataclass(frozen=True, slots=True)
class Candle:
    bucket_start_us: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal  # sum of quantities
    notional: Decimal  # sum of price x quantity (the quote volume)
    trade_count: int

    @property
    def vwap(self) -> Decimal:
        """Volume-weighted average price: sum(price x quantity) / sum(quantity)."""
        return _VWAP.divide(self.notional, self.volume)


@dataclass(frozen=True, slots=True)
class CandleWindow:
    """Bucket-aligned, half-open [from_us, to_us): the whole intervals a query covers."""

    from_us: int
    to_us: int


def bucket_start_us(time_us: int, interval_us: int) -> int:
    return time_us - time_us % interval_us


def candle_window(
    interval_us: int, limit: int, *, start_us: int | None, end_us: int | None
) -> CandleWindow:
    """At most `limit` intervals: from the one holding `start_us` (not past the one holding
    `end_us`), or else the `limit` intervals ending with the one holding `end_us`."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    span_us = (limit - 1) * interval_us
    if start_us is not None:
        first_us = bucket_start_us(start_us, interval_us)
        last_us = first_us + span_us
        if end_us is not None:
            last_us = min(last_us, bucket_start_us(end_us, interval_us))
    elif end_us is not None:
        last_us = bucket_start_us(end_us, interval_us)
        first_us = max(last_us - span_us, 0)
    else:
        raise ValueError("a candle window needs a start or an end")
    return CandleWindow(first_us, last_us + interval_us)


def aggregate_candles(
    trades: Iterable[tuple[int, Decimal, Decimal]], interval_us: int
) -> Iterator[Candle]:
    """Candles of (exchange time us, price, quantity) rows given in (time, processing) order,
    oldest first; O(1) memory. Only buckets that have trades yield a candle."""
    add, multiply = _EXACT.add, _EXACT.multiply
    bucket_us: int | None = None
    open_ = high = low = close = volume = notional = Decimal(0)
    count = 0
    for time_us, price, quantity in trades:
        start_us = time_us - time_us % interval_us
        if start_us != bucket_us:
            if bucket_us is not None:
                yield Candle(bucket_us, open_, high, low, close, volume, notional, count)
            bucket_us, open_, high, low = start_us, price, price, price
            volume, notional, count = Decimal(0), Decimal(0), 0
        elif price > high:
            high = price
        elif price < low:
            low = price
        close = price
        volume = add(volume, quantity)
        notional = add(notional, multiply(price, quantity))
        count += 1
    if bucket_us is not None:
        yield Candle(bucket_us, open_, high, low, close, volume, notional, count)
