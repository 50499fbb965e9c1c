"""EMA and rolling VWAP, O(1) per trade, checked against naive references computed afresh in
exact rationals."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core.strategies import EXTREME_AMOUNTS, exact_decimals, extreme_amounts, prices
from core.test_rolling import random_walk_prices
from tickpipe.core.indicators import Ema, RollingVwap

windows = st.integers(1, 30)
# EMA is float math: relative agreement within a few ulps per step is all one can ask.
EMA_TOLERANCE = 1e-9
VWAP_TOLERANCE = Fraction(1, 10**37)  # the result is rounded to 38 significant digits


def naive_ema(values: list[Decimal], window: int) -> Fraction | None:
    """The closed form, from scratch: the seed (mean of the first `window` values) and every
    later value weighted alpha*(1-alpha)^age."""
    if len(values) < window:
        return None
    alpha = Fraction(2, window + 1)
    seed = sum((Fraction(v) for v in values[:window]), Fraction(0)) / window
    later = values[window:]
    total = seed * (1 - alpha) ** len(later)
    for age, value in enumerate(reversed(later)):
        total += alpha * (1 - alpha) ** age * Fraction(value)
    return total


def naive_vwap(trades: list[tuple[Decimal, Decimal]], window: int) -> Fraction | None:
    if len(trades) < window:
        return None
    recent = trades[-window:]
    notional = sum((Fraction(p) * Fraction(q) for p, q in recent), Fraction(0))
    return notional / sum((Fraction(q) for _, q in recent), Fraction(0))


@given(windows, st.lists(prices(), max_size=80))
def test_ema_equals_the_closed_form_after_every_price(window: int, values: list[Decimal]) -> None:
    """After each push the EMA agrees with the closed form (None until `window` prices)."""
    ema = Ema(window)
    for count in range(1, len(values) + 1):
        returned = ema.push(values[count - 1])
        assert returned == ema.value
        expected = naive_ema(values[:count], window)
        if expected is None:
            assert returned is None
        else:
            assert returned == pytest.approx(float(expected), rel=EMA_TOLERANCE)


@given(windows, st.lists(extreme_amounts(), min_size=1, max_size=60))
# Found while exploring: float rounding put the EMA of a constant an ulp above it.
@example(2, [Decimal("4.53821379009E-13")] * 3)
def test_ema_stays_within_the_prices_seen(window: int, values: list[Decimal]) -> None:
    """The EMA is a weighted mean of every price pushed, down to the validator's limits, so it
    never leaves their range (a constant price is its own EMA) and agrees with the closed form."""
    ema = Ema(window)
    for count, value in enumerate(values, start=1):
        returned = ema.push(value)
        if returned is None:
            continue
        seen = values[:count]
        assert float(min(seen)) <= returned <= float(max(seen))
        expected = naive_ema(seen, window)
        assert expected is not None
        assert returned == pytest.approx(float(expected), rel=EMA_TOLERANCE)


def test_ema_of_a_constant_is_the_constant_and_alpha_is_two_over_n_plus_one() -> None:
    """Seeded with the mean, then each step moves 2/(N+1) of the way to the new price."""
    ema = Ema(3)
    assert [ema.push(Decimal(v)) for v in (1, 2, 3)] == [None, None, 2.0]
    assert ema.push(Decimal(6)) == 2.0 + 0.5 * (6 - 2)


@given(windows, st.lists(st.tuples(prices(), exact_decimals()), max_size=80))
def test_vwap_equals_a_fresh_vwap_of_the_window(
    window: int, trades: list[tuple[Decimal, Decimal]]
) -> None:
    """After each push the VWAP is sum(p*q)/sum(q) of the last `window` trades."""
    vwap = RollingVwap(window)
    for count in range(1, len(trades) + 1):
        returned = vwap.push(*trades[count - 1])
        assert returned == vwap.value
        assert len(vwap) == min(count, window)
        expected = naive_vwap(trades[:count], window)
        if expected is None:
            assert returned is None
        else:
            assert returned is not None
            assert abs(Fraction(returned) - expected) <= VWAP_TOLERANCE * expected


@given(windows, st.lists(st.tuples(extreme_amounts(), extreme_amounts()), max_size=60))
@example(1, [(Decimal("10000000000000000000000000000000001"), Decimal("1"))])
def test_vwap_stays_within_the_window_prices(
    window: int, trades: list[tuple[Decimal, Decimal]]
) -> None:
    """Down to the validator's limits, the rounded VWAP never leaves the window's price range
    (at 34 digits a lone 35-digit price rounded below itself)."""
    vwap = RollingVwap(window)
    for count, (price, quantity) in enumerate(trades, start=1):
        returned = vwap.push(price, quantity)
        if returned is None:
            continue
        recent = [p for p, _ in trades[max(count - window, 0) : count]]
        assert min(recent) <= returned <= max(recent)
        expected = naive_vwap(trades[:count], window)
        assert expected is not None
        assert abs(Fraction(returned) - expected) <= VWAP_TOLERANCE * expected


@pytest.mark.parametrize("price", EXTREME_AMOUNTS, ids=str)
def test_one_price_at_the_validator_limits_is_its_own_ema_and_vwap(price: Decimal) -> None:
    """A window of one repeated extreme price: VWAP is that price exactly, the EMA its float."""
    ema, vwap = Ema(3), RollingVwap(3)
    for quantity in EXTREME_AMOUNTS[:3]:
        ema_value, vwap_value = ema.push(price), vwap.push(price, quantity)
    assert vwap_value == price
    assert ema_value == float(price)


def recent_ema(values: list[Decimal], window: int, depth: int = 600) -> float:
    """The EMA from its last `depth` values only: older ones weigh (1-alpha)^depth, ~1e-26
    for a window of 20, far below the tolerance."""
    alpha = 2 / (window + 1)
    recent = values[-depth:]
    return math.fsum(
        alpha * (1 - alpha) ** age * float(value) for age, value in enumerate(reversed(recent))
    )


def test_long_runs_do_not_drift() -> None:
    """200k trades across big/tiny price regimes: VWAP stays exact, the EMA within 1e-9."""
    window = 20
    ema, vwap = Ema(window), RollingVwap(window)
    seen: list[tuple[Decimal, Decimal]] = []
    checked = 0
    for n, price in enumerate(random_walk_prices(200_000, seed=5)):
        quantity = Decimal(n % 97 + 1).scaleb(-(n % 9))
        ema_value, vwap_value = ema.push(price), vwap.push(price, quantity)
        seen.append((price, quantity))
        if n >= 600 and (n % 9_973 == 0 or n % 50_000 in (window, window + 1)):
            expected_vwap = naive_vwap(seen, window)
            assert expected_vwap is not None
            assert vwap_value is not None
            assert abs(Fraction(vwap_value) - expected_vwap) <= VWAP_TOLERANCE * expected_vwap
            expected_ema = recent_ema([p for p, _ in seen[-600:]], window)
            assert ema_value == pytest.approx(expected_ema, rel=EMA_TOLERANCE)
            checked += 1
        if len(seen) > 1_000:
            del seen[:-600]
    assert checked > 20


@pytest.mark.parametrize("make", [Ema, RollingVwap])
def test_window_below_one_raises(make: type[Ema] | type[RollingVwap]) -> None:
    """A window must hold at least one trade."""
    with pytest.raises(ValueError, match="window must be >= 1"):
        make(0)
