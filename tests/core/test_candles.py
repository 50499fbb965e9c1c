"""Candle rules: intervals, the window a query covers, and the exact aggregation checked against
a naive group-by."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.strategies import EXTREME_AMOUNTS, exact_decimals, extreme_amounts, prices
from tickpipe.core.candles import (
    Candle,
    CandleInterval,
    CandleWindow,
    aggregate_candles,
    bucket_start_us,
    candle_window,
)

MINUTE_US = 60_000_000
DAY_US = 86_400_000_000

Row = tuple[int, Decimal, Decimal]
rows = st.lists(
    st.tuples(
        st.integers(0, 3 * DAY_US),
        st.one_of(prices(), exact_decimals(), extreme_amounts()),
        st.one_of(prices(), extreme_amounts()),
    ),
    max_size=60,
)
intervals = st.sampled_from(list(CandleInterval))


def naive_candles(trades: list[Row], interval_us: int) -> list[Candle]:
    """Group by bucket; open/close by (time, position in the input); sums exact at 300 digits."""
    buckets: dict[int, list[tuple[int, int, Decimal, Decimal]]] = {}
    for order, (time_us, price, quantity) in enumerate(trades):
        buckets.setdefault(time_us // interval_us * interval_us, []).append(
            (time_us, order, price, quantity)
        )
    result = []
    for start_us in sorted(buckets):
        members = sorted(buckets[start_us])
        with localcontext(prec=300):
            volume = sum((m[3] for m in members), Decimal(0))
            notional = sum((m[2] * m[3] for m in members), Decimal(0))
        result.append(
            Candle(
                start_us,
                members[0][2],
                max(m[2] for m in members),
                min(m[2] for m in members),
                members[-1][2],
                volume,
                notional,
                len(members),
            )
        )
    return result


def test_interval_lengths_divide_a_day() -> None:
    """Every interval divides a day, so epoch-aligned buckets are also midnight-aligned."""
    lengths_us = {interval.value: interval.length_us for interval in CandleInterval}
    assert lengths_us == {
        "1s": 1_000_000,
        "1m": MINUTE_US,
        "5m": 5 * MINUTE_US,
        "15m": 15 * MINUTE_US,
        "1h": 60 * MINUTE_US,
        "1d": DAY_US,
    }
    assert all(DAY_US % length_us == 0 for length_us in lengths_us.values())


@given(rows, intervals)
# Found in CI: a 34-digit VWAP division put a single 35-digit price's VWAP below its own low.
@example([(0, Decimal("10000000000000000000000000000000001"), Decimal("1"))], CandleInterval.S1)
def test_aggregation_equals_a_naive_group_by(trades: list[Row], interval: CandleInterval) -> None:
    """Given rows in (time, processing) order, the streaming fold equals a naive group-by,
    digit for digit (the sums are exact)."""
    ordered = sorted(trades, key=lambda row: row[0])  # stable: ties keep processing order
    folded = list(aggregate_candles(ordered, interval.length_us))
    assert folded == naive_candles(ordered, interval.length_us)
    for candle in folded:
        assert candle.low <= candle.vwap <= candle.high


@pytest.mark.parametrize("price", EXTREME_AMOUNTS, ids=str)
@pytest.mark.parametrize("quantity", EXTREME_AMOUNTS, ids=str)
def test_one_price_at_the_validator_limits_is_its_own_vwap(
    price: Decimal, quantity: Decimal
) -> None:
    """However many digits the validator lets through, a candle of one price (one trade or
    several) has exactly that price as VWAP: the division is wide enough not to round it."""
    [single] = aggregate_candles([(5, price, quantity)], MINUTE_US)
    [repeated] = aggregate_candles([(5, price, quantity), (6, price, Decimal(3))], MINUTE_US)
    assert single.vwap == price
    assert repeated.vwap == price


def test_vwap_is_the_volume_weighted_mean() -> None:
    """VWAP = sum(p*q) / sum(q) over the bucket."""
    [candle] = aggregate_candles(
        [(5, Decimal("10"), Decimal("1")), (6, Decimal("20"), Decimal("3"))], MINUTE_US
    )
    assert candle.vwap == Decimal("17.5")
    assert (candle.volume, candle.notional) == (Decimal(4), Decimal(70))


@given(st.integers(0, 4 * 10**15), intervals)
def test_bucket_start_is_the_aligned_start_at_or_before(
    time_us: int, interval: CandleInterval
) -> None:
    """A time's bucket starts on an interval multiple, at most one interval earlier."""
    start_us = bucket_start_us(time_us, interval.length_us)
    assert start_us % interval.length_us == 0
    assert start_us <= time_us < start_us + interval.length_us


def test_window_from_start_spans_limit_intervals_not_past_end() -> None:
    """With a start: from its bucket, `limit` intervals, cut at the bucket holding `end`."""
    start_us = 10 * MINUTE_US + 7
    assert candle_window(MINUTE_US, 3, start_us=start_us, end_us=None) == CandleWindow(
        10 * MINUTE_US, 13 * MINUTE_US
    )
    assert candle_window(MINUTE_US, 3, start_us=start_us, end_us=11 * MINUTE_US) == CandleWindow(
        10 * MINUTE_US, 12 * MINUTE_US
    )


def test_window_up_to_end_spans_the_last_limit_intervals() -> None:
    """Without a start: the `limit` intervals up to the one holding `end` (not before 1970)."""
    assert candle_window(MINUTE_US, 2, start_us=None, end_us=10 * MINUTE_US + 1) == CandleWindow(
        9 * MINUTE_US, 11 * MINUTE_US
    )
    assert candle_window(MINUTE_US, 1000, start_us=None, end_us=5) == CandleWindow(0, MINUTE_US)


def test_window_needs_a_bound_and_a_positive_limit() -> None:
    """No start and no end, or limit 0, is a programming error."""
    with pytest.raises(ValueError, match="start or an end"):
        candle_window(MINUTE_US, 1, start_us=None, end_us=None)
    with pytest.raises(ValueError, match="limit"):
        candle_window(MINUTE_US, 0, start_us=0, end_us=None)
