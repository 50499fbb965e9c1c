"""The signal rule: BUY above the SMA, SELL below, HOLD at it or while it is unknown."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.strategies import prices
from fixtures.trades import make_trade
from tickpipe.core.scoring import Scorer
from tickpipe.core.signal import Signal, signal_from_comparison


@pytest.mark.parametrize(
    ("price_vs_sma", "expected"),
    [(1, Signal.BUY), (-1, Signal.SELL), (0, Signal.HOLD), (None, Signal.HOLD)],
)
def test_signal_from_comparison(price_vs_sma: int | None, expected: Signal) -> None:
    """Above the SMA is BUY, below is SELL, equal or unknown SMA is HOLD."""
    assert signal_from_comparison(price_vs_sma) is expected


@given(st.integers())
def test_signal_depends_only_on_the_sign(price_vs_sma: int) -> None:
    """Any positive comparison is BUY, any negative SELL (not only +1/-1)."""
    expected = Signal.BUY if price_vs_sma > 0 else Signal.SELL if price_vs_sma < 0 else Signal.HOLD
    assert signal_from_comparison(price_vs_sma) is expected


def test_signal_values_are_the_contract_strings() -> None:
    """Signals serialize as the upper-case strings of the API."""
    assert [s.value for s in Signal] == ["BUY", "SELL", "HOLD"]
    assert Signal.BUY == "BUY"


def score_prices(window: int, texts: list[str]) -> list[tuple[Decimal | None, Signal]]:
    scorer = Scorer(window)
    scored = [scorer.score(make_trade(n, price=text)) for n, text in enumerate(texts, start=1)]
    return [(s.sma, s.signal) for s in scored]


def test_hold_while_the_sma_is_null() -> None:
    """The first window-1 trades have no SMA and are HOLD, however the price moves."""
    assert score_prices(3, ["1", "100"]) == [(None, Signal.HOLD), (None, Signal.HOLD)]


def test_buy_above_sell_below_hold_at_the_sma() -> None:
    """With window 3: 1,3,2 -> SMA 2 = price HOLD; then 8 -> BUY (13/3); then 1 -> SELL (11/3)."""
    outcomes = score_prices(3, ["1", "3", "2", "8", "1"])[2:]
    assert [signal for _, signal in outcomes] == [Signal.HOLD, Signal.BUY, Signal.SELL]
    smas = [sma for sma, _ in outcomes]
    assert smas[0] == Decimal(2)
    for sma, exact in zip(smas[1:], [Fraction(13, 3), Fraction(11, 3)], strict=True):
        assert sma is not None
        assert abs(Fraction(sma) - exact) < Fraction(1, 10**70)


@pytest.mark.parametrize("window", [1, 3, 7, 20])
@pytest.mark.parametrize("price", ["0.1", "65000.10", "0.00001234", "1.1", "3400.33"])
def test_flat_market_is_hold_exactly(window: int, price: str) -> None:
    """Every price equal: SMA equals the price exactly and the signal is HOLD, never noise."""
    for sma, signal in score_prices(window, [price] * (window + 25))[window - 1 :]:
        assert sma == Decimal(price)
        assert signal is Signal.HOLD


@given(st.integers(1, 40), prices(), st.integers(0, 30))
def test_flat_market_is_hold_for_any_price_and_window(
    window: int, price: Decimal, extra: int
) -> None:
    """A flat market is HOLD at every trade, for any price (0.1 + 0.1 + 0.1 included)."""
    for sma, signal in score_prices(window, [str(price)] * (window + extra)):
        assert signal is Signal.HOLD
        assert sma is None or sma == price
