"""Scorer: per-(exchange, symbol) windows, the SMA and signal of each trade, restart seeding."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.strategies import prices
from fixtures.trades import make_trade
from tickpipe.core.scoring import ScoredTrade, Scorer
from tickpipe.core.signal import Signal
from tickpipe.core.trade import Trade

STREAMS = [("simulated", "BTCUSDT"), ("binance", "BTCUSDT"), ("simulated", "ETHUSDT")]
windows = st.integers(1, 8)
stream_prices = st.lists(st.tuples(st.sampled_from(range(len(STREAMS))), prices()), max_size=60)


def trades_of(items: list[tuple[int, Decimal]]) -> list[Trade]:
    """Trades of the given streams and prices, ids numbered per stream from 1."""
    counts = [0] * len(STREAMS)
    built = []
    for stream, price in items:
        counts[stream] += 1
        exchange, symbol = STREAMS[stream]
        built.append(make_trade(counts[stream], exchange=exchange, symbol=symbol, price=price))
    return built


def outcome(scored: ScoredTrade) -> tuple[Decimal | None, Signal]:
    return (scored.sma, scored.signal)


def naive_signal(price: Decimal, window: list[Decimal], size: int) -> Signal:
    """Reference rule on an exact fresh mean: null SMA or equal is HOLD."""
    if len(window) < size:
        return Signal.HOLD
    mean = sum((Fraction(p) for p in window[-size:]), Fraction(0)) / size
    return Signal.BUY if price > mean else Signal.SELL if price < mean else Signal.HOLD


@given(windows, stream_prices)
def test_signal_equals_naive_rule_on_a_fresh_mean(
    window: int, items: list[tuple[int, Decimal]]
) -> None:
    """Each trade's signal is the rule applied to the exact mean of its stream's last window."""
    scorer = Scorer(window)
    history: dict[tuple[str, str], list[Decimal]] = {}
    for trade in trades_of(items):
        seen = history.setdefault(trade.key, [])
        seen.append(trade.price)
        scored = scorer.score(trade)
        assert scored.trade is trade
        assert scored.signal is naive_signal(trade.price, seen, window)
        assert (scored.sma is None) == (len(seen) < window)


@given(windows, stream_prices)
def test_interleaved_streams_score_as_each_stream_alone(
    window: int, items: list[tuple[int, Decimal]]
) -> None:
    """Windows are per (exchange, symbol): interleaving streams changes no SMA or signal."""
    trades = trades_of(items)
    together = Scorer(window)
    interleaved = {id(t): outcome(together.score(t)) for t in trades}
    for key in STREAMS:
        alone = Scorer(window)
        for trade in (t for t in trades if t.key == key):
            assert outcome(alone.score(trade)) == interleaved[id(trade)]


def test_same_symbol_on_two_exchanges_has_two_windows() -> None:
    """BTCUSDT on binance and on simulated never share a window."""
    scorer = Scorer(2)
    scorer.score(make_trade(1, exchange="binance", price="100"))
    scored = scorer.score(make_trade(1, exchange="simulated", price="1"))
    assert scored.sma is None
    assert scorer.has_window(("binance", "BTCUSDT"))
    assert scorer.has_window(("simulated", "BTCUSDT"))
    assert not scorer.has_window(("kraken", "BTCUSDT"))


@given(windows, st.lists(prices(), max_size=40), st.integers(0, 40))
def test_seed_then_score_equals_an_uninterrupted_run(
    window: int, values: list[Decimal], split: int
) -> None:
    """Restart guarantee: seeding from stored history gives the same SMAs and signals."""
    trades = trades_of([(0, v) for v in values])
    split = min(split, len(trades))
    uninterrupted = Scorer(window)
    expected = [outcome(uninterrupted.score(t)) for t in trades]

    restarted = Scorer(window)
    # The store hands back at most `window` prices before the first new trade, oldest first.
    restarted.seed(STREAMS[0], (t.price for t in trades[max(0, split - window) : split]))
    assert restarted.has_window(STREAMS[0])
    assert [outcome(restarted.score(t)) for t in trades[split:]] == expected[split:]


@given(windows, st.lists(prices(), max_size=40), st.integers(0, 40))
def test_seed_with_longer_history_keeps_only_the_last_window(
    window: int, values: list[Decimal], split: int
) -> None:
    """Seeding with the full history (more than a window) is the same as seeding the tail."""
    trades = trades_of([(0, v) for v in values])
    split = min(split, len(trades))
    full, tail = Scorer(window), Scorer(window)
    full.seed(STREAMS[0], [t.price for t in trades[:split]])
    tail.seed(STREAMS[0], [t.price for t in trades[max(0, split - window) : split]])
    for trade in trades[split:]:
        assert outcome(full.score(trade)) == outcome(tail.score(trade))


def test_seed_replaces_an_existing_window() -> None:
    """Seeding a stream that already has a window starts from the given history only."""
    scorer = Scorer(2)
    scorer.score(make_trade(1, price="1000"))
    scorer.seed(STREAMS[0], [Decimal(10)])
    assert scorer.score(make_trade(2, price="20")).sma == Decimal(15)


def test_forget_all_drops_every_window() -> None:
    """After forget_all no window is left and the next trade starts a fresh window."""
    scorer = Scorer(2)
    for n in (1, 2):
        for exchange, symbol in STREAMS:
            scorer.score(make_trade(n, exchange=exchange, symbol=symbol, price="100"))
    scorer.forget_all()
    assert not any(scorer.has_window(key) for key in STREAMS)
    first = scorer.score(make_trade(3, price="1"))
    assert outcome(first) == (None, Signal.HOLD)
    assert scorer.score(make_trade(4, price="3")).sma == Decimal(2)


def test_sma_includes_the_current_trade() -> None:
    """The SMA of a trade is over the last `window` trades including itself."""
    scorer = Scorer(2)
    scorer.score(make_trade(1, price="10"))
    scored = scorer.score(make_trade(2, price="20"))
    assert outcome(scored) == (Decimal(15), Signal.BUY)


@pytest.mark.parametrize("window", [0, -5])
def test_window_below_one_raises(window: int) -> None:
    """A scorer needs a window of at least one trade."""
    with pytest.raises(ValueError, match="window must be >= 1"):
        Scorer(window)


def test_sma_stays_exact_for_any_validated_prices() -> None:
    """After the largest valid price leaves the window, a flat market of the smallest valid
    price is HOLD at exactly its own price (the sum never rounded)."""
    scorer = Scorer(2)
    outcomes = [
        outcome(scorer.score(make_trade(n, price=p)))
        for n, p in enumerate(["9" * 38, "1E-38", "1E-38", "1E-38"], start=1)
    ]
    assert outcomes[2:] == [(Decimal("1E-38"), Signal.HOLD)] * 2


def test_forget_drops_only_the_named_streams() -> None:
    """forget(keys) removes those windows and leaves the others scoring as before."""
    scorer = Scorer(2)
    for exchange, symbol in STREAMS:
        scorer.score(make_trade(1, exchange=exchange, symbol=symbol, price="100"))
    scorer.forget([STREAMS[0]])
    assert [scorer.has_window(key) for key in STREAMS] == [False, True, True]


def test_evict_drops_the_least_recently_scored_beyond_the_limit() -> None:
    """With room for two streams, the one scored longest ago goes first."""
    scorer = Scorer(2, max_streams=2)
    first, second, third = STREAMS
    for key in (first, second, first, third):  # `second` is now the least recently scored
        scorer.score(make_trade(1, exchange=key[0], symbol=key[1], price="100"))
    assert scorer.evict() == [second]
    assert len(scorer) == 2
    assert scorer.has_window(first)
    assert scorer.has_window(third)


def test_a_scorer_needs_room_for_one_stream() -> None:
    """max_streams below 1 is refused."""
    with pytest.raises(ValueError, match="max_streams"):
        Scorer(2, max_streams=0)
