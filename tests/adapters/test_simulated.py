"""The simulated exchange: a seeded, reproducible random walk at a steady rate."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from contextlib import aclosing
from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickpipe.adapters.exchanges.simulated import SimulatedMarket
from tickpipe.core.trade import Side, Trade, new_trade

SYMBOLS = ["BTCUSDT", "eth-usdt", "SOL/USDT", "XRPUSDT", "DOGE_USDT"]
NOW_US = 1_700_000_000_000_000


def run(market: SimulatedMarket, count: int, start_us: int = NOW_US) -> list[Trade]:
    return [market.next_trade(start_us + i) for i in range(count)]


def without_times(trade: Trade) -> tuple[object, ...]:
    return (trade.exchange, trade.symbol, trade.trade_id, trade.price, trade.quantity, trade.side)


@given(st.integers(0, 2**32))
def test_same_seed_gives_the_same_trades_whatever_the_clock(seed: int) -> None:
    """Two markets with one seed emit identical trades; only the timestamps may differ."""
    first = run(SimulatedMarket(SYMBOLS, 20, seed=seed), 200)
    second = run(SimulatedMarket(SYMBOLS, 20, seed=seed), 200, start_us=NOW_US + 10**9)
    assert [without_times(t) for t in first] == [without_times(t) for t in second]


def test_different_seeds_give_different_trades() -> None:
    """The seed matters (a sanity check that the market is random at all)."""
    first = run(SimulatedMarket(SYMBOLS, 20, seed=1), 50)
    second = run(SimulatedMarket(SYMBOLS, 20, seed=2), 50)
    assert [without_times(t) for t in first] != [without_times(t) for t in second]


def test_symbols_are_normalized_and_all_are_traded() -> None:
    """Exchange spellings become normalized symbols; every symbol gets trades."""
    trades = run(SimulatedMarket(SYMBOLS, 20, seed=3), 500)
    assert {t.symbol for t in trades} == {"BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"}
    assert {t.exchange for t in trades} == {"simulated"}


def test_trade_ids_count_up_from_one_per_symbol() -> None:
    """Each symbol's ids are 1, 2, 3, ... in emission order, independent of other symbols."""
    ids: dict[str, list[int]] = defaultdict(list)
    for trade in run(SimulatedMarket(SYMBOLS, 20, seed=4), 1_000):
        ids[trade.symbol].append(int(trade.trade_id))
    for symbol_ids in ids.values():
        assert symbol_ids == list(range(1, len(symbol_ids) + 1))


def test_one_symbol_spelled_twice_still_has_unique_trade_ids() -> None:
    """A trade is identified by (exchange, symbol, trade_id): ids never repeat in a stream."""
    trades = run(SimulatedMarket(["BTCUSDT", "btc-usdt"], 20, seed=5), 100)
    keys = [(t.exchange, t.symbol, t.trade_id) for t in trades]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(
    ("symbol", "decimals"),
    [("BTCUSDT", 2), ("ETHUSDT", 2), ("SOLUSDT", 3), ("BNBUSDT", 3), ("XRPUSDT", 6)],
)
def test_prices_are_positive_and_quantized_to_the_tick(symbol: str, decimals: int) -> None:
    """Prices are exact decimals with the symbol's fixed number of decimals, always positive."""
    for trade in run(SimulatedMarket([symbol], 20, seed=6), 300):
        assert trade.price > 0
        assert trade.price.as_tuple().exponent == -decimals


def test_unknown_symbols_get_about_six_significant_digits() -> None:
    """A symbol without a known price still trades at a positive, quantized price."""
    for trade in run(SimulatedMarket(["ABCDEF", "ZZ9"], 20, seed=7), 300):
        exponent = trade.price.as_tuple().exponent
        assert trade.price > 0
        assert isinstance(exponent, int)
        assert -5 <= exponent <= -2
        assert len(trade.price.as_tuple().digits) <= 7


def test_quantities_are_positive_with_eight_decimals() -> None:
    """Sizes are exact decimals with exactly 8 decimals, never zero."""
    for trade in run(SimulatedMarket(SYMBOLS, 20, seed=8), 2_000):
        assert trade.quantity >= Decimal("0.00000001")
        assert trade.quantity.as_tuple().exponent == -8


def test_side_follows_the_price_move() -> None:
    """The taker buys on an up-tick and sells on a down-tick (per symbol walk)."""
    last: dict[str, Decimal] = {}
    for trade in run(SimulatedMarket(SYMBOLS, 20, seed=9), 2_000):
        previous = last.get(trade.symbol)
        if previous is not None and trade.price != previous:
            assert trade.side is (Side.BUY if trade.price > previous else Side.SELL)
        last[trade.symbol] = trade.price


def test_trades_pass_domain_validation() -> None:
    """Every simulated trade is one new_trade would accept unchanged."""
    now_us = time.time_ns() // 1000
    for trade in run(SimulatedMarket(SYMBOLS, 20, seed=10), 500, start_us=now_us):
        assert (
            new_trade(
                exchange=trade.exchange,
                symbol=trade.symbol,
                trade_id=trade.trade_id,
                price=trade.price,
                quantity=trade.quantity,
                side=trade.side,
                exchange_time_us=trade.exchange_time_us,
                ingest_time_us=trade.ingest_time_us,
            )
            == trade
        )


def test_next_trade_uses_the_given_time() -> None:
    """Exchange and ingest time are the time passed in (the wall clock in trades())."""
    trade = SimulatedMarket(SYMBOLS, 20, seed=11).next_trade(NOW_US)
    assert trade.exchange_time_us == trade.ingest_time_us == NOW_US


@pytest.mark.parametrize(("symbols", "rate"), [([], 20), (["BTCUSDT"], 0), (["BTCUSDT"], -1)])
def test_no_symbols_or_non_positive_rate_raise(symbols: list[str], rate: float) -> None:
    """The market needs a symbol and a positive rate."""
    with pytest.raises(ValueError, match=r"symbol|rate"):
        SimulatedMarket(symbols, rate)


async def collect(market: SimulatedMarket, seconds: float) -> list[Trade]:
    """The trades the async stream emits within `seconds` of wall time."""
    collected: list[Trade] = []
    deadline = time.monotonic() + seconds
    async with asyncio.timeout(seconds + 5), aclosing(market.trades()) as stream:  # type: ignore[type-var]
        async for trade in stream:
            if time.monotonic() >= deadline:
                break
            collected.append(trade)
    return collected


async def test_trades_stream_at_roughly_the_configured_rate() -> None:
    """At 200 trades/s a 0.5 s window sees about 100 trades (generous bounds: not a benchmark)."""
    trades = await collect(SimulatedMarket(SYMBOLS, 200, seed=12), 0.5)
    assert 50 <= len(trades) <= 150


async def test_trades_stream_times_strictly_increase() -> None:
    """Exchange times in the stream are strictly increasing, also within a burst."""
    trades = await collect(SimulatedMarket(SYMBOLS, 2_000, seed=13), 0.3)
    times = [t.exchange_time_us for t in trades]
    assert len(times) > 100
    assert all(a < b for a, b in pairwise(times))


async def test_trades_stream_is_the_seeded_sequence() -> None:
    """The async stream emits the same trades as next_trade with the same seed."""
    streamed = await collect(SimulatedMarket(SYMBOLS, 500, seed=14), 0.2)
    expected = run(SimulatedMarket(SYMBOLS, 500, seed=14), len(streamed))
    assert [without_times(t) for t in streamed] == [without_times(t) for t in expected]


async def test_a_market_asked_beyond_what_it_can_make_still_lets_other_tasks_run() -> None:
    """At a rate no machine makes, the stream still yields to the event loop every thousand
    trades or so (a service's probes keep answering), and its times keep increasing."""
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    counter = asyncio.create_task(count_turns())
    times = []
    async with aclosing(SimulatedMarket(SYMBOLS, 1e9, seed=15).trades()) as stream:
        async for trade in stream:
            times.append(trade.exchange_time_us)
            if len(times) == 10_000:
                break
    counter.cancel()
    assert turns >= 5
    assert all(a < b for a, b in pairwise(times))
