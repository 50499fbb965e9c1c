"""The gateway's analytics routes over a real SQLite store: candles, paged history, signal
changes, and the 422s of malformed parameters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tickpipe.adapters.pubsub.memory import MemoryPubSub
from tickpipe.adapters.store.migrate import migrate
from tickpipe.adapters.store.sqlite import SqliteStore, open_sqlite_store
from tickpipe.core.scoring import ScoredTrade
from tickpipe.core.signal import Signal
from tickpipe.core.trade import Side, format_time_us, new_trade
from tickpipe.services.gateway.app import create_app

WINDOW = 5
T0_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
MINUTE_US = 60_000_000
HISTORY_FIELDS = {
    "time",
    "timestamp",
    "exchange",
    "symbol",
    "trade_id",
    "price",
    "quantity",
    "side",
    "sma",
    "signal",
}


def scored(
    n: int, time_us: int, price: str, quantity: str = "1", signal: Signal = Signal.HOLD
) -> ScoredTrade:
    trade = new_trade(
        exchange="binance",
        symbol="BTCUSDT",
        trade_id=str(n),
        price=price,
        quantity=quantity,
        side=Side.SELL,
        exchange_time_us=time_us,
        ingest_time_us=time_us,
    )
    return ScoredTrade(trade, None if signal is Signal.HOLD else Decimal(price), signal)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    url = f"sqlite:///{tmp_path}/gateway.db"
    await migrate(url)
    opened = await open_sqlite_store(url)
    yield opened
    await opened.close()


@pytest.fixture
async def client(store: SqliteStore) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, MemoryPubSub(WINDOW), {}, window=WINDOW)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        yield http


async def test_candles_are_oldest_first_with_exact_ohlcv(
    store: SqliteStore, client: httpx.AsyncClient
) -> None:
    """Default: the 1m candles up to the newest trade, oldest first, with VWAP and counts."""
    await store.write(
        [
            scored(1, T0_US + 1_000, "100.5", "2"),
            scored(2, T0_US + 2_000, "101.5", "2"),
            scored(3, T0_US + 3 * MINUTE_US, "99", "0.5"),
        ]
    )
    response = await client.get("/api/v1/candles/btc-usdt")
    assert response.status_code == 200
    assert response.json() == [
        {
            "time": "2024-01-01T00:00:00.000000Z",
            "timestamp": T0_US // 1000,
            "open": 100.5,
            "high": 101.5,
            "low": 100.5,
            "close": 101.5,
            "volume": 4.0,
            "quote_volume": 404.0,
            "vwap": 101.0,
            "trade_count": 2,
        },
        {
            "time": "2024-01-01T00:03:00.000000Z",
            "timestamp": (T0_US + 3 * MINUTE_US) // 1000,
            "open": 99.0,
            "high": 99.0,
            "low": 99.0,
            "close": 99.0,
            "volume": 0.5,
            "quote_volume": 49.5,
            "vwap": 99.0,
            "trade_count": 1,
        },
    ]


async def test_candle_windows_follow_start_end_and_limit(
    store: SqliteStore, client: httpx.AsyncClient
) -> None:
    """`start` (ISO or ms) opens the window, `limit` counts intervals, `end` cuts it."""
    await store.write([scored(n, T0_US + n * MINUTE_US, str(100 + n)) for n in range(10)])

    async def opens(query: str) -> list[float]:
        response = await client.get(f"/api/v1/candles/BTCUSDT?{query}")
        assert response.status_code == 200, response.text
        return [candle["open"] for candle in response.json()]

    start_ms = (T0_US + 2 * MINUTE_US) // 1000
    assert await opens(f"start={start_ms}&limit=3") == [102.0, 103.0, 104.0]
    assert await opens("start=2024-01-01T00:02:30Z&limit=3") == [102.0, 103.0, 104.0]
    assert await opens("start=2024-01-01T00:02:00%2B00:00&end=2024-01-01T00:03:00Z") == [
        102.0,
        103.0,
    ]
    assert await opens("end=2024-01-01T00:01:59.999Z&limit=2") == [100.0, 101.0]
    assert await opens("limit=2") == [108.0, 109.0]
    assert await opens("interval=5m") == [100.0, 105.0]
    assert await opens("interval=1d&exchange=binance") == [100.0]
    assert await opens("exchange=kraken") == []
    assert (await client.get("/api/v1/candles/ETHUSDT")).json() == []


@pytest.mark.parametrize(
    "query",
    [
        "interval=2m",
        "interval=",
        "limit=0",
        "limit=1001",
        "start=yesterday",
        "start=2024-02-30",
        "start=2024-05-01T12:00:00",  # RFC 3339 wants an offset
        "end=-5",
        "start=2024-01-02&end=2024-01-01",
        "exchange=nasdaq",
    ],
)
async def test_bad_candle_parameters_are_a_json_422(client: httpx.AsyncClient, query: str) -> None:
    """Unknown intervals, limits outside 1..1000, unreadable or reversed times: 422 JSON."""
    response = await client.get(f"/api/v1/candles/BTCUSDT?{query}")
    assert response.status_code == 422
    assert "detail" in response.json()


async def test_history_default_is_unchanged_and_pages_follow_the_cursor(
    store: SqliteStore, client: httpx.AsyncClient
) -> None:
    """The default body is the contract's list, newest first; X-Next-Cursor / Link lead through
    the rest without repeats or gaps, and the last page has no cursor."""
    await store.write([scored(n, T0_US + (n // 2) * 1_000, "100") for n in range(25)])
    first = await client.get("/api/v1/history/BTCUSDT?limit=10")
    rows = first.json()
    assert isinstance(rows, list)
    assert all(row.keys() == HISTORY_FIELDS for row in rows)
    seen = [row["trade_id"] for row in rows]
    assert seen == [str(n) for n in range(24, 14, -1)]
    cursor = first.headers["X-Next-Cursor"]
    assert first.headers["Link"].endswith('>; rel="next"')
    second = await client.get(f"/api/v1/history/BTCUSDT?limit=10&cursor={cursor}")
    seen += [row["trade_id"] for row in second.json()]
    link = second.headers["Link"]
    third = await client.get(link[link.index("<") + 1 : link.index(">")])
    seen += [row["trade_id"] for row in third.json()]
    assert seen == [str(n) for n in range(24, -1, -1)]
    assert "X-Next-Cursor" not in third.headers
    default = await client.get("/api/v1/history/BTCUSDT")
    assert [row["trade_id"] for row in default.json()] == seen
    assert "X-Next-Cursor" not in default.headers


async def test_history_start_and_end_bound_the_pages(
    store: SqliteStore, client: httpx.AsyncClient
) -> None:
    """start/end are inclusive; a cursor never reaches past `end`."""
    await store.write([scored(n, T0_US + n * 1_000, "100") for n in range(10)])
    start, end = format_time_us(T0_US + 3_000), (T0_US + 6_000) // 1000
    page = await client.get(f"/api/v1/history/BTCUSDT?start={start}&end={end}&limit=3")
    assert [row["trade_id"] for row in page.json()] == ["6", "5", "4"]
    rest = await client.get(
        f"/api/v1/history/BTCUSDT?start={start}&end={end}&limit=3"
        f"&cursor={page.headers['X-Next-Cursor']}"
    )
    assert [row["trade_id"] for row in rest.json()] == ["3"]


@pytest.mark.parametrize(
    "query",
    [
        "cursor=nonsense",
        "cursor=djI6MTox",
        "cursor=djE6OTk5OTk5OTk5OTk5OTk5OTk5OTk6MQ",
        "start=2024-13-01",
        "start=5&end=4",
        "limit=1001",
    ],
)
async def test_bad_history_parameters_are_a_json_422(client: httpx.AsyncClient, query: str) -> None:
    """Forged cursors and bad times are 422 JSON, never a 500."""
    response = await client.get(f"/api/v1/history/BTCUSDT?{query}")
    assert response.status_code == 422
    assert "detail" in response.json()


async def test_signals_list_the_changes_newest_first(
    store: SqliteStore, client: httpx.AsyncClient
) -> None:
    """BUY->SELL and SELL->BUY with the trade's time and price; HOLDs do not count."""
    signals = [Signal.BUY, Signal.HOLD, Signal.SELL, Signal.SELL, Signal.BUY]
    await store.write(
        [scored(n, T0_US + n * 1_000, str(100 + n), signal=s) for n, s in enumerate(signals)]
    )
    response = await client.get("/api/v1/signals/BTCUSDT")
    assert response.status_code == 200
    assert response.json() == [
        {
            "time": format_time_us(T0_US + 4_000),
            "timestamp": (T0_US + 4_000) // 1000,
            "exchange": "binance",
            "symbol": "BTCUSDT",
            "trade_id": "4",
            "price": 104.0,
            "sma": 104.0,
            "previous_signal": "SELL",
            "signal": "BUY",
        },
        {
            "time": format_time_us(T0_US + 2_000),
            "timestamp": (T0_US + 2_000) // 1000,
            "exchange": "binance",
            "symbol": "BTCUSDT",
            "trade_id": "2",
            "price": 102.0,
            "sma": 102.0,
            "previous_signal": "BUY",
            "signal": "SELL",
        },
    ]
    limited = await client.get("/api/v1/signals/BTCUSDT?limit=1&start=2024-01-01")
    assert [change["trade_id"] for change in limited.json()] == ["4"]
    assert (await client.get("/api/v1/signals/ETHUSDT")).json() == []


@pytest.mark.parametrize(
    "query",
    [
        "start=2024-01-01&end=2024-01-09",
        "limit=0",
        "end=garbage",
        "start=2024-01-02&end=2024-01-01",
    ],
)
async def test_bad_signal_parameters_are_a_json_422(client: httpx.AsyncClient, query: str) -> None:
    """Ranges over 7 days, reversed or unreadable times, bad limits: 422 JSON."""
    response = await client.get(f"/api/v1/signals/BTCUSDT?{query}")
    assert response.status_code == 422
    assert "detail" in response.json()


async def test_openapi_documents_the_new_routes(client: httpx.AsyncClient) -> None:
    """/openapi.json lists candles and signals, and history's cursor and paging headers."""
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {"/api/v1/candles/{symbol}", "/api/v1/signals/{symbol}"} <= paths.keys()
    history = paths["/api/v1/history/{symbol}"]["get"]
    assert {p["name"] for p in history["parameters"]} >= {"start", "end", "cursor", "limit"}
    assert "X-Next-Cursor" in history["responses"]["200"]["headers"]
