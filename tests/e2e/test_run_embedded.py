"""`tickpipe run` on the embedded default, as a new user runs it: a real process, real HTTP and
WebSocket clients, the SQLite file checked afterwards."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from fixtures.procs import Tickpipe, free_port, tickpipe_process

WINDOW = 5
WS_FIELDS = {
    "type",
    "exchange",
    "symbol",
    "trade_id",
    "price",
    "quantity",
    "sma",
    "signal",
    "timestamp",
}
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


class Running:
    def __init__(self, proc: Tickpipe, base: str, db_path: Path) -> None:
        self.proc, self.base, self.db_path = proc, base, db_path
        self.ws = base.replace("http://", "ws://") + "/ws"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("run")
    port = free_port()
    env = {
        "TICKPIPE_HTTP_PORT": str(port),
        "TICKPIPE_DATABASE_URL": f"sqlite:///{tmp}/tickpipe.db",
        "TICKPIPE_SIM_RATE": "200",
        "TICKPIPE_SIM_SEED": "7",
        "TICKPIPE_SMA_WINDOW": str(WINDOW),
    }
    with tickpipe_process(["run"], env, tmp / "run.log") as proc:
        base = f"http://127.0.0.1:{port}"
        startup_s = proc.wait_http(base + "/readyz")
        assert startup_s < 10, f"took {startup_s:.1f}s to become ready"
        yield Running(proc, base, tmp / "tickpipe.db")


async def collect(url: str, count: int, timeout_s: float = 15.0) -> list[dict[str, object]]:
    frames: list[dict[str, object]] = []
    async with connect(url) as ws:
        async with asyncio.timeout(timeout_s):
            while len(frames) < count:
                frames.append(orjson.loads(await ws.recv()))
    return frames


async def test_websocket_frames_carry_the_contract_fields_and_a_correct_sma(
    running: Running,
) -> None:
    """Every frame has the contract's fields; its SMA is the mean of the last N prices seen."""
    frames = await collect(running.ws, 300)
    prices: dict[str, list[Decimal]] = defaultdict(list)
    last_id: dict[str, int] = {}
    checked = 0
    for frame in frames:
        assert frame.keys() >= WS_FIELDS
        assert frame["type"] == "trade"
        assert frame["exchange"] == "simulated"
        assert isinstance(frame["price"], float)
        assert isinstance(frame["quantity"], float)
        assert isinstance(frame["timestamp"], int)
        symbol, trade_id = str(frame["symbol"]), int(str(frame["trade_id"]))
        if symbol in last_id:
            assert trade_id == last_id[symbol] + 1, "frames of a symbol arrive in order, no gaps"
        last_id[symbol] = trade_id
        prices[symbol].append(Decimal(repr(frame["price"])))
        seen = prices[symbol]
        if len(seen) >= WINDOW:
            expected = sum(seen[-WINDOW:]) / WINDOW
            assert frame["sma"] == pytest.approx(float(expected), rel=1e-9)
            price = Decimal(repr(frame["price"]))
            expected_signal = "BUY" if price > expected else "SELL" if price < expected else "HOLD"
            assert frame["signal"] == expected_signal
            checked += 1
    assert checked > 200


async def test_websocket_symbols_filter_limits_the_stream(running: Running) -> None:
    """`?symbols=ETHUSDT` delivers ETHUSDT frames only."""
    frames = await collect(running.ws + "?symbols=ETHUSDT", 50)
    assert {f["symbol"] for f in frames} == {"ETHUSDT"}


async def test_websocket_rejects_an_invalid_symbol_filter(running: Running) -> None:
    """A malformed `?symbols=` closes with 1008 and a reason instead of crashing."""
    async with connect(running.ws + "?symbols=BTC%24%24") as ws:
        with pytest.raises(Exception, match="1008"):
            await ws.recv()


def test_history_is_newest_first_and_matches_the_database(running: Running) -> None:
    """`/history` returns the stored rows, newest first, with exact values and the limit."""
    rows = httpx.get(running.base + "/api/v1/history/BTCUSDT?limit=50").json()
    assert len(rows) == 50
    assert all(row.keys() == HISTORY_FIELDS for row in rows)
    times = [row["timestamp"] for row in rows]
    assert times == sorted(times, reverse=True)
    db = sqlite3.connect(running.db_path)
    for row in rows[:10]:
        price, quantity, time_text = db.execute(
            "SELECT price, quantity, time FROM trades WHERE symbol = ? AND trade_id = ?"
            " AND time = ?",
            (row["symbol"], row["trade_id"], row["time"]),
        ).fetchone()
        assert Decimal(price) == Decimal(repr(row["price"]))
        assert Decimal(quantity) == Decimal(repr(row["quantity"]))
        assert time_text.endswith("Z")
    lowercase = httpx.get(running.base + "/api/v1/history/btcusdt?limit=1&exchange=simulated")
    assert lowercase.status_code == 200
    assert len(lowercase.json()) == 1
    assert httpx.get(running.base + "/api/v1/history/NOPEUSDT").json() == []


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=1001", "limit=abc", "exchange=nasdaq", "limit=-5"]
)
def test_bad_history_parameters_get_a_json_422(running: Running, query: str) -> None:
    """Malformed query parameters are a 422 with a JSON detail, never a 500."""
    response = httpx.get(running.base + f"/api/v1/history/BTCUSDT?{query}")
    assert response.status_code == 422
    assert "detail" in response.json()


def test_snapshots_and_btc_follow_the_latest_trade(running: Running) -> None:
    """`/btc` and `/snapshot` give the latest trade with SMA, window and signal."""
    btc = httpx.get(running.base + "/api/v1/btc").json()
    assert btc.keys() == {"symbol", "price", "sma_20", "recommendation"}
    assert btc["symbol"] == "BTCUSDT"
    assert btc["recommendation"] in {"BUY", "SELL", "HOLD"}
    snap = httpx.get(running.base + "/api/v1/snapshot/ETHUSDT?exchange=simulated").json()
    assert snap.keys() == {
        "exchange",
        "symbol",
        "trade_id",
        "price",
        "sma",
        "window",
        "signal",
        "timestamp",
    }
    assert snap["window"] == WINDOW
    assert snap["symbol"] == "ETHUSDT"
    symbols = httpx.get(running.base + "/api/v1/symbols").json()
    assert {(s["exchange"], s["symbol"]) for s in symbols} == {
        ("simulated", "BTCUSDT"),
        ("simulated", "ETHUSDT"),
    }


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/snapshot/DOGEUSDT", 404),
        ("/api/v1/snapshot/DOGEUSDT?exchange=kraken", 404),
        ("/no/such/path", 404),
        ("/api/v1/history/" + "X" * 41, 422),
        ("/api/v1/history/BTC%3BDROP%20TABLE%20trades", 422),
    ],
)
def test_errors_are_json(running: Running, path: str, status: int) -> None:
    """Unknown things are 404 JSON, invalid ones 422 JSON."""
    response = httpx.get(running.base + path)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert "detail" in response.json()


def test_probes_metrics_and_docs_answer(running: Running) -> None:
    """`/healthz`, `/readyz`, `/metrics` and `/docs` answer."""
    assert httpx.get(running.base + "/healthz").status_code == 200
    ready = httpx.get(running.base + "/readyz")
    assert ready.status_code == 200
    assert "database" in ready.json()["checks"]
    metrics = httpx.get(running.base + "/metrics").text
    assert "tickpipe_trades_processed_total" in metrics
    assert httpx.get(running.base + "/docs").status_code == 200
    assert "/api/v1/history/{symbol}" in httpx.get(running.base + "/openapi.json").json()["paths"]


def test_sigterm_stops_cleanly_and_stores_every_trade_once(running: Running) -> None:
    """After SIGTERM the process exits 0 within 10 s and every trade 1..N of each symbol is
    stored exactly once (the last batch was flushed). Runs last in this module."""
    assert running.proc.terminate(timeout_s=10) == 0
    db = sqlite3.connect(running.db_path)
    for symbol, count, distinct, min_id, max_id in db.execute(
        "SELECT symbol, COUNT(*), COUNT(DISTINCT trade_id), MIN(CAST(trade_id AS INTEGER)),"
        " MAX(CAST(trade_id AS INTEGER)) FROM trades GROUP BY symbol"
    ):
        assert count == distinct, f"{symbol}: duplicates"
        assert count == max_id - min_id + 1, f"{symbol}: {count} rows, ids {min_id}..{max_id}"
