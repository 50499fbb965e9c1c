"""tickpipe.client against a real `tickpipe run`: history through every page equals the
database, candles cover the range, DataFrames keep exact decimals, the stream reconnects."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from fixtures.procs import TICKPIPE, Tickpipe, free_port, tickpipe_process
from tickpipe.client import ApiError, Client

FIRST_US = 1_714_564_800_000_000  # 2024-05-01T12:00:00Z
PRICES = ("150.1234", "149.99", "0.00000001", "151")


class Gateway:
    def __init__(self, proc: Tickpipe, port: int, db: Path, env: dict[str, str], log: Path):
        self.proc, self.port, self.db, self.env, self.log = proc, port, db, env, log
        self.base = f"http://127.0.0.1:{port}"


def recorded(count: int) -> str:
    return "".join(
        orjson.dumps(
            {
                "exchange": "binance" if n % 10 else "coinbase",
                "symbol": "SOLUSDT",
                "trade_id": str(n),
                "price": PRICES[n % 4],
                "quantity": f"{n % 7 + 1}.5",
                "side": "buy" if n % 2 else "sell",
                "exchange_time_us": FIRST_US + n * 100_000,  # 10 per second
            }
        ).decode()
        + "\n"
        for n in range(count)
    )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("client")
    (tmp / "sol.jsonl").write_text(recorded(2_500))
    env = {"PATH": "/usr/bin:/bin", "TICKPIPE_DATABASE_URL": f"sqlite:///{tmp}/t.db"}
    subprocess.run(
        [*TICKPIPE, "replay", "--speed", "max", str(tmp / "sol.jsonl")],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    env |= {"TICKPIPE_HTTP_PORT": str(port), "TICKPIPE_SYMBOLS": "ETHUSDT"}
    env |= {"TICKPIPE_SIM_RATE": "50"}
    with tickpipe_process(["run"], env, tmp / "run.log") as proc:
        proc.wait_http(f"http://127.0.0.1:{port}/readyz")
        yield Gateway(proc, port, tmp / "t.db", env, tmp / "run.log")


def stored(db: Path, where: str = "") -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            "SELECT exchange, trade_id, price, quantity FROM trades"  # noqa: S608
            f" WHERE symbol = 'SOLUSDT' {where} ORDER BY time DESC, id DESC"
        ).fetchall()


def test_history_follows_the_cursor_through_every_page(gateway: Gateway) -> None:
    """2,500 trades (three pages) come back newest first, equal to the database, as Decimal."""
    trades = Client(gateway.base).history("SOL-USDT")
    assert len(trades) == 2_500
    assert [(t["exchange"], t["trade_id"], t["price"], t["quantity"]) for t in trades] == [
        (exchange, trade_id, Decimal(price), Decimal(quantity))
        for exchange, trade_id, price, quantity in stored(gateway.db)
    ]
    assert all(isinstance(t["price"], Decimal) for t in trades)


def test_history_cuts_by_exchange_and_time(gateway: Gateway) -> None:
    """exchange= and [start, end] (ISO and epoch ms) select exactly the matching rows."""
    trades = Client(gateway.base).history(
        "SOLUSDT",
        start="2024-05-01T12:00:10Z",
        end=(FIRST_US + 200_000_000) // 1000,
        exchange="binance",
    )
    assert [t["trade_id"] for t in trades] == [
        trade_id
        for exchange, trade_id, _, _ in stored(gateway.db)
        if exchange == "binance" and 100 <= int(trade_id) <= 2_000
    ]


def test_candles_cover_every_trade_of_the_range(gateway: Gateway) -> None:
    """1s candles from start to end, fetched in several requests, count each trade once."""
    candles = Client(gateway.base).candles(
        "SOLUSDT", interval="1s", start=FIRST_US // 1000, end=(FIRST_US + 250_000_000) // 1000
    )
    assert len(candles) == 250
    assert sum(c["trade_count"] for c in candles) == 2_500
    times = [c["timestamp"] for c in candles]
    assert times == sorted(times)


def test_an_api_error_carries_status_and_detail(gateway: Gateway) -> None:
    """A bad symbol is an ApiError with the gateway's 422 detail, never a bare HTTPError."""
    with pytest.raises(ApiError) as raised:
        Client(gateway.base).history("BTC$")
    assert raised.value.status == 422


def test_frames_keep_decimals_and_a_utc_index(gateway: Gateway) -> None:
    """history_frame: oldest first on a UTC DatetimeIndex; Decimal or str amounts on request."""
    client = Client(gateway.base)
    frame = client.history_frame("SOLUSDT", exchange="coinbase")
    assert len(frame) == 250
    assert str(frame.index.tz) == "UTC"
    assert frame.index.is_monotonic_increasing
    assert frame["price"].iloc[0] == Decimal("150.1234")
    as_text = client.candles_frame("SOLUSDT", interval="1m", decimals="str")
    assert isinstance(as_text["close"].iloc[0], str)


def test_frames_without_pandas_say_what_to_install(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No pandas: one ImportError naming the tickpipe[pandas] extra."""
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pip install 'tickpipe\[pandas\]'"):
        Client(gateway.base).history_frame("SOLUSDT", exchange="coinbase")


async def test_stream_reconnects_by_itself_and_says_so(tmp_path: Path) -> None:
    """Live ETHUSDT frames; the gateway restarts on the same port; a `reconnected` item, then
    frames again, without the caller doing anything."""
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "TICKPIPE_DATABASE_URL": f"sqlite:///{tmp_path}/t.db",
        "TICKPIPE_HTTP_PORT": str(port),
        "TICKPIPE_SYMBOLS": "ETHUSDT",
        "TICKPIPE_SIM_RATE": "50",
    }
    stream = Client(f"http://127.0.0.1:{port}").stream(["ETHUSDT"])
    with tickpipe_process(["run"], env, tmp_path / "first.log") as first_run:
        first_run.wait_http(f"http://127.0.0.1:{port}/readyz")
        async with asyncio.timeout(30):
            first = await anext(stream)
        assert first_run.terminate() == 0
    stopped_ms = time.time() * 1000
    assert (first["type"], first["symbol"]) == ("trade", "ETHUSDT")
    with tickpipe_process(["run"], env, tmp_path / "second.log"):
        async with asyncio.timeout(30):
            items = [await anext(stream)]
            while items[-1]["type"] != "trade" or "reconnected" not in types(items):
                items.append(await anext(stream))
        await stream.aclose()
    # Frames the first run sent before it stopped may still be in the client's buffer.
    reconnected = types(items).index("reconnected")
    assert types(items) == ["trade"] * reconnected + ["reconnected", "trade"]
    assert items[reconnected]["down_s"] > 0
    assert all(item["timestamp"] < stopped_ms for item in items[:reconnected])
    assert items[-1]["timestamp"] > stopped_ms, "the last frame is from the second run"


def types(items: list[dict[str, Any]]) -> list[str]:
    return [str(item["type"]) for item in items]
