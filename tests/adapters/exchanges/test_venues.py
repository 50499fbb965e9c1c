"""Several venues as one source: each keeps its own loop, a venue that drops or refuses a symbol
never stops the others, /readyz's check names it, and a venue is found by its module alone."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import types
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest

from adapters.exchanges.fake_exchange import FakeExchange, Session, stream, trade_key
from adapters.exchanges.support import source_for
from tickpipe.adapters.exchanges import registry
from tickpipe.adapters.exchanges.feed import SubscriptionRejected
from tickpipe.adapters.exchanges.venues import VenueSources
from tickpipe.config import Settings
from tickpipe.core.trade import Side, Trade, new_trade
from tickpipe.telemetry.probes import DependencyFailing
from tickpipe.wiring import InvalidConfiguration, open_source


async def failing_venues(sources: VenueSources) -> dict[str, str]:
    try:
        await sources.check()
    except DependencyFailing as exc:
        return exc.failing
    return {}


async def collect(sources: VenueSources, count: int, timeout_s: float = 10.0) -> list[Trade]:
    trades: list[Trade] = []
    async with asyncio.timeout(timeout_s):
        async with contextlib.aclosing(sources.trades()) as stream_:
            async for trade in stream_:
                trades.append(trade)
                if len(trades) == count:
                    break
    return trades


async def test_two_venues_deliver_every_trade_of_both() -> None:
    """Binance and Coinbase at once: the union of both exchanges' trades, each exactly once."""
    async with (
        FakeExchange("binance", ["BTCUSDT"], scripts=[stream(6, 0.002)]) as binance,
        FakeExchange("coinbase", ["BTC-USD"], scripts=[stream(6, 0.002)]) as coinbase,
    ):
        sources = VenueSources(
            {
                "binance": source_for("binance", binance.url, ["BTCUSDT"]),
                "coinbase": source_for("coinbase", coinbase.url, ["BTC-USD"]),
            }
        )
        trades = await collect(sources, 12)
    expected = [t.key() for t in binance.history + coinbase.history]
    assert sorted(trade_key(t) for t in trades) == sorted(expected)


async def test_a_venue_that_drops_is_named_while_the_other_goes_on() -> None:
    """Coinbase goes away for good: the check names coinbase, and Binance's trades keep coming."""
    coinbase_gone = asyncio.Event()

    async def drop(session: Session) -> None:
        await session.send_trades(2)
        await session.drop()

    async def after_coinbase(session: Session) -> None:
        await session.send_trades(3)
        await coinbase_gone.wait()
        await session.send_trades(3)

    async with (
        FakeExchange("binance", ["BTCUSDT"], scripts=[after_coinbase]) as binance,
        FakeExchange("coinbase", ["BTC-USD"], scripts=[drop]) as coinbase,
    ):
        sources = VenueSources(
            {
                "binance": source_for("binance", binance.url, ["BTCUSDT"]),
                "coinbase": source_for("coinbase", coinbase.url, ["BTC-USD"]),
            }
        )
        async with contextlib.aclosing(sources.trades()) as trades:
            async with asyncio.timeout(10):
                first = [await anext(trades) for _ in range(5)]
                await coinbase.stop()  # no coming back
                while "coinbase" not in await failing_venues(sources):
                    await asyncio.sleep(0.02)
                assert await failing_venues(sources) == {"coinbase": "1 of 1 connections down"}
                coinbase_gone.set()
                later = [await anext(trades) for _ in range(3)]
    assert sorted(trade_key(t) for t in first) == sorted(
        t.key() for t in binance.history[:3] + coinbase.history
    )
    assert [trade_key(t) for t in later] == [t.key() for t in binance.history[3:]]


async def test_a_rejected_subscription_stops_only_its_venue() -> None:
    """Kraken refuses NOPE/USD: Binance keeps delivering; the check names kraken with why."""
    async with (
        FakeExchange("binance", ["BTCUSDT"], scripts=[stream(8, 0.01)]) as binance,
        FakeExchange(
            "kraken", ["BTC/USD", "NOPE/USD"], unknown_symbols=frozenset({"NOPE/USD"})
        ) as kraken,
    ):
        sources = VenueSources(
            {
                "kraken": source_for("kraken", kraken.url, ["BTC/USD", "NOPE/USD"]),
                "binance": source_for("binance", binance.url, ["BTCUSDT"]),
            }
        )
        trades = await collect(sources, 8)
        assert "NOPE/USD" in sources.stopped["kraken"]
        failing = await failing_venues(sources)
    assert set(failing) == {"kraken", "binance"}  # binance: closed with the stream
    assert [trade_key(t) for t in trades] == [t.key() for t in binance.history]


async def test_a_lone_venue_that_is_refused_fails_the_source() -> None:
    """With one venue, its rejection is the source's error, as before several venues existed."""
    async with FakeExchange(
        "kraken", ["NOPE/USD"], unknown_symbols=frozenset({"NOPE/USD"})
    ) as kraken:
        sources = VenueSources({"kraken": source_for("kraken", kraken.url, ["NOPE/USD"])})
        with pytest.raises(SubscriptionRejected, match="NOPE/USD"):
            await collect(sources, 1)
        assert set(await failing_venues(sources)) == {"kraken"}  # and /readyz names it


class ToyMarket:
    """A venue written as a module of its own: one fixed trade per symbol, then quiet."""

    def __init__(self, raw_symbols: Sequence[str]) -> None:
        self.raw_symbols = raw_symbols

    async def trades(self) -> AsyncIterator[Trade]:
        for n, raw in enumerate(self.raw_symbols):
            yield new_trade(
                exchange="toyvenue",
                symbol=raw,
                trade_id=str(n),
                price="1.50",
                quantity="2",
                side=Side.BUY,
                exchange_time_us=1_700_000_000_000_000,
                ingest_time_us=1_700_000_000_000_001,
            )
        await asyncio.Event().wait()


@pytest.fixture
def toy_venue(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    module = types.ModuleType("tickpipe.adapters.exchanges.toyvenue")
    module.DEFAULT_SYMBOLS = ("TOYUSD",)  # type: ignore[attr-defined]
    module.open_source = lambda raw, options: ToyMarket(raw)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    registry.venue_module.cache_clear()
    yield
    registry.venue_module.cache_clear()


@pytest.mark.usefixtures("toy_venue")
async def test_a_venue_is_added_by_its_module_alone() -> None:
    """A module with DEFAULT_SYMBOLS and open_source is a venue: config and wiring take it."""
    settings = Settings(source="toyvenue,simulated", symbols="toyvenue:TOYUSD,simulated:BTCUSDT")
    sources = open_source(settings)
    assert list(sources.sources) == ["toyvenue", "simulated"]
    trades = await collect(sources, 3)
    assert {t.exchange for t in trades} == {"toyvenue", "simulated"}


def test_an_unknown_venue_is_one_clear_error_listing_the_known_ones() -> None:
    """TICKPIPE_SOURCE=binanse names the venues there are."""
    with pytest.raises(InvalidConfiguration, match=r"unknown venue 'binanse'.*binance, coinbase"):
        open_source(Settings(source="binanse"))
    assert {"binance", "coinbase", "kraken", "simulated"} <= set(registry.known_venues())
