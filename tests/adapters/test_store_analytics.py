"""The TradeStore port's analytics reads (candles, keyset-paged history, signal changes), run
against every store adapter, then SQLite and PostgreSQL side by side on the same trades."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from importlib import resources

import asyncpg
import pytest

from fixtures.postgres import run_async
from fixtures.trades import BASE_TIME_US
from tickpipe.adapters.store.migrate import migrate
from tickpipe.adapters.store.postgres import open_postgres_store
from tickpipe.adapters.store.sqlite import open_sqlite_store
from tickpipe.core.candles import Candle, CandleInterval
from tickpipe.core.scoring import ScoredTrade
from tickpipe.core.signal import Signal
from tickpipe.core.trade import Side, Trade, new_trade
from tickpipe.ports import END_OF_HISTORY, HistoryKey, TradeStore

MINUTE_US = 60_000_000
# A minute boundary, so that tests can place trades in known buckets.
T0_US = BASE_TIME_US - BASE_TIME_US % (24 * 60 * MINUTE_US)
INTERVALS_US = [interval.length_us for interval in CandleInterval]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.infra)])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('store') / 'trades.db'}"
    url: str = request.getfixturevalue("clean_postgres_url")
    return url


async def open_store(url: str) -> TradeStore:
    if url.startswith("sqlite:"):
        await migrate(url)
        return await open_sqlite_store(url)
    return await open_postgres_store(url)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[TradeStore]:
    opened = await open_store(store_url)
    yield opened
    await opened.close()


def trade(
    trade_id: int | str,
    time_us: int,
    price: str | Decimal = "100",
    quantity: str | Decimal = "1",
    *,
    exchange: str = "binance",
    symbol: str = "BTCUSDT",
    signal: Signal = Signal.HOLD,
) -> ScoredTrade:
    """One stored trade at an exact time, with the signal it was scored with."""
    built = new_trade(
        exchange=exchange,
        symbol=symbol,
        trade_id=str(trade_id),
        price=price,
        quantity=quantity,
        side=Side.BUY,
        exchange_time_us=time_us,
        ingest_time_us=time_us + 1_000,
    )
    sma = None if signal is Signal.HOLD else Decimal(price)
    return ScoredTrade(built, sma, signal)


def random_trades(count: int, seed: int, exchanges: Sequence[str] = ("binance",)) -> list[Trade]:
    """Trades over ~2 days in processing order: exchange times mostly rising, with millisecond
    ties (as Binance sends them), a few out of order, prices and sizes of varied scale."""
    rng = random.Random(seed)
    time_us = T0_US
    trades = []
    for n in range(count):
        time_us += rng.choice([0, 0, 1_000, 7_000, 250_000, 2_000_000, 61_000_000, 3_600_000_000])
        jitter_us = -rng.randrange(0, 5_000_000) if rng.random() < 0.05 else 0
        exponent = rng.choice([2, 4, 8])
        trades.append(
            new_trade(
                exchange=rng.choice(exchanges),
                symbol="BTCUSDT",
                trade_id=str(n),
                price=Decimal(rng.randrange(1, 10**7)).scaleb(-exponent),
                quantity=Decimal(rng.randrange(1, 10**9)).scaleb(-8),
                side=Side.SELL,
                exchange_time_us=time_us + jitter_us,
                ingest_time_us=time_us + 10_000_000,
            )
        )
    return trades


def reference_candles(trades: Iterable[Trade], interval_us: int) -> list[Candle]:
    """The naive definition: group by bucket; open/close are the first/last trade by
    (exchange time, processing order); sums exact at 300 digits."""
    buckets: dict[int, list[tuple[int, int, Trade]]] = {}
    for order, item in enumerate(trades):
        start_us = item.exchange_time_us // interval_us * interval_us
        buckets.setdefault(start_us, []).append((item.exchange_time_us, order, item))
    candles = []
    for start_us in sorted(buckets):
        rows = sorted(buckets[start_us], key=lambda row: (row[0], row[1]))
        prices = [row[2].price for row in rows]
        with localcontext(prec=300):
            volume = sum((row[2].quantity for row in rows), Decimal(0))
            notional = sum((row[2].price * row[2].quantity for row in rows), Decimal(0))
        candles.append(
            Candle(
                bucket_start_us=start_us,
                open=prices[0],
                high=max(prices),
                low=min(prices),
                close=prices[-1],
                volume=volume,
                notional=notional,
                trade_count=len(rows),
            )
        )
    return candles


async def write_in_batches(store: TradeStore, trades: Sequence[Trade], size: int = 500) -> None:
    for start in range(0, len(trades), size):
        batch = [ScoredTrade(t, None, Signal.HOLD) for t in trades[start : start + size]]
        await store.write(batch)


async def all_candles(
    store: TradeStore, interval_us: int, exchange: str | None = None
) -> list[Candle]:
    return await store.candles(
        "BTCUSDT",
        interval_us=interval_us,
        from_us=0,
        to_us=END_OF_HISTORY.time_us,
        exchange=exchange,
    )


# --- candles ----------------------------------------------------------------------------------


async def test_candle_is_exact_ohlcv_with_ties_broken_by_processing_order(
    store: TradeStore,
) -> None:
    """Open/close are the first/last trade by time, then processing order; sums are exact."""
    await store.write(
        [
            trade(1, T0_US + 5, "100.10", "0.5"),
            trade(2, T0_US + 5, "100.30", "0.25"),  # same microsecond: processed second
            trade(3, T0_US + 1_000, "99.90", "1.00000001"),
            trade(4, T0_US + 59_999_999, "100.05", "2"),
        ]
    )
    await store.write([trade(5, T0_US + 59_999_999, "100.01", "0.1")])  # tie at the end
    [candle] = await store.candles(
        "BTCUSDT", interval_us=MINUTE_US, from_us=T0_US, to_us=T0_US + MINUTE_US
    )
    assert candle == Candle(
        bucket_start_us=T0_US,
        open=Decimal("100.10"),
        high=Decimal("100.30"),
        low=Decimal("99.90"),
        close=Decimal("100.01"),
        volume=Decimal("3.85000001"),
        notional=Decimal("385.126000999"),
        trade_count=5,
    )
    exact_vwap = Fraction(Decimal("385.126000999")) / Fraction(Decimal("3.85000001"))
    assert abs(Fraction(candle.vwap) - exact_vwap) < exact_vwap / 10**32  # 34 digits


async def test_candles_cover_the_half_open_range_oldest_first(store: TradeStore) -> None:
    """Buckets in [from, to) only, oldest first; empty minutes are left out."""
    await store.write(
        [
            trade(1, T0_US - 1, "1"),
            trade(2, T0_US, "2"),
            trade(3, T0_US + 2 * MINUTE_US + 7, "3"),
            trade(4, T0_US + 3 * MINUTE_US, "4"),
        ]
    )
    candles = await store.candles(
        "BTCUSDT", interval_us=MINUTE_US, from_us=T0_US, to_us=T0_US + 3 * MINUTE_US
    )
    assert [(c.bucket_start_us, c.open) for c in candles] == [
        (T0_US, Decimal(2)),
        (T0_US + 2 * MINUTE_US, Decimal(3)),
    ]


@pytest.mark.parametrize("interval_us", INTERVALS_US)
async def test_candles_equal_the_naive_reference(store: TradeStore, interval_us: int) -> None:
    """1,500 trades with ties and stragglers: every interval, all exchanges and one."""
    trades = random_trades(1_500, seed=interval_us, exchanges=("binance", "kraken"))
    await write_in_batches(store, trades)
    assert await all_candles(store, interval_us) == reference_candles(trades, interval_us)
    kraken = [t for t in trades if t.exchange == "kraken"]
    assert await all_candles(store, interval_us, "kraken") == reference_candles(kraken, interval_us)


async def test_candles_of_an_unknown_or_hostile_symbol_are_empty(store: TradeStore) -> None:
    """No trades, no candles; SQL in a symbol is data."""
    await store.write([trade(1, T0_US)])
    for symbol in ["DOGEUSDT", "BTCUSDT' OR '1'='1"]:
        assert await store.candles(symbol, interval_us=MINUTE_US, from_us=0, to_us=2 * T0_US) == []


# --- keyset-paged history ---------------------------------------------------------------------


def keys(page: Iterable[ScoredTrade]) -> list[str]:
    return [item.trade.trade_id for item in page]


async def read_all_pages(store: TradeStore, limit: int, **bounds: object) -> tuple[list[str], int]:
    """Follows next_key until the last page; returns the ids and the number of pages."""
    before = bounds.pop("before", END_OF_HISTORY)
    assert isinstance(before, HistoryKey)
    seen: list[str] = []
    pages = 0
    while True:
        page = await store.history_page("BTCUSDT", limit=limit, before=before, **bounds)  # type: ignore[arg-type]
        pages += 1
        seen += keys(page.trades)
        if page.next_key is None:
            return seen, pages
        assert len(page.trades) == limit
        before = page.next_key


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 100])
async def test_pages_walk_every_trade_once_newest_first(store: TradeStore, limit: int) -> None:
    """Following the cursor visits each trade exactly once, in (time, id) descending order,
    even through runs of trades at the same microsecond."""
    times_us = [T0_US + offset for offset in [0, 0, 0, 5, 5, 9, 9, 9, 9, 12]]
    await store.write([trade(n, time_us) for n, time_us in enumerate(times_us)])
    seen, pages = await read_all_pages(store, limit)
    assert seen == ["9", "8", "7", "6", "5", "4", "3", "2", "1", "0"]
    assert pages == -(-len(times_us) // limit)  # no empty page after a full last one
    assert keys(await store.history("BTCUSDT", limit=100)) == seen  # the contract's order


async def test_page_bounds_are_inclusive_and_filter_by_exchange(store: TradeStore) -> None:
    """start_us and the key bound the page; `exchange` keeps one stream."""
    await store.write([trade(n, T0_US + n * 1_000) for n in range(10)])
    await store.write([trade("k", T0_US + 5_000, exchange="kraken")])
    page = await store.history_page(
        "BTCUSDT",
        limit=100,
        before=HistoryKey(T0_US + 6_000, END_OF_HISTORY.row_id),
        start_us=T0_US + 3_000,
    )
    assert keys(page.trades) == ["6", "k", "5", "4", "3"]
    assert page.next_key is None
    stream = await store.history_page(
        "BTCUSDT", limit=2, before=END_OF_HISTORY, start_us=T0_US + 3_000, exchange="kraken"
    )
    assert (keys(stream.trades), stream.next_key) == (["k"], None)


async def test_history_page_of_an_unknown_symbol_is_empty(store: TradeStore) -> None:
    """Nothing stored for the symbol: no trades and no next page."""
    await store.write([trade(1, T0_US)])
    page = await store.history_page("ETHUSDT", limit=10, before=END_OF_HISTORY)
    assert (page.trades, page.next_key) == ([], None)


# --- signal changes ---------------------------------------------------------------------------

B, S, H = Signal.BUY, Signal.SELL, Signal.HOLD


def signal_stream(signals: Sequence[Signal], exchange: str = "binance") -> list[ScoredTrade]:
    """Trade n at T0 + n ms, priced 100 + n, scored `signals[n]`."""
    return [
        trade(f"{exchange}-{n}", T0_US + n * 1_000, str(100 + n), exchange=exchange, signal=s)
        for n, s in enumerate(signals)
    ]


def changes_of(found: Iterable[object]) -> list[tuple[str, str, str]]:
    return [
        (c.scored.trade.trade_id, c.previous.value, c.scored.signal.value)  # type: ignore[attr-defined]
        for c in found
    ]


async def test_signal_changes_skip_holds_and_come_newest_first(store: TradeStore) -> None:
    """Only BUY<->SELL flips count, HOLDs in between are transparent; newest first, limited."""
    await store.write(signal_stream([H, B, H, B, S, S, H, H, B, S]))
    found = await store.signal_changes("BTCUSDT", start_us=0, end_us=2 * T0_US, limit=100)
    assert changes_of(found) == [
        ("binance-9", "BUY", "SELL"),
        ("binance-8", "SELL", "BUY"),
        ("binance-4", "BUY", "SELL"),
    ]
    assert found[0].scored.trade.price == Decimal(109)
    limited = await store.signal_changes("BTCUSDT", start_us=0, end_us=2 * T0_US, limit=2)
    assert changes_of(limited) == changes_of(found)[:2]


async def test_signal_change_at_the_start_of_the_range_looks_before_it(
    store: TradeStore,
) -> None:
    """The first trade in the range compares with the last BUY/SELL stored before the range."""
    await store.write(signal_stream([B, H, S, S, B]))
    found = await store.signal_changes(
        "BTCUSDT", start_us=T0_US + 2_000, end_us=T0_US + 3_000, limit=10
    )
    assert changes_of(found) == [("binance-2", "BUY", "SELL")]
    assert await store.signal_changes("BTCUSDT", start_us=0, end_us=T0_US, limit=10) == []


async def test_signal_changes_stay_within_each_stream(store: TradeStore) -> None:
    """Streams of other exchanges never count as a stream's previous signal."""
    await store.write(signal_stream([B, B, S]) + signal_stream([S, S, S], exchange="kraken"))
    found = await store.signal_changes("BTCUSDT", start_us=0, end_us=2 * T0_US, limit=10)
    assert changes_of(found) == [("binance-2", "BUY", "SELL")]
    assert (
        await store.signal_changes(
            "BTCUSDT", start_us=0, end_us=2 * T0_US, limit=10, exchange="kraken"
        )
        == []
    )


# --- SQLite and PostgreSQL side by side -------------------------------------------------------


@dataclass
class Both:
    sqlite: TradeStore
    postgres: TradeStore


@pytest.fixture
async def both(
    clean_postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Both]:
    sqlite = await open_store(f"sqlite:///{tmp_path_factory.mktemp('both') / 'trades.db'}")
    postgres = await open_store(clean_postgres_url)
    yield Both(sqlite, postgres)
    await sqlite.close()
    await postgres.close()


@pytest.mark.infra
async def test_sqlite_and_postgres_give_the_same_answers(both: Both) -> None:
    """Same trades, same candles (every interval, merged and per exchange), pages and signals."""
    trades = random_trades(3_000, seed=9, exchanges=("binance", "coinbase", "kraken"))
    rng = random.Random(3)
    scored = [ScoredTrade(t, None, rng.choice([B, S, S, H])) for t in trades]
    for store in (both.sqlite, both.postgres):
        for start in range(0, len(scored), 700):
            await store.write(scored[start : start + 700])
    for interval_us in INTERVALS_US:
        for exchange in (None, "kraken"):
            sqlite = await all_candles(both.sqlite, interval_us, exchange)
            assert sqlite == await all_candles(both.postgres, interval_us, exchange)
            assert len(sqlite) > 1
    sqlite_pages = await read_all_pages(both.sqlite, 97, start_us=T0_US + 3_600_000_000)
    assert sqlite_pages == await read_all_pages(both.postgres, 97, start_us=T0_US + 3_600_000_000)
    window = {"start_us": T0_US + 3_600_000_000, "end_us": T0_US + 6 * 24 * 3_600_000_000}
    sqlite_changes = await both.sqlite.signal_changes("BTCUSDT", limit=1000, **window)
    assert len(sqlite_changes) > 300
    assert sqlite_changes == await both.postgres.signal_changes("BTCUSDT", limit=1000, **window)


# --- the continuous-aggregate path of PostgreSQL ----------------------------------------------

_TIMESCALE_OPTIONS = re.compile(r"WITH \(timescaledb\.continuous[^)]*\)")
_TIME_BUCKET = re.compile(r"time_bucket\((INTERVAL '[^']+'), (\w+)\)")
_POLICY = re.compile(r"SELECT add_continuous_aggregate_policy\(.*?\);", re.DOTALL)
AGGREGATES = ["trades_candles_1m", "trades_candles_5m", "trades_candles_15m"]
AGGREGATES += ["trades_candles_1h", "trades_candles_1d"]


def plain_postgres_aggregates() -> str:
    """Migration 0004 turned into plain materialized views: time_bucket becomes date_bin from
    time_bucket's default origin, the TimescaleDB options and policies go."""
    sql = (
        resources.files("tickpipe.adapters.store")
        .joinpath("sql/postgres/0004_candle_aggregates.sql")
        .read_text()
    )
    sql = _TIMESCALE_OPTIONS.sub("", sql)
    sql = _TIME_BUCKET.sub(r"date_bin(\1, \2, TIMESTAMPTZ '2000-01-03 00:00:00+00')", sql)
    return _POLICY.sub("", sql)


async def postgres_execute(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
def aggregate_views(clean_postgres_url: str) -> Iterable[str]:
    """The session database, with the candle aggregates dropped again after the test."""
    yield clean_postgres_url
    drop = [f"DROP MATERIALIZED VIEW IF EXISTS {name} CASCADE" for name in reversed(AGGREGATES)]
    run_async(lambda: postgres_execute(clean_postgres_url, *drop))


@pytest.mark.infra
async def test_postgres_reads_candles_from_the_aggregates_when_they_exist(
    aggregate_views: str,
) -> None:
    """With migration 0004's aggregates (as plain materialized views here), candles come from
    them and equal the ones computed from `trades`; 1s still reads `trades`."""
    trades = random_trades(2_000, seed=4, exchanges=("binance", "kraken"))
    raw = await open_store(aggregate_views)
    try:
        await write_in_batches(raw, trades)
        expected = {
            (iv, ex): await all_candles(raw, iv, ex)
            for iv in INTERVALS_US
            for ex in (None, "binance")
        }
        await postgres_execute(
            aggregate_views,
            plain_postgres_aggregates(),
            *[f"REFRESH MATERIALIZED VIEW {name}" for name in AGGREGATES],
        )
        # Stored after the refresh: the materialized views do not see it, `trades` does.
        late = new_trade(
            exchange="binance",
            symbol="BTCUSDT",
            trade_id="late",
            price="1",
            quantity="1",
            side=None,
            exchange_time_us=T0_US,
            ingest_time_us=T0_US,
        )
        await raw.write([ScoredTrade(late, None, Signal.HOLD)])
    finally:
        await raw.close()
    aggregated = await open_store(aggregate_views)
    try:
        for (interval_us, exchange), candles in expected.items():
            found = await all_candles(aggregated, interval_us, exchange)
            if interval_us == CandleInterval.S1.length_us:
                assert found != candles  # from `trades`: the late trade is in
            else:
                assert found == candles, (interval_us, exchange)
    finally:
        await aggregated.close()
