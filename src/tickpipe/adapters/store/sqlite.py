"""SQLite store for the embedded default: stdlib sqlite3, WAL mode. Writes go through one
connection on one worker thread; reads through a second connection on a thread of their own, so
an expensive read never holds the writer (WAL lets a reader and the writer run side by side). A
read that runs past the query timeout is interrupted (QueryTimeout). WAL checkpoints run on a
third connection and thread, so that the writer's commits do not wait for them.

Prices and quantities are kept as their exact decimal text; `time` is fixed-width ISO-8601 UTC
text, so text order is time order.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

from tickpipe.core.candles import Candle, aggregate_candles
from tickpipe.core.scoring import ScoredTrade, SignalChange
from tickpipe.core.signal import Signal
from tickpipe.core.trade import (
    EXCHANGES,
    Side,
    Trade,
    datetime_to_time_us,
    format_time_us,
    plain_decimal_text,
)
from tickpipe.ports import HistoryKey, HistoryPage, QueryTimeout, RangeTooWide

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_QUERY_TIMEOUT_S = 5.0
_PROGRESS_EVERY_STEPS = 10_000  # SQLite VM steps between deadline checks (~1 ms of work)

_COLUMNS = "time, exchange, symbol, trade_id, price, quantity, side, sma, signal, ingest_time"
_ROW_WIDTH = 10  # columns in _COLUMNS
_MAX_ROWS_PER_STATEMENT = 500
# SQLite checkpoints the WAL inside the commit that takes it past 1,000 pages (its default), and
# the writer waits: copying the pages and syncing the file took 10-20 ms of every other 5,000-row
# batch. The store's writer connection checkpoints itself only past _WRITER_AUTOCHECKPOINT_PAGES,
# a bound on the WAL in case the checkpoint thread falls behind; that thread runs a PASSIVE
# checkpoint after every _CHECKPOINT_EVERY_ROWS rows written, while the writer goes on.
_CHECKPOINT_EVERY_ROWS = 5_000
_WRITER_AUTOCHECKPOINT_PAGES = 10_000  # ~40 MiB at SQLite's default 4 KiB page
# `time` is fixed-width text, so `time < ?` on text is time order; `id` breaks ties.
_HISTORY_PAGE = """
SELECT * FROM trades
WHERE symbol = ? AND (? IS NULL OR exchange = ?)
  AND time >= ? AND time <= ? AND (time < ? OR id < ?)
ORDER BY time DESC, id DESC
LIMIT ?
"""
# Integer microseconds from the text: whole seconds by strftime, then the six fraction digits.
# SQLite has no decimal type, so the exact sums of a candle are made in Python (core/candles.py).
_CANDLE_ROWS = """
SELECT CAST(strftime('%s', substr(time, 1, 19)) AS INTEGER) * 1000000
           + CAST(substr(time, 21, 6) AS INTEGER) AS time_us,
       price, quantity
FROM trades
WHERE symbol = ? AND (? IS NULL OR exchange = ?) AND time >= ? AND time < ?
ORDER BY time, id
"""
# One stream, newest first: LEAD looks one BUY/SELL row further back in time and LIMIT stops at
# the `limit`-th change; the oldest row of the range looks up the last BUY/SELL before it
# instead (CASE evaluates that subquery only there).
_SIGNAL_CHANGES = """
SELECT * FROM (
    SELECT c.*, CASE WHEN c.earlier IS NULL THEN (
        SELECT p.signal FROM trades AS p
        WHERE p.exchange = c.exchange AND p.symbol = c.symbol AND p.signal <> 'HOLD'
          AND p.time < ?
        ORDER BY p.time DESC, p.id DESC
        LIMIT 1
    ) ELSE c.earlier END AS previous_signal
    FROM (
        SELECT t.*, LEAD(t.signal) OVER (ORDER BY t.time DESC, t.id DESC) AS earlier
        FROM trades AS t
        WHERE t.exchange = ? AND t.symbol = ? AND t.signal <> 'HOLD'
          AND t.time >= ? AND t.time <= ?
    ) AS c
)
WHERE previous_signal IS NOT NULL AND previous_signal <> signal
ORDER BY time DESC, id DESC
LIMIT ?
"""


def sqlite_path(database_url: str) -> str:
    """`sqlite:///./tickpipe.db` -> `./tickpipe.db`; `sqlite:////abs/path.db` -> `/abs/path.db`."""
    prefix = "sqlite:///"
    if not database_url.startswith(prefix) or len(database_url) == len(prefix):
        raise ValueError(f"not a SQLite URL: {database_url!r} (expected sqlite:///path)")
    return database_url[len(prefix) :]


_SIDE_TEXT = {None: None, Side.BUY: "buy", Side.SELL: "sell"}  # plain str: no adapter look-up
_SIGNAL_TEXT = {signal: signal.value for signal in Signal}


def row_values(batch: Sequence[ScoredTrade]) -> list[object]:
    """The `_COLUMNS` of every trade, one flat list (the multi-row INSERT's parameters)."""
    values: list[object] = []
    add = values.extend
    side_text, signal_text = _SIDE_TEXT, _SIGNAL_TEXT
    for scored in batch:
        trade = scored.trade
        sma = scored.sma
        exchange_time_us = trade.exchange_time_us
        time_text = format_time_us(exchange_time_us)
        ingest_time_us = trade.ingest_time_us
        add(
            (
                time_text,
                trade.exchange,
                trade.symbol,
                trade.trade_id,
                plain_decimal_text(trade.price),  # exact, and '0.00000001' rather than '1E-8'
                plain_decimal_text(trade.quantity),
                side_text[trade.side],
                None if sma is None else float(sma),
                signal_text[scored.signal],
                time_text if ingest_time_us == exchange_time_us else format_time_us(ingest_time_us),
            )
        )
    return values


@functools.cache
def _insert_rows(count: int) -> str:
    """INSERT OR IGNORE of `count` rows in one statement."""
    rows = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * count)
    return f"INSERT OR IGNORE INTO trades ({_COLUMNS}) VALUES {rows}"  # noqa: S608 - placeholders only


def insert_values(db: sqlite3.Connection, values: Sequence[object]) -> None:
    """Inserts flat `row_values` a few hundred rows per statement. sqlite3 releases the GIL
    only inside each statement's step: one step per row (executemany) hands the GIL back and
    forth per row, and the writer thread then waits on the event loop's thread at every row."""
    per_statement = min(
        _MAX_ROWS_PER_STATEMENT,
        db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // _ROW_WIDTH,
    )
    step = per_statement * _ROW_WIDTH
    for start in range(0, len(values), step):
        chunk = values[start : start + step]
        db.execute(_insert_rows(len(chunk) // _ROW_WIDTH), chunk)


def _time_us(text: str) -> int:
    return datetime_to_time_us(datetime.fromisoformat(text))


def _scored(row: sqlite3.Row) -> ScoredTrade:
    trade = Trade(
        exchange=row["exchange"],
        symbol=row["symbol"],
        trade_id=row["trade_id"],
        price=Decimal(row["price"]),
        quantity=Decimal(row["quantity"]),
        side=None if row["side"] is None else Side(row["side"]),
        exchange_time_us=_time_us(row["time"]),
        ingest_time_us=_time_us(row["ingest_time"]),
    )
    sma = None if row["sma"] is None else Decimal(repr(row["sma"]))
    return ScoredTrade(trade, sma, Signal(row["signal"]))


class SqliteStore:
    """TradeStore on one SQLite file: a writer thread and connection, a reader thread and
    connection (one and the same for `:memory:`, which a second connection would not see), and
    for a file a checkpoint thread and connection."""

    def __init__(self, path: str, *, query_timeout_s: float = DEFAULT_QUERY_TIMEOUT_S) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._separate_reads = path != ":memory:"
        self._read_executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-read")
            if self._separate_reads
            else self._executor
        )
        self._checkpoint_executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-checkpoint")
            if self._separate_reads
            else None
        )
        self._path = path
        self._query_timeout_s = query_timeout_s
        self._db: sqlite3.Connection | None = None
        self._read_db: sqlite3.Connection | None = None
        self._checkpoint_db: sqlite3.Connection | None = None
        self._checkpoint: asyncio.Future[None] | None = None
        self._rows_since_checkpoint = 0
        self.checkpoints = 0  # background checkpoints completed

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._db is None:
                self._db = connect_sqlite(self._path)
                if self._checkpoint_executor is not None:
                    self._db.execute(f"PRAGMA wal_autocheckpoint={_WRITER_AUTOCHECKPOINT_PAGES}")
            return work(self._db)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Runs `work` on the read connection, interrupted once past the query timeout."""

        def call() -> T:
            if not self._separate_reads:
                db = self._db = self._db or connect_sqlite(self._path)
            else:
                db = self._read_db = self._read_db or connect_sqlite(self._path, read_only=True)
            deadline_s = time.monotonic() + self._query_timeout_s
            db.set_progress_handler(lambda: time.monotonic() > deadline_s, _PROGRESS_EVERY_STEPS)
            try:
                return work(db)
            except sqlite3.OperationalError as exc:
                if str(exc) == "interrupted":
                    raise QueryTimeout(
                        f"the query took longer than {self._query_timeout_s:g} s"
                    ) from None
                raise
            finally:
                db.set_progress_handler(None, 0)

        return await asyncio.get_running_loop().run_in_executor(self._read_executor, call)

    async def write(self, batch: Sequence[ScoredTrade]) -> int:
        # The rows are made here, not on the writer thread: that thread sets the pace, and
        # Python work there would wait for the GIL behind the next batch's scoring.
        values = row_values(batch)

        def insert(db: sqlite3.Connection) -> int:
            with db:
                before = db.total_changes
                insert_values(db, values)
                return db.total_changes - before

        inserted = await self._run(insert)
        self._rows_since_checkpoint += len(batch)
        if self._rows_since_checkpoint >= _CHECKPOINT_EVERY_ROWS:
            self._start_checkpoint()
        return inserted

    def _start_checkpoint(self) -> None:
        """Starts a PASSIVE checkpoint on the checkpoint thread unless one is under way; not
        awaited: the writer goes on meanwhile (PASSIVE never waits for it, nor for readers)."""
        executor = self._checkpoint_executor
        if executor is None or (self._checkpoint is not None and not self._checkpoint.done()):
            return
        self._rows_since_checkpoint = 0

        def checkpoint() -> None:
            try:
                if self._checkpoint_db is None:
                    self._checkpoint_db = connect_sqlite(self._path)
                self._checkpoint_db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.checkpoints += 1
            except sqlite3.Error as exc:  # the writer's own autocheckpoint still bounds the WAL
                log.warning("background WAL checkpoint failed: %s", exc)

        self._checkpoint = asyncio.get_running_loop().run_in_executor(executor, checkpoint)

    async def window_prices(self, trade: Trade, count: int) -> list[Decimal]:
        key = (trade.exchange, trade.symbol)
        time_text = format_time_us(trade.exchange_time_us)

        def query(db: sqlite3.Connection) -> list[Decimal]:
            found = db.execute(
                "SELECT id FROM trades WHERE exchange = ? AND symbol = ? AND trade_id = ?"
                " AND time = ?",
                (*key, trade.trade_id, time_text),
            ).fetchone()
            before_id = found["id"] if found else None
            rows = db.execute(
                "SELECT price FROM trades WHERE exchange = ? AND symbol = ?"
                " AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?",
                (*key, before_id, before_id, count),
            ).fetchall()
            return [Decimal(row["price"]) for row in reversed(rows)]

        return await self._run(query)

    async def history(
        self, symbol: str, *, limit: int, exchange: str | None = None
    ) -> list[ScoredTrade]:
        def query(db: sqlite3.Connection) -> list[ScoredTrade]:
            rows = db.execute(
                "SELECT * FROM trades WHERE symbol = ? AND (? IS NULL OR exchange = ?)"
                " ORDER BY time DESC, id DESC LIMIT ?",
                (symbol, exchange, exchange, limit),
            ).fetchall()
            return [_scored(row) for row in rows]

        return await self._read(query)

    async def history_page(
        self,
        symbol: str,
        *,
        limit: int,
        before: HistoryKey,
        start_us: int = 0,
        exchange: str | None = None,
    ) -> HistoryPage:
        before_text = format_time_us(before.time_us)
        parameters = (
            symbol,
            exchange,
            exchange,
            format_time_us(start_us),
            before_text,
            before_text,
            before.row_id,
            limit + 1,  # one more tells whether there is a next page
        )

        def query(db: sqlite3.Connection) -> HistoryPage:
            rows = db.execute(_HISTORY_PAGE, parameters).fetchall()
            if len(rows) <= limit:
                return HistoryPage([_scored(row) for row in rows], None)
            last = rows[limit - 1]
            next_key = HistoryKey(_time_us(last["time"]), last["id"])
            return HistoryPage([_scored(row) for row in rows[:limit]], next_key)

        return await self._read(query)

    async def candles(
        self,
        symbol: str,
        *,
        interval_us: int,
        from_us: int,
        to_us: int,
        exchange: str | None = None,
        max_scan_span_us: int | None = None,
    ) -> list[Candle]:
        if max_scan_span_us is not None and to_us - from_us > max_scan_span_us:
            raise RangeTooWide(max_scan_span_us)  # SQLite always scans the raw trades
        parameters = (symbol, exchange, exchange, format_time_us(from_us), format_time_us(to_us))

        def query(db: sqlite3.Connection) -> list[Candle]:
            cursor = db.cursor()
            cursor.row_factory = None  # plain tuples: this loop may see millions of rows
            rows = cursor.execute(_CANDLE_ROWS, parameters)
            trades = ((time_us, Decimal(price), Decimal(qty)) for time_us, price, qty in rows)
            return list(aggregate_candles(trades, interval_us))

        return await self._read(query)

    async def signal_changes(
        self,
        symbol: str,
        *,
        start_us: int,
        end_us: int,
        limit: int,
        exchange: str | None = None,
    ) -> list[SignalChange]:
        start_text, end_text = format_time_us(start_us), format_time_us(end_us)

        def query(db: sqlite3.Connection) -> list[SignalChange]:
            # Stream by stream (each query stops early), then the newest `limit` of them all.
            rows: list[sqlite3.Row] = []
            for name in [exchange] if exchange is not None else sorted(EXCHANGES):
                parameters = (start_text, name, symbol, start_text, end_text, limit)
                rows += db.execute(_SIGNAL_CHANGES, parameters).fetchall()
            rows.sort(key=lambda row: (row["time"], row["id"]), reverse=True)
            return [
                SignalChange(_scored(row), Signal(row["previous_signal"])) for row in rows[:limit]
            ]

        return await self._read(query)

    async def latest(self, symbol: str, exchange: str | None = None) -> ScoredTrade | None:
        rows = await self.history(symbol, limit=1, exchange=exchange)
        return rows[0] if rows else None

    async def symbols(self) -> list[ScoredTrade]:
        def query(db: sqlite3.Connection) -> list[ScoredTrade]:
            streams = db.execute("SELECT DISTINCT exchange, symbol FROM trades").fetchall()
            rows = [
                db.execute(
                    "SELECT * FROM trades WHERE exchange = ? AND symbol = ?"
                    " ORDER BY time DESC, id DESC LIMIT 1",
                    (s["exchange"], s["symbol"]),
                ).fetchone()
                for s in streams
            ]
            return [_scored(row) for row in rows if row is not None]

        return await self._read(query)

    async def ping(self) -> None:
        await self._run(lambda db: db.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        loop = asyncio.get_running_loop()

        def close_reader() -> None:
            if self._read_db is not None:
                self._read_db.close()
                self._read_db = None

        def close_checkpointer() -> None:
            if self._checkpoint_db is not None:
                self._checkpoint_db.close()
                self._checkpoint_db = None

        def close_writer() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await loop.run_in_executor(self._read_executor, close_reader)
        if self._checkpoint_executor is not None:
            # After the checkpoint under way, if any; the writer closes last (and checkpoints).
            await loop.run_in_executor(self._checkpoint_executor, close_checkpointer)
            self._checkpoint_executor.shutdown(wait=True)
        await loop.run_in_executor(self._executor, close_writer)
        self._read_executor.shutdown(wait=True)
        self._executor.shutdown(wait=True)


def connect_sqlite(path: str, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection with the store's settings (the benchmarks' SQLite ceiling uses it too)."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level="DEFERRED", check_same_thread=False, timeout=30)
    db.row_factory = sqlite3.Row
    if read_only:
        db.execute("PRAGMA query_only=ON")  # the writer connection set WAL mode on the file
        return db
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
    return db


async def open_sqlite_store(
    database_url: str, *, query_timeout_s: float = DEFAULT_QUERY_TIMEOUT_S
) -> SqliteStore:
    """Opens (creating the file if needed) a migrated SQLite store; run `migrate` first."""
    store = SqliteStore(sqlite_path(database_url), query_timeout_s=query_timeout_s)
    await store.ping()
    return store
