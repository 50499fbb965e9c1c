"""`tickpipe run` against local servers speaking each exchange's protocol: what is stored is
exactly what the exchange sent, through garbage frames, a dropped connection and replays."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.exchanges.fake_exchange import FakeExchange, Session, run_in_thread
from fixtures.procs import free_port, tickpipe_process
from tickpipe.core.trade import Side, datetime_to_time_us

pytestmark = pytest.mark.slow

VENUE_SYMBOLS = {
    "binance": ["BTCUSDT", "ETHUSDT"],
    "coinbase": ["BTC-USD", "ETH-USD"],
    "kraken": ["BTC/USD", "ETH/USD"],
}


async def first_connection(session: Session) -> None:
    """Trades, garbage in between, then the connection drops without a goodbye."""
    await session.send_trades(20, interval_s=0.005)
    await session.send_raw("{not json")
    price_field = "p" if session.fake.venue == "binance" else "price"
    await session.send_bad_trade(**{price_field: '"-1"'})
    await session.send_raw(b"\x00\xff")
    await session.send_trades(10, interval_s=0.005)
    await session.drop()


async def second_connection(session: Session) -> None:
    """After the reconnect: the last trades again (a replay), then new ones."""
    await session.replay(5)
    await session.send_trades(20, interval_s=0.005)
    await session.hold()


def stored(db_path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db_path) as db:
        rows = db.execute(
            "SELECT exchange, symbol, trade_id, price, quantity, side, time FROM trades ORDER BY id"
        ).fetchall()
    return [
        (
            *row[:3],
            str(Decimal(row[3])),  # same digits and exponent as the Decimal the exchange sent
            str(Decimal(row[4])),
            None if row[5] is None else Side(row[5]),
            datetime_to_time_us(datetime.fromisoformat(row[6])),
        )
        for row in rows
    ]


@pytest.mark.parametrize("venue", sorted(VENUE_SYMBOLS))
def test_run_stores_exactly_what_the_exchange_sent(venue: str, tmp_path: Path) -> None:
    """50 trades sent (plus garbage and 5 replayed) -> the same 50 rows, digit for digit."""
    fake = FakeExchange(venue, VENUE_SYMBOLS[venue], scripts=[first_connection, second_connection])
    with run_in_thread(fake):
        env = {
            "TICKPIPE_SOURCE": venue,
            "TICKPIPE_SYMBOLS": ",".join(VENUE_SYMBOLS[venue]),
            "TICKPIPE_EXCHANGE_URL": fake.url,
            "TICKPIPE_DATABASE_URL": f"sqlite:///{tmp_path}/t.db",
            "TICKPIPE_HTTP_PORT": str(free_port()),
        }
        with tickpipe_process(["run"], env, tmp_path / "run.log") as run:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(fake.history) < 50:
                time.sleep(0.1)
            expected = sorted(t.key() for t in fake.history)
            assert len(expected) == 50
            rows: list[tuple[object, ...]] = []
            while time.monotonic() < deadline:
                if (tmp_path / "t.db").exists():
                    rows = stored(tmp_path / "t.db")
                    if len(rows) >= len(expected):
                        break
                time.sleep(0.2)
            assert run.terminate() == 0, run.log()
    assert sorted(stored(tmp_path / "t.db")) == expected
    assert fake.connections >= 2, "the source reconnected after the drop"


def test_an_unknown_symbol_ends_run_with_one_clear_line(tmp_path: Path) -> None:
    """A symbol the exchange rejects stops `tickpipe run` with a non-zero exit naming it."""
    fake = FakeExchange("kraken", ["BTC/USD", "NOPE/USD"], unknown_symbols=frozenset({"NOPE/USD"}))
    with run_in_thread(fake):
        env = {
            "TICKPIPE_SOURCE": "kraken",
            "TICKPIPE_SYMBOLS": "BTC/USD,NOPE/USD",
            "TICKPIPE_EXCHANGE_URL": fake.url,
            "TICKPIPE_DATABASE_URL": f"sqlite:///{tmp_path}/t.db",
            "TICKPIPE_HTTP_PORT": str(free_port()),
        }
        with tickpipe_process(["run"], env, tmp_path / "run.log") as run:
            code = run.process.wait(30)
    assert code == 1
    last_line = run.log().strip().splitlines()[-1]
    assert last_line.startswith("tickpipe: error:")
    assert "NOPE/USD" in last_line
