"""PostgreSQL (or TimescaleDB) store on two small asyncpg pools: one for writes (the processor)
and one for reads (the gateway) whose statements time out after the query timeout, so expensive
reads can neither take the writer's connections nor run for long.

A batch goes by one COPY (text format, `copy_text`) straight into `trades`. If that hits the
unique key (a replay after a crash), the batch is copied (binary, `copy_record`) into a temporary
staging table instead and inserted from there with
`ON CONFLICT DO NOTHING`, in batch order, so `id` stays the processing order either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from tickpipe.adapters.store.errors import StoreUnavailable, describe_url
from tickpipe.adapters.store.postgres_candles import PostgresCandles
from tickpipe.core.candles import Candle
from tickpipe.core.scoring import ScoredTrade, SignalChange
from tickpipe.core.signal import Signal
from tickpipe.core.trade import (
    EXCHANGES,
    Side,
    Trade,
    datetime_to_time_us,
    format_time_us,
)
from tickpipe.ports import HistoryKey, HistoryPage, QueryTimeout

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 60.0
STATEMENT_TIMEOUT_MS = 60_000
PING_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 1.5  # then terminate: a hung server must not hold a SIGTERM past its 10 s


class _QuietPoolReconnects(logging.Filter):
    """asyncpg's pool logs a full traceback at every failed reconnect while PostgreSQL is away;
    an outage should read as one line now and then (the processor says what it retries)."""

    def __init__(self, interval_s: float = 30.0) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._next_s = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info is None:
            return True
        error = record.exc_info[1]
        now_s = time.monotonic()
        if now_s < self._next_s:
            return False
        self._next_s = now_s + self._interval_s
        record.msg = f"{record.getMessage()}: {type(error).__name__}: {error}"
        record.args, record.exc_info, record.exc_text = (), None, None
        return True


logging.getLogger("asyncpg.pool").addFilter(_QuietPoolReconnects())
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 4  # the processor's writes and window look-ups, and pings
READ_POOL_MAX_SIZE = 4  # gateway reads at once; more wait (within the query timeout)
DEFAULT_QUERY_TIMEOUT_S = 5.0
# How long past the server's statement timeout the client waits (a server that hangs).
CLIENT_TIMEOUT_MARGIN_S = 1.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# What asyncpg raises when the server is down, refuses us, or the database does not exist.
UNREACHABLE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

_COLUMNS = (
    "time",
    "exchange",
    "symbol",
    "trade_id",
    "price",
    "quantity",
    "side",
    "sma",
    "signal",
    "ingest_time",
)
_CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS trades_staging (
    ordinal     integer          NOT NULL,
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
_INSERT_NEW_FROM_STAGING = """
INSERT INTO trades
    (time, exchange, symbol, trade_id, price, quantity, side, sma, signal, ingest_time)
SELECT time, exchange, symbol, trade_id, price, quantity, side, sma, signal, ingest_time
FROM trades_staging
ORDER BY ordinal
ON CONFLICT (exchange, symbol, trade_id, time) DO NOTHING
"""
# The trade's own id when it is stored (then only rows before it count), else no bound.
_WINDOW_PRICES = """
SELECT price FROM (
    SELECT id, price FROM trades
    WHERE exchange = $1 AND symbol = $2 AND id < COALESCE(
        (SELECT id FROM trades
         WHERE exchange = $1 AND symbol = $2 AND trade_id = $3 AND time = $4),
        9223372036854775807)
    ORDER BY id DESC
    LIMIT $5
) AS recent
ORDER BY id
"""
# Two statements, not `$2 IS NULL OR ...`, so that each keeps its own index in a generic plan.
_HISTORY = """
SELECT id, time, exchange, symbol, trade_id, price, quantity, side, sma, signal, ingest_time
FROM trades
WHERE symbol = $1
ORDER BY time DESC, id DESC
LIMIT $2
"""
_STREAM_HISTORY = """
SELECT id, time, exchange, symbol, trade_id, price, quantity, side, sma, signal, ingest_time
FROM trades
WHERE symbol = $1 AND exchange = $2
ORDER BY time DESC, id DESC
LIMIT $3
"""
# Keyset paging: rows before the key (time, id), newest first. The plain `time <= $3` lets the
# (symbol, time) / (exchange, symbol, time) index bound the scan; the OR then drops the rows at
# that very time whose id is not below the key's.
_HISTORY_PAGE = """
SELECT id, time, exchange, symbol, trade_id, price, quantity, side, sma, signal, ingest_time
FROM trades
WHERE symbol = $1 AND time >= $2 AND time <= $3 AND (time < $3 OR id < $4)
ORDER BY time DESC, id DESC
LIMIT $5
"""
_STREAM_HISTORY_PAGE = """
SELECT id, time, exchange, symbol, trade_id, price, quantity, side, sma, signal, ingest_time
FROM trades
WHERE symbol = $1 AND exchange = $6 AND time >= $2 AND time <= $3 AND (time < $3 OR id < $4)
ORDER BY time DESC, id DESC
LIMIT $5
"""
# One stream, newest first: the BUY/SELL rows come off the (exchange, symbol, time) index in
# order, LEAD looks one row further back in time, and LIMIT stops the scan at the `limit`-th
# change. The oldest row of the range looks up the last BUY/SELL before it instead (CASE
# evaluates that subquery only there).
_SIGNAL_CHANGES = """
SELECT * FROM (
    SELECT c.*, CASE WHEN c.earlier IS NULL THEN (
        SELECT p.signal FROM trades AS p
        WHERE p.exchange = $5 AND p.symbol = $1 AND p.signal <> 'HOLD' AND p.time < $2
        ORDER BY p.time DESC, p.id DESC
        LIMIT 1
    ) ELSE c.earlier END AS previous_signal
    FROM (
        SELECT id, time, exchange, symbol, trade_id, price, quantity, side, sma, signal,
               ingest_time, LEAD(signal) OVER (ORDER BY time DESC, id DESC) AS earlier
        FROM trades
        WHERE exchange = $5 AND symbol = $1 AND time >= $2 AND time <= $3 AND signal <> 'HOLD'
    ) AS c
) AS s
WHERE previous_signal IS NOT NULL AND previous_signal <> signal
ORDER BY time DESC, id DESC
LIMIT $4
"""
# A loose index scan: one index probe per distinct (exchange, symbol), however many rows, then
# the newest row of each stream through (exchange, symbol, time) (on TimescaleDB: newest chunk).
_SYMBOLS = """
WITH RECURSIVE streams (exchange, symbol) AS (
    (SELECT exchange, symbol FROM trades ORDER BY exchange, symbol LIMIT 1)
    UNION ALL
    SELECT successor.exchange, successor.symbol
    FROM streams CROSS JOIN LATERAL (
        SELECT t.exchange, t.symbol FROM trades AS t
        WHERE (t.exchange, t.symbol) > (streams.exchange, streams.symbol)
        ORDER BY t.exchange, t.symbol
        LIMIT 1
    ) AS successor
)
SELECT newest.* FROM streams CROSS JOIN LATERAL (
    SELECT id, time, exchange, symbol, trade_id, price, quantity, side, sma, signal, ingest_time
    FROM trades AS t
    WHERE t.exchange = streams.exchange AND t.symbol = streams.symbol
    ORDER BY t.time DESC, t.id DESC
    LIMIT 1
) AS newest
ORDER BY newest.exchange, newest.symbol
"""


def check_postgres_url(database_url: str) -> None:
    if not database_url.startswith(POSTGRES_SCHEMES):
        raise ValueError(
            f"not a PostgreSQL URL: {describe_url(database_url)!r} (expected postgresql://...)"
        )


def unavailable(location: str, exc: BaseException) -> StoreUnavailable:
    """One line naming the database (without password) and the first line of the reason."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return StoreUnavailable(f"PostgreSQL at {location} is unavailable: {reason}")


async def connect_postgres(database_url: str) -> Any:
    """One connection outside any pool (migrations); StoreUnavailable when unreachable."""
    check_postgres_url(database_url)
    try:
        return await asyncpg.connect(database_url, timeout=CONNECT_TIMEOUT_S)
    except UNREACHABLE_ERRORS as exc:
        raise unavailable(describe_url(database_url), exc) from exc


# Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
_PG_EPOCH_US = 946_684_800_000_000


def pg_time(time_us: int) -> tuple[int]:
    """Unix microseconds as the writer's connections take a `timestamptz` (configure_writer)."""
    return (time_us - _PG_EPOCH_US,)


def _decode_time_us(pg_time: tuple[int]) -> int:
    return pg_time[0] + _PG_EPOCH_US


async def configure_writer(connection: Any) -> None:
    """On the writer's connections a `timestamptz` is given as `pg_time(time_us)`, the binary
    wire form itself (microseconds since 2000-01-01), and read back as Unix microseconds: no
    datetime per row on the hot path (two of them cost more than the rest of a row). Reads
    that need datetimes use the read pool."""
    await connection.set_type_codec(
        "timestamptz",
        schema="pg_catalog",
        encoder=tuple,  # the value is already the wire tuple: no Python call per value
        decoder=_decode_time_us,
        format="tuple",
    )


def copy_record(scored: ScoredTrade) -> tuple[Any, ...]:
    """One `trades` row in COPY column order, for a connection set up by `configure_writer`
    (also the benchmark's row shape). Side and signal are `StrEnum`s, i.e. already text."""
    trade = scored.trade
    sma = scored.sma
    return (
        (trade.exchange_time_us - _PG_EPOCH_US,),
        trade.exchange,
        trade.symbol,
        trade.trade_id,
        trade.price,
        trade.quantity,
        trade.side,
        None if sma is None else float(sma),
        scored.signal,
        (trade.ingest_time_us - _PG_EPOCH_US,),
    )


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_SIDE_TEXT = {None: "\\N", Side.BUY: "buy", Side.SELL: "sell"}
_NULL = "\\N"


def copy_text(batch: Sequence[ScoredTrade]) -> bytes:
    """The batch as COPY's text format, in `_COLUMNS` order: one line a row, tab-separated,
    `\\N` for NULL. Cheaper to make than binary COPY rows, where asyncpg's encoding of one
    Decimal (through `as_tuple()`) costs more than the rest of the row; PostgreSQL reads the
    text in C. Decimals go as `str()`, which PostgreSQL reads back exactly (scale and exponent
    included); the SMA as `repr(float)`, which it reads back to the same double; times as
    ISO-8601 UTC. Backslashes, tabs, newlines and carriage returns in text are escaped."""
    streams: dict[tuple[str, str], str] = {}  # `exchange<TAB>symbol`, escaped once per stream
    lines = []
    for scored in batch:
        trade = scored.trade
        key = (trade.exchange, trade.symbol)
        stream = streams.get(key)
        if stream is None:
            exchange, symbol = (text.translate(_COPY_ESCAPES) for text in key)
            stream = streams[key] = f"{exchange}\t{symbol}"
        trade_id = trade.trade_id
        if "\\" in trade_id or not trade_id.isprintable():
            trade_id = trade_id.translate(_COPY_ESCAPES)
        sma = scored.sma
        lines.append(
            # `!s`: str() itself, not format() (a Python-level call for enums and decimals).
            f"{format_time_us(trade.exchange_time_us)}\t{stream}\t{trade_id}\t{trade.price!s}\t"
            f"{trade.quantity!s}\t{_SIDE_TEXT[trade.side]}\t"
            f"{_NULL if sma is None else repr(float(sma))}\t{scored.signal!s}\t"
            f"{format_time_us(trade.ingest_time_us)}\n"
        )
    return "".join(lines).encode()


def _scored(row: Any) -> ScoredTrade:
    trade = Trade(
        exchange=row["exchange"],
        symbol=row["symbol"],
        trade_id=row["trade_id"],
        price=row["price"],
        quantity=row["quantity"],
        side=None if row["side"] is None else Side(row["side"]),
        exchange_time_us=datetime_to_time_us(row["time"]),
        ingest_time_us=datetime_to_time_us(row["ingest_time"]),
    )
    sma = None if row["sma"] is None else Decimal(repr(row["sma"]))
    return ScoredTrade(trade, sma, Signal(row["signal"]))


class ReadPool:
    """The read pool seen as `fetch`/`fetchval`/`acquire`: a whole read, waiting for a
    connection included, ends within the query timeout (plus a margin), else QueryTimeout."""

    def __init__(self, pool: Any, query_timeout_s: float) -> None:
        self.pool = pool
        self._timeout_s = query_timeout_s
        self._deadline_s = query_timeout_s + CLIENT_TIMEOUT_MARGIN_S

    def timed_out(self) -> QueryTimeout:
        return QueryTimeout(f"the query took longer than {self._timeout_s:g} s")

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        try:
            async with asyncio.timeout(self._deadline_s):
                return list(await self.pool.fetch(query, *args))
        except (TimeoutError, asyncpg.QueryCanceledError):
            raise self.timed_out() from None

    async def fetchval(self, query: str, *args: Any) -> Any:
        try:
            async with asyncio.timeout(self._deadline_s):
                return await self.pool.fetchval(query, *args)
        except (TimeoutError, asyncpg.QueryCanceledError):
            raise self.timed_out() from None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """A connection in a transaction, for several statements within one deadline."""
        try:
            async with (
                asyncio.timeout(self._deadline_s),
                self.pool.acquire() as connection,
                connection.transaction(),
            ):
                yield connection
        except (TimeoutError, asyncpg.QueryCanceledError):
            raise self.timed_out() from None


class PostgresStore:
    """TradeStore on two asyncpg pools (writes, reads); each write is one transaction."""

    def __init__(
        self,
        pool: Any,
        location: str,
        read_pool: ReadPool | None = None,
        database_url: str | None = None,
    ) -> None:
        self._pool = pool
        self._location = location
        self._database_url = database_url
        self._reads = read_pool or ReadPool(pool, STATEMENT_TIMEOUT_MS / 1000)
        self._candles = PostgresCandles(self._reads)

    async def write(self, batch: Sequence[ScoredTrade]) -> int:
        if not batch:
            return 0
        async with self._pool.acquire() as connection:
            if await _copy_unless_conflict(connection, copy_text(batch)):
                return len(batch)
            return await _insert_new(connection, [copy_record(scored) for scored in batch])

    async def window_prices(self, trade: Trade, count: int) -> list[Decimal]:
        if count <= 0:
            return []
        rows = await self._pool.fetch(
            _WINDOW_PRICES,
            trade.exchange,
            trade.symbol,
            trade.trade_id,
            pg_time(trade.exchange_time_us),  # the writer's codec: see configure_writer
            count,
        )
        return [row["price"] for row in rows]

    async def history(
        self, symbol: str, *, limit: int, exchange: str | None = None
    ) -> list[ScoredTrade]:
        if limit <= 0:
            return []
        if exchange is None:
            rows = await self._reads.fetch(_HISTORY, symbol, limit)
        else:
            rows = await self._reads.fetch(_STREAM_HISTORY, symbol, exchange, limit)
        return [_scored(row) for row in rows]

    async def history_page(
        self,
        symbol: str,
        *,
        limit: int,
        before: HistoryKey,
        start_us: int = 0,
        exchange: str | None = None,
    ) -> HistoryPage:
        bounds = (
            symbol,
            _EPOCH + timedelta(microseconds=start_us),
            _EPOCH + timedelta(microseconds=before.time_us),
            before.row_id,
            limit + 1,  # one more tells whether there is a next page
        )
        if exchange is None:
            rows = await self._reads.fetch(_HISTORY_PAGE, *bounds)
        else:
            rows = await self._reads.fetch(_STREAM_HISTORY_PAGE, *bounds, exchange)
        if len(rows) <= limit:
            return HistoryPage([_scored(row) for row in rows], None)
        last = rows[limit - 1]
        next_key = HistoryKey(datetime_to_time_us(last["time"]), last["id"])
        return HistoryPage([_scored(row) for row in rows[:limit]], next_key)

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
        return await self._candles.candles(
            symbol,
            interval_us=interval_us,
            from_us=from_us,
            to_us=to_us,
            exchange=exchange,
            max_scan_span_us=max_scan_span_us,
        )

    async def signal_changes(
        self,
        symbol: str,
        *,
        start_us: int,
        end_us: int,
        limit: int,
        exchange: str | None = None,
    ) -> list[SignalChange]:
        bounds = (
            symbol,
            _EPOCH + timedelta(microseconds=start_us),
            _EPOCH + timedelta(microseconds=end_us),
            limit,
        )
        # Stream by stream (each query stops early), then the newest `limit` of them all.
        rows = []
        for name in [exchange] if exchange is not None else sorted(EXCHANGES):
            rows += await self._reads.fetch(_SIGNAL_CHANGES, *bounds, name)
        rows.sort(key=lambda row: (row["time"], row["id"]), reverse=True)
        return [SignalChange(_scored(row), Signal(row["previous_signal"])) for row in rows[:limit]]

    async def latest(self, symbol: str, exchange: str | None = None) -> ScoredTrade | None:
        rows = await self.history(symbol, limit=1, exchange=exchange)
        return rows[0] if rows else None

    async def symbols(self) -> list[ScoredTrade]:
        """The latest trade (by time, then id, as in `latest`) of every (exchange, symbol)."""
        return [_scored(row) for row in await self._reads.fetch(_SYMBOLS)]

    async def ping(self) -> None:
        """On a connection of its own: a probe cut short on a hung server must not leave a
        pool connection stuck in its cancellation (probes every few seconds drained the pool
        the processor writes through)."""
        if self._database_url is None:
            await self._ping_on(self._pool)
            return
        connection = None
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                connection = await asyncpg.connect(self._database_url, timeout=PING_TIMEOUT_S)
                await connection.fetchval("SELECT 1")
                await connection.close()
        except UNREACHABLE_ERRORS as exc:
            raise unavailable(self._location, exc) from exc
        finally:
            if connection is not None and not connection.is_closed():
                connection.terminate()  # at once: a polite close could hang like the query

    async def _ping_on(self, pool: Any) -> None:
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                await pool.fetchval("SELECT 1")
        except UNREACHABLE_ERRORS as exc:
            raise unavailable(self._location, exc) from exc

    async def close(self) -> None:
        pools = {self._reads.pool, self._pool}
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.gather(*(pool.close() for pool in pools))
        except TimeoutError:
            for pool in pools:
                pool.terminate()


async def _copy_unless_conflict(connection: Any, rows: bytes) -> bool:
    """The fast path: COPY of the whole batch (`copy_text`); False (nothing stored) on a
    duplicate. One statement is its own transaction (all rows or none): no BEGIN and COMMIT."""
    try:
        # A memoryview: asyncpg would take `bytes` for a file name (os.fspath accepts them).
        source = memoryview(rows)
        await connection.copy_to_table("trades", source=source, columns=_COLUMNS, format="text")
    except asyncpg.UniqueViolationError:
        return False
    return True


async def _insert_new(connection: Any, records: list[tuple[Any, ...]]) -> int:
    """The replay path: stage the batch, insert the rows not stored yet in batch order."""
    staged = [(ordinal, *record) for ordinal, record in enumerate(records)]
    async with connection.transaction():
        await connection.execute(_CREATE_STAGING)
        await connection.copy_records_to_table(
            "trades_staging", records=staged, columns=("ordinal", *_COLUMNS)
        )
        status: str = await connection.execute(_INSERT_NEW_FROM_STAGING)
    return int(status.rsplit(" ", 1)[-1])  # "INSERT 0 <rows>"


async def open_postgres_store(
    database_url: str, *, query_timeout_s: float = DEFAULT_QUERY_TIMEOUT_S
) -> PostgresStore:
    """Opens the pools on a migrated database; StoreUnavailable if unreachable or not
    migrated. Reads are cancelled by the server after `query_timeout_s`."""
    check_postgres_url(database_url)
    location = describe_url(database_url)
    try:
        pool = await asyncpg.create_pool(
            database_url,
            min_size=POOL_MIN_SIZE,
            max_size=POOL_MAX_SIZE,
            command_timeout=COMMAND_TIMEOUT_S,
            timeout=CONNECT_TIMEOUT_S,
            init=configure_writer,
            server_settings={
                "statement_timeout": str(STATEMENT_TIMEOUT_MS),
                "application_name": "tickpipe",
            },
        )
    except UNREACHABLE_ERRORS as exc:
        raise unavailable(location, exc) from exc
    try:
        read_pool = await asyncpg.create_pool(
            database_url,
            min_size=POOL_MIN_SIZE,
            max_size=READ_POOL_MAX_SIZE,
            timeout=CONNECT_TIMEOUT_S,
            server_settings={
                "statement_timeout": str(max(1, round(query_timeout_s * 1000))),
                "application_name": "tickpipe-reads",
            },
        )
    except UNREACHABLE_ERRORS as exc:
        await pool.close()
        raise unavailable(location, exc) from exc
    store = PostgresStore(pool, location, ReadPool(read_pool, query_timeout_s), database_url)
    if not await pool.fetchval("SELECT to_regclass('trades') IS NOT NULL"):
        await store.close()
        raise StoreUnavailable(
            f"PostgreSQL at {location} has no trades table: run `tickpipe migrate` first"
        )
    return store
