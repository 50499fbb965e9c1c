"""The TradeStore port suite, run against every store adapter (SQLite file, PostgreSQL)."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures.postgres import drop_database
from fixtures.trades import BASE_TIME_US, make_trade
from tickpipe.adapters.store.errors import StoreUnavailable
from tickpipe.adapters.store.migrate import migrate
from tickpipe.adapters.store.postgres import open_postgres_store
from tickpipe.adapters.store.sqlite import open_sqlite_store
from tickpipe.core.scoring import ScoredTrade
from tickpipe.core.signal import Signal
from tickpipe.core.trade import Side, Trade
from tickpipe.ports import TradeStore


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.infra)])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('store') / 'trades.db'}"
    url: str = request.getfixturevalue("clean_postgres_url")
    return url


_FRESH_NUMBERS = itertools.count(1_000, 100)


async def _open(store_url: str) -> TradeStore:
    if store_url.startswith("sqlite:"):
        await migrate(store_url)
        return await open_sqlite_store(store_url)
    return await open_postgres_store(store_url)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[TradeStore]:
    opened = await _open(store_url)
    yield opened
    await opened.close()


def scored(trade: Trade, sma: str | None = None, signal: Signal = Signal.HOLD) -> ScoredTrade:
    return ScoredTrade(trade, None if sma is None else Decimal(sma), signal)


def stream(
    numbers: range | list[int],
    *,
    exchange: str = "simulated",
    symbol: str = "BTCUSDT",
    price: Decimal | None = None,
) -> list[ScoredTrade]:
    """Trades `numbers` of one stream, trade n priced n unless a price is given."""
    return [
        scored(make_trade(n, exchange=exchange, symbol=symbol, price=price or Decimal(n)))
        for n in numbers
    ]


def trade_ids(trades: list[ScoredTrade]) -> list[str]:
    return [item.trade.trade_id for item in trades]


async def test_exact_decimals_round_trip(store: TradeStore) -> None:
    """Prices and quantities come back exactly as written, digits and trailing zeros included."""
    texts = [
        "0.00000001",
        "65000.12345678",
        "0.00100000",
        "123456789012345678901234567890",
        "1234567890.12345678901234567890",
        "0.000000000000000000000000000001",
    ]
    batch = [scored(make_trade(n, price=text, quantity=text)) for n, text in enumerate(texts, 1)]
    assert await store.write(batch) == len(texts)
    stored = {item.trade.trade_id: item.trade for item in await store.history("BTCUSDT", limit=10)}
    for n, text in enumerate(texts, 1):
        assert stored[str(n)].price.as_tuple() == Decimal(text).as_tuple()  # digits and scale
        assert stored[str(n)].quantity.as_tuple() == Decimal(text).as_tuple()
        assert stored[str(n)] == batch[n - 1].trade


async def test_rewriting_a_batch_stores_nothing_new(store: TradeStore) -> None:
    """Writing the same batch twice stores each trade once and returns 0 the second time."""
    batch = stream(range(1, 6))
    assert await store.write(batch) == 5
    assert await store.write(batch) == 0
    assert trade_ids(await store.history("BTCUSDT", limit=100)) == ["5", "4", "3", "2", "1"]


async def test_overlapping_batch_stores_only_the_new_trades(store: TradeStore) -> None:
    """A batch overlapping stored trades returns the count of new rows and stores each once."""
    assert await store.write(stream(range(1, 6))) == 5
    assert await store.write(stream(range(3, 9))) == 3
    history = await store.history("BTCUSDT", limit=100)
    assert trade_ids(history) == [str(n) for n in range(8, 0, -1)]


async def test_duplicates_inside_one_batch_are_stored_once(store: TradeStore) -> None:
    """A batch repeating a trade stores it once."""
    assert await store.write(stream([1, 2, 2, 3, 1])) == 3
    assert trade_ids(await store.history("BTCUSDT", limit=100)) == ["3", "2", "1"]


async def test_a_large_batch_with_duplicates_is_stored_once_in_batch_order(
    store: TradeStore,
) -> None:
    """A batch larger than one SQL statement (SQLite: 500 rows) with duplicates and earlier
    rows in it stores each new trade once, counts them, and keeps the batch's order."""
    await store.write(stream([7, 3]))
    order = [n for n in range(1_234, 0, -1) if n % 97] + [1_500, 3, 2, 1_500]
    new = len(dict.fromkeys(n for n in order if n not in (7, 3)))
    assert await store.write(stream(order)) == new
    window = await store.window_prices(make_trade(9_999), 2_000)
    expected = [7, 3, *dict.fromkeys(n for n in order if n not in (7, 3))]
    assert window == [Decimal(n) for n in expected]


async def test_same_trade_id_at_another_time_is_another_trade(store: TradeStore) -> None:
    """Uniqueness is on (exchange, symbol, trade_id, time), as the contract says."""
    trade = make_trade(1)
    later = replace(trade, exchange_time_us=trade.exchange_time_us + 1)
    assert await store.write([scored(trade), scored(later)]) == 2


async def test_empty_batch_writes_nothing(store: TradeStore) -> None:
    """An empty batch is a no-op returning 0."""
    assert await store.write([]) == 0


async def test_window_prices_follow_processing_order_not_time(store: TradeStore) -> None:
    """window_prices returns batch (processing) order even when exchange times disagree."""
    order = [3, 1, 4, 2]  # trade n has time BASE + n ms, so time order is 1, 2, 3, 4
    await store.write(stream(order))
    await store.write(stream([9, 5]))
    newcomer = make_trade(100)
    assert await store.window_prices(newcomer, 10) == [Decimal(n) for n in [3, 1, 4, 2, 9, 5]]
    assert await store.window_prices(newcomer, 2) == [Decimal(9), Decimal(5)]


async def test_window_prices_of_a_stored_trade_count_only_earlier_rows(store: TradeStore) -> None:
    """For a trade already stored, only the trades processed before it form its window."""
    await store.write(stream(range(1, 11)))
    assert await store.window_prices(make_trade(5), 3) == [Decimal(2), Decimal(3), Decimal(4)]
    assert await store.window_prices(make_trade(5), 100) == [Decimal(n) for n in range(1, 5)]
    assert await store.window_prices(make_trade(1), 3) == []
    assert await store.window_prices(make_trade(11), 3) == [Decimal(8), Decimal(9), Decimal(10)]


async def test_window_prices_keep_order_after_a_replayed_batch(store: TradeStore) -> None:
    """The replay path (some rows already stored) still stores new rows in batch order."""
    await store.write(stream(range(1, 6)))
    assert await store.write(stream([4, 5, 8, 6, 7])) == 3
    expected = [Decimal(n) for n in [1, 2, 3, 4, 5, 8, 6, 7]]
    assert await store.window_prices(make_trade(100), 20) == expected


async def test_window_prices_stay_within_the_stream(store: TradeStore) -> None:
    """Other exchanges and symbols never leak into a stream's window."""
    await store.write(stream(range(1, 4)))
    await store.write(stream(range(1, 4), symbol="ETHUSDT", price=Decimal(7)))
    await store.write(stream(range(1, 4), exchange="binance", price=Decimal(8)))
    assert await store.window_prices(make_trade(50), 10) == [Decimal(1), Decimal(2), Decimal(3)]
    assert await store.window_prices(make_trade(50, exchange="binance"), 10) == [Decimal(8)] * 3


async def test_history_is_newest_first_and_limited(store: TradeStore) -> None:
    """history returns the newest `limit` trades by exchange time, newest first."""
    await store.write(stream([3, 1, 5, 2, 4]))
    assert trade_ids(await store.history("BTCUSDT", limit=3)) == ["5", "4", "3"]
    assert trade_ids(await store.history("BTCUSDT", limit=1000)) == ["5", "4", "3", "2", "1"]


async def test_history_filters_by_exchange(store: TradeStore) -> None:
    """history mixes exchanges unless one is named; other symbols never appear."""
    await store.write(stream([1, 3]))
    await store.write(stream([2], exchange="binance"))
    await store.write(stream([4], symbol="ETHUSDT"))
    mixed = await store.history("BTCUSDT", limit=10)
    assert [(t.trade.exchange, t.trade.trade_id) for t in mixed] == [
        ("simulated", "3"),
        ("binance", "2"),
        ("simulated", "1"),
    ]
    assert trade_ids(await store.history("BTCUSDT", limit=10, exchange="binance")) == ["2"]
    assert await store.history("BTCUSDT", limit=10, exchange="kraken") == []


async def test_unknown_symbol_has_empty_history_and_no_latest(store: TradeStore) -> None:
    """An unknown symbol reads as [] / None, not an error."""
    await store.write(stream([1]))
    assert await store.history("DOGEUSDT", limit=10) == []
    assert await store.latest("DOGEUSDT") is None


async def test_latest_is_the_newest_trade(store: TradeStore) -> None:
    """latest returns the newest trade of the symbol, optionally of one exchange."""
    await store.write(stream([1, 2]))
    await store.write(stream([3], exchange="binance"))
    newest = await store.latest("BTCUSDT")
    assert newest is not None
    assert (newest.trade.exchange, newest.trade.trade_id) == ("binance", "3")
    simulated = await store.latest("BTCUSDT", exchange="simulated")
    assert simulated is not None
    assert simulated.trade.trade_id == "2"


async def test_symbols_lists_the_latest_trade_of_every_stream(store: TradeStore) -> None:
    """symbols returns one row per (exchange, symbol): its latest trade."""
    await store.write(stream([1, 2]))
    await store.write(stream([1, 2, 3], symbol="ETHUSDT"))
    await store.write(stream([7], exchange="kraken", symbol="BTCUSD"))
    latest = {(t.trade.exchange, t.trade.symbol): t.trade.trade_id for t in await store.symbols()}
    assert latest == {
        ("simulated", "BTCUSDT"): "2",
        ("simulated", "ETHUSDT"): "3",
        ("kraken", "BTCUSD"): "7",
    }


async def test_symbols_of_an_empty_store_is_empty(store: TradeStore) -> None:
    """No trades, no symbols."""
    assert await store.symbols() == []


async def test_time_is_microsecond_exact(store: TradeStore) -> None:
    """Exchange and ingest times come back to the microsecond."""
    trade = replace(
        make_trade(1),
        exchange_time_us=BASE_TIME_US + 123_457,
        ingest_time_us=BASE_TIME_US + 999_999,
    )
    await store.write([scored(trade)])
    [stored] = await store.history("BTCUSDT", limit=1)
    assert stored.trade.exchange_time_us == BASE_TIME_US + 123_457
    assert stored.trade.ingest_time_us == BASE_TIME_US + 999_999


async def test_sma_signal_and_side_round_trip(store: TradeStore) -> None:
    """The stored SMA (float), signal and side (or its absence) come back as written."""
    batch = [
        scored(make_trade(1, side=None)),
        scored(make_trade(2, side=Side.SELL), sma="65000.1", signal=Signal.SELL),
        scored(make_trade(3), sma="0.000123", signal=Signal.BUY),
    ]
    await store.write(batch)
    assert list(reversed(await store.history("BTCUSDT", limit=10))) == batch


@pytest.mark.parametrize(
    "trade_id",
    ["back\\slash", "tab\there", "new\nline", "carriage\rreturn", "\\N", "\\.", "ends with \\"],
)
async def test_copy_format_characters_in_text_are_stored_verbatim(
    store: TradeStore, trade_id: str
) -> None:
    """What COPY's text format reads specially (backslash escapes, `\\N` for NULL, tabs and
    line ends between fields and rows, `\\.` for the end of data) is data like any other."""
    trade = replace(make_trade(1), trade_id=trade_id, symbol=f"BTC{trade_id}USDT")
    batch = [scored(trade), *stream([2, 3])]
    assert await store.write(batch) == 3
    [stored] = await store.history(f"BTC{trade_id}USDT", limit=10)
    assert stored.trade == trade
    assert [s.trade.trade_id for s in await store.history("BTCUSDT", limit=10)] == ["3", "2"]


# One database for all examples (a fresh one each would cost seconds): keys stay distinct.
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    smas=st.lists(
        st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=20
    )
)
async def test_any_sma_double_comes_back_as_the_same_double(
    store_url: str, smas: list[float]
) -> None:
    """The SMA column is a double: whatever text or binary form a store sends it in, the
    double read back is the one written (a Decimal made from its shortest repr)."""
    store = await _open(store_url)
    try:
        first = next(_FRESH_NUMBERS)
        batch = [scored(make_trade(first + n), sma=repr(value)) for n, value in enumerate(smas)]
        assert await store.write(batch) == len(batch)
        stored = await store.history("BTCUSDT", limit=len(batch))
        assert [s.sma for s in reversed(stored)] == [Decimal(repr(v)) for v in smas]
    finally:
        await store.close()


async def test_sql_looking_text_is_stored_and_matched_literally(store: TradeStore) -> None:
    """Quotes and SQL in symbols or trade ids are data: stored verbatim, never executed."""
    hostile = "x'); DROP TABLE trades; --"
    trade = replace(make_trade(1), trade_id=hostile, symbol="BTC'USDT")
    assert await store.write([scored(trade)]) == 1
    assert await store.history("BTCUSDT' OR '1'='1", limit=10) == []
    assert await store.latest("' OR 1=1 --") is None
    [stored] = await store.history("BTC'USDT", limit=10)
    assert stored.trade.trade_id == hostile
    assert await store.write(stream([1])) == 1  # the table is still there


async def test_ping_answers(store: TradeStore) -> None:
    """ping returns while the database answers."""
    await store.ping()


@pytest.mark.infra
async def test_postgres_ping_fails_clearly_once_the_database_is_gone(
    empty_postgres_url: str, postgres_admin_url: str
) -> None:
    """ping raises StoreUnavailable (the gateway's readyz answers 503) when PostgreSQL is gone."""
    await migrate(empty_postgres_url)
    store = await open_postgres_store(empty_postgres_url)
    try:
        await store.ping()
        drop_database(postgres_admin_url, empty_postgres_url.rsplit("/", 1)[-1])
        with pytest.raises(StoreUnavailable, match=r"PostgreSQL at .* is unavailable"):
            await store.ping()
    finally:
        await store.close()


@pytest.mark.slow
async def test_write_throughput_is_reported(store: TradeStore, store_url: str) -> None:
    """Prints rows/s of 10,000-row batches: all new (fast path) and with one stored row (replay)."""
    batch_rows, batches = 10_000, 5
    fast = [stream(range(i * batch_rows + 1, (i + 1) * batch_rows + 1)) for i in range(batches)]
    started = time.perf_counter()
    for batch in fast:
        assert await store.write(batch) == batch_rows
    fast_rows_per_s = batch_rows * batches / (time.perf_counter() - started)

    offset = batch_rows * batches
    replays = [
        [fast[0][0], *stream(range(offset + i * batch_rows + 1, offset + (i + 1) * batch_rows + 1))]
        for i in range(batches)
    ]
    started = time.perf_counter()
    for batch in replays:
        assert await store.write(batch) == batch_rows
    replay_rows_per_s = batch_rows * batches / (time.perf_counter() - started)
    backend = store_url.split(":", 1)[0]
    print(
        f"\n{backend}: write() {fast_rows_per_s:,.0f} rows/s (all new), "
        f"{replay_rows_per_s:,.0f} rows/s (batch with a stored row)"
    )
