"""`tickpipe run` following Binance and Coinbase at once (local servers speaking each protocol):
every trade of both is stored exactly, and Binance goes on after Coinbase drops and stays away,
while /readyz names coinbase."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest

from adapters.exchanges.fake_exchange import FakeExchange, Session, run_in_thread
from e2e.test_run_exchanges import first_connection, second_connection, stored
from fixtures.procs import free_port, tickpipe_process

pytestmark = pytest.mark.slow


def test_run_follows_two_venues_and_survives_one_going_away(tmp_path: Path) -> None:
    """Binance: 50 trades over a drop and a replay; Coinbase: 30, then gone for good."""
    coinbase_gone = threading.Event()

    async def coinbase_then_gone(session: Session) -> None:
        await session.send_trades(30, interval_s=0.005)
        await asyncio.sleep(0.3)  # let the last frames reach the client
        coinbase_gone.set()
        asyncio.get_running_loop().create_task(session.fake.stop())  # refuses reconnects
        await session.hold()

    async def binance_after_coinbase(session: Session) -> None:
        while not coinbase_gone.is_set():
            await asyncio.sleep(0.01)
        await second_connection(session)

    binance = FakeExchange(
        "binance", ["BTCUSDT", "ETHUSDT"], scripts=[first_connection, binance_after_coinbase]
    )
    coinbase = FakeExchange("coinbase", ["BTC-USD", "ETH-USD"], scripts=[coinbase_then_gone])
    port = free_port()
    with run_in_thread(binance), run_in_thread(coinbase):
        env = {
            "TICKPIPE_SOURCE": "binance,coinbase",
            "TICKPIPE_SYMBOLS": "binance:BTCUSDT,coinbase:BTC-USD,binance:ETHUSDT,coinbase:ETH-USD",
            "TICKPIPE_BINANCE_URL": binance.url,
            "TICKPIPE_COINBASE_URL": coinbase.url,
            "TICKPIPE_DATABASE_URL": f"sqlite:///{tmp_path}/t.db",
            "TICKPIPE_HTTP_PORT": str(port),
        }
        with tickpipe_process(["run"], env, tmp_path / "run.log") as run:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and len(binance.history) < 50:
                time.sleep(0.1)
            expected = sorted(t.key() for t in binance.history + coinbase.history)
            assert len(binance.history) == 50
            assert len(coinbase.history) == 30
            rows: list[tuple[object, ...]] = []
            while time.monotonic() < deadline and len(rows) < len(expected):
                time.sleep(0.2)
                if (tmp_path / "t.db").exists():
                    rows = stored(tmp_path / "t.db")
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            assert run.terminate() == 0, run.log()
    assert sorted(stored(tmp_path / "t.db")) == expected
    assert ready.status_code == 503
    assert set(ready.json()["failing"]) == {"coinbase"}
    assert binance.connections >= 2, "binance reconnected after its drop"
