"""RollingMean: the exact sliding-window mean, checked against a fresh mean of the window."""

from __future__ import annotations

import os
import random
from collections import deque
from collections.abc import Callable, Iterator
from decimal import Context, Decimal
from fractions import Fraction
from typing import Protocol

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.strategies import exact_decimals, extreme_amounts, prices
from tickpipe.core.rolling import RollingMean
from tickpipe.core.trade import MAX_DECIMAL_DIGITS

# RollingMean divides with 100 significant digits; anything beyond is rounding, not drift.
DIVISION_TOLERANCE = Fraction(1, 10**78)
# The contract: agree with a fresh mean over the window to 1e-9 relative, however long the run.
CONTRACT_TOLERANCE = Fraction(1, 10**9)

windows = st.integers(1, 30)
# Mixed magnitudes the exact sum must hold: up to 38 digits, down to the validator's limits
# (1E-38 .. 10^38: a span of 76 digits).
any_prices = st.one_of(prices(), exact_decimals(), extreme_amounts())


def fresh_mean(window: deque[Decimal] | list[Decimal]) -> Fraction:
    """The naive reference: sum of the window over its length, in exact rationals."""
    return sum((Fraction(v) for v in window), Fraction(0)) / len(window)


def sign(x: Fraction) -> int:
    return (x > 0) - (x < 0)


def assert_close(actual: Decimal | float | None, expected: Fraction, tolerance: Fraction) -> None:
    assert actual is not None
    assert abs(Fraction(actual) - expected) <= tolerance * abs(expected), (actual, expected)


@given(windows, st.lists(any_prices, max_size=80))
def test_mean_equals_fresh_mean_after_every_push(window: int, values: list[Decimal]) -> None:
    """After each push the mean is the exact mean of the last `window` values (None until
    full), within their range."""
    rolling = RollingMean(window)
    for count, value in enumerate(values, start=1):
        returned = rolling.push(value)
        assert returned == rolling.mean
        assert len(rolling) == min(count, window)
        if count < window:
            assert returned is None
        else:
            recent = values[count - window : count]
            assert_close(returned, fresh_mean(recent), DIVISION_TOLERANCE)
            assert returned is not None
            assert min(recent) <= returned <= max(recent)


@given(windows, st.lists(any_prices, max_size=60), any_prices)
def test_compare_sign_equals_exact_sign_against_fresh_mean(
    window: int, values: list[Decimal], probe: Decimal
) -> None:
    """compare(v) is the exact sign of v - mean: for window prices, other prices, ~the mean."""
    rolling = RollingMean(window)
    for count, value in enumerate(values, start=1):
        rolling.push(value)
        if count < window:
            assert rolling.compare(value) is None
            continue
        reference = fresh_mean(values[count - window : count])
        mean = rolling.mean
        assert mean is not None
        # The hardest probe: the mean as a 38-digit price, equal to it or a rounding step away.
        near_mean = Context(prec=MAX_DECIMAL_DIGITS).plus(mean)
        for candidate in (value, probe, values[count - window], near_mean):
            assert rolling.compare(candidate) == sign(Fraction(candidate) - reference)


@given(windows, any_prices)
def test_compare_is_zero_at_an_exact_mean(window: int, value: Decimal) -> None:
    """A value equal to the exact mean compares as 0, not as a rounding-noise sign."""
    rolling = RollingMean(window)
    for _ in range(window):
        rolling.push(value)
    assert rolling.compare(value) == 0
    assert rolling.mean == value


def test_compare_uses_the_exact_mean_not_the_rounded_one() -> None:
    """1/3 rounds in the mean, but compare still sees the exact sign."""
    rolling = RollingMean(3, [Decimal(0), Decimal(0), Decimal(1)])
    rounded = rolling.mean
    assert rounded is not None
    assert rounded != Fraction(1, 3)
    assert rolling.compare(rounded) == sign(Fraction(rounded) - Fraction(1, 3))
    assert rolling.compare(Decimal("0.34")) == 1
    assert rolling.compare(Decimal("0.33")) == -1


def test_none_until_full() -> None:
    """Mean and compare are None until `window` values were pushed."""
    rolling = RollingMean(3)
    assert rolling.mean is None
    assert rolling.compare(Decimal(1)) is None
    assert rolling.push(Decimal(1)) is None
    assert rolling.push(Decimal(2)) is None
    assert rolling.compare(Decimal(2)) is None
    assert rolling.push(Decimal(6)) == Decimal(3)
    assert rolling.push(Decimal(7)) == Decimal(5)


def test_window_of_one_is_the_last_value() -> None:
    """With window 1 the mean is always the value just pushed."""
    rolling = RollingMean(1)
    for text in ["65000.10", "0.00001234", "3"]:
        assert rolling.push(Decimal(text)) == Decimal(text)


@given(windows, st.lists(any_prices, max_size=50), st.lists(any_prices, max_size=30))
def test_seeding_with_history_equals_pushing_the_history(
    window: int, history: list[Decimal], rest: list[Decimal]
) -> None:
    """RollingMean(n, history) behaves exactly like RollingMean(n) fed the history."""
    seeded = RollingMean(window, history)
    seeded_from_tuple = RollingMean(window, tuple(history))
    pushed = RollingMean(window)
    for value in history:
        pushed.push(value)
    assert len(seeded) == len(pushed) == len(seeded_from_tuple)
    assert seeded.mean == pushed.mean == seeded_from_tuple.mean
    for value in rest:
        assert seeded.push(value) == pushed.push(value) == seeded_from_tuple.push(value)
        assert seeded.compare(value) == pushed.compare(value)


@pytest.mark.parametrize("window", [0, -1, -20])
def test_window_below_one_raises(window: int) -> None:
    """A window must hold at least one value."""
    with pytest.raises(ValueError, match="window must be >= 1"):
        RollingMean(window)


# --- long runs: no drift, however long the stream -------------------------------------------

REGIME_LENGTH = 50_000  # trades before the market switches between ~65000 and ~0.00001234


class MeanLike(Protocol):
    def push(self, value: Decimal) -> Decimal | float | None: ...
    def compare(self, value: Decimal) -> int | None: ...


def random_walk_prices(count: int, seed: int) -> Iterator[Decimal]:
    """Alternating regimes: a walk around 65000 with 2-8 decimals, one around 0.00001234 with
    8-12 decimals. After big prices leave the window, any error they left in a running sum
    dwarfs the tiny mean, so drift cannot hide."""
    rng = random.Random(seed)
    bits = rng.getrandbits
    big_units = 65_000 * 10**8  # in 1e-8
    tiny_units = 1_234 * 10**4  # in 1e-12
    powers = [10**k for k in range(9)]
    for i in range(count):
        if (i // REGIME_LENGTH) % 2 == 0:
            big_units = max(big_units + bits(20) - 2**19, 10**8)
            decimals = 2 + bits(8) % 7
            yield Decimal(f"{big_units // powers[8 - decimals]}E-{decimals}")
        else:
            tiny_units = max(tiny_units + bits(10) - 2**9, 10**5)
            decimals = 8 + bits(8) % 5
            yield Decimal(f"{tiny_units // powers[12 - decimals]}E-{decimals}")


def check_long_run(
    make_mean: Callable[[int], MeanLike], updates: int, window: int = 20, seed: int = 7
) -> None:
    """Pushes `updates` prices; at checkpoints (regularly and just after each regime switch)
    the mean must agree with a fresh mean to 1e-9 relative and compare() must be exact."""
    rolling = make_mean(window)
    recent: deque[Decimal] = deque(maxlen=window)
    push = rolling.push
    append = recent.append
    checkpoints = {window, window + 1, window // 2}
    for i, price in enumerate(random_walk_prices(updates, seed)):
        mean = push(price)
        append(price)
        if i % 9_973 == 0 or (i % REGIME_LENGTH) in checkpoints or i == updates - 1:
            if len(recent) < window:
                assert mean is None
                continue
            reference = fresh_mean(recent)
            assert_close(mean, reference, CONTRACT_TOLERANCE)
            assert rolling.compare(price) == sign(Fraction(price) - reference), i


class FloatRunningSum:
    """The classic drifting implementation (float running sum), to prove the check bites."""

    def __init__(self, window: int) -> None:
        self.values: deque[float] = deque(maxlen=window)
        self.total = 0.0

    def push(self, value: Decimal) -> float | None:
        if len(self.values) == self.values.maxlen:
            self.total -= self.values[0]
        self.values.append(float(value))
        self.total += float(value)
        return self.total / len(self.values) if len(self.values) == self.values.maxlen else None

    def compare(self, value: Decimal) -> int | None:
        mean = self.total / len(self.values)
        return (float(value) > mean) - (float(value) < mean)


def test_long_run_check_detects_a_drifting_float_running_sum() -> None:
    """The long-run harness fails a float running sum within two regimes (it is not vacuous)."""
    with pytest.raises(AssertionError):
        check_long_run(FloatRunningSum, updates=2 * REGIME_LENGTH + 100)


# The contract says "however long". The `ci` profile runs a million updates (twenty switches
# between the big and tiny regimes); `explore` runs ten million, which takes ~40 s.
LONG_RUN_UPDATES = 10_000_000 if os.environ.get("HYPOTHESIS_PROFILE") == "explore" else 1_000_000


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_long_run_agrees_with_a_fresh_mean() -> None:
    """1M updates (10M when exploring) over alternating big/tiny regimes: every checkpoint is
    within 1e-9 relative of a fresh mean and compare() is exact."""
    check_long_run(RollingMean, updates=LONG_RUN_UPDATES, seed=11)
