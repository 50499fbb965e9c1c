"""p50/p99 of a one-day 1m-candles query on 10 million trades in PostgreSQL.

    .venv/bin/python -m benchmarks.candles_query [--rows 10000000] [--days 10] [--queries 50]

Creates its own database `tickpipe_bench_candles` (dropped at the end), migrates it, fills
`trades` with one `INSERT ... SELECT generate_series` (one symbol, `--rows` trades spread evenly
over `--days` days, three trades per exchange timestamp like Binance's millisecond ties), then
times `PostgresStore.candles` (what GET /api/v1/candles runs) for whole days picked at random.
Without TimescaleDB this is the plain `date_bin` path over the raw rows.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from datetime import timedelta

import asyncpg

from tickpipe.adapters.store.migrate import migrate
from tickpipe.adapters.store.postgres import open_postgres_store
from tickpipe.core.candles import CandleInterval, candle_window

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "tickpipe_bench_candles"  # ours alone: dropped and recreated
DATABASE_URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
DAY_US = 86_400_000_000
FIRST_DAY_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z

_FILL = """
INSERT INTO trades (time, exchange, symbol, trade_id, price, quantity, side, sma, signal,
                    ingest_time)
SELECT at, 'binance', 'BTCUSDT', n::text,
       round((40000 + 1000 * sin(n / 50000.0) + random() * 10)::numeric, 2),
       round((random() * 2 + 0.00001)::numeric, 8),
       CASE WHEN random() < 0.5 THEN 'buy' ELSE 'sell' END,
       NULL,
       (ARRAY['BUY', 'SELL', 'HOLD'])[1 + (n / 7) % 3],
       at
FROM generate_series(0, $1::bigint - 1) AS n,
     LATERAL (SELECT TIMESTAMPTZ '2024-01-01 00:00:00+00' + (n / 3) * $2::interval AS at) AS stamped
"""


async def admin(statement: str) -> None:
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def fill(rows: int, days: int) -> float:
    tick = timedelta(microseconds=days * DAY_US * 3 // rows)
    connection = await asyncpg.connect(DATABASE_URL)
    try:
        started_s = time.perf_counter()
        await connection.execute(_FILL, rows, tick, timeout=3_600)
        await connection.execute("VACUUM ANALYZE trades", timeout=3_600)
        return time.perf_counter() - started_s
    finally:
        await connection.close()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def measure(days: int, queries: int) -> list[float]:
    store = await open_postgres_store(DATABASE_URL)
    try:
        interval_us = CandleInterval.M1.length_us
        rng = random.Random(7)
        timings_s = []
        for attempt in range(queries + 3):
            day_us = FIRST_DAY_US + rng.randrange(days) * DAY_US
            window = candle_window(interval_us, 1440, start_us=day_us, end_us=None)
            started_s = time.perf_counter()
            candles = await store.candles(
                "BTCUSDT", interval_us=interval_us, from_us=window.from_us, to_us=window.to_us
            )
            elapsed_s = time.perf_counter() - started_s
            if len(candles) != 1440:
                raise RuntimeError(f"expected 1440 candles, got {len(candles)}")
            if attempt >= 3:  # the first ones warm the cache and the prepared statement
                timings_s.append(elapsed_s)
        return timings_s
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    await admin(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    await admin(f'CREATE DATABASE "{DATABASE}"')
    try:
        await migrate(DATABASE_URL)
        fill_s = await fill(args.rows, args.days)
        print(f"filled {args.rows:,} rows over {args.days} days in {fill_s:.0f} s")
        timings_s = await measure(args.days, args.queries)
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    per_day = args.rows // args.days
    print(
        f"1-day 1m candles (1440 candles over {per_day:,} trades) on {args.rows:,} rows,"
        f" {len(timings_s)} queries: p50 {percentile(timings_s, 0.5) * 1000:.0f} ms,"
        f" p99 {percentile(timings_s, 0.99) * 1000:.0f} ms,"
        f" mean {statistics.fmean(timings_s) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
