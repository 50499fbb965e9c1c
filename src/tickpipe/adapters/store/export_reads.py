"""The stored trades of one symbol, oldest first, streamed in batches (`tickpipe export`).

Memory stays constant however many rows there are: SQLite is read through one cursor,
PostgreSQL through a server-side cursor inside a read-only transaction (one snapshot, so rows
written meanwhile neither appear halfway nor shift the order). Order: exchange time, then row
id (processing order), which is the order a replay stores them in again.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from tickpipe.adapters.store.errors import describe_url
from tickpipe.core.scoring import ScoredTrade
from tickpipe.core.trade import format_time_us, time_us_to_datetime

BATCH_ROWS = 10_000

_SQLITE_ROWS = """
SELECT * FROM trades
WHERE symbol = ? AND (? IS NULL OR exchange = ?) AND time >= ? AND time < ?
ORDER BY time, id
"""
_SQLITE_COUNT = """
SELECT count(*) FROM trades
WHERE symbol = ? AND (? IS NULL OR exchange = ?) AND time >= ? AND time < ?
"""
_POSTGRES_ROWS = """
SELECT id, time, exchange, symbol, trade_id, price, quantity, side, sma, signal, ingest_time
FROM trades
WHERE symbol = $1 AND ($2::text IS NULL OR exchange = $2) AND time >= $3 AND time < $4
ORDER BY time, id
"""
_POSTGRES_COUNT = """
SELECT count(*) FROM trades
WHERE symbol = $1 AND ($2::text IS NULL OR exchange = $2) AND time >= $3 AND time < $4
"""


@dataclass(frozen=True, slots=True)
class ExportQuery:
    symbol: str  # normalized
    exchange: str | None = None
    start_us: int = 0  # inclusive
    end_us: int = 2**62  # exclusive


class StoredTrades:
    """`count()` then `batches()`: the rows matching `query` in the database of `database_url`."""

    def __init__(self, database_url: str, query: ExportQuery, batch_rows: int = BATCH_ROWS):
        if not database_url.startswith(("sqlite:", "postgresql:", "postgres:")):
            raise ValueError(
                f"TICKPIPE_DATABASE_URL {describe_url(database_url)!r}: expected postgresql://..."
                " or sqlite:///path"
            )
        self.database_url = database_url
        self.query = query
        self.batch_rows = batch_rows

    def _sqlite_parameters(self) -> tuple[object, ...]:
        q = self.query
        start, end = format_time_us(q.start_us), format_time_us(min(q.end_us, _MAX_TEXT_US))
        return (q.symbol, q.exchange, q.exchange, start, end)

    def _postgres_parameters(self) -> tuple[object, ...]:
        q = self.query
        end = min(q.end_us, _MAX_TEXT_US)
        return (q.symbol, q.exchange, time_us_to_datetime(q.start_us), time_us_to_datetime(end))

    async def count(self) -> int:
        """How many rows `batches` will yield (for the progress bar); one indexed count."""
        if self.database_url.startswith("sqlite:"):
            return await asyncio.to_thread(self._sqlite_count)
        connection = await _postgres(self.database_url)
        try:
            return int(await connection.fetchval(_POSTGRES_COUNT, *self._postgres_parameters()))
        finally:
            await connection.close()

    async def batches(self) -> AsyncIterator[list[ScoredTrade]]:
        if self.database_url.startswith("sqlite:"):
            rows = self._sqlite_batches()
            while batch := await asyncio.to_thread(next, rows, None):
                yield batch
            return
        connection = await _postgres(self.database_url)
        try:
            from tickpipe.adapters.store.postgres import _scored

            async with connection.transaction(isolation="repeatable_read", readonly=True):
                cursor = await connection.cursor(_POSTGRES_ROWS, *self._postgres_parameters())
                while records := await cursor.fetch(self.batch_rows):
                    yield [_scored(record) for record in records]
        finally:
            await connection.close()

    def _sqlite_count(self) -> int:
        with _open_sqlite(self.database_url) as db:
            return int(db.execute(_SQLITE_COUNT, self._sqlite_parameters()).fetchone()[0])

    def _sqlite_batches(self) -> Iterator[list[ScoredTrade]]:
        from tickpipe.adapters.store.sqlite import _scored

        with _open_sqlite(self.database_url) as db:
            cursor = db.execute(_SQLITE_ROWS, self._sqlite_parameters())
            while rows := cursor.fetchmany(self.batch_rows):
                yield [_scored(row) for row in rows]


# The ISO text of SQLite's `time` has four year digits: cap open ranges at year 9999.
_MAX_TEXT_US = 253_402_300_799_000_000


@contextlib.contextmanager
def _open_sqlite(database_url: str) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the SQLite file of `database_url` (never creates one)."""
    from tickpipe.adapters.store.sqlite import sqlite_path

    path = sqlite_path(database_url)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    db.row_factory = sqlite3.Row
    try:
        yield db
    finally:
        db.close()


async def _postgres(database_url: str) -> Any:
    from tickpipe.adapters.store.postgres import connect_postgres

    return await connect_postgres(database_url)
