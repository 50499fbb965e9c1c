"""Expensive reads cannot starve ingestion, on real SQLite and PostgreSQL: reads have their own
connection(s), a read past the query timeout is cancelled (QueryTimeout), and the gateway turns
that into a JSON 503 instead of a hang."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tickpipe.adapters.pubsub.memory import MemoryPubSub
from tickpipe.adapters.store.migrate import migrate
from tickpipe.adapters.store.postgres import PostgresStore, open_postgres_store
from tickpipe.adapters.store.sqlite import SqliteStore, open_sqlite_store
from tickpipe.core.scoring import ScoredTrade
from tickpipe.core.signal import Signal
from tickpipe.core.trade import Side, new_trade
from tickpipe.ports import QueryTimeout, TradeStore
from tickpipe.services.gateway.app import create_app

T0_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
# Runs until interrupted: counts to a billion.
ENDLESS_SQLITE = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000)"
    " SELECT count(*) FROM n"
)


def batch(first: int, count: int, spacing_us: int = 1_000) -> list[ScoredTrade]:
    return [
        ScoredTrade(
            new_trade(
                exchange="binance",
                symbol="BTCUSDT",
                trade_id=str(n),
                price=f"{100 + n % 7}.25",
                quantity="0.5",
                side=Side.BUY,
                exchange_time_us=T0_US + n * spacing_us,
                ingest_time_us=T0_US + n * spacing_us,
            ),
            None,
            Signal.HOLD,
        )
        for n in range(first, first + count)
    ]


async def candles_answer(store: TradeStore) -> httpx.Response:
    app = create_app(store, MemoryPubSub(5), {}, window=5)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        # 1s candles always come from the raw trades: 1,000 s of them
        return await http.get("/api/v1/candles/BTCUSDT?interval=1s&start=2024-01-01&limit=1000")


async def sqlite_store(tmp_path: Path, query_timeout_s: float) -> SqliteStore:
    url = f"sqlite:///{tmp_path}/reads.db"
    await migrate(url)
    return await open_sqlite_store(url, query_timeout_s=query_timeout_s)


async def test_sqlite_slow_read_does_not_hold_the_writer(tmp_path: Path) -> None:
    """While a read runs on the read connection, a batch is written at once; the read ends
    with QueryTimeout at the deadline, not later."""
    store = await sqlite_store(tmp_path, query_timeout_s=2.0)
    try:
        started_s = time.monotonic()
        slow = asyncio.create_task(store._read(lambda db: db.execute(ENDLESS_SQLITE).fetchone()))
        await asyncio.sleep(0.2)
        write_started_s = time.monotonic()
        assert await store.write(batch(0, 1_000)) == 1_000
        write_s = time.monotonic() - write_started_s
        assert not slow.done(), "the slow read was still running during the write"
        with pytest.raises(QueryTimeout):
            await slow
        read_s = time.monotonic() - started_s
    finally:
        await store.close()
    assert write_s < 0.5, write_s
    assert 1.9 < read_s < 3.0, read_s


async def test_sqlite_timed_out_read_answers_json_503(tmp_path: Path) -> None:
    """A candles read past the query timeout is a JSON 503 with Retry-After, never a hang."""
    store = await sqlite_store(tmp_path, query_timeout_s=0.001)
    try:
        await store.write(batch(0, 20_000, spacing_us=10_000))
        answer = await asyncio.wait_for(candles_answer(store), 10)
    finally:
        await store.close()
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/json"
    assert "took longer than 0.001 s" in answer.json()["detail"]
    assert answer.headers["retry-after"] == "1"


@pytest.mark.infra
async def test_postgres_statement_timeout_answers_json_503(clean_postgres_url: str) -> None:
    """The read pool's statement timeout (1 ms here) cancels the candles scan: JSON 503."""
    writer = await open_postgres_store(clean_postgres_url)
    try:
        await writer.write(batch(0, 20_000, spacing_us=10_000))
    finally:
        await writer.close()
    store = await open_postgres_store(clean_postgres_url, query_timeout_s=0.001)
    try:
        answer = await asyncio.wait_for(candles_answer(store), 10)
    finally:
        await store.close()
    assert answer.status_code == 503
    assert "took longer than 0.001 s" in answer.json()["detail"]


@pytest.mark.infra
async def test_postgres_busy_read_pool_does_not_hold_writes(clean_postgres_url: str) -> None:
    """Every read connection busy with a slow statement: a write still goes through at once on
    its own pool, and the slow reads end with QueryTimeout at the deadline."""
    store: PostgresStore = await open_postgres_store(clean_postgres_url, query_timeout_s=3.0)
    try:
        started_s = time.monotonic()
        slow = [asyncio.create_task(store._reads.fetch("SELECT pg_sleep(30)")) for _ in range(6)]
        await asyncio.sleep(0.3)
        write_started_s = time.monotonic()
        assert await store.write(batch(0, 1_000)) == 1_000
        write_s = time.monotonic() - write_started_s
        results = await asyncio.gather(*slow, return_exceptions=True)
        reads_s = time.monotonic() - started_s
        assert await store.history("BTCUSDT", limit=1)  # the read pool recovered
    finally:
        await store.close()
    assert all(isinstance(result, QueryTimeout) for result in results), results
    assert write_s < 1.5, write_s  # blocked, it would wait for the reads: >= 2.7 s
    assert reads_s < 6.0, reads_s  # 3 s timeout + 1 s client margin, not 30 s
