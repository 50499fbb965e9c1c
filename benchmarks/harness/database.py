"""PostgreSQL and Redis ceilings, with tickpipe's row and frame shapes.

PostgreSQL: rows/s of the idempotent batch insert (binary COPY into a temporary staging table,
then INSERT ... ON CONFLICT DO NOTHING) and of a plain binary COPY, 10,000-row batches, into
fresh copies of the migrated `trades` table (same columns, constraints and indexes).
Redis: pipelined PUBLISH of one trade's WebSocket frame per message.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from benchmarks.harness import workload
from tickpipe.adapters.pubsub.frames import update_frame
from tickpipe.adapters.store.postgres import configure_writer

BATCH_ROWS = 10_000
REDIS_PIPELINE_MESSAGES = 1_000

_CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS ceiling_staging (
    time        timestamptz      NOT NULL,
    exchange    text             NOT NULL,
    symbol      text             NOT NULL,
    trade_id    text             NOT NULL,
    price       numeric          NOT NULL,
    quantity    numeric          NOT NULL,
    side        text,
    sma         double precision,
    signal      text             NOT NULL,
    ingest_time timestamptz      NOT NULL
) ON COMMIT DELETE ROWS
"""
_INSERT_FROM_STAGING = """
INSERT INTO {table} (time, exchange, symbol, trade_id, price, quantity, side, sma, signal,
                     ingest_time)
SELECT time, exchange, symbol, trade_id, price, quantity, side, sma, signal, ingest_time
FROM ceiling_staging
ON CONFLICT (exchange, symbol, trade_id, time) DO NOTHING
"""


async def _insert_rates(database_url: str, rows: int, seed: int) -> dict[str, float]:
    connection = await asyncpg.connect(database_url)
    await configure_writer(connection)  # the row shape of copy_record, as tickpipe writes it
    try:
        rates = {}
        for method in ("idempotent", "copy"):
            table = f"ceiling_{method}"
            await connection.execute(f"DROP TABLE IF EXISTS {table}")
            await connection.execute(f"CREATE TABLE {table} (LIKE trades INCLUDING ALL)")
            elapsed_s = 0.0
            for batch in workload.record_batches(rows, BATCH_ROWS, seed):
                started_s = time.perf_counter()
                async with connection.transaction():
                    if method == "copy":
                        await connection.copy_records_to_table(
                            table, records=batch, columns=workload.STORE_COLUMNS
                        )
                    else:
                        await connection.execute(_CREATE_STAGING)
                        await connection.copy_records_to_table(
                            "ceiling_staging", records=batch, columns=workload.STORE_COLUMNS
                        )
                        await connection.execute(_INSERT_FROM_STAGING.format(table=table))
                elapsed_s += time.perf_counter() - started_s
            stored = await connection.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 - our table name
            if stored != rows:
                raise RuntimeError(f"{table} holds {stored} rows, expected {rows}")
            await connection.execute(f"DROP TABLE {table}")
            rates[method] = rows / elapsed_s
        return rates
    finally:
        await connection.close()


def insert_rates(database_url: str, rows: int, seed: int = workload.SEED + 1) -> dict[str, float]:
    """`{"idempotent": rows/s, "copy": rows/s}`; the clock runs only inside the database calls
    (the rows are generated between batches). `trades` must exist (a migrated database)."""
    return asyncio.run(_insert_rates(database_url, rows, seed))


async def _publish_rate(redis_url: str, channel: str, duration_s: float) -> float:
    from redis.asyncio import Redis

    frame = update_frame(workload.scored(workload.SMA_WINDOW + 1)[-1])
    client = Redis.from_url(redis_url)
    try:
        published = 0
        started_s = time.perf_counter()
        while time.perf_counter() - started_s < duration_s:
            async with client.pipeline(transaction=False) as pipe:
                for _ in range(REDIS_PIPELINE_MESSAGES):
                    pipe.publish(channel, frame)
                await pipe.execute()
            published += REDIS_PIPELINE_MESSAGES
        return published / (time.perf_counter() - started_s)
    finally:
        await client.aclose()


def publish_rate(redis_url: str, channel: str, duration_s: float) -> float:
    """Messages/s of pipelined PUBLISH (1,000 per round trip) of one trade frame each."""
    return asyncio.run(_publish_rate(redis_url, channel, duration_s))
